"""The end-user votes stream: what apps may send (end-user evidence only), its canonical form (received_at), its key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared import topics
from shared.edge import EdgeStream, Mark
from shared.edge_view import refuse_cross_group
from shared.events import END_USER_VOTE_ADAPTER, Event, parse_end_user_vote
from shared.events.parsing import END_USER_VOTE_ITEMS

STREAM_NAME = "votes"


def stamp_vote(event: Event, now: datetime) -> Event:
    """received_at is always ours."""
    return event.model_copy(update={"received_at": now})


def vote_stream(topic_prefix: str, mark: Mark | None = None) -> EdgeStream:
    """`mark`: the per-voter hourly budget (services/feedback/quarantine.py), stamping votes past it."""
    return EdgeStream(
        name=STREAM_NAME,
        output_topic=topics.topic(topic_prefix, topics.VOTES),
        # Apps give end-user evidence only: a body claiming expert evidence is refused (forbidden_source).
        parse=parse_end_user_vote,
        json_items=END_USER_VOTE_ITEMS,
        stamp=stamp_vote,
        key=lambda event: event.interaction_id.encode(),  # type: ignore[attr-defined]
        # A comparison of two answers the edge's view knows in different prompt groups: 422 / dead letter.
        check=refuse_cross_group,
        mark=mark,
    )


def vote_json_schema() -> dict[str, Any]:
    """The request body of `POST /v1/votes` (and each item of the batch): the end-user vote contract."""
    return END_USER_VOTE_ADAPTER.json_schema(mode="validation")
