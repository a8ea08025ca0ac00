"""The annotation queue on real PostgreSQL, through TaskQueue: concurrency, expiry, skip, re-requests."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter, defaultdict

import pytest

from services.feedback import auth, store
from services.feedback.queue import TaskQueue
from services.feedback.queue_rules import Judgement
from shared.errors import ConflictError, ForbiddenError
from tests.integration.feedback.queue_fixtures import later, record, task_queue
from tests.support.builders import annotation_request_body
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(120)

ALICE = store.Annotator("alice", ("general", "medical"))
BOB = store.Annotator("bob", ("general", "medical"))


async def ingest(queue: TaskQueue, *bodies: dict) -> None:
    await queue.ingest([record(json.dumps(b).encode(), offset=i) for i, b in enumerate(bodies)])


async def outbox_votes(queue: TaskQueue) -> list[dict]:
    rows = await queue.pool.fetch("SELECT value FROM outbox WHERE service = 'feedback' ORDER BY id")
    return [json.loads(r["value"]) for r in rows]


async def test_twenty_annotators_drain_a_thousand_tasks_once_per_reviewer(database_url: str) -> None:
    tasks = 1_000
    bodies = [
        annotation_request_body(f"t{i:04d}", "medical" if i % 5 == 0 else "general", priority=float(i % 7))
        for i in range(tasks)
    ]
    needed = {b["task_id"]: 2 if b["domain"] == "medical" else 1 for b in bodies}
    async with task_queue(database_url, reviewers_per_domain={"medical": 2}) as queue:
        for start in range(0, tasks, 250):
            await ingest(queue, *bodies[start : start + 250])
        holders: dict[str, set[str]] = defaultdict(set)
        judged: dict[str, list[str]] = defaultdict(list)
        leases: Counter[tuple[str, str]] = Counter()

        async def annotator(name: str) -> None:
            me = store.Annotator(name, ("general", "medical"))
            while sum(map(len, judged.values())) < sum(needed.values()):
                task = await queue.lease(me, None)
                if task is None:
                    await asyncio.sleep(0.005)  # others still hold the last tasks: poll again
                    continue
                task_id = task.request.task_id
                leases[(task_id, name)] += 1
                # No awaits between the check and the update: the invariant holds at every lease.
                assert len(holders[task_id]) + len(judged[task_id]) < needed[task_id], task_id
                holders[task_id].add(name)
                await queue.submit_verdict(me, task_id, Judgement(verdict="A"))
                holders[task_id].discard(name)
                judged[task_id].append(name)

        async with asyncio.timeout(90):
            await asyncio.gather(*(annotator(f"ann{i:02d}") for i in range(20)))

    assert max(leases.values()) == 1, "an annotator got the same task twice"
    assert {t: len(set(names)) for t, names in judged.items()} == needed
    votes = await outbox_votes_for(database_url)
    assert Counter(v["task_id"] for v in votes) == Counter({t: 1 for t in needed})


async def outbox_votes_for(database_url: str) -> list[dict]:
    async with task_queue(database_url) as queue:
        return await outbox_votes(queue)


async def test_expired_lease_returns_the_task_to_the_queue(database_url: str) -> None:
    async with task_queue(database_url, lease_seconds=1.0) as queue:
        await ingest(queue, annotation_request_body("t1", "general"))
        assert (await queue.lease(ALICE, None)).request.task_id == "t1"
        assert await queue.lease(BOB, None) is None
        task = await eventually(lambda: queue.lease(BOB, None), timeout=5, interval=0.1)
        assert task.request.task_id == "t1"
        with pytest.raises(ConflictError, match="expired"):
            await queue.submit_verdict(ALICE, "t1", Judgement(verdict="A"))
        with pytest.raises(ConflictError, match="expired"):
            await queue.extend(ALICE, "t1")


async def test_extend_pushes_the_expiry(database_url: str) -> None:
    async with task_queue(database_url, lease_seconds=30.0) as queue:
        await ingest(queue, annotation_request_body("t1", "general"))
        first = (await queue.lease(ALICE, None)).lease_expires_at
        extended = await queue.extend(ALICE, "t1")
        assert extended > first
        with pytest.raises(ForbiddenError):
            await queue.extend(BOB, "t1")


async def test_skip_is_not_offered_again_but_release_is(database_url: str) -> None:
    async with task_queue(database_url) as queue:
        await ingest(
            queue, annotation_request_body("t1", "general"), annotation_request_body("t2", "general", priority=0.5)
        )
        assert (await queue.lease(ALICE, None)).request.task_id == "t1"
        await queue.skip(ALICE, "t1")
        assert (await queue.lease(ALICE, None)).request.task_id == "t2"
        await queue.release(ALICE, "t2")
        assert (await queue.lease(ALICE, None)).request.task_id == "t2"
        await queue.release(ALICE, "t2")
        assert (await queue.lease(BOB, None)).request.task_id == "t1"
        with pytest.raises(ForbiddenError):
            await queue.release(ALICE, "t1")
        with pytest.raises(ConflictError, match="no lease"):
            await queue.release(ALICE, "t2")


async def test_judged_task_never_offered_again_to_its_reviewer(database_url: str) -> None:
    async with task_queue(database_url, reviewers_per_domain={"medical": 2}) as queue:
        await ingest(queue, annotation_request_body("t1", "medical"))
        await queue.lease(ALICE, None)
        result = await queue.submit_verdict(ALICE, "t1", Judgement(verdict="B"))
        assert (result.outcome.status, result.verdicts) == ("open", 1)
        assert await queue.lease(ALICE, None) is None
        assert (await queue.lease(BOB, None)).request.task_id == "t1"
        with pytest.raises(ConflictError, match="already judged"):
            await queue.submit_verdict(ALICE, "t1", Judgement(verdict="B"))


async def test_rerequest_updates_priority_and_keeps_verdicts(database_url: str) -> None:
    async with task_queue(database_url, reviewers_per_domain={"medical": 2}) as queue:
        await ingest(queue, annotation_request_body("t1", "medical", priority=1.0))
        await queue.lease(ALICE, None)
        await queue.submit_verdict(ALICE, "t1", Judgement(verdict="B"))
        newer = annotation_request_body("t1", "medical", priority=9.0, reason="more_votes", updated_at=later(60))
        stale = annotation_request_body("t1", "medical", priority=0.1, reason="stale", updated_at=later(-60))
        await ingest(queue, newer, stale)
        await ingest(queue, stale)
        task = await queue.lease(BOB, None)
        assert (task.priority, task.request.reason) == (9.0, "more_votes")
        result = await queue.submit_verdict(BOB, "t1", Judgement(verdict="B"))
        assert (result.outcome.status, result.verdicts) == ("completed", 2)
        (vote,) = await outbox_votes(queue)
        assert (vote["reviewers"], vote["verdict"], vote["agreement"]) == (["alice", "bob"], "B", 1.0)


async def test_split_verdicts_escalate_then_contest(database_url: str) -> None:
    carol = store.Annotator("carol", ("medical",))
    async with task_queue(database_url, reviewers_per_domain={"medical": 2}, max_reviewers=3) as queue:
        await ingest(queue, annotation_request_body("t1", "medical"))
        for annotator, verdict in ((ALICE, "A"), (BOB, "B")):
            await queue.lease(annotator, None)
            await queue.submit_verdict(annotator, "t1", Judgement(verdict=verdict))
        assert (await queue.lease(carol, None)).request.task_id == "t1"
        result = await queue.submit_verdict(carol, "t1", Judgement(verdict="tie"))
        assert result.outcome.status == "contested"
        assert await outbox_votes(queue) == []
        stats = await queue.stats(None)
        assert stats.total("contested") == 1 and stats.domains["medical"].agreement.tasks == 1


async def test_invalid_requests_are_dead_lettered_and_the_rest_queued(database_url: str) -> None:
    async with task_queue(database_url, topic_prefix="p.") as queue:
        good = json.dumps(annotation_request_body("t1", "general")).encode()
        await queue.ingest([record(b"{not json", 0), record(None, 1), record(good, 2)])
        letters = await outbox_votes(queue)
        assert [(d["source_offset"], d["error_code"]) for d in letters] == [
            (0, "contract_violation"),
            (1, "contract_violation"),
        ]
        assert (await queue.lease(ALICE, None)).request.task_id == "t1"


async def test_lease_prefers_priority_then_age(database_url: str) -> None:
    async with task_queue(database_url) as queue:
        order = list(range(6))
        random.Random(7).shuffle(order)
        await ingest(queue, *(annotation_request_body(f"t{i}", "general", priority=float(i // 2)) for i in order))
        leased = [(await queue.lease(ALICE, None)).request.task_id for _ in range(6)]
        assert [int(t[1:]) // 2 for t in leased] == [2, 2, 1, 1, 0, 0]


async def test_a_tombstone_withdraws_an_open_task_and_a_rerequest_reopens_it(database_url: str) -> None:
    async with task_queue(database_url) as queue:
        await ingest(queue, annotation_request_body("t1", "general"), annotation_request_body("t2", "general"))
        await queue.lease(ALICE, None)
        await queue.submit_verdict(ALICE, "t1", Judgement(verdict="A"))  # t1 is completed
        leased = await queue.lease(BOB, None)
        assert leased.request.task_id == "t2"
        await queue.ingest([record(None, 5, key=b"t1"), record(None, 6, key=b"t2")])
        statuses = dict(await queue.pool.fetch("SELECT task_id, status FROM tasks ORDER BY task_id"))
        assert statuses == {"t1": "completed", "t2": "withdrawn"}, "a completed task keeps its verdict"
        assert await queue.lease(ALICE, None) is None
        stats = await queue.stats(None)
        assert (stats.total("withdrawn"), stats.total("completed"), stats.total("queued")) == (1, 1, 0)
        await queue.refresh_gauges()
        with pytest.raises(ConflictError):
            await queue.submit_verdict(BOB, "t2", Judgement(verdict="A"))

        # Requested again after the tombstone, then withdrawn and requested in one batch: the last wins.
        again = json.dumps(annotation_request_body("t2", "general", updated_at=later(60))).encode()
        await queue.ingest([record(again, 7, key=b"t2")])
        assert (await queue.lease(ALICE, None)).request.task_id == "t2"
        await queue.ingest([record(None, 8, key=b"t2"), record(again, 9, key=b"t2")])
        row = await queue.pool.fetchrow("SELECT status, leases ? 'alice' AS held FROM tasks WHERE task_id = 't2'")
        assert (row["status"], row["held"]) == ("open", True), "not withdrawn: alice keeps her lease"


async def test_a_verdict_takes_one_statement_after_its_lease_and_two_elsewhere(database_url: str) -> None:
    """Round trips on the hot path: the lease and the verdict each one statement; a verdict another
    instance leased (nothing remembered) reads the task first. The pool's release sends nothing."""
    async with task_queue(database_url, db_pool_min_size=1, db_pool_max_size=1) as queue:
        await ingest(queue, annotation_request_body("t1", "general"), annotation_request_body("t2", "general"))
        token = await auth.issue_token(queue.pool, auth.AnnotatorGrant(annotator_id="alice", domains=["general"]))
        caller = auth.bearer(token)
        seen: list[str] = []
        async with queue.pool.acquire() as conn:
            conn.add_query_logger(lambda record: seen.append(record.query.split()[0]))
        statements = []
        for forget in (False, True):
            seen.clear()
            task = await queue.lease(caller, None)
            statements.append(len(seen))
            if forget:
                queue.leased.take(caller, task.request.task_id)
            seen.clear()
            result = await queue.submit_verdict(caller, task.request.task_id, Judgement(verdict="A"))
            statements.append(len(seen))
            assert result.outcome.status == "completed"
        assert statements == [1, 1, 1, 2], seen
        assert len(await outbox_votes(queue)) == 2


async def test_a_verdict_decided_on_a_stale_lease_is_decided_again(database_url: str) -> None:
    async with (
        task_queue(database_url, reviewers_per_domain={"medical": 2}) as queue,
        task_queue(database_url, reviewers_per_domain={"medical": 2}) as other_instance,
    ):
        await ingest(queue, annotation_request_body("t1", "medical"))
        await queue.lease(ALICE, None)
        await queue.lease(BOB, None)  # remembers t1 with no verdict yet
        await other_instance.submit_verdict(ALICE, "t1", Judgement(verdict="B"))
        result = await queue.submit_verdict(BOB, "t1", Judgement(verdict="B"))
        assert (result.outcome.status, result.verdicts) == ("completed", 2), "bob's verdict saw alice's"
        (vote,) = await outbox_votes(queue)
        assert (vote["reviewers"], vote["agreement"]) == (["alice", "bob"], 1.0)
