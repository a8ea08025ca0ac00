"""feedback's wiring: settings -> runtime -> subscribers and routes -> app. No logic here."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from services.feedback.annotators import admin_router, register_tasks_consumer, tasks_router
from services.feedback.handlers import http_router, register_subscribers
from services.feedback.queue import SERVICE, QueueMetrics, TaskQueue
from services.feedback.settings import FeedbackSettings
from services.feedback.votes import vote_stream
from shared.edge import EdgeMetrics, EdgePublisher, prune_published
from shared.outbox import OutboxRelay
from shared.runtime import Runtime, build_app


def create_app(settings: FeedbackSettings | None = None) -> FastAPI:
    settings = settings or FeedbackSettings()
    runtime = Runtime.create(SERVICE, settings, migration_components=["shared", "feedback"])
    metrics = EdgeMetrics(runtime.registry, "votes")
    queue_metrics = QueueMetrics(runtime.registry)
    register_subscribers(runtime, settings.group_id)
    register_tasks_consumer(runtime, settings.tasks_group_id)

    async def on_started(rt: Runtime) -> None:
        rt.state["edge"] = EdgePublisher(
            service=SERVICE,
            stream=vote_stream(settings.topic_prefix),
            broker=rt.broker,
            pool=rt.db,
            settings=settings,
            metrics=metrics,
        )
        relay = OutboxRelay(
            service=SERVICE,
            pool=rt.db,
            broker=rt.broker,
            registry=rt.registry,
            batch_size=settings.outbox_batch_size,
            poll_interval_s=settings.outbox_poll_interval_s,
            publish_timeout_s=settings.publish_timeout_s,
            max_backoff_s=settings.retry_max_backoff_s,
        )
        queue = TaskQueue(pool=rt.db, settings=settings, relay=relay, metrics=queue_metrics)
        rt.state["queue"] = queue
        rt.spawn("outbox_relay", relay.run())
        rt.on_stopping.append(lambda: relay.flush(settings.shutdown_grace_s))
        window = timedelta(seconds=settings.dedupe_window_s)
        rt.every("prune_published", settings.dedupe_prune_interval_s, lambda: prune_published(rt.db, window))
        rt.every("queue_gauges", settings.stats_refresh_interval_s, queue.refresh_gauges)

    return build_app(
        runtime,
        title="feedback",
        description="What humans said: end-user votes to `votes`; the annotation queue for experts.",
        routers=[http_router(runtime), tasks_router(), admin_router()],
        on_started=on_started,
    )
