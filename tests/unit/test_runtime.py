"""A service process's shutdown order, and the log context its subscribers run in (no sockets).

The broker is FastStream's in-memory TestKafkaBroker; the pool and relay stand-ins only record
when they are closed or flushed, since the order of the steps is what is under test here (the
fault tests check the same order end to end: SIGTERM mid-flow loses nothing).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import structlog
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared import runtime as runtime_module
from shared.errors import TransientError
from shared.kafka import batch_log_context, batch_log_scope, batch_subscriber, make_broker
from shared.runtime import ContextDependency, Runtime
from shared.settings import ServiceSettings
from tests.support.logs import captured_logs

SETTINGS = ServiceSettings(topic_prefix="p.", shutdown_grace_s=1.0)


class Steps:
    """Stand-ins for the runtime's resources: each records its step, in order."""

    def __init__(self, *, failing: str | None = None) -> None:
        self.done: list[str] = []
        self.failing = failing

    async def record(self, step: str) -> None:
        self.done.append(step)
        if step == self.failing:
            raise RuntimeError(f"{step} failed")


class Context:
    def __init__(self, steps: Steps) -> None:
        self.steps = steps

    async def aclose(self) -> None:
        await self.steps.record("close_context")


class Relay:
    def __init__(self, steps: Steps) -> None:
        self.steps = steps
        self.stopped = asyncio.Event()

    async def run(self) -> None:
        """Its loop: ends (a cycle done) only once asked to stop."""
        await self.stopped.wait()
        self.steps.done.append("stop_relay")

    def stop(self) -> None:
        self.stopped.set()

    async def flush(self, timeout_s: float) -> None:
        await self.steps.record("flush_outbox")


class Pool:
    def __init__(self, steps: Steps) -> None:
        self.steps = steps

    async def close(self) -> None:
        await self.steps.record("close_pool")


async def started_runtime(steps: Steps) -> Runtime[Any]:
    """A runtime as `start` leaves it: context set, a periodic job and a background task running."""
    runtime: Runtime[Any] = Runtime.create(service="unit", settings=SETTINGS, migrations=())
    runtime.pool = Pool(steps)  # type: ignore[assignment]
    relay = Relay(steps)
    runtime.relay = relay  # type: ignore[assignment]
    runtime.relay_task = runtime.spawn("outbox_relay", relay.run())
    runtime.context.set(Context(steps))

    async def job() -> None:
        await asyncio.sleep(3600)

    async def forever(step: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            steps.done.append(step)

    runtime.every("job", 3600, job).add_done_callback(lambda _: steps.done.append("stop_jobs"))
    runtime.spawn("relay_loop", forever("cancel_tasks"))
    original_stop = runtime.broker.stop

    async def stop_producer(*args: Any, **kwargs: Any) -> None:
        await steps.record("close_producer")
        await original_stop(*args, **kwargs)

    runtime.broker.stop = stop_producer  # type: ignore[method-assign]
    await asyncio.sleep(0)
    return runtime


async def test_aclose_stops_in_order() -> None:
    steps = Steps()
    runtime = await started_runtime(steps)
    await runtime.aclose()
    assert steps.done == [
        "stop_jobs",
        "close_context",
        "stop_relay",
        "flush_outbox",
        "close_producer",
        "cancel_tasks",
        "close_pool",
    ]
    with pytest.raises(TransientError):
        await runtime.context()


@pytest.mark.parametrize("failing", ["close_context", "flush_outbox", "close_producer"])
async def test_a_failed_step_is_logged_and_the_next_steps_still_run(failing: str) -> None:
    steps = Steps(failing=failing)
    runtime = await started_runtime(steps)
    with captured_logs(runtime_module) as logs:
        await runtime.aclose()
    assert steps.done[-1] == "close_pool"
    assert [e["step"] for e in logs if e["event"] == "shutdown_step_failed"] == [failing]


async def test_the_context_is_handed_out_only_while_started() -> None:
    dependency: ContextDependency[Any] = ContextDependency()
    with pytest.raises(TransientError):
        await dependency()
    context = Context(Steps())
    dependency.set(context)
    assert await dependency() is context
    assert dependency.clear() is context
    with pytest.raises(TransientError):
        await dependency()


async def test_subscriber_logs_carry_the_batch_origin() -> None:
    broker = make_broker(SETTINGS, client_id="unit")
    seen: list[dict[str, Any]] = []

    @batch_subscriber(broker, SETTINGS, "votes", group_id="unit")
    async def handle(msg: KafkaMessage) -> None:
        seen.append(structlog.contextvars.get_contextvars())

    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(b"a", b"b", topic="p.votes", partition=2)
    # One batch of two records on partition 2 (the in-memory broker gives every record offset 0).
    assert seen == [{"topic": "p.votes", "partitions": [2], "offsets": ["2:0-0"]}]
    assert structlog.contextvars.get_contextvars() == {}, "unbound once the handler returned"


async def test_a_raw_records_subscriber_gets_the_records_undecoded() -> None:
    """raw_records: the body is the batch's records as consumed (no JSON decoding), the log scope binds them."""
    broker = make_broker(SETTINGS, client_id="unit")
    seen: list[tuple[list[bytes], dict[str, Any]]] = []

    @batch_subscriber(broker, SETTINGS, "votes", group_id="unit", raw_records=True)
    async def handle(records: Any) -> None:
        with batch_log_scope(records):
            seen.append(([r.value for r in records], structlog.contextvars.get_contextvars()))

    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(b'{"a": 1}', b"not json", topic="p.votes", partition=1)
    assert seen == [([b'{"a": 1}', b"not json"], {"topic": "p.votes", "partitions": [1], "offsets": ["1:0-0"]})]
    assert structlog.contextvars.get_contextvars() == {}


def test_batch_log_context_spans_every_partition() -> None:
    class Record:
        def __init__(self, partition: int, offset: int) -> None:
            self.topic, self.partition, self.offset = "p.votes", partition, offset

    records = [Record(1, 7), Record(0, 3), Record(1, 9), Record(0, 4)]
    assert batch_log_context(records) == {  # type: ignore[arg-type]
        "topic": "p.votes",
        "partitions": [0, 1],
        "offsets": ["0:3-4", "1:7-9"],
    }


def test_batch_log_context_of_several_topics_names_each_partition_with_its_topic() -> None:
    class Record:
        def __init__(self, topic: str, partition: int, offset: int) -> None:
            self.topic, self.partition, self.offset = topic, partition, offset

    records = [Record("p.votes", 1, 7), Record("p.interactions", 1, 3), Record("p.votes", 1, 8)]
    assert batch_log_context(records) == {  # type: ignore[arg-type]
        "topic": "p.interactions,p.votes",
        "partitions": ["p.interactions:1", "p.votes:1"],
        "offsets": ["p.interactions:1:3-3", "p.votes:1:7-8"],
    }


async def test_a_background_task_that_fails_is_logged_at_once() -> None:
    runtime: Runtime[Any] = Runtime.create(service="unit", settings=SETTINGS, migrations=())

    async def broken() -> None:
        raise RuntimeError("relay bug")

    with captured_logs(runtime_module) as logs:
        task = runtime.spawn("relay", broken())
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)
    assert [(e["event"], e["task"]) for e in logs] == [("background_task_failed", "unit:relay")]
