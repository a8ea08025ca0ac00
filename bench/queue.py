"""Annotation queue benchmark: throughput against bare loops, and latencies up to a million queued tasks.

`python -m bench.queue` drives services.feedback.queue.TaskQueue, the code behind the HTTP routes,
as the routes call it: a bearer token authenticated by the lease and verdict statements themselves,
the redacted task view, the verdict with its outbox row. In one run on one database it measures:

1. Statements (= round trips: the pool's release sends nothing) per lease, per verdict on a task this
   process leased, and per verdict on a task leased elsewhere.
2. Lease + verdict tasks/s at 1, 4 and 16 concurrent annotators beside two bare loops with no logic,
   each worker on its own connection: (a) the cheapest SKIP LOCKED queue, a table of its own with a
   payload of the same size, dequeued and completed by two minimal statements; (b) the queue's own
   two statements (lease_next_task, record_verdict with a fixed outcome). With a local server, CPU ms
   per task too (this process + the server's), which other load on the machine skews far less.
3. Lease + verdict at the highest concurrency with the count triggers of migration 0005 on and off.
4. With 1,000 / 100,000 / 1,000,000 tasks queued over 10 domains (bulk-filled, queue_data.py): the
   stats call (an admin's, and an annotator's with its progress) both as `GET /v1/tasks/stats` over
   HTTP from `python -m services.feedback` on the same database (bench/queue_http.py) and in process,
   lease and verdict latency (one annotator of three domains, sequential), p50/p99.

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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
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
    CpuMeter,
    check_counts,
    fill_baseline,
    fill_tasks,
    percentiles_ms,
)
from bench.queue_http import FeedbackHttp, feedback_over_http, route_latencies
from bench.queue_report import markdown
from services.feedback import auth, store
from services.feedback.app import MIGRATIONS as FEEDBACK_MIGRATIONS
from services.feedback.app import SERVICE as FEEDBACK_SERVICE
from services.feedback.queue import TaskQueue
from services.feedback.queue_metrics import QueueMetrics
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
# The bare loop (b)'s fixed outcome and vote: what record_verdict writes for a lone reviewer's "A".
BARE_RESULT = {"verdict": "A", "agreement": 1.0, "decided_by": "bare", "reviewers": ["bare"]}
BARE_VOTE = json.dumps({"kind": "verdict", "verdict": "A", "padding": "x" * 600}).encode()


class QueueBenchSettings(BaseSettings):
    """What the benchmark reads from the environment (BENCH_QUEUE_*, and DATABASE_URL)."""

    model_config = SettingsConfigDict(env_prefix="BENCH_QUEUE_", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("DATABASE_URL"),
        description="External PostgreSQL server; when unset a local one is started.",
    )
    concurrency: list[int] = Field([1, 4, 16], description="Concurrent annotators (and bare workers) per level.")
    seconds_per_level: float = Field(4.0, gt=0, description="How long each throughput run lasts.")
    tasks_per_level: int = Field(8_000, ge=1, description="Tasks queued before each throughput run (> it drains).")
    sizes: list[int] = Field([1_000, 100_000, 1_000_000], description="Queue sizes of the latency runs, ascending.")
    samples: int = Field(200, ge=10, description="Calls timed per figure of the latency runs.")


@asynccontextmanager
async def _server(settings: QueueBenchSettings) -> AsyncIterator[tuple[str, int | None]]:
    """The server URL, and the postmaster's pid when this machine runs it (for its CPU time)."""
    if settings.database_url:
        yield settings.database_url, None
        return
    from deploy.local_database import start_database

    with (
        tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp,
        start_database(Path(tmp) / "pgdata", fast_unsafe=True) as database,
    ):
        yield database.url, database.pid


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


async def _rate(
    meter: CpuMeter, workers: int, seconds: float, step: Callable[[int], Awaitable[bool]]
) -> dict[str, Any]:
    """Run `step(worker)` in `workers` loops for `seconds`: steps per second, CPU ms per step (client, server)."""
    client, server = meter.client_s(), meter.server_s()
    started = time.perf_counter()
    deadline = started + seconds
    counts = [0] * workers

    async def loop(worker: int) -> None:
        while time.perf_counter() < deadline and await step(worker):
            counts[worker] += 1

    await asyncio.gather(*(loop(w) for w in range(workers)))
    done = max(1, sum(counts))
    server_after = meter.server_s()
    return {
        "per_s": round(done / (time.perf_counter() - started), 1),
        "client_cpu_ms": round(1000 * (meter.client_s() - client) / done, 3),
        "server_cpu_ms": round(1000 * (server_after - server) / done, 3) if server is not None else None,
    }


