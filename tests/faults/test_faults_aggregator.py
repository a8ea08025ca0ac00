"""The aggregator under crashes: kill -9 mid-stream, between a commit and the relay's publish, one of two
instances killed, and SIGTERM mid-flow. Each run must end in the reference run's final state."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.harness import (
    FaultReport,
    Reference,
    committed_through_end,
    finish,
    metric_total,
    pipeline,
    wait_until,
)

pytestmark = pytest.mark.timeout(240)


async def test_aggregator_kill9_mid_stream_and_restart(
    reference: Reference, kafka_bootstrap: str, database_url: str, tmp_path, fault_report: FaultReport
) -> None:
    """kill -9 while phase 1 streams in, and again while phase 2's flips are being applied."""
    workload = reference.workload
    async with pipeline(tmp_path, workload, kafka_bootstrap=kafka_bootstrap, database_url=database_url) as run:
        recoveries = []
        phase_1 = len(workload.phases[0])
        for phase, kill_at in ((0, phase_1 // 3), (1, phase_1 + len(workload.phases[1]) // 2)):
            sending = asyncio.create_task(run.send_phase(phase))
            await wait_until(lambda at=kill_at: run.sender.sent >= at, timeout=60)
            run.stack.kill_service("aggregator")
            recoveries.append(await run.restart("aggregator"))
            await sending
        await finish(run, reference, fault_report, fault="aggregator kill -9 mid-stream (x2)",
                     test="test_aggregator_kill9_mid_stream_and_restart", recover_s=max(recoveries))  # fmt: skip


async def test_aggregator_kill9_between_commit_and_publish(
    reference: Reference, kafka_bootstrap: str, database_url: str, tmp_path, fault_report: FaultReport
) -> None:
    """Outputs committed to the outbox and input offsets committed, nothing published yet: kill -9, restart."""
    workload = reference.workload
    paused = {"AGGREGATOR_OUTBOX_RELAY_ENABLED": "false"}
    async with pipeline(
        tmp_path, workload, kafka_bootstrap=kafka_bootstrap, database_url=database_url, env=paused
    ) as run:
        await run.send_phase(0)

        async def committed_not_published() -> bool:
            counts = await run.counts()
            wanted = (len(workload.interaction_keys(1)), len(workload.vote_ids(1)), 0)
            assert (counts["interactions"], counts["votes"], counts["parked"]) == wanted, counts
            assert counts["outbox"] > 0, counts
            return True

        await wait_until(committed_not_published, timeout=60)
        await wait_until(lambda: committed_through_end(run, run.group_id("aggregator")), timeout=30)
        await run.drain()
        assert not run.readers["preference-pairs"].records, "the paused relay published"
        run.stack.kill_service("aggregator")
        run.stack.services["aggregator"].env["AGGREGATOR_OUTBOX_RELAY_ENABLED"] = "true"
        recover_s = await run.restart("aggregator")
        await run.send_phase(1)
        await finish(run, reference, fault_report, fault="aggregator kill -9 between commit and publish",
                     test="test_aggregator_kill9_between_commit_and_publish", recover_s=recover_s)  # fmt: skip


async def test_two_aggregators_one_killed(
    reference: Reference, kafka_bootstrap: str, database_url: str, tmp_path, fault_report: FaultReport
) -> None:
    """Both instances consume; one is killed for good; its partitions move to the other."""
    workload = reference.workload
    async with pipeline(
        tmp_path, workload, kafka_bootstrap=kafka_bootstrap, database_url=database_url, rate=150
    ) as run:
        await run.stack.start_service("aggregator", 2)
        sending = asyncio.create_task(run.send_phase(0))

        async def both_consume() -> bool:
            for name in ("aggregator", "aggregator-2"):
                assert await metric_total(run.stack.services[name].url, "aggregator_inputs_total") > 0, name
            return True

        await wait_until(both_consume, timeout=60)
        run.stack.kill_service("aggregator-2")
        killed_at = time.monotonic()
        await sending
        await wait_until(lambda: _taken_in(run, 1), timeout=60)
        recover_s = time.monotonic() - killed_at
        await run.send_phase(1)
        await finish(run, reference, fault_report, fault="two aggregators, one kill -9",
                     test="test_two_aggregators_one_killed", recover_s=recover_s)  # fmt: skip


async def _taken_in(run, phase: int) -> bool:  # type: ignore[no-untyped-def]
    counts = await run.counts()
    assert counts["votes"] == len(run.workload.vote_ids(phase)), counts
    return True


async def test_sigterm_mid_flow_loses_nothing(
    reference: Reference, kafka_bootstrap: str, database_url: str, tmp_path, fault_report: FaultReport
) -> None:
    """SIGTERM to the aggregator and to feedback while votes flow: each stops consuming, finishes its
    in-flight batch and flushes its outbox before it exits; clients retry what was refused meanwhile."""
    workload = reference.workload
    async with pipeline(tmp_path, workload, kafka_bootstrap=kafka_bootstrap, database_url=database_url) as run:
        sending = asyncio.create_task(run.send_phase(0))
        await wait_until(lambda: run.sender.sent >= len(workload.phases[0]) // 3, timeout=60)
        started = time.monotonic()
        await asyncio.gather(*(run.stack.stop_service(name) for name in ("aggregator", "feedback")))
        for name in ("aggregator", "feedback"):
            assert "service_stopped" in run.stack.services[name].log_path.read_text(), f"{name} was not graceful"
        counts = await run.counts()
        assert counts["outbox"] == 0, f"outbox not flushed on SIGTERM: {counts}"
        await asyncio.gather(run.restart("aggregator"), run.restart("feedback"))
        recover_s = time.monotonic() - started
        await sending
        await run.send_phase(1)
        await finish(run, reference, fault_report, fault="SIGTERM aggregator + feedback mid-flow",
                     test="test_sigterm_mid_flow_loses_nothing", recover_s=recover_s)  # fmt: skip
