"""The interactions stream: canonical form (received_at, prompt_key) and its key."""

from __future__ import annotations

from datetime import datetime

from shared import topics
from shared.edge import EdgeStream
from shared.edge_view import record_interactions
from shared.events import Interaction, parse_interaction
from shared.events.parsing import INTERACTION_ITEMS
from shared.prompt_key import prompt_key

STREAM_NAME = "interactions"


def stamp_interaction(event: Interaction, now: datetime) -> Interaction:
    """received_at is always ours; prompt_key groups answers to the same prompt."""
    return event.model_copy(update={"received_at": now, "prompt_key": prompt_key(event.app_id, event.messages)})


def interaction_stream(topic_prefix: str) -> EdgeStream:
    return EdgeStream(
        name=STREAM_NAME,
        output_topic=topics.topic(topic_prefix, topics.INTERACTIONS),
        parse=parse_interaction,
        json_items=INTERACTION_ITEMS,
        stamp=stamp_interaction,  # type: ignore[arg-type]
        # Keyed by prompt_key: every answer of one prompt group lands on one partition.
        key=lambda event: event.prompt_key.encode(),  # type: ignore[attr-defined]
        # With the edge's view: feedback refuses a comparison of two answers it knows in different groups.
        record=record_interactions,
    )
