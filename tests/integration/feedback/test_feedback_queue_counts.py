"""The queue's maintained counts on real PostgreSQL: exact against COUNT(*) after a concurrent drain, and backfilled.

The drain mixes everything that changes a task: leases by many annotators at once, verdicts in
single- and multi-reviewer domains (with escalations and contested tasks), skips, releases, extends,
leases left to expire, withdrawals and re-requests, a revoked annotator, and the compaction running
all along. At the end every count the stats read must equal what the tables say.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.feedback import auth, store
from services.feedback.app import MIGRATIONS
from services.feedback.queue import TaskQueue
from services.feedback.queue_rules import Judgement
from shared import db
from shared.errors import AuthError, ConflictError, ForbiddenError, PipelineError
from tests.integration.feedback.queue_fixtures import later, record, task_queue
from tests.support.agreement_reference import AgreementRow, reference_agreement
from tests.support.builders import annotation_request_body
from tests.support.isolation import database_url_for

pytestmark = pytest.mark.timeout(180)

DOMAINS = ("general", "medical", "legal")
REVIEWERS = {"medical": 2, "legal": 3}
TASKS = 480
ANNOTATORS = 14
DRAIN_S = 12.0


async def ingest(queue: TaskQueue, bodies: list[dict[str, Any]]) -> None:
    await queue.ingest([record(json.dumps(b).encode(), offset=i) for i, b in enumerate(bodies)])


async def annotate(queue: TaskQueue, caller: store.Caller, rng: random.Random, stop: asyncio.Event) -> None:
    """Lease and act at random until told to stop; refusals a real client would get are part of the run."""
    while not stop.is_set():
        try:
            task = await queue.lease(caller, None)
        except PipelineError:  # revoked mid-run
            return
        if task is None:
            await asyncio.sleep(0.02)
            continue
        me = store.Annotator(task.annotator_id, DOMAINS)
        task_id, roll = task.request.task_id, rng.random()
        try:
            if roll < 0.08:
                await queue.skip(me, task_id)
            elif roll < 0.16:
                await queue.release(me, task_id)
            elif roll < 0.24:
                continue  # walk away: the lease expires
            else:
                if roll < 0.30:
                    await queue.extend(me, task_id)
                verdict = rng.choice(["A", "A", "B", "tie", "both_bad"] if task.request.kind == "compare" else ["A"])
                shown_left = rng.choice(["A", "B", None]) if task.request.kind == "compare" else None
                await queue.submit_verdict(caller, task_id, Judgement(verdict=verdict, shown_left=shown_left))
        except (ConflictError, ForbiddenError, AuthError):
            pass  # the lease expired, the task was withdrawn meanwhile, or the caller was revoked


async def churn(queue: TaskQueue, bodies: list[dict[str, Any]], rng: random.Random, stop: asyncio.Event) -> None:
    """Withdraw tasks (tombstones) and request some again (newer requests), as the aggregator does."""
    offset = 10_000
    while not stop.is_set():
        picked = rng.sample(bodies, 6)
        tombstones = [record(None, offset + i, key=b["task_id"].encode()) for i, b in enumerate(picked[:4])]
        again = [dict(b, updated_at=later(rng.randint(1, 600)), priority=rng.random() * 5) for b in picked[2:]]
        requests = [record(json.dumps(b).encode(), offset + 10 + i) for i, b in enumerate(again)]
        await queue.ingest([*tombstones, *requests])
        offset += 20
        await asyncio.sleep(0.15)


async def compact(queue: TaskQueue, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await queue.compact_counts()
        await asyncio.sleep(0.05)


async def drain(queue: TaskQueue, tokens: dict[str, str]) -> None:
    rng = random.Random(17)
    bodies = [
        annotation_request_body(
            f"t{i:04d}", DOMAINS[i % 3], priority=float(i % 11), **({"kind": "rewrite"} if i % 13 == 0 else {})
        )
        for i in range(TASKS)
    ]
    for body in bodies:
        if body["kind"] == "rewrite":
            del body["candidates"]["B"]
    for start in range(0, TASKS, 120):
        await ingest(queue, bodies[start : start + 120])
    callers: list[store.Caller] = [store.Annotator(f"ann{i:02d}", DOMAINS) for i in range(ANNOTATORS)]
    callers += [store.Bearer(auth.hash_token(token)) for token in tokens.values()]
    stop = asyncio.Event()
    workers = [annotate(queue, caller, random.Random(i), stop) for i, caller in enumerate(callers)]
    running = [asyncio.create_task(w) for w in [*workers, churn(queue, bodies, rng, stop), compact(queue, stop)]]
    await asyncio.sleep(DRAIN_S / 2)
    assert await auth.revoke_annotator(queue.pool, "tok-1"), "revoking gives its leases back"
    await asyncio.sleep(DRAIN_S / 2)
    stop.set()
    await asyncio.gather(*running)


async def rows_of(conn: asyncpg.Connection, query: str) -> set[tuple[Any, ...]]:
    return {tuple(r) for r in await conn.fetch(query)}


async def assert_counts_exact(queue: TaskQueue) -> None:
    """Every maintained count equals the tables, in one snapshot and at one `now()`."""
    async with store.transaction(queue.pool) as conn:
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        tasks = await rows_of(conn, "SELECT domain, status, count(*) FROM tasks GROUP BY domain, status")
        counted = {(c.domain, c.status, c.tasks) for c in await store.count_tasks_by_domain(conn, None)}
        assert counted == tasks
        live = await rows_of(
            conn,
            "SELECT t.domain, count(*) FROM tasks AS t CROSS JOIN LATERAL jsonb_each_text(t.leases) AS l "
            "WHERE l.value::timestamptz > now() GROUP BY t.domain",
        )
        assert set((await store.count_live_leases(conn, None)).items()) == live
        positions = await rows_of(
            conn,
            "SELECT t.domain, v.shown_left, v.verdict, count(*) FROM task_verdicts AS v "
            "JOIN tasks AS t USING (task_id) WHERE v.shown_left IS NOT NULL AND t.kind = 'compare' GROUP BY 1, 2, 3",
        )
        counted_positions = await store.count_position_verdicts(conn, None)
        assert {(p.domain, p.shown_left, p.verdict, p.verdicts) for p in counted_positions} == positions
        for annotator_id, first, last in await conn.fetch(
            "SELECT annotator_id, min(created_at), max(created_at) FROM task_verdicts GROUP BY annotator_id"
        ):
            for since in (first - timedelta(days=1), first + (last - first) / 2, last + timedelta(microseconds=1)):
                expected = await conn.fetchval(
                    "SELECT count(*) FROM task_verdicts WHERE annotator_id = $1 AND created_at >= $2",
                    annotator_id,
                    since,
                )
                assert await store.count_annotator_verdicts_since(conn, annotator_id, since) == expected


async def assert_agreement_exact(queue: TaskQueue) -> None:
    raw = await queue.pool.fetch(
        "SELECT v.task_id, t.domain, v.annotator_id, v.verdict, t.result ->> 'verdict' AS combined "
        "FROM task_verdicts AS v JOIN tasks AS t USING (task_id)"
    )
    expected_domains, expected_annotators = reference_agreement(AgreementRow(**dict(r)) for r in raw)
    stats = await queue.stats(None)
    got_domains = {d: e.agreement for d, e in stats.domains.items() if e.agreement is not None}
    assert got_domains.keys() == expected_domains.keys() and stats.annotators.keys() == expected_annotators.keys()
    for got, expected in [*((got_domains[d], a) for d, a in expected_domains.items()),
                          *((stats.annotators[n], a) for n, a in expected_annotators.items())]:  # fmt: skip
        assert (got.tasks, got.pairwise, got.with_result) == (expected.tasks, expected.pairwise, expected.with_result)
        assert (got.alpha is None) == (expected.alpha is None)
        assert got.alpha is None or got.alpha == pytest.approx(expected.alpha, abs=1e-9)


async def test_counts_stay_exact_through_a_concurrent_drain(database_url: str) -> None:
    async with task_queue(database_url, reviewers_per_domain=REVIEWERS, max_reviewers=3, lease_seconds=1.0) as queue:
        tokens = {}
        for name in ("tok-1", "tok-2"):
            tokens[name] = await auth.issue_token(queue.pool, auth.AnnotatorGrant(annotator_id=name, domains=DOMAINS))
        await drain(queue, tokens)
        statuses = dict(await queue.pool.fetch("SELECT status, count(*) FROM tasks GROUP BY status"))
        assert statuses.get("completed", 0) > 100 and statuses.get("withdrawn", 0) > 0, statuses
        assert await queue.pool.fetchval("SELECT count(*) FROM task_verdicts WHERE annotator_id = 'tok-2'") > 0
        assert await queue.pool.fetchval("SELECT count(*) FROM tasks WHERE cardinality(reviewed_by) >= 2") > 20
        await assert_counts_exact(queue)
        await assert_agreement_exact(queue)
        # Leases the drain left behind expire: the live count follows the clock, not a write.
        await asyncio.sleep(1.2)
        assert (await queue.stats(None)).domains["medical"].leased == 0
        await assert_counts_exact(queue)
        await queue.compact_counts()
        rows = await queue.pool.fetchval("SELECT count(*) FROM task_counts")
        assert rows <= len(DOMAINS) * 4, "compaction keeps one row per domain and status"
        await assert_counts_exact(queue)
        await assert_agreement_exact(queue)


async def test_the_migration_backfills_the_counts_of_an_existing_queue(pg_server_url: str, tmp_path: Path) -> None:
    """A database queued and judged before migration 0005 gets exact counts when 0005 applies."""
    shared, feedback = MIGRATIONS
    before = tmp_path / "before"
    before.mkdir()
    for path in sorted(feedback.folder.glob("000[1-4]_*.sql")):
        shutil.copy(path, before / path.name)
    name = f"test_backfill_{random.randrange(1 << 30)}"
    admin = await asyncpg.connect(pg_server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')  # generated name: not a bind parameter
    url = database_url_for(pg_server_url, name)
    try:
        await db.migrate(url, (shared, db.Migrations(feedback.component, before)))
        old = await asyncpg.connect(url)
        try:
            await fill_old_schema(old)
        finally:
            await old.close()
        applied = await db.migrate(url, MIGRATIONS)
        assert applied[0] == "feedback/0005_keep_queue_counts.sql", applied  # later ones may follow
        async with task_queue(url) as queue:
            await assert_counts_exact(queue)
            await assert_agreement_exact(queue)
            medical = (await queue.stats(["medical"])).domains["medical"]
            assert (medical.queued, medical.completed, medical.leased) == (40, 20, 10)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def fill_old_schema(conn: asyncpg.Connection) -> None:
    """60 medical tasks: 20 completed by two reviewers (verdicts over 3 hours), 10 leased, 5 with an expired lease."""
    now = datetime.now(UTC)
    await conn.execute(
        "INSERT INTO tasks (task_id, app_id, kind, domain, priority, request, request_updated_at, reviewers_needed) "
        "SELECT 'm' || i, 'app', 'compare', 'medical', i, '{}'::jsonb, now(), 2 FROM generate_series(1, 60) AS i"
    )
    for i in range(1, 21):
        verdicts = [("x", "A", "A"), ("y", "A" if i % 3 else "B", "B")]
        for k, (annotator, verdict, left) in enumerate(verdicts):
            await conn.execute(
                "INSERT INTO task_verdicts (task_id, annotator_id, verdict, shown_left, created_at) "
                "VALUES ($1, $2, $3, $4, $5)",
                f"m{i}", annotator, verdict, left, now - timedelta(minutes=9 * i + k),
            )  # fmt: skip
        await conn.execute(
            "UPDATE tasks SET status = 'completed', reviewed_by = ARRAY['x', 'y'], result = $2::jsonb "
            "WHERE task_id = $1",
            f"m{i}", json.dumps({"verdict": "A"}),
        )  # fmt: skip
    for i, minutes in [*((n, 10) for n in range(21, 31)), *((n, -10) for n in range(31, 36))]:
        expiry = (now + timedelta(minutes=minutes)).isoformat()
        await conn.execute(
            "UPDATE tasks SET leases = jsonb_build_object('z', $2::text) WHERE task_id = $1", f"m{i}", expiry
        )
