"""Building annotation requests and a TaskQueue on a real database, for the queue's integration tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry

from services.feedback.app import SERVICE
from services.feedback.queue import QueueMetrics, TaskQueue
from services.feedback.settings import FeedbackSettings
from shared import db
from shared.kafka import make_broker
from shared.outbox import OutboxRelay

BASE_TIME = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def request_body(task_id: str, domain: str, **overrides: Any) -> dict[str, Any]:
    """An AnnotationRequest as the aggregator publishes it (compare, A and B)."""
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "app_id": "helpdesk",
        "task_id": task_id,
        "pair_id": f"pair-{task_id}",
        "prompt_key": f"pk-{task_id}",
        "kind": "compare",
        "domain": domain,
        "priority": 1.0,
        "prompt": [{"role": "user", "content": f"Question of {task_id}?"}],
        "candidates": {
            "A": {"interaction_id": f"{task_id}-a", "content": "Answer A", "model": "m", "model_version": "1"},
            "B": {"interaction_id": f"{task_id}-b", "content": "Answer B", "model": "m", "model_version": "2"},
        },
        "reason": "split_votes",
        "evidence": {"thumbs": 5},
        "occurred_at": BASE_TIME.isoformat(),
        "updated_at": BASE_TIME.isoformat(),
    }
    body.update(overrides)
    return body


def later(seconds: float) -> str:
    return (BASE_TIME + timedelta(seconds=seconds)).isoformat()


def record(
    value: bytes | None, offset: int = 0, topic: str = "annotation-requests", key: bytes | None = None
) -> ConsumerRecord:
    """A consumed record as aiokafka hands it to the batch handler."""
    return ConsumerRecord(topic, 0, offset, 0, 0, key, value, None, len(key or b""), len(value or b""), ())


@asynccontextmanager
async def task_queue(database_url: str, **overrides: Any) -> AsyncIterator[TaskQueue]:
    """A TaskQueue on `database_url` whose outbox rows stay in the table (no relay runs)."""
    settings = FeedbackSettings(database_url=database_url, db_pool_max_size=24, **overrides)
    pool = await db.create_pool(settings)
    registry = CollectorRegistry()
    relay = OutboxRelay(
        service=SERVICE,
        pool=pool,
        broker=make_broker(settings, client_id="test"),
        registry=registry,
        batch_size=100,
        poll_interval_s=1.0,
        publish_timeout_s=5.0,
        max_backoff_s=1.0,
    )
    try:
        yield TaskQueue(service=SERVICE, pool=pool, settings=settings, relay=relay, metrics=QueueMetrics(registry))
    finally:
        await pool.close()
