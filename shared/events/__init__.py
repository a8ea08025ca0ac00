"""Versioned v1 contracts of every event on the pipeline's topics (pydantic models), in one namespace.

`base` (bounded fields, base classes), `inputs` (interactions; votes as apps may send them, `EndUserVote`,
and as the `votes` topic carries them, `Vote`), `outputs` (pairs, requests, stats, dead letters),
`leaderboard` (the model leaderboard, regression alerts) and `parsing` (validation with every bad field
named). Size bounds are settings (`shared.settings.Limits`): pass them with
`parse_interaction(..., limits=...)` / `parse_vote(...)`; without them the settings' defaults apply.
"""

from shared.events.base import SCHEMA_VERSION, Contract, Domain, Event, Id, Tag, utcnow
from shared.events.inputs import (
    END_USER_VOTE_ADAPTER,
    EXPERT_ONLY_FIELDS,
    VOTE_ADAPTER,
    CommentVote,
    ComparisonVote,
    EditVote,
    EndUserCommentVote,
    EndUserComparisonVote,
    EndUserEditVote,
    EndUserRatingVote,
    EndUserThumbVote,
    EndUserVote,
    Interaction,
    Message,
    RatingVote,
    Response,
    ThumbVote,
    VerdictVote,
    Vote,
)
from shared.events.leaderboard import AlertReading, ModelAlert, ModelLeaderboard
from shared.events.outputs import AnnotationRequest, Candidate, DeadLetter, FeedbackStats, PreferencePair
from shared.events.parsing import parse_end_user_vote, parse_interaction, parse_vote

__all__ = [
    "END_USER_VOTE_ADAPTER",
    "EXPERT_ONLY_FIELDS",
    "SCHEMA_VERSION",
    "VOTE_ADAPTER",
    "AlertReading",
    "AnnotationRequest",
    "Candidate",
    "CommentVote",
    "ComparisonVote",
    "Contract",
    "DeadLetter",
    "Domain",
    "EditVote",
    "EndUserCommentVote",
    "EndUserComparisonVote",
    "EndUserEditVote",
    "EndUserRatingVote",
    "EndUserThumbVote",
    "EndUserVote",
    "Event",
    "FeedbackStats",
    "Id",
    "Interaction",
    "Message",
    "ModelAlert",
    "ModelLeaderboard",
    "PreferencePair",
    "RatingVote",
    "Response",
    "Tag",
    "ThumbVote",
    "VerdictVote",
    "Vote",
    "parse_end_user_vote",
    "parse_interaction",
    "parse_vote",
    "utcnow",
]
