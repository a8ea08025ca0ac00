"""The aggregator's batch transaction alone: statements, wall and CPU per event, without broker or service.

`python -m bench.aggregator_batches` starts its own PostgreSQL (fsync off), migrates it, and applies
the bench groups of bench.aggregator (2 answers + 8 thumbs each) through `BatchIntake`'s own steps
(decode, then `apply_batch` in one transaction), as the service's two consumers see them: a batch of
interactions, then a batch of their votes, `--batch` records each. It counts the statements sent per
batch (every asyncpg call on the batch's connection) and reports wall and CPU (this process) per
event, and the CPU of the PostgreSQL backend serving the batches (/proc): a profile target with no
broker and no consumer framework in the way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import ConsumerRecord

from bench.aggregator import group_records
from bench.ingest import process_cpu_s
from deploy.init import migrate_all
from deploy.local_database import start_database
from services.aggregator.batches import apply_batch
from services.aggregator.decoders import decode_interactions, decode_votes
from services.aggregator.rules import batch_rules
from services.aggregator.settings import AggregatorSettings
from shared import db, topics
from shared.events import utcnow

COUNTED = ("execute", "executemany", "fetch", "fetchval", "fetchrow")


class CountingConnection:
    """Counts the statements sent through a connection (by method), passing every call on."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._conn, name)
        if name not in COUNTED:
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return await attr(*args, **kwargs)

        return counted


def records_of(rows: list[tuple[str, bytes, bytes]], offset: int) -> list[ConsumerRecord]:
    return [
        ConsumerRecord(topic, 0, offset + i, 0, 0, key, value, None, len(key), len(value), [])
        for i, (topic, key, value) in enumerate(rows)
    ]


async def run(dsn: str, groups: int, batch: int) -> dict[str, Any]:
    await migrate_all(dsn)
    settings = AggregatorSettings(database_url=dsn)
    rules = batch_rules(settings, "aggregator")
    pool = await db.create_pool(settings)
    run_id = uuid.uuid4().hex[:6]
    rows = [r for g in range(groups) for r in group_records(run_id, g, 600)[1]]
    interactions = [r for r in rows if r[0] == topics.INTERACTIONS]
    votes = [r for r in rows if r[0] == topics.VOTES]
    per_batch: dict[str, list[int]] = {"interactions": [], "votes": []}
    wall = cpu = 0.0
    async with pool.acquire() as raw:
        conn = CountingConnection(raw)
        backend = await raw.fetchval("SELECT pg_backend_pid()")
        backend_before = process_cpu_s(backend)
        steps = []
        for start in range(0, len(interactions), batch):
            steps.append(("interactions", decode_interactions, interactions[start : start + batch]))
        for start in range(0, len(votes), batch):
            steps.append(("votes", decode_votes, votes[start : start + batch]))
        # Interleave as the two consumers would: interactions first, each vote batch after its answers.
        steps.sort(key=lambda s: (s[0] == "votes", 0))
        for offset, (name, decode, chunk) in enumerate(steps):
            w0, c0 = time.perf_counter(), time.process_time()
            decoded = decode(tuple(records_of(chunk, offset * batch)), rules)
            conn.calls.clear()
            async with raw.transaction():
                await apply_batch(conn, decoded, rules, utcnow())  # type: ignore[arg-type]
            wall += time.perf_counter() - w0
            cpu += time.process_time() - c0
            per_batch[name].append(sum(conn.calls.values()))
        backend_cpu = (process_cpu_s(backend) or 0.0) - (backend_before or 0.0)
        pairs = await raw.fetchval("SELECT count(*) FROM agg_pairs")
    await pool.close()
    events = len(rows)
    return {
        "events": events,
        "batch_records": batch,
        "pairs": pairs,
        "statements_per_batch": {k: round(sum(v) / len(v), 1) for k, v in per_batch.items() if v},
        "wall_ms_per_event": round(wall * 1000 / events, 4),
        "cpu_ms_per_event": round(cpu * 1000 / events, 4),
        "postgres_cpu_ms_per_event": round(backend_cpu * 1000 / events, 4),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.aggregator_batches", description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=500, help="records per consumed batch")
    a = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-agg-batches-") as tmp:
        with start_database(Path(tmp) / "pg", fast_unsafe=True) as database:
            print(json.dumps(asyncio.run(run(database.url, a.groups, a.batch)), indent=2))


if __name__ == "__main__":
    main()
