"""Annotation queue benchmark: throughput against a bare SKIP LOCKED loop, and latencies up to a million tasks.

`python -m bench.queue` drives services.feedback.queue.TaskQueue, the code behind the HTTP routes,
as the routes call it: a bearer token authenticated by the lease and verdict statements themselves,
the redacted task view, the verdict with its outbox row. It measures, in one run on one database:

1. Round trips per lease and per verdict (asyncpg's query logger on a one-connection pool; the pool's
   reset on release counts: it is a round trip too).
2. Lease + verdict tasks/s at 1, 4 and 16 concurrent annotators against a bare dequeue-and-complete
   loop (the same two statements, lease then complete, with no logic, each worker on its own
   connection: the fastest asyncpg goes), and at the highest concurrency with the count triggers of
   migration 0005 switched off, to show what keeping the counts costs.
3. With 1,000 / 100,000 / 1,000,000 tasks queued over 10 domains (bulk-filled, queue_data.py): the
   stats call (an admin's, and an annotator's with its progress) and lease and verdict latencies
   (one annotator of three domains, sequential) as p50/p99.

Without DATABASE_URL it starts a throwaway local PostgreSQL (deploy.local_database, fsync off).
Results: bench/results/queue.json and queue.md. Figures measured while other work loads the machine
are not final: the header records the load average.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from prometheus_client import CollectorRegistry
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from bench.provenance import run_header
from bench.queue_data import (
    BASELINE_COMPLETE,
    BASELINE_DEQUEUE,
    BASELINE_SETUP,
    check_counts,
    fill_baseline,
    fill_tasks,
    percentiles_ms,
)
from services.feedback import auth, store
from services.feedback.app import MIGRATIONS as FEEDBACK_MIGRATIONS
from services.feedback.app import SERVICE as FEEDBACK_SERVICE
from services.feedback.queue import QueueMetrics, TaskQueue
from services.feedback.queue_rules import Judgement, task_view
from services.feedback.settings import FeedbackSettings
from shared import db
from shared.kafka import make_broker
from shared.logging import configure_logging
from shared.outbox import OutboxRelay

RESULTS_DIR = Path(__file__).parent / "results"
SCALE_DOMAINS = 10
JUDGEMENT = Judgement(verdict="A", shown_left="A")
SWITCH_COUNTS = "ALTER TABLE tasks {0} TRIGGER USER; ALTER TABLE task_verdicts {0} TRIGGER USER"


class QueueBenchSettings(BaseSettings):
    """What the benchmark reads from the environment (BENCH_QUEUE_*, and DATABASE_URL)."""

    model_config = SettingsConfigDict(env_prefix="BENCH_QUEUE_", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("DATABASE_URL"),
        description="External PostgreSQL server; when unset a local one is started.",
    )
    concurrency: list[int] = Field([1, 4, 16], description="Concurrent annotators (and baseline workers) per level.")
    seconds_per_level: float = Field(4.0, gt=0, description="How long each throughput run lasts.")
    tasks_per_level: int = Field(6_000, ge=1, description="Tasks queued before each throughput run (> it drains).")
    sizes: list[int] = Field([1_000, 100_000, 1_000_000], description="Queue sizes of the latency runs, ascending.")
    samples: int = Field(200, ge=10, description="Calls timed per figure of the latency runs.")


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


async def _queue_on(database_url: str, stack: AsyncExitStack, pool_size: int = 20) -> TaskQueue:
    settings = FeedbackSettings(
        database_url=database_url, db_pool_min_size=min(4, pool_size), db_pool_max_size=pool_size
    )
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
    metrics = QueueMetrics(registry)
    return TaskQueue(service=FEEDBACK_SERVICE, pool=pool, settings=settings, relay=relay, metrics=metrics)


async def _callers(pool: asyncpg.Pool, names: Sequence[str], domains: list[str]) -> list[store.Bearer]:
    """Annotators with tokens, as HTTP clients hold them."""
    callers = []
    for name in names:
        token = await auth.issue_token(pool, auth.AnnotatorGrant(annotator_id=name, domains=domains))
        callers.append(auth.bearer(token))
    return callers


async def _judge(queue: TaskQueue, caller: store.Bearer) -> bool:
    """One task through the annotator's hot path: lease (+ the view the route sends), then a verdict."""
    task = await queue.lease(caller, None)
    if task is None:
        return False
    task_view(task.request, task.lease_expires_at, task.priority)
    await queue.submit_verdict(caller, task.request.task_id, JUDGEMENT)
    return True


async def _timed_loop(workers: int, seconds: float, step: Callable[[int], Awaitable[bool]]) -> float:
    """Run `step(worker)` in `workers` loops for `seconds`; steps that did work per second."""
    started = time.perf_counter()
    deadline = started + seconds
    counts = [0] * workers

    async def loop(worker: int) -> None:
        while time.perf_counter() < deadline and await step(worker):
            counts[worker] += 1

    await asyncio.gather(*(loop(w) for w in range(workers)))
    return sum(counts) / (time.perf_counter() - started)


