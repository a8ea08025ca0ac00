"""ingest's wiring: settings -> runtime -> subscribers and routes -> app. No logic here."""

from __future__ import annotations

from fastapi import FastAPI

from services.ingest import handlers
from services.ingest.settings import IngestSettings
from shared.db import SHARED_MIGRATIONS
from shared.runtime import Runtime, build_app

SERVICE = "ingest"
# ingest keeps no state of its own: only the shared tables (published event ids).
MIGRATIONS = (SHARED_MIGRATIONS,)


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()
    runtime = Runtime.create(SERVICE, settings, migrations=MIGRATIONS)
    return build_app(
        runtime,
        title="ingest",
        description="What the model said: interactions in, canonical events on `interactions`.",
        routers=[handlers.register(runtime, settings)],
    )
