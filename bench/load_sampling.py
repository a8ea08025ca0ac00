"""What bench.load measures while it offers load: the senders' counters, the aggregator's intake, lag, memory, loss.

The aggregator's intake is read from its Prometheus counters (/metrics), summed over its instances, plus the
votes parked right now in its state; the lag is accepted minus taken in (end to end through both edges, the
broker and the aggregator: Tansu's end_offsets() is wrong after multi-record batches, so no lag from it).
Loss is an accepted event_id with no trace in the aggregator's state.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import psutil

from bench import load_budget
from bench.ingest_load import HttpConnection
from deploy.stack import Stack

SAMPLE_S = 1.0


@dataclass
class Counters:
    """What the senders did, shared with the sampler."""

    accepted_interactions: list[str] = field(default_factory=list)
    accepted_votes: list[str] = field(default_factory=list)
    rejected: int = 0
    duplicates: int = 0
    http_errors: int = 0
    latencies_s: list[float] = field(default_factory=list)
    backlog_max: int = 0

    @property
    def accepted(self) -> int:
        return len(self.accepted_interactions) + len(self.accepted_votes)


async def processed_by_aggregator(stack: Stack) -> dict[str, float]:
    """The aggregators' input and output counters (/metrics), summed over the instances."""
    found = dict.fromkeys(("interactions", "votes_applied", "votes_parked", "duplicates"), 0.0)
    for name, service in stack.services.items():
        if name == "aggregator" or name.startswith("aggregator-"):
            for kind, value in (await _aggregator_counters(service.url)).items():
                found[kind] = found.get(kind, 0.0) + value
    return found


async def _aggregator_counters(base_url: str) -> dict[str, float]:
    url = urlsplit(base_url)
    async with HttpConnection(url.hostname or "127.0.0.1", url.port or 80) as connection:
        status, body = await connection.request("GET", "/metrics")
    if status != 200:
        raise RuntimeError(f"aggregator /metrics: HTTP {status}")
    found: dict[str, float] = {}
    for line in body.decode().splitlines():
        for metric, prefix in (("aggregator_inputs_total{", ""), ("aggregator_outputs_total{", "outputs_")):
            if line.startswith(metric):
                kind = line.split('kind="', 1)[1].split('"', 1)[0]
                found[prefix + kind] = float(line.rsplit(" ", 1)[1])
    return found


@dataclass
class Sampler:
    """Once a second: accepted, processed, lag, and each service's resident memory."""

    stack: Stack
    counters: Counters
    started: float = field(default_factory=time.monotonic)
    samples: list[dict[str, Any]] = field(default_factory=list)
    _connection: asyncpg.Connection | None = None

    async def sample(self) -> dict[str, Any]:
        processed = await processed_by_aggregator(self.stack)
        parked_now = await self._parked_now()
        # A vote parked (its interaction not there yet) counts in votes_parked, and again in votes_applied
        # once its interaction comes: taken in = interactions + votes applied + votes parked right now.
        taken = int(processed["interactions"] + processed["votes_applied"]) + parked_now
        extra = {"parked": parked_now, "open_tasks": await load_budget.open_per_domain(await self._db())}
        return self.record(taken, extra)

    def record(self, taken: int, extra: dict[str, Any]) -> dict[str, Any]:
        """Append and return one sample: `taken` events taken in so far, each service's RSS, and `extra`."""
        rss = {}
        for name, service in self.stack.services.items():
            try:
                rss[name] = round(psutil.Process(service.pid).memory_info().rss / 2**20, 1)
            except (psutil.Error, TypeError):
                rss[name] = None
        row = {
            "t_s": round(time.monotonic() - self.started, 1),
            "accepted": self.counters.accepted,
            "processed": taken,
            "lag": self.counters.accepted - taken,
            **extra,
            "rss_mb": rss,
        }
        self.samples.append(row)
        return row

    async def _db(self) -> asyncpg.Connection:
        assert self.stack.database_url is not None
        if self._connection is None:
            self._connection = await asyncpg.connect(self.stack.database_url)
        return self._connection

    async def _parked_now(self) -> int:
        return await (await self._db()).fetchval("SELECT count(*) FROM agg_parked_votes")

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(SAMPLE_S)

    async def drain(self, timeout_s: float) -> float | None:
        """Seconds until the lag is zero (every accepted event taken in), None if not within `timeout_s`."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if (await self.sample())["lag"] <= 0:
                return time.monotonic() - started
            await asyncio.sleep(SAMPLE_S / 4)
        return None


async def missing_effects(database_url: str, counters: Counters) -> dict[str, int]:
    """Accepted event_ids with no trace in the aggregator's state: the loss."""
    connection = await asyncpg.connect(database_url)
    try:
        interactions = await connection.fetchval(
            "SELECT count(DISTINCT event_id) FROM agg_interactions WHERE event_id = ANY($1::uuid[])",
            counters.accepted_interactions,
        )
        votes = await connection.fetchval(
            "SELECT count(*) FROM agg_seen_votes WHERE event_id = ANY($1::uuid[])", counters.accepted_votes
        )
    finally:
        await connection.close()
    return {
        "interactions": len(set(counters.accepted_interactions)) - interactions,
        "votes": len(set(counters.accepted_votes)) - votes,
    }