async def round_trips(database_url: str) -> dict[str, int]:
    """Statements (each a round trip) of a lease and of a verdict, after a warm-up (statements prepared)."""
    seen: list[str] = []
    async with AsyncExitStack() as stack:
        queue = await _queue_on(database_url, stack, pool_size=1)
        async with queue.pool.acquire() as conn:
            conn.add_query_logger(lambda record: seen.append(record.query))
        await fill_tasks(queue.pool, "rt", 0, 4, domains=1, domain_prefix="rt")
        (caller,) = await _callers(queue.pool, ["bench-rt"], ["rt0"])
        await _judge(queue, caller)
        counts = {}
        for name in ("lease", "verdict", "lease_again", "verdict_leased_elsewhere"):
            seen.clear()
            if name.startswith("lease"):
                task_id = (await queue.lease(caller, None)).request.task_id
            else:
                if name == "verdict_leased_elsewhere":
                    queue.leased.take(caller, task_id)  # as if another instance had leased it
                await queue.submit_verdict(caller, task_id, JUDGEMENT)
            counts[name] = len(seen)
    return {k: v for k, v in counts.items() if k != "lease_again"}


async def bare_minimal_rate(
    pool: asyncpg.Pool, database_url: str, meter: CpuMeter, workers: int, settings: QueueBenchSettings
) -> dict[str, Any]:
    """Bare loop (a): dequeue (SKIP LOCKED, payload back) then complete, on a minimal table, one connection each."""
    await fill_baseline(pool, settings.tasks_per_level)
    conns = [await asyncpg.connect(database_url) for _ in range(workers)]
    try:

        async def step(worker: int) -> bool:
            row = await conns[worker].fetchrow(BASELINE_DEQUEUE)
            if row is None:
                return False
            await conns[worker].execute(BASELINE_COMPLETE, row["id"])
            return True

        return await _rate(meter, workers, settings.seconds_per_level, step)
    finally:
        for conn in conns:
            await conn.close()


async def bare_own_rate(
    pool: asyncpg.Pool, database_url: str, meter: CpuMeter, workers: int, prefix: str, settings: QueueBenchSettings
) -> dict[str, Any]:
    """Bare loop (b): the queue's own lease_next_task then record_verdict (fixed outcome), one connection each."""
    await fill_tasks(pool, prefix, 0, settings.tasks_per_level, domains=1, domain_prefix="bare")
    conns = [await asyncpg.connect(database_url) for _ in range(workers)]
    lease, record = store.QUERIES["lease_next_task"], store.QUERIES["record_verdict"]
    try:
        for conn in conns:
            await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")

        async def step(worker: int) -> bool:
            me, domains = f"bare-{prefix}-{worker}", ["bare0"]
            row = await conns[worker].fetchrow(lease, None, me, domains, None, 600.0)
            if row["task_id"] is None:
                return False
            at = datetime.now(UTC)
            await conns[worker].execute(
                record, None, me, domains, row["task_id"], me, [], row["request_updated_at"], "completed", 1,
                BARE_RESULT, at, "A", None, None, "A", FEEDBACK_SERVICE, "votes", b"key", BARE_VOTE, {},
            )  # fmt: skip
            return True

        return await _rate(meter, workers, settings.seconds_per_level, step)
    finally:
        for conn in conns:
            await conn.close()


async def queue_rate(
    queue: TaskQueue, meter: CpuMeter, callers: list[store.Bearer], prefix: str, settings: QueueBenchSettings
) -> dict[str, Any]:
    await fill_tasks(queue.pool, prefix, 0, settings.tasks_per_level, domains=1, domain_prefix="tp")
    return await _rate(meter, len(callers), settings.seconds_per_level, lambda w: _judge(queue, callers[w]))


