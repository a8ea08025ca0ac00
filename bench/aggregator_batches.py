"""The aggregator's batch transaction alone: statements, wall and CPU per event, without broker or service.

`python -m bench.aggregator_batches` starts its own PostgreSQL (fsync off), migrates it, and applies
the bench groups of bench.aggregator (2 answers + 8 thumbs each) through `BatchIntake`'s own steps
(decode, then `apply_batch` in one transaction), as the service's two consumers see them: a batch of
interactions, then a batch of votes, `--batch` records each; or (`--load-mix N`) N events of
bench.load's workload (hot prompts, regenerations, thumbs on random recent answers). It counts the statements sent per
batch (every asyncpg call on the batch's connection) and reports wall and CPU (this process) per
event, and the CPU of the PostgreSQL backend serving the batches (/proc): a profile target with no
broker and no consumer framework in the way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import ConsumerRecord

from bench.aggregator import group_records
from bench.ingest import process_cpu_s
from bench.ingest_load import PromptMix, make_interactions
from deploy.init import migrate_all
from deploy.local_database import start_database
from services.aggregator.batches import apply_batch
from services.aggregator.decoders import decode_interactions, decode_votes
from services.aggregator.rules import batch_rules
from services.aggregator.settings import AggregatorSettings
from shared import db, topics
from shared.events import Message, utcnow
from shared.prompt_key import prompt_key

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


def load_mix(events: int, seed: int = 11) -> list[tuple[str, bytes, bytes]]:
    """bench.load's workload as the aggregator sees it: half interactions (PromptMix: regenerations, hot
    prompts, groups of one), half thumbs on random interactions among the 5,000 before, in send order."""
    rng = random.Random(f"votes-{seed}")
    rows: list[tuple[str, bytes, bytes]] = []
    taken: list[dict[str, Any]] = []
    now = datetime.now(UTC).isoformat()
    for n, item in enumerate(make_interactions(events // 2, seed, PromptMix())):
        messages = [Message.model_validate(m) for m in item["messages"]]
        item = {**item, "received_at": now, "prompt_key": prompt_key(item["app_id"], messages)}
        rows.append((topics.INTERACTIONS, item["prompt_key"].encode(), orjson.dumps(item)))
        taken.append(item)
        if n >= 100:  # votes start once some answers are out (bench.load: 2 s after acceptance)
            target = rng.choice(taken[-5000:-50])
            vote = {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "app_id": target["app_id"],
                "occurred_at": now,
                "received_at": now,
                "interaction_id": target["interaction_id"],
                "user_ref": f"v-{rng.randrange(100_000):05x}",
                "source": "end_user",
                "kind": "thumb",
                "value": rng.choice((1, 1, -1)),
            }
            rows.append((topics.VOTES, target["interaction_id"].encode(), orjson.dumps(vote)))
    return rows


def bench_groups(groups: int) -> list[tuple[str, bytes, bytes]]:
    run_id = uuid.uuid4().hex[:6]
    return [r for g in range(groups) for r in group_records(run_id, g, 600)[1]]


async def run(dsn: str, rows: list[tuple[str, bytes, bytes]], batch: int) -> dict[str, Any]:
    await migrate_all(dsn)
    settings = AggregatorSettings(database_url=dsn)
    rules = batch_rules(settings, "aggregator")
    pool = await db.create_pool(settings)
    interactions = [r for r in rows if r[0] == topics.INTERACTIONS]
    votes = [r for r in rows if r[0] == topics.VOTES]
    per_batch: dict[str, list[int]] = {"interactions": [], "votes": []}
    wall = cpu = 0.0
    async with pool.acquire() as raw:
        conn = CountingConnection(raw)
        backend = await raw.fetchval("SELECT pg_backend_pid()")
        backend_before = process_cpu_s(backend)
        # The two consumers take turns: a batch of interactions, then a batch of votes.
        steps = []
        for start in range(0, max(len(interactions), len(votes)), batch):
            if chunk := interactions[start : start + batch]:
                steps.append(("interactions", decode_interactions, chunk))
            if chunk := votes[start : start + batch]:
                steps.append(("votes", decode_votes, chunk))
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
    parser.add_argument("--groups", type=int, default=2_000, help="bench.aggregator's clear-split groups")
    parser.add_argument("--load-mix", type=int, help="instead: this many events of bench.load's workload")
    parser.add_argument("--batch", type=int, default=500, help="records per consumed batch")
    a = parser.parse_args(argv)
    rows = load_mix(a.load_mix) if a.load_mix else bench_groups(a.groups)
    with tempfile.TemporaryDirectory(prefix="bench-agg-batches-") as tmp:
        with start_database(Path(tmp) / "pg", fast_unsafe=True) as database:
            print(json.dumps(asyncio.run(run(database.url, rows, a.batch)), indent=2))


if __name__ == "__main__":
    main()
