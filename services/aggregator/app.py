"""aggregator's wiring: settings -> runtime -> subscribers and routes -> app. No logic here."""

from __future__ import annotations

from fastapi import FastAPI

from services.aggregator import handlers, store
from services.aggregator.context import AggregatorContext
from services.aggregator.metrics import AggregatorMetrics
from services.aggregator.settings import AggregatorSettings
from shared.db import SHARED_MIGRATIONS, Migrations
from shared.runtime import Runtime, build_app

SERVICE = "aggregator"
MIGRATIONS = (SHARED_MIGRATIONS, Migrations(SERVICE, store.MIGRATIONS_DIR))


def create_app(settings: AggregatorSettings | None = None) -> FastAPI:
    settings = settings or AggregatorSettings()
    runtime: Runtime[AggregatorContext] = Runtime.create(service=SERVICE, settings=settings, migrations=MIGRATIONS)
    metrics = AggregatorMetrics(runtime.registry)
    return build_app(
        runtime,
        start_context=lambda rt: AggregatorContext.start(rt, settings=settings, metrics=metrics),
        title="aggregator",
        description="What it means: preference pairs, annotation requests and feedback stats.",
        routers=handlers.register(runtime, settings),
    )
