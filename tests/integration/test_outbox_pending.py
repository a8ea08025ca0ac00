"""`outbox_pending` reports the real depth of a service's outbox, relay running or held."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from services.aggregator.settings import AggregatorSettings
from shared import db
from shared import outbox as outbox_module
from shared import topics as topic_names
from shared.kafka import OutRecord, make_broker
from shared.outbox import OutboxRelay, insert_outbox
from tests.integration.aggregator.aggregator_flow import app_for, interaction, settings_for, thumbs
from tests.support.apps import running_app
from tests.support.kafka import produce, reading
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(120)


def pending(registry: CollectorRegistry, service: str) -> float | None:
    return registry.get_sample_value("outbox_pending", {"service": service})


async def outbox_rows(database_url: str, service: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval("SELECT count(*) FROM outbox WHERE service = $1", service)
    finally:
        await conn.close()


async def test_the_relay_sets_the_gauge_to_what_is_left_after_each_poll(
    kafka_bootstrap: str, database_url: str, topics: str
) -> None:
    settings = AggregatorSettings(kafka_bootstrap_servers=kafka_bootstrap, database_url=database_url)
    pool = await db.create_pool(settings)
    broker = make_broker(settings, client_id="outbox-test")
    registry = CollectorRegistry()
    relay = OutboxRelay(
        service="svc", pool=pool, broker=broker, registry=registry, batch_size=7, poll_interval_s=0.05,
        publish_timeout_s=10.0, max_backoff_s=0.5,
    )  # fmt: skip
    records = [
        OutRecord(topic=topic_names.topic(topics, topic_names.FEEDBACK_STATS), key=str(i).encode(), value=b"{}")
        for i in range(20)
    ]
    try:
        async with pool.acquire() as conn:
            await insert_outbox(conn, "svc", records)
            await insert_outbox(conn, "another-service", records[:3])
        assert await relay.count_pending() == 20 and pending(registry, "svc") == 20
        await broker.connect()
        task = asyncio.create_task(relay.run())
        try:
            await eventually(lambda: pending(registry, "svc") == 0, timeout=20)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert await outbox_rows(database_url, "svc") == 0
        assert await outbox_rows(database_url, "another-service") == 3, "only the service's own rows"
    finally:
        await broker.stop()
        await pool.close()


async def test_a_held_relay_still_reports_the_rows_waiting(
    kafka_bootstrap: str, database_url: str, topics: str
) -> None:
    prefix, app = topics, f"app-{uuid.uuid4().hex[:6]}"
    settings = settings_for(kafka_bootstrap, database_url, prefix, f"aggregator-{prefix}", outbox_relay_enabled=False)
    app_ = app_for(settings)
    async with running_app(app_) as client:
        sent = [interaction(app, "Q?", "a", "Yes."), interaction(app, "Q?", "b", "No.")]
        sent += thumbs(app, "a", 4, 0) + thumbs(app, "b", 0, 4)
        for record in sent:
            await produce(kafka_bootstrap, prefix, record.topic, [record.value], key=record.key)

        async def reported() -> float:
            rows = await outbox_rows(database_url, "aggregator")
            metrics = (await client.get("/metrics")).text
            line = next(ln for ln in metrics.splitlines() if ln.startswith('outbox_pending{service="aggregator"}'))
            shown = float(line.split()[-1])
            assert rows > 0 and shown == rows, (rows, shown)
            return shown

        # Pairs, then stats windows, keep being queued: the gauge follows within a poll interval.
        await eventually(reported, timeout=30, interval=0.2)


async def test_a_flush_after_stop_relays_every_row_once_even_with_the_loop_mid_cycle(
    kafka_bootstrap: str, database_url: str, topics: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shutdown: the loop's cycle holds the relay lock; a flush that met it relayed nothing (rows were left in
    the outbox). `stop()` lets that cycle finish and the loop end, and the flush then relays the rest."""
    settings = AggregatorSettings(kafka_bootstrap_servers=kafka_bootstrap, database_url=database_url)
    pool = await db.create_pool(settings)
    broker = make_broker(settings, client_id="outbox-test")
    relay = OutboxRelay(
        service="svc", pool=pool, broker=broker, registry=CollectorRegistry(), batch_size=5, poll_interval_s=0.05,
        publish_timeout_s=10.0, max_backoff_s=0.5,
    )  # fmt: skip
    records = [
        OutRecord(
            topic=topic_names.topic(topics, topic_names.FEEDBACK_STATS), key=str(i).encode(), value=str(i).encode()
        )
        for i in range(20)
    ]
    in_cycle, go_on = asyncio.Event(), asyncio.Event()
    publish = outbox_module.publish_batched

    async def held_publish(*args: Any, **kwargs: Any) -> None:
        in_cycle.set()
        await go_on.wait()
        await publish(*args, **kwargs)

    monkeypatch.setattr(outbox_module, "publish_batched", held_publish)
    try:
        async with pool.acquire() as conn:
            await insert_outbox(conn, "svc", records)
        await broker.connect()
        loop = asyncio.create_task(relay.run())
        await asyncio.wait_for(in_cycle.wait(), timeout=10)
        await relay.flush(5.0)
        assert await outbox_rows(database_url, "svc") == 20, "the loop holds the lock: the flush alone relays nothing"
        relay.stop()
        go_on.set()
        await asyncio.wait_for(loop, timeout=10)
        assert await outbox_rows(database_url, "svc") == 15, "the loop ended after its cycle in progress"
        await relay.flush(5.0)
        assert await outbox_rows(database_url, "svc") == 0
        async with reading(kafka_bootstrap, topics, topic_names.FEEDBACK_STATS) as reader:

            async def all_read() -> bool:
                return len(await reader.poll()) >= 20

            await eventually(all_read, timeout=10)
            await asyncio.sleep(0.3)
            await reader.poll()
            assert sorted(int(r.value) for r in reader.records) == list(range(20)), "each row published once"
    finally:
        await broker.stop()
        await pool.close()