async def round_trips(database_url: str) -> dict[str, int]:
    """Statements and round trips of one lease and one verdict, after a warm-up (statements prepared)."""
    seen: list[str] = []
    async with AsyncExitStack() as stack:
        queue = await _queue_on(database_url, stack, pool_size=1)
        async with queue.pool.acquire() as conn:
            conn.add_query_logger(lambda record: seen.append(record.query))
        await fill_tasks(queue.pool, "rt", 0, 4, domains=1, domain_prefix="rt")
        (caller,) = await _callers(queue.pool, ["bench-rt"], ["rt0"])
        await _judge(queue, caller)
        seen.clear()
        leased = await queue.lease(caller, None)
        lease_queries = list(seen)
        seen.clear()
        await queue.submit_verdict(caller, leased.request.task_id, JUDGEMENT)
        verdict_queries = list(seen)
    result: dict[str, int] = {}
    for name, queries in (("lease", lease_queries), ("verdict", verdict_queries)):
        resets = sum(q.lstrip().startswith("SELECT pg_advisory_unlock_all()") for q in queries)
        result[f"{name}_statements"] = len(queries) - resets
        result[f"{name}_round_trips"] = len(queries)
    return result


async def throughput(queue: TaskQueue, database_url: str, settings: QueueBenchSettings) -> list[dict[str, Any]]:
    """Lease + verdict tasks/s per concurrency level beside the bare loop's jobs/s, same database, same run."""
    callers = await _callers(queue.pool, [f"bench-{w}" for w in range(max(settings.concurrency))], ["tp0"])
    levels = []
    for level, workers in enumerate(settings.concurrency):
        base = await baseline_rate(queue.pool, database_url, workers, settings)
        rate = await queue_rate(queue, callers[:workers], f"l{level}", settings)
        levels.append({"annotators": workers, "queue_tasks_per_s": round(rate, 1),
                       "baseline_jobs_per_s": round(base, 1), "ratio": round(rate / base, 3)})  # fmt: skip
        print(json.dumps(levels[-1]), flush=True)
    return levels


async def baseline_rate(pool: asyncpg.Pool, database_url: str, workers: int, settings: QueueBenchSettings) -> float:
    """Jobs per second of the bare loop: dequeue (SKIP LOCKED, payload back) then complete, one connection each."""
    await fill_baseline(pool, settings.tasks_per_level)
    conns = [await asyncpg.connect(database_url) for _ in range(workers)]
    try:

        async def step(worker: int) -> bool:
            row = await conns[worker].fetchrow(BASELINE_DEQUEUE)
            if row is None:
                return False
            await conns[worker].execute(BASELINE_COMPLETE, row["id"])
            return True

        return await _timed_loop(workers, settings.seconds_per_level, step)
    finally:
        for conn in conns:
            await conn.close()


async def queue_rate(queue: TaskQueue, callers: list[store.Bearer], prefix: str, settings: QueueBenchSettings) -> float:
    await fill_tasks(queue.pool, prefix, 0, settings.tasks_per_level, domains=1, domain_prefix="tp")
    return await _timed_loop(len(callers), settings.seconds_per_level, lambda w: _judge(queue, callers[w]))


async def counts_cost(queue: TaskQueue, settings: QueueBenchSettings) -> dict[str, Any]:
    """Lease + verdict at the highest concurrency with the count triggers on and off, alternated twice."""
    workers = max(settings.concurrency)
    callers = await _callers(queue.pool, [f"bench-c{w}" for w in range(workers)], ["tp0"])
    rates: dict[str, list[float]] = {"on": [], "off": []}
    for run in range(4):
        mode = "on" if run % 2 == 0 else "off"
        await queue.pool.execute(SWITCH_COUNTS.format("ENABLE" if mode == "on" else "DISABLE"))
        try:
            rates[mode].append(await queue_rate(queue, callers, f"c{run}", settings))
        finally:
            await queue.pool.execute(SWITCH_COUNTS.format("ENABLE"))
    await queue.pool.execute("SELECT rebuild_queue_counts()")
    on, off = (sum(rates[m]) / len(rates[m]) for m in ("on", "off"))
    result = {
        "annotators": workers,
        "with_counts_tasks_per_s": round(on, 1),
        "without_counts_tasks_per_s": round(off, 1),
        "ratio": round(on / off, 3),
        "runs": {m: [round(r, 1) for r in v] for m, v in rates.items()},
    }
    print(json.dumps(result), flush=True)
    return result


