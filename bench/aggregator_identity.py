"""Digests of everything the aggregator's batches write, under a fixed clock: to hold two trees' outputs equal.

`python -m bench.aggregator_identity --load-mix 20000 --batch 20` runs bench.aggregator_batches' workload
with the clock fixed (the events' times and each batch's `now`), then prints, per table, its row count and
a digest of its rows (the outbox in id order: every published key, value and tombstone; columns that
PostgreSQL's `now()` fills left out). Run it in two trees (a change that must not change any output, and
main): the lines must be equal.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bench.aggregator_batches as batches_bench
from deploy.local_database import start_database

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TABLES = (
    "outbox", "agg_pairs", "agg_annotation_requests", "agg_task_budget", "agg_votes", "agg_voters",
    "agg_battle_counts", "agg_pair_battles", "agg_approval_counts", "agg_counted_groups", "agg_stats",
    "agg_sft_examples", "agg_parked_votes", "agg_interactions", "agg_groups",
)  # fmt: skip
CLOCK_COLUMNS = "ARRAY['updated_at', 'created_at', 'first_emitted_at', 'received_at', 'id']"


class _FixedDatetime(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
        return T0


class _Ticks:
    """Each batch's `now`: T0 plus one millisecond per batch."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> datetime:
        self.count += 1
        return T0 + timedelta(milliseconds=self.count)


class _DigestingPool:
    """The bench's pool, which prints the digests before it closes."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def acquire(self) -> Any:
        return self.pool.acquire()

    async def close(self) -> None:
        async with self.pool.acquire() as conn:
            for table in TABLES:
                order = "t.id" if table == "outbox" else "1"
                rows = await conn.fetch(f"SELECT (to_jsonb(t) - {CLOCK_COLUMNS})::text FROM {table} t ORDER BY {order}")
                digest = hashlib.sha256("\n".join(r[0] for r in rows).encode()).hexdigest()[:16]
                print(f"{table:28s} {len(rows):7d} {digest}", flush=True)
        await self.pool.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.aggregator_identity", description=__doc__.splitlines()[0])
    parser.add_argument("--load-mix", type=int, default=20_000, help="events of bench.load's workload")
    parser.add_argument("--batch", type=int, default=20, help="records per consumed batch")
    a = parser.parse_args(argv)
    batches_bench.datetime = _FixedDatetime  # type: ignore[misc]
    batches_bench.utcnow = _Ticks()  # type: ignore[assignment]
    create_pool = batches_bench.db.create_pool

    async def digesting_pool(settings: Any) -> _DigestingPool:
        return _DigestingPool(await create_pool(settings))

    batches_bench.db.create_pool = digesting_pool  # type: ignore[assignment]
    rows = batches_bench.load_mix(a.load_mix)
    with tempfile.TemporaryDirectory(prefix="bench-agg-identity-") as tmp:
        with start_database(Path(tmp) / "pg", fast_unsafe=True) as database:
            asyncio.run(batches_bench.run(database.url, rows, a.batch))


if __name__ == "__main__":
    main()
