"""Topic names (the Interfaces contract) and how each topic is created."""

from __future__ import annotations

from dataclasses import dataclass

INTERACTIONS_RAW = "interactions.raw"
FEEDBACK_RAW = "feedback.raw"
INTERACTIONS = "interactions"
VOTES = "votes"
PREFERENCE_PAIRS = "preference-pairs"
ANNOTATION_REQUESTS = "annotation-requests"
FEEDBACK_STATS = "feedback-stats"
DEAD_LETTER = "dead-letter"
MODEL_LEADERBOARD = "model-leaderboard"
MODEL_ALERTS = "model-alerts"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    is_compacted: bool = False
    is_dead_letter: bool = False


ALL_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(INTERACTIONS_RAW),
    TopicSpec(FEEDBACK_RAW),
    TopicSpec(INTERACTIONS),
    TopicSpec(VOTES),
    # Compacted: readers keep the latest value per pair_id; a null value retracts the pair.
    TopicSpec(PREFERENCE_PAIRS, is_compacted=True),
    TopicSpec(ANNOTATION_REQUESTS),
    TopicSpec(FEEDBACK_STATS),
    # Compacted: the latest leaderboard per app_id (or app_id/domain) is all a reader needs.
    TopicSpec(MODEL_LEADERBOARD, is_compacted=True),
    TopicSpec(MODEL_ALERTS),
    TopicSpec(DEAD_LETTER, is_dead_letter=True),
)


def topic(prefix: str, name: str) -> str:
    """The full name of a topic under a deployment's prefix."""
    return f"{prefix}{name}"
