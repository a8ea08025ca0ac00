"""Annotation queue throughput: lease + verdict per second at 1, 4 and 16 concurrent annotators.

`python -m bench.queue` drives services.feedback.queue.TaskQueue (the code behind the HTTP routes:
lease with SKIP LOCKED, the task view with PII redaction, the verdict transaction with its outbox row)
and, on the same database in the same run, a bare asyncpg SKIP LOCKED dequeue loop (one
`UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1)` per job), and reports the ratio.
Without DATABASE_URL it starts a throwaway local PostgreSQL (deploy.local_database, fsync off).
Results: bench/results/queue.json and queue.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import tempfile
import time
import uuid
from contextlib import AsyncExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from prometheus_client import CollectorRegistry
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.feedback import store
from services.feedback.app import MIGRATIONS as FEEDBACK_MIGRATIONS
from services.feedback.app import SERVICE as FEEDBACK_SERVICE
from services.feedback.queue import QueueMetrics, TaskQueue
from services.feedback.queue_rules import Verdict
from services.feedback.settings import FeedbackSettings
from shared import db
from shared.events import AnnotationRequest
from shared.kafka import make_broker
from shared.logging import configure_logging
from shared.outbox import OutboxRelay

RESULTS_DIR = Path(__file__).parent / "results"

# The baseline's own table, in the bench's throwaway database: the cheapest correct SKIP LOCKED queue.
BASELINE_SETUP = """
CREATE TABLE bench_jobs (
    id bigserial PRIMARY KEY,
    priority double precision NOT NULL,
    done boolean NOT NULL DEFAULT false
);
CREATE INDEX bench_jobs_queued ON bench_jobs (priority DESC, id) WHERE NOT done;
"""
BASELINE_FILL = "INSERT INTO bench_jobs (priority) SELECT random() FROM generate_series(1, $1)"
BASELINE_DEQUEUE = """
UPDATE bench_jobs SET done = true
WHERE id = (SELECT id FROM bench_jobs WHERE NOT done ORDER BY priority DESC, id FOR UPDATE SKIP LOCKED LIMIT 1)
RETURNING id
"""


class QueueBenchSettings(BaseSettings):
    """What the benchmark reads from the environment (BENCH_QUEUE_*, and DATABASE_URL)."""

    model_config = SettingsConfigDict(env_prefix="BENCH_QUEUE_", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("DATABASE_URL"),
        description="External PostgreSQL server; when unset a local one is started.",
    )
    concurrency: list[int] = Field([1, 4, 16], description="Concurrent annotators (and baseline workers) per level.")
    seconds_per_level: float = Field(4.0, gt=0, description="How long each level of each loop runs.", alias="seconds")
    tasks_per_level: int = Field(6_000, ge=1, description="Tasks queued before each level (more than it can drain).")


def _database_url(server_url: str, name: str) -> str:
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


@contextmanager
def _local_server():
    from deploy.local_database import start_database

    with (
        tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp,
        start_database(Path(tmp) / "pgdata", fast_unsafe=True) as database,
    ):
        yield database.url


async def _timed_loop(workers: int, seconds: float, step: Any) -> int:
    """Run `step(worker)` in `workers` loops for `seconds`; the count of steps that did work."""
    deadline = time.perf_counter() + seconds
    counts = [0] * workers

    async def loop(worker: int) -> None:
        while time.perf_counter() < deadline:
            if not await step(worker):
                return
            counts[worker] += 1

    await asyncio.gather(*(loop(w) for w in range(workers)))
    return sum(counts)


async def baseline_rate(pool: asyncpg.Pool, workers: int, jobs: int, seconds: float) -> float:
    """Jobs per second of the bare SKIP LOCKED dequeue loop."""
    await pool.execute("TRUNCATE bench_jobs")
    await pool.execute(BASELINE_FILL, jobs)

    async def step(_: int) -> bool:
        return await pool.fetchval(BASELINE_DEQUEUE) is not None

    started = time.perf_counter()
    done = await _timed_loop(workers, seconds, step)
    return done / (time.perf_counter() - started)


def _request(task_id: str, now: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "app_id": "bench",
        "task_id": task_id,
        "prompt_key": f"pk-{task_id}",
        "kind": "compare",
        "domain": "general",
        "priority": (hash(task_id) % 1000) / 100,
        "prompt": [{"role": "user", "content": "Is it safe to take ibuprofen with coffee? Call me at 415 555 2671."}],
        "candidates": {
            label: {
                "interaction_id": f"{task_id}-{label}",
                "content": f"Answer {label}. " * 40,
                "model": "m",
                "model_version": "1",
            }
            for label in ("A", "B")
        },
        "reason": "split_votes",
        "occurred_at": now,
        "updated_at": now,
    }


async def fill_queue(queue: TaskQueue, level: int, tasks: int) -> None:
    now = datetime.now(UTC).isoformat()
    rows = [queue.task_row(AnnotationRequest.model_validate(_request(f"l{level}-t{i}", now))) for i in range(tasks)]
    async with store.transaction(queue.pool) as conn:
        await store.upsert_tasks(conn, rows)


async def queue_rate(queue: TaskQueue, workers: int, level: int, tasks: int, seconds: float) -> float:
    """Tasks per second leased and judged (each is one lease and one verdict) by `workers` annotators."""
    await fill_queue(queue, level, tasks)
    annotators = [store.Annotator(f"bench-{level}-{w}", ("general",)) for w in range(workers)]

    async def step(worker: int) -> bool:
        me = annotators[worker]
        task = await queue.lease(me, None)
        if task is None:
            return False
        await queue.submit_verdict(me, task.request.task_id, Verdict(annotator_id=me.annotator_id, verdict="A"))
        return True

    started = time.perf_counter()
    done = await _timed_loop(workers, seconds, step)
    return done / (time.perf_counter() - started)


async def _queue_on(database_url: str, stack: AsyncExitStack) -> TaskQueue:
    settings = FeedbackSettings(database_url=database_url, db_pool_min_size=4, db_pool_max_size=20)
    pool = await db.create_pool(settings)
    stack.push_async_callback(pool.close)
    registry = CollectorRegistry()
    # The relay never runs here: verdicts' outbox rows are written (that cost is measured), not published.
    relay = OutboxRelay(
        service=FEEDBACK_SERVICE,
        pool=pool,
        broker=make_broker(settings, client_id="bench"),
        registry=registry,
        batch_size=settings.outbox_batch_size,
        poll_interval_s=settings.outbox_poll_interval_s,
        publish_timeout_s=settings.publish_timeout_s,
        max_backoff_s=settings.retry_max_backoff_s,
    )
    return TaskQueue(
        service=FEEDBACK_SERVICE, pool=pool, settings=settings, relay=relay, metrics=QueueMetrics(registry)
    )


async def run(settings: QueueBenchSettings, server_url: str) -> dict[str, Any]:
    name = f"bench_queue_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')  # generated name: not a bind parameter
    database_url = _database_url(server_url, name)
    try:
        await db.migrate(database_url, FEEDBACK_MIGRATIONS)
        async with AsyncExitStack() as stack:
            queue = await _queue_on(database_url, stack)
            await queue.pool.execute(BASELINE_SETUP)
            levels = []
            for level, workers in enumerate(settings.concurrency):
                base = await baseline_rate(queue.pool, workers, settings.tasks_per_level, settings.seconds_per_level)
                rate = await queue_rate(queue, workers, level, settings.tasks_per_level, settings.seconds_per_level)
                levels.append(
                    {
                        "annotators": workers,
                        "queue_tasks_per_s": round(rate, 1),
                        "queue_ops_per_s": round(2 * rate, 1),
                        "baseline_jobs_per_s": round(base, 1),
                        "ratio_tasks_to_baseline_jobs": round(rate / base, 3),
                    }
                )
                print(json.dumps(levels[-1]))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return {
        "benchmark": "annotation queue: lease + verdict through TaskQueue vs a bare asyncpg SKIP LOCKED dequeue",
        "measured_at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "database": "external" if settings.database_url else "local embedded PostgreSQL, fsync off",
        "seconds_per_level": settings.seconds_per_level,
        "levels": levels,
        "notes": "One task = one lease (SKIP LOCKED UPDATE, then the redacted task view) + one verdict transaction "
        "(row lock, verdict insert, combine, task update, outbox row). Baseline job = one dequeue UPDATE. "
        "Client and server share the machine's CPUs.",
    }


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Annotation queue benchmark (`python -m bench.queue`)",
        "",
        f"{result['benchmark']}; {result['database']}; {result['machine']['cpus']} CPUs; "
        f"{result['seconds_per_level']} s per level; measured {result['measured_at'][:19]}Z.",
        "",
        "| annotators | tasks/s (lease+verdict) | ops/s | bare SKIP LOCKED jobs/s | ratio |",
        "|---:|---:|---:|---:|---:|",
    ]
    for level in result["levels"]:
        lines.append(
            f"| {level['annotators']} | {level['queue_tasks_per_s']} | {level['queue_ops_per_s']} | "
            f"{level['baseline_jobs_per_s']} | {level['ratio_tasks_to_baseline_jobs']} |"
        )
    return "\n".join([*lines, "", result["notes"], ""])


async def _main(settings: QueueBenchSettings) -> dict[str, Any]:
    if settings.database_url:
        return await run(settings, settings.database_url)
    with _local_server() as server_url:
        return await run(settings, server_url)


def main() -> None:
    configure_logging("console", "WARNING")
    result = asyncio.run(_main(QueueBenchSettings()))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "queue.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS_DIR / "queue.md").write_text(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
