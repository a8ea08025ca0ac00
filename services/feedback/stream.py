"""The end-user votes stream: canonical form (received_at) and its key (interaction_id)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from shared import topics
from shared.edge import EdgeStream
from shared.events import Event, Vote, parse_vote

STREAM_NAME = "votes"


def stamp_vote(event: Event, now: datetime) -> Event:
    """received_at is always ours."""
    return event.model_copy(update={"received_at": now})


def vote_stream(topic_prefix: str) -> EdgeStream:
    return EdgeStream(
        name=STREAM_NAME,
        output_topic=topics.topic(topic_prefix, topics.VOTES),
        parse=parse_vote,
        stamp=stamp_vote,
        key=lambda event: event.interaction_id.encode(),  # type: ignore[attr-defined]
    )


def vote_json_schema() -> dict[str, Any]:
    return TypeAdapter(Vote).json_schema(mode="validation")
