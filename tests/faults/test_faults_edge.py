"""kill -9 of ingest and feedback while HTTP clients send: every event a client got a 2xx for reaches
the aggregator, and a client that got no answer sends the same batch again (same event_ids)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.harness import FaultReport, Reference, finish, pipeline, wait_until
from tests.support.isolation import fresh_database

pytestmark = pytest.mark.timeout(240)
EDGES = ("ingest", "feedback")


async def test_ingest_and_feedback_kill9_while_clients_send(
    reference: Reference, kafka_bootstrap: str, pg_server_url: str, template_db: str, tmp_path,
    fault_report: FaultReport,
) -> None:  # fmt: skip
    workload = reference.workload
    async with (
        fresh_database(pg_server_url, template_db) as database_url,
        pipeline(tmp_path, workload, kafka_bootstrap=kafka_bootstrap, database_url=database_url, rate=400) as run,
    ):
        sending = asyncio.create_task(run.send_phase(0))
        await wait_until(lambda: run.sender.sent >= len(workload.phases[0]) // 3, timeout=60)
        retries_before = run.sender.retries
        for name in EDGES:
            run.stack.kill_service(name)
        started = time.monotonic()
        await asyncio.gather(*(run.restart(name) for name in EDGES))
        recover_s = time.monotonic() - started
        await sending
        assert run.sender.retries > retries_before, "no client saw the crash"
        await run.send_phase(1)
        await finish(run, reference, fault_report, fault="ingest + feedback kill -9 under HTTP load",
                     test="test_ingest_and_feedback_kill9_while_clients_send", recover_s=recover_s)  # fmt: skip
