"""feedback's wiring: settings -> runtime -> subscribers and routes -> app. No logic here."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from services.feedback.handlers import http_router, register_subscribers
from services.feedback.settings import FeedbackSettings
from services.feedback.votes import vote_stream
from shared.edge import EdgeMetrics, EdgePublisher, prune_published
from shared.runtime import Runtime, build_app

SERVICE = "feedback"


def create_app(settings: FeedbackSettings | None = None) -> FastAPI:
    settings = settings or FeedbackSettings()
    runtime = Runtime.create(SERVICE, settings, migration_components=["shared", "feedback"])
    metrics = EdgeMetrics(runtime.registry, "votes")
    register_subscribers(runtime, settings.group_id)

    async def on_started(rt: Runtime) -> None:
        rt.state["edge"] = EdgePublisher(
            service=SERVICE,
            stream=vote_stream(settings.topic_prefix),
            broker=rt.broker,
            pool=rt.db,
            settings=settings,
            metrics=metrics,
        )
        window = timedelta(seconds=settings.dedupe_window_s)
        rt.every("prune_published", settings.dedupe_prune_interval_s, lambda: prune_published(rt.db, window))

    return build_app(
        runtime,
        title="feedback",
        description="What humans said: end-user votes to `votes`; the annotation queue for experts.",
        routers=[http_router(runtime)],
        on_started=on_started,
    )
