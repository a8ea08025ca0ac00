"""ingest's wiring: settings -> runtime -> subscribers and routes -> app. No logic here."""

from __future__ import annotations

from fastapi import FastAPI

from services.ingest import handlers
from services.ingest.context import IngestContext
from services.ingest.settings import IngestSettings
from services.ingest.stream import STREAM_NAME
from shared.db import SHARED_MIGRATIONS
from shared.edge import EdgeMetrics
from shared.runtime import Runtime, build_app

SERVICE = "ingest"
# ingest keeps no state of its own: only the shared tables (published event ids).
MIGRATIONS = (SHARED_MIGRATIONS,)


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()
    runtime: Runtime[IngestContext] = Runtime.create(service=SERVICE, settings=settings, migrations=MIGRATIONS)
    edge_metrics = EdgeMetrics(runtime.registry, STREAM_NAME)
    return build_app(
        runtime,
        start_context=lambda rt: IngestContext.start(rt, settings=settings, edge_metrics=edge_metrics),
        title="ingest",
        description="What the model said: interactions in, canonical events on `interactions`.",
        routers=handlers.register(runtime, settings),
    )
