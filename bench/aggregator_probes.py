"""The aggregator process bench.aggregator measures, and what it reads of it: CPU (psutil), /metrics, py-spy."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.ingest_load import module_process
from deploy.localstack import free_port

STOP_TIMEOUT_S = 15.0


def tree_cpu_s(pid: int | None) -> dict[int, float]:
    """User + system CPU seconds so far of process `pid` and its children, by pid ({} without one)."""
    if pid is None:
        return {}
    found: dict[int, float] = {}
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                found[process.pid] = times.user + times.system
    return found


def cpu_spent_s(before: dict[int, float], after: dict[int, float]) -> float | None:
    """CPU seconds spent between two `tree_cpu_s` readings (processes started since count from zero)."""
    if not after:
        return None
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def ms_per_event(seconds: float | None, events: int) -> float | None:
    return None if seconds is None or not events else round(seconds * 1000 / events, 4)


async def metric_sums(port: int, names: tuple[str, ...]) -> dict[str, float]:
    """The aggregator's samples of these names, each summed over its labels (0 when absent), from /metrics."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    found = dict.fromkeys(names, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in found:
                found[sample.name] += sample.value
    return found


async def batch_counts(port: int) -> dict[str, float]:
    """The aggregator's batch transactions so far (count, and their seconds summed)."""
    names = ("aggregator_batch_seconds_count", "aggregator_batch_seconds_sum")
    found = await metric_sums(port, names)
    return {"count": found[names[0]], "sum": found[names[1]]}


async def leaderboard_refits(port: int) -> float:
    """Board refits so far, whatever their outcome."""
    return (await metric_sums(port, ("aggregator_leaderboard_refits_total",)))["aggregator_leaderboard_refits_total"]


def batch_columns(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    count, seconds = after["count"] - before["count"], after["sum"] - before["sum"]
    return {"batches": round(count), "batch_ms_mean": round(1000 * seconds / count, 1) if count else None}


@contextlib.contextmanager
def profiled(pid: int, py_spy: str | None, out: str | None) -> Iterator[None]:
    """py-spy records `pid` (raw format, 200 Hz) into `out` while the block runs, when both are given."""
    if not py_spy or not out:
        yield
        return
    command = [py_spy, "record", "--rate", "200", "--format", "raw", "-p", str(pid), "-o", out]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches before the phase starts
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(STOP_TIMEOUT_S)


@dataclass(frozen=True)
class AggregatorProcess:
    """The service under test, and the database whose CPU is counted with it."""

    pid: int
    port: int
    log: Path
    database_pid: int | None

    async def reading(self) -> dict[str, Any]:
        """CPU so far of the service and of PostgreSQL's processes, and the service's batch counts."""
        return {
            "cpu": tree_cpu_s(self.pid),
            "database_cpu": tree_cpu_s(self.database_pid),
            "batches": await batch_counts(self.port),
        }

    def spent(self, before: dict[str, Any], after: dict[str, Any], events: int) -> dict[str, Any]:
        """A phase's columns: CPU ms per event of the service and of PostgreSQL, batches and their mean time."""
        return {
            "cpu_ms_per_event": ms_per_event(cpu_spent_s(before["cpu"], after["cpu"]), events),
            "database_cpu_ms_per_event": ms_per_event(
                cpu_spent_s(before["database_cpu"], after["database_cpu"]), events
            ),
            **batch_columns(before["batches"], after["batches"]),
        }


@contextlib.contextmanager
def aggregator_process(
    bootstrap: str, dsn: str, partitions: int, log: Path, database_pid: int | None
) -> Iterator[AggregatorProcess]:
    """`python -m services.aggregator` on this broker and database (WARNING logs into `log`), stopped after."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": dsn,
        "TOPIC_PREFIX": "",
        "AGGREGATOR_HTTP_PORT": str(port := free_port()),
        "TOPIC_PARTITIONS": str(partitions),
        "LOG_LEVEL": "WARNING",
    }
    with module_process("services.aggregator", env, log) as pid:
        yield AggregatorProcess(pid, port, log, database_pid)
