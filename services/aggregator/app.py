"""aggregator's wiring: settings -> runtime -> subscribers and routes -> app. No logic here."""

from __future__ import annotations

from fastapi import FastAPI

from services.aggregator.settings import AggregatorSettings
from shared.runtime import Runtime, build_app

SERVICE = "aggregator"


def create_app(settings: AggregatorSettings | None = None) -> FastAPI:
    settings = settings or AggregatorSettings()
    runtime = Runtime.create(SERVICE, settings, migration_components=["shared", "aggregator"])
    return build_app(
        runtime,
        title="aggregator",
        description="What it means: preference pairs, annotation requests and feedback stats.",
        routers=[],
    )
