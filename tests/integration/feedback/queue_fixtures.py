"""A TaskQueue on a real database and consumed records of annotation requests, for the queue's integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry

from services.feedback.app import SERVICE
from services.feedback.queue import TaskQueue
from services.feedback.queue_metrics import QueueMetrics
from services.feedback.settings import FeedbackSettings
from shared import db
from tests.support.builders import REQUEST_TIME
from tests.support.kafka import consumed_record
from tests.support.outbox import unstarted_relay


def later(seconds: float) -> str:
    return (REQUEST_TIME + timedelta(seconds=seconds)).isoformat()


def record(
    value: bytes | None, offset: int = 0, topic: str = "annotation-requests", key: bytes | None = None
) -> ConsumerRecord:
    """A consumed record as aiokafka hands it to the batch handler."""
    return consumed_record(topic, value, offset=offset, key=key)


@asynccontextmanager
async def task_queue(database_url: str, **overrides: Any) -> AsyncIterator[TaskQueue]:
    """A TaskQueue on `database_url` whose outbox rows stay in the table (no relay runs)."""
    settings = FeedbackSettings(database_url=database_url, **{"db_pool_max_size": 24, **overrides})
    pool = await db.create_pool(settings)
    registry = CollectorRegistry()
    relay = unstarted_relay(SERVICE, settings, pool, registry)
    try:
        yield TaskQueue(service=SERVICE, pool=pool, settings=settings, relay=relay, metrics=QueueMetrics(registry))
    finally:
        await pool.close()
