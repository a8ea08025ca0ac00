"""The aggregator's garbage-collector pauses: the startup heap frozen (baseline) against its survivors frozen too.

`python -m bench.gc_pauses` starts its own PostgreSQL (fsync off) and applies N events of bench.load's
workload (`bench.aggregator_batches.load_mix`: hot prompts, regenerations, thumbs on recent answers)
through the aggregator's batch steps (decode, then `apply_batch` in one transaction, `--batch` records
each), once per mode, each mode in a fresh interpreter with its own database:

- `startup`: the heap frozen once the modules and the pool are up, as `shared.heap` did before;
- `survivors`: the same, then `shared.heap.FreezeSurvivors` freezing the survivors of every generation 1
  and 2 collection (what a served process does now; its full scan every 10 minutes falls in no run).

Every collection is timed (`gc.callbacks`): the report gives their count per generation, the longest
pause (the event loop stalls that long: every batch and request in flight waits), the time paused in
all, and the CPU per event, each as a ratio to the `startup` mode of the same run. Written to
bench/results/gc_pauses.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.provenance import run_header, run_sentence, write_results

MODES = ("startup", "survivors")
RESULTS = Path(__file__).parent / "results"


class PauseClock:
    """A `gc.callbacks` entry timing every collection, by generation."""

    def __init__(self) -> None:
        self.started = 0.0
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.pauses[info["generation"]].append((time.perf_counter() - self.started) * 1000)


async def apply_mix(dsn: str, events: int, batch: int, mode: str) -> dict[str, Any]:
    """Apply the workload as the service's consumer does; time every collection meanwhile."""
    from bench.aggregator_batches import load_mix, records_of
    from deploy.init import migrate_all
    from services.aggregator.batches import apply_batch
    from services.aggregator.decoders import decode_inputs
    from services.aggregator.rules import batch_rules
    from services.aggregator.settings import AggregatorSettings
    from shared import db, heap
    from shared.events import utcnow

    rows = load_mix(events)
    await migrate_all(dsn)
    settings = AggregatorSettings(database_url=dsn)
    rules = batch_rules(settings, "aggregator")
    pool = await db.create_pool(settings)
    if mode == "survivors":  # as a served process starts now (shared.serve, then Runtime.start)
        heap.freeze_after_start()
        heap.settle_after_start()
    else:  # the startup heap alone, out of every later collection, as before
        gc.collect()
        gc.freeze()
    clock = PauseClock()
    gc.callbacks.insert(0, clock)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    async with pool.acquire() as conn:
        for offset in range(0, len(rows), batch):
            records = tuple(records_of(rows[offset : offset + batch], offset))
            async with conn.transaction():
                await apply_batch(conn, decode_inputs(records, rules), rules, utcnow())
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        gc.callbacks.remove(clock)
        pairs = await conn.fetchval("SELECT count(*) FROM agg_pairs")
        tasks = await conn.fetchval("SELECT count(*) FROM agg_annotation_requests")
    await pool.close()
    every = [p for pauses in clock.pauses.values() for p in pauses]
    return {
        "mode": mode,
        "events": len(rows),
        "pairs": pairs,
        "annotation_requests": tasks,
        "collections": {str(g): len(p) for g, p in clock.pauses.items()},
        "full_collection_max_ms": round(max(clock.pauses[2], default=0.0), 1),
        "longest_pause_ms": round(max(every, default=0.0), 1),
        "paused_ms": round(sum(every), 1),
        "frozen_objects_at_end": gc.get_freeze_count(),
        "wall_s": round(wall, 2),
        "cpu_ms_per_event": round(cpu * 1000 / len(rows), 4),
    }


def run_mode(dsn: str, events: int, batch: int, mode: str) -> dict[str, Any]:
    """One mode in a fresh interpreter (freezing is for the life of a process)."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.gc_pauses", "--child", mode, "--dsn", dsn, "--events", str(events),
         "--batch", str(batch)],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1],
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


async def create_database(dsn: str, name: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return dsn.rsplit("/", 1)[0] + f"/{name}"


def report(results: list[dict[str, Any]], config: dict[str, Any], header: str) -> str:
    base = results[0]
    lines = [
        "# Garbage-collector pauses of the aggregator's batches",
        "",
        header,
        "",
        f"Settings: `{json.dumps(config)}`. `python -m bench.gc_pauses`: bench.load's workload applied through the "
        "aggregator's batch steps in-process, once per mode, each in a fresh interpreter with its own database. "
        "`startup`: the heap frozen once started (the baseline); `survivors`: `shared.heap.FreezeSurvivors` "
        "too (its full scan every 10 minutes falls in no run). Ratios to `startup` in the same run.",
        "",
        "| mode | collections gen 0 / 1 / 2 | longest pause ms (×) | longest full collection ms | paused in all ms (×) "
        "| CPU ms/event (×) | frozen objects at the end |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        c = r["collections"]
        lines.append(
            f"| {r['mode']} | {c['0']} / {c['1']} / {c['2']} | {r['longest_pause_ms']} "
            f"({_ratio(r, base, 'longest_pause_ms')}) | {r['full_collection_max_ms']} | {r['paused_ms']} "
            f"({_ratio(r, base, 'paused_ms')}) | {r['cpu_ms_per_event']} ({_ratio(r, base, 'cpu_ms_per_event')}) "
            f"| {r['frozen_objects_at_end']:,} |"
        )
    return "\n".join(lines) + "\n"


def _ratio(row: dict[str, Any], base: dict[str, Any], key: str) -> str:
    return f"{row[key] / base[key]:.2f}" if base[key] else "-"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gc_pauses", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000, help="events of bench.load's workload")
    parser.add_argument("--batch", type=int, default=500, help="records per consumed batch")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory of gc_pauses.md/.json")
    a = parser.parse_args(argv)
    if a.child:
        print(json.dumps(asyncio.run(apply_mix(a.dsn, a.events, a.batch, a.child))))
        return
    from deploy.local_database import start_database

    config = {"events": a.events, "batch": a.batch}
    with (
        tempfile.TemporaryDirectory(prefix="bench-gc-") as tmp,
        start_database(Path(tmp) / "pg", fast_unsafe=True) as db,
    ):
        results = [run_mode(asyncio.run(create_database(db.url, f"gc_{m}")), a.events, a.batch, m) for m in MODES]
    header = run_header("gc_pauses")
    text = report(results, config, run_sentence(header))
    write_results(a.out, "gc_pauses", {"config": config, "results": results, "run": header}, text)
    print(text)


if __name__ == "__main__":
    main()
