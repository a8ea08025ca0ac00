"""feedback's wiring: settings -> runtime -> subscribers and routes -> app. No logic here."""

from __future__ import annotations

from fastapi import FastAPI

from services.feedback import handlers, store
from services.feedback.annotators import admin_router, register_tasks_consumer, tasks_router
from services.feedback.queue import QueueMetrics, TaskQueue
from services.feedback.settings import FeedbackSettings
from shared.db import SHARED_MIGRATIONS, Migrations
from shared.runtime import Runtime, build_app

SERVICE = "feedback"
MIGRATIONS = (SHARED_MIGRATIONS, Migrations(SERVICE, store.MIGRATIONS_DIR))


def create_app(settings: FeedbackSettings | None = None) -> FastAPI:
    settings = settings or FeedbackSettings()
    runtime = Runtime.create(SERVICE, settings, migrations=MIGRATIONS)
    queue_metrics = QueueMetrics(runtime.registry)
    votes_router = handlers.register(runtime, settings)
    register_tasks_consumer(runtime, settings.tasks_group_id)

    async def on_started(rt: Runtime) -> None:
        relay = rt.start_outbox_relay(
            batch_size=settings.outbox_batch_size, poll_interval_s=settings.outbox_poll_interval_s
        )
        queue = TaskQueue(service=rt.service, pool=rt.db, settings=settings, relay=relay, metrics=queue_metrics)
        rt.state["queue"] = queue
        rt.every("queue_gauges", settings.stats_refresh_interval_s, queue.refresh_gauges)

    return build_app(
        runtime,
        title="feedback",
        description="What humans said: end-user votes to `votes`; the annotation queue for experts.",
        routers=[votes_router, tasks_router(), admin_router()],
        on_started=on_started,
    )
