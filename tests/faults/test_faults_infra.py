"""PostgreSQL and the broker stopped and restarted under load. Here the stack starts its own server
(the session's are shared by every test), so the test can stop and start it."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.harness import (
    FaultReport,
    Reference,
    Run,
    figures,
    finish,
    pipeline,
    wait_until,
)
from tests.faults.state import compare
from tests.support.isolation import fresh_database

pytestmark = pytest.mark.timeout(240)
SERVICES = ("ingest", "feedback", "aggregator")


async def _all_ready_status(run: Run, status: int) -> bool:
    statuses = {name: await run.ready_status(name) for name in SERVICES}
    assert all(s == status for s in statuses.values()), statuses
    return True


def _never_restarted(run: Run) -> None:
    for name in SERVICES:
        service = run.stack.services[name]
        assert service.is_running and service.spawn_count == 1, f"{name} restarted or died"


async def test_postgres_stopped_and_restarted_under_load(
    reference: Reference, kafka_bootstrap: str, tmp_path, fault_report: FaultReport
) -> None:
    """While PostgreSQL is down every service answers /readyz 503 and retries with backoff (batches
    rewind, the outbox waits); once it is back they recover without a restart and nothing is lost."""
    workload = reference.workload
    async with pipeline(tmp_path, workload, kafka_bootstrap=kafka_bootstrap, rate=400) as run:
        assert run.stack.database is not None
        sending = asyncio.create_task(run.send_phase(0))
        await wait_until(lambda: run.sender.sent >= len(workload.phases[0]) // 4, timeout=60)
        await asyncio.to_thread(run.stack.database.stop)
        await wait_until(lambda: _all_ready_status(run, 503), timeout=30)
        started = time.monotonic()
        await asyncio.to_thread(run.stack.database.start)
        await wait_until(lambda: _all_ready_status(run, 200), timeout=60)
        recover_s = time.monotonic() - started
        await sending
        await run.send_phase(1)
        _never_restarted(run)
        await finish(run, reference, fault_report, fault="PostgreSQL stopped and restarted under load",
                     test="test_postgres_stopped_and_restarted_under_load", recover_s=recover_s)  # fmt: skip
        _never_restarted(run)


async def test_broker_stopped_and_restarted(
    reference: Reference, pg_server_url: str, template_db: str, tmp_path, fault_report: FaultReport
) -> None:
    """The clients' reconnect: the services report not-ready while the broker is gone, come back to
    ready on their own when it returns, and new traffic (phase 2) flows end to end.

    The local broker keeps no data across a restart (memory storage): its topics are created again
    (what the deploy init job does) and everything published before is gone, so this checks the
    outputs published after the restart against the reference, not the whole history. Production
    Kafka adds what this cannot show: topics, committed offsets and unconsumed records survive a
    broker restart (replication factor 3, min.insync.replicas 2, acks=all), so a restart there is a
    leader election, and consumers resume from their committed offsets instead of the beginning.
    """
    from shared.kafka import ensure_topics
    from shared.settings import PipelineSettings

    workload = reference.workload
    async with fresh_database(pg_server_url, template_db) as database_url, pipeline(
        tmp_path, workload, database_url=database_url
    ) as run:  # fmt: skip
        assert run.stack.broker is not None
        await run.send_phase(0)
        await run.settle(1)
        await run.stop_readers()
        await asyncio.to_thread(run.stack.broker.stop)
        await wait_until(lambda: _all_ready_status(run, 503), timeout=30)
        started = time.monotonic()
        await asyncio.to_thread(run.stack.broker.start)
        await ensure_topics(
            PipelineSettings(kafka_bootstrap_servers=run.bootstrap, topic_prefix=run.stack.topic_prefix)
        )
        await wait_until(lambda: _all_ready_status(run, 200), timeout=60)
        await run.start_readers()
        await run.send_phase(1)
        state = await run.settle(2)
        # Ready comes at once (a metadata ping); recovered means new traffic went through end to end.
        recover_s = time.monotonic() - started
        _never_restarted(run)
        comparison = compare(reference.state, state, await run.lost_events())
        # Only what was published after the restart is on the new broker: each must match the reference.
        comparison.missing_pairs = [p for p in comparison.missing_pairs if p in state.published]
        comparison.missing_tasks = []
        fault_report.write(figures("broker stopped and restarted (memory storage)", "test_broker_stopped_and_restarted",
                                   run, state, comparison, recover_s))  # fmt: skip
        assert state.published, "no pair flowed end to end after the restart"
        assert comparison.is_equal, comparison.explain()
