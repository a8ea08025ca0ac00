"""feedback's wiring: settings -> runtime -> subscribers and routes -> app. No logic here."""

from __future__ import annotations

from fastapi import FastAPI

from services.feedback import handlers, store
from services.feedback.context import FeedbackContext
from services.feedback.quarantine import BudgetMetrics
from services.feedback.queue_metrics import QueueMetrics
from services.feedback.settings import FeedbackSettings
from services.feedback.stream import STREAM_NAME
from shared.db import SHARED_MIGRATIONS, Migrations
from shared.edge import EdgeMetrics
from shared.runtime import Runtime, build_app

SERVICE = "feedback"
MIGRATIONS = (SHARED_MIGRATIONS, Migrations(SERVICE, store.MIGRATIONS_DIR))


def create_app(settings: FeedbackSettings | None = None) -> FastAPI:
    settings = settings or FeedbackSettings()
    runtime: Runtime[FeedbackContext] = Runtime.create(service=SERVICE, settings=settings, migrations=MIGRATIONS)
    edge_metrics, queue_metrics = EdgeMetrics(runtime.registry, STREAM_NAME), QueueMetrics(runtime.registry)
    budget_metrics = BudgetMetrics(runtime.registry)
    return build_app(
        runtime,
        start_context=lambda rt: FeedbackContext.start(
            rt,
            settings=settings,
            edge_metrics=edge_metrics,
            queue_metrics=queue_metrics,
            budget_metrics=budget_metrics,
        ),
        title="feedback",
        description="What humans said: end-user votes to `votes`; the annotation queue for experts.",
        routers=handlers.register(runtime, settings),
    )