async def _timed(action: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started


async def scale(queue: TaskQueue, settings: QueueBenchSettings) -> list[dict[str, Any]]:
    """Stats, lease and verdict latencies at each queue size (tasks over 10 domains, added between sizes)."""
    domains = [f"d{i}" for i in range(SCALE_DOMAINS)]
    (caller,) = await _callers(queue.pool, ["bench-scale"], domains[:3])
    rows, filled = [], 0
    for size in settings.sizes:
        started = time.perf_counter()
        await fill_tasks(queue.pool, "s", filled, size - filled, domains=SCALE_DOMAINS, domain_prefix="d")
        fill_s = time.perf_counter() - started
        filled = size
        await queue.pool.execute("VACUUM ANALYZE tasks")
        await check_counts(queue.pool)
        await queue.compact_counts()
        admin = [await _timed(lambda: queue.stats(None)) for _ in range(settings.samples)]
        mine = [await _timed(lambda: queue.stats(domains[:3], "bench-scale")) for _ in range(settings.samples)]
        leases, verdicts = [], []
        for _ in range(settings.samples):
            started = time.perf_counter()
            task = await queue.lease(caller, None)
            leases.append(time.perf_counter() - started)
            assert task is not None
            verdicts.append(await _timed(lambda t=task: queue.submit_verdict(caller, t.request.task_id, JUDGEMENT)))
        rows.append({"queued": size, "fill_s": round(fill_s, 1), "stats_admin": percentiles_ms(admin),
                     "stats_annotator": percentiles_ms(mine), "lease": percentiles_ms(leases),
                     "verdict": percentiles_ms(verdicts)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


async def run(settings: QueueBenchSettings, server_url: str) -> dict[str, Any]:
    name = f"bench_queue_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')  # generated name: not a bind parameter
    database_url = _database_url(server_url, name)
    try:
        await db.migrate(database_url, FEEDBACK_MIGRATIONS)
        trips = await round_trips(database_url)
        print(json.dumps(trips), flush=True)
        async with AsyncExitStack() as stack:
            queue = await _queue_on(database_url, stack)
            await queue.pool.execute(BASELINE_SETUP)
            levels = await throughput(queue, database_url, settings)
            counts = await counts_cost(queue, settings)
            await queue.pool.execute("TRUNCATE task_verdicts, tasks")
            sizes = await scale(queue, settings)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return {
        **run_header("queue"),
        "database": "external" if settings.database_url else "local embedded PostgreSQL, fsync off",
        "settings": settings.model_dump(exclude={"database_url"}),
        "round_trips": trips,
        "throughput": levels,
        "counts_cost": counts,
        "scale": sizes,
    }


def _markdown(result: dict[str, Any]) -> str:
    trips, counts = result["round_trips"], result["counts_cost"]
    lines = [
        "# Annotation queue benchmark (`python -m bench.queue`)",
        "",
        f"{result['date']}, commit `{result['git_commit']}`, Python {result['python']}, {result['platform']}, "
        f"{result['cpus']} CPUs, load average (1 min) after the run {result['load_average_1m_after']}; "
        f"{result['database']}. Settings: `{json.dumps(result['settings'])}`.",
        "",
        f"Round trips per lease: {trips['lease_round_trips']} ({trips['lease_statements']} statement + the pool's "
        f"reset); per verdict: {trips['verdict_round_trips']} ({trips['verdict_statements']} statements + the reset). "
        "Both include authenticating the bearer token.",
        "",
        "## Throughput: lease + verdict against a bare dequeue-and-complete loop",
        "",
        "| annotators | tasks/s (lease + verdict) | bare loop jobs/s (dequeue + complete) | ratio |",
        "|---:|---:|---:|---:|",
        *(
            f"| {r['annotators']} | {r['queue_tasks_per_s']} | {r['baseline_jobs_per_s']} | {r['ratio']} |"
            for r in result["throughput"]
        ),
        "",
        f"Keeping the counts (migration 0005's triggers) at {counts['annotators']} annotators: "
        f"{counts['with_counts_tasks_per_s']} tasks/s with them, {counts['without_counts_tasks_per_s']} without "
        f"(ratio {counts['ratio']}; runs alternated: {json.dumps(counts['runs'])}).",
        "",
        "## Latency with the queue filled (tasks over 10 domains)",
        "",
        "| queued | fill s | stats (admin) p50 / p99 ms | stats (annotator) p50 / p99 ms | lease p50 / p99 ms "
        "| verdict p50 / p99 ms |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["scale"]:
        cells = [f"{r[k]['p50_ms']} / {r[k]['p99_ms']}" for k in ("stats_admin", "stats_annotator", "lease", "verdict")]
        lines.append(f"| {r['queued']:,} | {r['fill_s']} | " + " | ".join(cells) + " |")
    notes = (
        "A task = a lease (the statement authenticates the token, leases and returns the request; then the "
        "redacted task view) + a verdict (one read of the task and its verdicts, one statement writing the task, "
        "the verdict and, on completion, the outbox row). A bare job = one SKIP LOCKED dequeue returning a payload "
        "of the same size + one completing UPDATE, each worker on its own connection. Stats = TaskQueue.stats "
        "(maintained counts, roll-up); latencies are sequential calls of one client. Client and server share the CPUs."
    )
    return "\n".join([*lines, "", notes, ""])


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
