"""feedback's annotation-requests subscriber, alone on FastStream's in-memory broker.

The queue itself runs on PostgreSQL (tests/integration/feedback); the handler's own job is to hand
each batch to the queue under the consumers' failure policy: when the queue cannot take it because of
an outage, pause, log and raise, so the batch is redelivered rather than committed; when one record
fails otherwise, isolate it, retry it a bounded number of times and dead-letter it, and go on.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from structlog.contextvars import merge_contextvars

from services.feedback import handlers
from services.feedback.app import SERVICE
from services.feedback.handlers import register_annotation_requests
from services.feedback.settings import FeedbackSettings
from shared import consumer, topics
from shared.consumer import consumer_policy
from shared.errors import ConflictError, PipelineError, TransientError
from shared.runtime import Runtime
from tests.support.logs import captured_logs

SETTINGS = FeedbackSettings(topic_prefix="p.", retry_initial_backoff_s=0.01, retry_max_backoff_s=0.02)
TOPIC = topics.topic("p.", topics.ANNOTATION_REQUESTS)


class Queue:
    def __init__(self, *, failure: Exception | None = None, poison: bytes | None = None) -> None:
        self.failure = failure
        self.poison = poison
        self.batches: list[list[bytes | None]] = []

    async def ingest(self, records: tuple[Any, ...]) -> None:
        self.batches.append([r.value for r in records])
        if self.failure is not None and (self.poison is None or any(r.value == self.poison for r in records)):
            raise self.failure


def runtime_with(queue: Queue, letters: list[tuple[Any, PipelineError]] | None = None) -> Runtime[Any]:
    runtime: Runtime[Any] = Runtime.create(service=SERVICE, settings=SETTINGS, migrations=())
    register_annotation_requests(runtime, SETTINGS)

    async def dead_letter(record: Any, error: PipelineError) -> None:
        assert letters is not None, "nothing should be dead-lettered"
        letters.append((record, error))

    policy = consumer_policy(SETTINGS, name=TOPIC, dead_letter=dead_letter)
    runtime.context.set(SimpleNamespace(queue=queue, requests_policy=policy))
    return runtime


async def test_a_batch_goes_to_the_queue() -> None:
    queue = Queue()
    async with TestKafkaBroker(runtime_with(queue).broker) as broker:
        await broker.publish_batch(b"r1", b"r2", topic=TOPIC)
    assert queue.batches == [[b"r1", b"r2"]]


async def test_a_batch_the_queue_cannot_take_is_logged_with_its_origin_and_raised() -> None:
    queue = Queue(failure=TransientError("database unavailable"))
    async with TestKafkaBroker(runtime_with(queue).broker) as broker:
        with captured_logs(handlers, consumer, processors=[merge_contextvars]) as logs, pytest.raises(TransientError):
            await broker.publish_batch(b"r1", topic=TOPIC, partition=3)
    (failed,) = [e for e in logs if e["event"] == "batch_failed"]
    assert (failed["error_code"], failed["backoff_s"]) == ("transient", 0.01)
    assert (failed["topic"], failed["partitions"]) == (TOPIC, [3])
    assert queue.batches == [[b"r1"]]


async def test_a_record_the_queue_refuses_is_isolated_retried_and_dead_lettered_and_the_rest_go_on() -> None:
    queue = Queue(failure=ConflictError("a row the queue refuses"), poison=b"r2")
    letters: list[tuple[Any, PipelineError]] = []
    async with TestKafkaBroker(runtime_with(queue, letters).broker) as broker:
        await broker.publish_batch(b"r1", b"r2", b"r3", topic=TOPIC)
    attempts = SETTINGS.consumer_max_attempts
    assert queue.batches == [[b"r1", b"r2", b"r3"], [b"r1"], *[[b"r2"]] * attempts, [b"r3"]]
    ((record, error),) = letters
    assert (record.value, error.code) == (b"r2", "processing_failed")
    assert "ConflictError" in error.message