async def throughput(
    queue: TaskQueue, database_url: str, meter: CpuMeter, settings: QueueBenchSettings
) -> list[dict[str, Any]]:
    """Lease + verdict per concurrency level beside both bare loops, same database, same run."""
    callers = await _callers(queue.pool, [f"bench-{w}" for w in range(max(settings.concurrency))], ["tp0"])
    levels = []
    for level, workers in enumerate(settings.concurrency):
        minimal = await bare_minimal_rate(queue.pool, database_url, meter, workers, settings)
        own = await bare_own_rate(queue.pool, database_url, meter, workers, f"b{level}", settings)
        ours = await queue_rate(queue, meter, callers[:workers], f"l{level}", settings)
        levels.append({
            "annotators": workers, "queue": ours, "bare_minimal": minimal, "bare_own": own,
            "ratio_to_minimal": round(ours["per_s"] / minimal["per_s"], 3),
            "ratio_to_own": round(ours["per_s"] / own["per_s"], 3),
        })  # fmt: skip
        print(json.dumps(levels[-1]), flush=True)
    return levels


async def counts_cost(queue: TaskQueue, meter: CpuMeter, settings: QueueBenchSettings) -> dict[str, Any]:
    """Lease + verdict at the highest concurrency with the count triggers on and off, alternated twice."""
    workers = max(settings.concurrency)
    callers = await _callers(queue.pool, [f"bench-c{w}" for w in range(workers)], ["tp0"])
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    for run in range(4):
        mode = "on" if run % 2 == 0 else "off"
        await queue.pool.execute(SWITCH_COUNTS.format("ENABLE" if mode == "on" else "DISABLE"))
        try:
            runs[mode].append(await queue_rate(queue, meter, callers, f"c{run}", settings))
        finally:
            await queue.pool.execute(SWITCH_COUNTS.format("ENABLE"))
    await queue.pool.execute("SELECT rebuild_queue_counts()")
    on, off = (sum(r["per_s"] for r in runs[m]) / 2 for m in ("on", "off"))
    result = {"annotators": workers, "with_counts_per_s": round(on, 1), "without_counts_per_s": round(off, 1),
              "ratio": round(on / off, 3), "runs": runs}  # fmt: skip
    print(json.dumps(result), flush=True)
    return result


async def _timed(action: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started


async def scale(queue: TaskQueue, settings: QueueBenchSettings, http: FeedbackHttp) -> list[dict[str, Any]]:
    """Stats (in process and over HTTP), lease and verdict latencies at each queue size (tasks over 10 domains)."""
    domains = [f"d{i}" for i in range(SCALE_DOMAINS)]
    token = await auth.issue_token(queue.pool, auth.AnnotatorGrant(annotator_id="bench-scale", domains=domains[:3]))
    caller = auth.bearer(token)
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
                     "stats_annotator": percentiles_ms(mine), **await route_latencies(http, token, settings.samples),
                     "lease": percentiles_ms(leases), "verdict": percentiles_ms(verdicts)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _database_url(server_url: str, name: str) -> str:
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


async def run(settings: QueueBenchSettings, server_url: str, postmaster_pid: int | None) -> dict[str, Any]:
    name = f"bench_queue_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')  # generated name: not a bind parameter
    database_url = _database_url(server_url, name)
    meter = CpuMeter(postmaster_pid)
    try:
        await db.migrate(database_url, FEEDBACK_MIGRATIONS)
        trips = await round_trips(database_url)
        print(json.dumps(trips), flush=True)
        async with AsyncExitStack() as stack:
            queue = await _queue_on(database_url, stack)
            await queue.pool.execute(BASELINE_SETUP)
            levels = await throughput(queue, database_url, meter, settings)
            counts = await counts_cost(queue, meter, settings)
            await queue.pool.execute("TRUNCATE task_verdicts, tasks")
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-queue-http-")))
            http = await stack.enter_async_context(feedback_over_http(database_url, workdir))
            sizes = await scale(queue, settings, http)
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


async def _main(settings: QueueBenchSettings) -> dict[str, Any]:
    async with _server(settings) as (server_url, postmaster_pid):
        return await run(settings, server_url, postmaster_pid)


def main() -> None:
    configure_logging("console", "WARNING")
    result = asyncio.run(_main(QueueBenchSettings()))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "queue.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS_DIR / "queue.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
