"""feedback's handlers: the feedback.raw consumer and the end-user HTTP routes."""

from __future__ import annotations

from fastapi import APIRouter
from faststream.kafka.annotations import KafkaMessage

from services.feedback.votes import vote_json_schema
from shared import topics
from shared.edge import EdgePublisher
from shared.edge_http import edge_router
from shared.kafka import batch_subscriber
from shared.runtime import Runtime


def publisher_of(runtime: Runtime) -> EdgePublisher:
    return runtime.state["edge"]


def register_subscribers(runtime: Runtime, group_id: str) -> None:
    """Consume what apps publish to feedback.raw; offsets commit after the outputs are acknowledged."""

    @batch_subscriber(
        runtime.broker,
        runtime.settings,
        topics.FEEDBACK_RAW,
        group_id=group_id,
        title="feedback.raw",
        description="Votes as apps publish them (same body as the HTTP API).",
    )
    async def on_raw_feedback(msg: KafkaMessage) -> None:
        await publisher_of(runtime).consume_records(msg.raw_message)


def http_router(runtime: Runtime) -> APIRouter:
    return edge_router(
        path="/v1/votes",
        noun="vote",
        item_schema=vote_json_schema(),
        publisher=lambda request: publisher_of(request.app.state.runtime),
        max_batch_items=runtime.settings.max_batch_items,
        tag="votes",
    )
