"""CPU and resident memory of every process of a load run: broker, PostgreSQL, the three services, the generator.

Each part is a process tree named by its root pid: CPU seconds are user + system of the root and of
its live descendants, plus the root's reaped children (PostgreSQL's exited backends are counted there
when the postmaster waits for them), read with psutil from /proc. The load generator is this process
alone (its children are the stack's servers, counted under their own names). RSS of a tree is the sum
over its processes: for PostgreSQL that counts the shared buffers once per backend that touched them,
so it overstates what the server holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from deploy.stack import Stack

SAMPLE_S = 1.0
LOAD_GENERATOR = "load generator"


def roots(stack: Stack) -> dict[str, int | None]:
    """Name -> root pid of each part of the stack, and this load generator."""
    found: dict[str, int | None] = {
        "broker (Tansu)": stack.broker.pid if stack.broker is not None else None,
        "PostgreSQL": stack.database.pid if stack.database is not None else None,
    }
    found.update({name: service.pid for name, service in stack.services.items()})
    found[LOAD_GENERATOR] = os.getpid()
    return found


def _tree(pid: int, *, with_descendants: bool) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)] if with_descendants else [root]


def cpu_seconds(pid: int, *, with_descendants: bool = True) -> float:
    """User + system CPU seconds of the tree under `pid` so far (reaped children included)."""
    total = 0.0
    for n, process in enumerate(_tree(pid, with_descendants=with_descendants)):
        with contextlib.suppress(psutil.Error):  # a backend may exit while we read the tree
            times = process.cpu_times()
            total += times.user + times.system
            if n == 0 and with_descendants:
                total += times.children_user + times.children_system
    return total


def rss_mb(pid: int, *, with_descendants: bool = True) -> float:
    total = 0
    for process in _tree(pid, with_descendants=with_descendants):
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return round(total / 2**20, 1)


@dataclass
class ProcessWatch:
    """CPU seconds at marks (load start, load end) and RSS once a second, per named process tree."""

    parts: dict[str, int | None]
    rss_samples: list[dict[str, float | None]] = field(default_factory=list)

    def _read(self, measure: Callable[..., float]) -> dict[str, float | None]:
        found: dict[str, float | None] = {}
        for name, pid in self.parts.items():
            try:
                found[name] = None if pid is None else measure(pid, with_descendants=name != LOAD_GENERATOR)
            except psutil.Error:
                found[name] = None
        return found

    def cpu_mark(self) -> dict[str, float | None]:
        return self._read(cpu_seconds)

    def sample_rss(self) -> None:
        self.rss_samples.append(self._read(rss_mb))

    async def run(self) -> None:
        while True:
            # psutil reads /proc synchronously: a few ms for ~20 processes, off the loop all the same.
            await asyncio.to_thread(self.sample_rss)
            await asyncio.sleep(SAMPLE_S)


def cpu_shares(start: dict[str, float | None], end: dict[str, float | None], wall_s: float) -> dict[str, float | None]:
    """CPU seconds per wall second of each part between two marks (1.0 = one core busy the whole time)."""
    return {
        name: None if start.get(name) is None or end[name] is None else round((end[name] - start[name]) / wall_s, 3)
        for name in end
    }


def rss_summary(samples: list[dict[str, float | None]]) -> dict[str, dict[str, float | None]]:
    """Start, peak and end RSS (MB) of each part over the samples."""
    names = sorted({name for sample in samples for name in sample})
    summary = {}
    for name in names:
        values = [s.get(name) for s in samples]
        seen = [v for v in values if v is not None]
        summary[name] = {
            "start_mb": values[0] if values else None,
            "peak_mb": max(seen, default=None),
            "end_mb": values[-1] if values else None,
        }
    return summary
