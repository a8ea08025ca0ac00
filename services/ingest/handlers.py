"""ingest's handlers: the interactions.raw consumer and the HTTP routes."""

from __future__ import annotations

import structlog
from fastapi import APIRouter
from faststream.kafka.annotations import KafkaMessage

from shared import topics
from shared.edge import EdgePublisher
from shared.edge_http import edge_router
from shared.events import Interaction
from shared.kafka import batch_subscriber
from shared.runtime import Runtime

log = structlog.get_logger(__name__)


def publisher_of(runtime: Runtime) -> EdgePublisher:
    return runtime.state["edge"]


def register_subscribers(runtime: Runtime, group_id: str) -> None:
    """Consume what apps publish to interactions.raw; offsets commit after the outputs are acknowledged."""

    @batch_subscriber(
        runtime.broker,
        runtime.settings,
        topics.INTERACTIONS_RAW,
        group_id=group_id,
        title="interactions.raw",
        description="Interactions as apps publish them (same body as the HTTP API).",
    )
    async def on_raw_interactions(msg: KafkaMessage) -> None:
        await publisher_of(runtime).consume_records(msg.raw_message)


def http_router(runtime: Runtime) -> APIRouter:
    return edge_router(
        path="/v1/interactions",
        noun="interaction",
        item_schema=Interaction.model_json_schema(mode="validation"),
        publisher=lambda request: publisher_of(request.app.state.runtime),
        max_batch_items=runtime.settings.max_batch_items,
        tag="interactions",
    )
