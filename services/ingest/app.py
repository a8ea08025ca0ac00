"""ingest's wiring: settings -> runtime -> subscribers and routes -> app. No logic here."""

from __future__ import annotations

from fastapi import FastAPI

from services.ingest import handlers
from services.ingest.settings import IngestSettings
from shared.runtime import Runtime, build_app

SERVICE = "ingest"


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()
    runtime = Runtime.create(SERVICE, settings, migration_components=["shared"])
    return build_app(
        runtime,
        title="ingest",
        description="What the model said: interactions in, canonical events on `interactions`.",
        routers=[handlers.register(runtime, settings)],
    )
