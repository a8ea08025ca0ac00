"""What bench.aggregator reads of the processes it measures: CPU (/proc, psutil), batch counts (/metrics), py-spy."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

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
