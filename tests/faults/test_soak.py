"""Soak: a bigger workload with crashes of every service in turn. Opt-in: RUN_SOAK=1 (marker `soak`).

`RUN_SOAK=1 .venv/bin/python -m pytest tests/faults/test_soak.py -s` runs SOAK_GROUPS prompt groups
(about 10,000 events) once without faults and once while the aggregator, ingest and feedback are
killed with SIGKILL one after another (FAULT_REPORT, if set, receives its figures too). It takes a
few minutes on a 2-core box, which is why `make test` skips it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from tests.faults.harness import FaultReport, Reference, finish, pipeline, wait_until
from tests.faults.workload import build_workload
from tests.support.isolation import fresh_database

pytestmark = [
    pytest.mark.soak,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(os.environ.get("RUN_SOAK") != "1", reason="soak: opt-in with RUN_SOAK=1"),
]
SOAK_SEED = 7
SOAK_GROUPS = 1000
VICTIMS = ("aggregator", "ingest", "feedback", "aggregator")


async def test_soak_every_service_killed_in_turn(
    kafka_bootstrap: str, pg_server_url: str, template_db: str, tmp_path, fault_report: FaultReport
) -> None:
    workload = build_workload(SOAK_SEED, SOAK_GROUPS)
    async with (
        fresh_database(pg_server_url, template_db) as database_url,
        pipeline(tmp_path / "reference", workload, kafka_bootstrap=kafka_bootstrap, database_url=database_url) as run,
    ):
        for phase in range(len(workload.phases)):
            await run.send_phase(phase)
            state = await run.settle(phase + 1, timeout=300)
    reference = Reference(workload, state)
    async with (
        fresh_database(pg_server_url, template_db) as database_url,
        # A slower offered load, so every kill lands while clients are still sending.
        pipeline(
            tmp_path / "faulted", workload, kafka_bootstrap=kafka_bootstrap, database_url=database_url, rate=150
        ) as run,
    ):
        recoveries = []
        sending = asyncio.create_task(_send_all(run))
        for k, victim in enumerate(VICTIMS, 1):
            # Evenly spread over the stream; a threshold already passed kills at once (mid-backlog).
            await wait_until(lambda k=k: run.sender.sent >= k * workload.size // (len(VICTIMS) + 1), timeout=300)
            started = time.monotonic()
            run.stack.kill_service(victim, signal.SIGKILL)
            await run.restart(victim)
            recoveries.append(time.monotonic() - started)
        await sending
        await finish(run, reference, fault_report, fault="soak: every service kill -9 in turn",
                     test="test_soak_every_service_killed_in_turn", recover_s=max(recoveries))  # fmt: skip


async def _send_all(run) -> None:  # type: ignore[no-untyped-def]
    for phase in range(len(run.workload.phases)):
        await run.send_phase(phase)
