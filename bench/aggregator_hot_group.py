"""What one vote on a popular prompt costs the aggregator: a batch of one thumb, by the size of its group.

`python -m bench.aggregator_hot_group [--answers 300 1000 3000] [--rounds 9]` starts its own PostgreSQL
(fsync off), migrates it, and grows one group ("a popular prompt": every answer to it, each with a thumb up
and a thumb down from voters of its own) through `apply_batch` in 200-record batches, as the consumer
applies them. At each size (after an ANALYZE) it times `--rounds` batches of one new thumb on that group
(decode, the batch transaction, commit: what the service's consumer does per batch), against the baseline
measured in the same run: the same one-thumb batch on a group of BASELINE_ANSWERS answers. Every batch
locks and loads the whole group and decides it again, so its cost grows with the group; the ratio shows
by how much.
Reported: median wall ms per batch, this process's CPU ms per batch, the PostgreSQL backend's CPU ms per
batch (/proc), and the ratio of the median to the baseline's. Results: bench/results/aggregator_hot_group.json
and aggregator_hot_group.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.aggregator_batches import records_of
from bench.ingest import process_cpu_s
from bench.provenance import run_header, run_sentence, write_results
from deploy.init import migrate_all
from deploy.local_database import start_database
from services.aggregator.batches import BatchRules, apply_batch
from services.aggregator.decoders import decode_inputs
from services.aggregator.rules import batch_rules
from services.aggregator.settings import AggregatorSettings
from shared import db, topics
from shared.events import Message, utcnow
from shared.prompt_key import prompt_key

RESULTS = Path(__file__).parent / "results"
BASELINE_ANSWERS = 10
GROW_BATCH = 200
Row = tuple[str, bytes, bytes]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.aggregator_hot_group", description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, nargs="+", default=[300, 1000, 3000], help="group sizes, ascending")
    parser.add_argument("--rounds", type=int, default=9, help="one-thumb batches timed per size (median)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


class Group:
    """One prompt's group as ingest and feedback publish it: answers, thumbs on them."""

    def __init__(self, prompt: str) -> None:
        self.messages = [{"role": "user", "content": prompt}]
        self.key = prompt_key("bench", [Message.model_validate(m) for m in self.messages])
        self.tag = uuid.uuid4().hex[:8]
        self.answers = 0

    def answer(self, n: int) -> Row:
        body = {
            "event_id": str(uuid.uuid4()),
            "app_id": "bench",
            "occurred_at": datetime.now(UTC).isoformat(),
            "interaction_id": f"{self.tag}-{n}",
            "received_at": datetime.now(UTC).isoformat(),
            "conversation_id": f"c-{self.tag}-{n}",
            "user_ref": "asker",
            "messages": self.messages,
            "prompt_key": self.key,
            "response": {"content": f"Answer {n}: " + "x" * 600, "model": "m", "model_version": f"v{n % 3}"},
        }
        return topics.INTERACTIONS, self.key.encode(), json.dumps(body).encode()

    def thumb(self, n: int, value: int, voter: str) -> Row:
        iid = f"{self.tag}-{n}"
        body = {
            "event_id": str(uuid.uuid4()),
            "app_id": "bench",
            "occurred_at": datetime.now(UTC).isoformat(),
            "received_at": datetime.now(UTC).isoformat(),
            "interaction_id": iid,
            "user_ref": voter,
            "source": "end_user",
            "kind": "thumb",
            "value": value,
        }
        return topics.VOTES, iid.encode(), json.dumps(body).encode()

    def grow_to(self, answers: int) -> list[list[Row]]:
        """Batches adding answers up to `answers`, each answer's two thumbs in the batch after it."""
        batches = []
        for start in range(self.answers, answers, GROW_BATCH):
            new = range(start, min(answers, start + GROW_BATCH))
            batches.append([self.answer(n) for n in new])
            batches.append([self.thumb(n, v, f"{self.tag}-{n}-{v}") for n in new for v in (1, -1)])
        self.answers = max(self.answers, answers)
        return batches


class Consumer:
    """Batches applied as the service's consumer applies them: decoded, one transaction each."""

    def __init__(self, pool: asyncpg.Pool, rules: BatchRules) -> None:
        self.pool, self.rules, self.offset = pool, rules, 0

    async def apply(self, rows: list[Row]) -> None:
        records = tuple(records_of(rows, self.offset))
        self.offset += len(rows)
        async with self.pool.acquire() as conn, conn.transaction():
            await apply_batch(conn, decode_inputs(records, self.rules), self.rules, utcnow())


