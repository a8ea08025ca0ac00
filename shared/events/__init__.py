"""Versioned v1 contracts of every event on the pipeline's topics (pydantic models), in one namespace.

`base` (bounded fields, base classes), `inputs` (interactions, votes), `outputs` (pairs, requests,
stats, dead letters) and `parsing` (validation with every bad field named). Size bounds are settings
(`shared.settings.Limits`): pass them with `parse_interaction(..., limits=...)` / `parse_vote(...)`;
without them the settings' defaults apply.
"""

from shared.events.base import SCHEMA_VERSION, Contract, Domain, Event, Id, Tag, utcnow
from shared.events.inputs import (
    VOTE_ADAPTER,
    CommentVote,
    ComparisonVote,
    EditVote,
    Interaction,
    Message,
    RatingVote,
    Response,
    ThumbVote,
    VerdictVote,
    Vote,
)
from shared.events.outputs import AnnotationRequest, Candidate, DeadLetter, FeedbackStats, PreferencePair
from shared.events.parsing import parse_interaction, parse_vote

__all__ = [
    "SCHEMA_VERSION",
    "VOTE_ADAPTER",
    "AnnotationRequest",
    "Candidate",
    "CommentVote",
    "ComparisonVote",
    "Contract",
    "DeadLetter",
    "Domain",
    "EditVote",
    "Event",
    "FeedbackStats",
    "Id",
    "Interaction",
    "Message",
    "PreferencePair",
    "RatingVote",
    "Response",
    "Tag",
    "ThumbVote",
    "VerdictVote",
    "Vote",
    "parse_interaction",
    "parse_vote",
    "utcnow",
]
