"""ingest's wiring: settings -> runtime -> subscribers and routes -> app. No logic here."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from services.ingest.handlers import http_router, register_subscribers
from services.ingest.settings import IngestSettings
from services.ingest.stream import interaction_stream
from shared.edge import EdgeMetrics, EdgePublisher, prune_published
from shared.runtime import Runtime, build_app

SERVICE = "ingest"


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()
    runtime = Runtime.create(SERVICE, settings, migration_components=["shared"])
    metrics = EdgeMetrics(runtime.registry, "interactions")
    register_subscribers(runtime, settings.group_id)

    async def on_started(rt: Runtime) -> None:
        rt.state["edge"] = EdgePublisher(
            service=SERVICE,
            stream=interaction_stream(settings.topic_prefix),
            broker=rt.broker,
            pool=rt.db,
            settings=settings,
            metrics=metrics,
        )
        window = timedelta(seconds=settings.dedupe_window_s)
        rt.every("prune_published", settings.dedupe_prune_interval_s, lambda: prune_published(rt.db, window))

    return build_app(
        runtime,
        title="ingest",
        description="What the model said: interactions in, canonical events on `interactions`.",
        routers=[http_router(runtime)],
        on_started=on_started,
    )