async def one_thumb_batches(consumer: Consumer, group: Group, rounds: int, backend: int) -> dict[str, float]:
    """Median wall, CPU and PostgreSQL CPU (ms) of `rounds` batches of one new thumb on `group` (one warm-up)."""
    walls, cpus, pg = [], [], []
    for n in range(rounds + 1):
        row = group.thumb(n % group.answers, 1, f"late-{uuid.uuid4().hex[:8]}")
        w0, c0, p0 = time.perf_counter(), time.process_time(), process_cpu_s(backend) or 0.0
        await consumer.apply([row])
        walls.append((time.perf_counter() - w0) * 1000)
        cpus.append((time.process_time() - c0) * 1000)
        pg.append(((process_cpu_s(backend) or 0.0) - p0) * 1000)
    return {
        "wall_ms": round(statistics.median(walls[1:]), 2),
        "cpu_ms": round(statistics.median(cpus[1:]), 2),
        "postgres_cpu_ms": round(statistics.median(pg[1:]), 2),
    }


async def measure(dsn: str, sizes: list[int], rounds: int) -> list[dict[str, Any]]:
    await migrate_all(dsn)
    settings = AggregatorSettings(database_url=dsn)
    pool = await db.create_pool(settings.model_copy(update={"db_pool_min_size": 1, "db_pool_max_size": 1}))
    try:
        backend = await pool.fetchval("SELECT pg_backend_pid()")
        consumer = Consumer(pool, batch_rules(settings, "aggregator"))
        small, hot = Group("Which plan fits a small team?"), Group("Hello!")
        for batch in small.grow_to(BASELINE_ANSWERS):
            await consumer.apply(batch)
        rows = []
        for answers in sizes:
            for batch in hot.grow_to(answers):
                await consumer.apply(batch)
            stored = await pool.fetchval("SELECT count(*) FROM agg_interactions WHERE prompt_key = $1", hot.key)
            if stored != answers:  # a bench that measured an empty group would say nothing
                raise RuntimeError(f"the hot group holds {stored} answers, not {answers}")
            # Statistics as autovacuum leaves them on tables this size: each run's plans are the same, not
            # whichever autovacuum's last visit happened to leave (runs differed by up to 2x without this).
            await pool.execute("ANALYZE")
            baseline = await one_thumb_batches(consumer, small, rounds, backend)
            figures = await one_thumb_batches(consumer, hot, rounds, backend)
            rows.append(
                {
                    "answers": answers,
                    "stored_votes": 2 * answers,
                    "baseline": baseline,
                    **figures,
                    "ratio": round(figures["wall_ms"] / baseline["wall_ms"], 2),
                }
            )
            print(rows[-1], flush=True)
    finally:
        await pool.close()
    return rows


def report(result: dict[str, Any]) -> str:
    header = result["run"]
    lines = [
        "# One vote on a popular prompt (bench/aggregator_hot_group.py)",
        "",
        f"{run_sentence(header)} Medians of {result['rounds']} batches of one new thumb each (decode, "
        f"the batch transaction, commit), on a group of that many answers (two stored thumbs each) and, in the same "
        f"run, on a group of {BASELINE_ANSWERS} answers (baseline). Embedded PostgreSQL, fsync off.",
        "",
        "| answers in the group | stored votes | batch ms | aggregator CPU ms | PostgreSQL CPU ms | baseline batch ms "
        "| × baseline |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r['answers']:,} | {r['stored_votes']:,} | {r['wall_ms']:.1f} | {r['cpu_ms']:.1f} | "
            f"{r['postgres_cpu_ms']:.1f} | {r['baseline']['wall_ms']:.1f} | {r['ratio']:.1f} |"
            for r in result["rows"]
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-hot-group-") as tmp:
        with start_database(Path(tmp) / "pg", fast_unsafe=True) as database:
            rows = asyncio.run(measure(database.url, sorted(args.answers), args.rounds))
    result = {"rounds": args.rounds, "rows": rows, "run": run_header("aggregator_hot_group")}
    text = report(result)
    write_results(args.out, "aggregator_hot_group", result, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
