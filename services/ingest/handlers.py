"""ingest's handlers: interactions over HTTP and from interactions.raw, through the shared edge flow.

ingest also serves the admins' app-key routes (`/v1/admin/apps`, shared.app_keys_admin): keys are
checked by ingest and feedback alike, issued here.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.ingest.context import IngestContext
from services.ingest.settings import IngestSettings
from shared import topics
from shared.app_keys_admin import app_keys_admin_router
from shared.edge_http import EdgeEndpoints, install_edge
from shared.events import DeadLetter, Interaction
from shared.kafka import document_output
from shared.runtime import Runtime

ENDPOINTS = EdgeEndpoints(
    raw_topic=topics.INTERACTIONS_RAW,
    path="/v1/interactions",
    noun="interaction",
    tag="interactions",
    item_schema=Interaction.model_json_schema(mode="validation"),
)


def register(runtime: Runtime[IngestContext], settings: IngestSettings) -> list[APIRouter]:
    """The interactions.raw consumer and the HTTP routes; returns the routes."""
    document_output(runtime.broker, settings, topics.INTERACTIONS, Interaction, key="prompt_key",
                    description="Canonical interactions: received_at and prompt_key stamped by ingest.")  # fmt: skip
    document_output(runtime.broker, settings, topics.DEAD_LETTER, DeadLetter, key="source topic:partition:offset",
                    description="Messages that could not be processed, with their origin and the reason (error_code);"
                    " redrive them with python -m services.ops redrive.")  # fmt: skip
    interactions = install_edge(runtime, endpoints=ENDPOINTS, group_id=settings.group_id, settings=settings)
    return [interactions, app_keys_admin_router(runtime.context, settings)]
