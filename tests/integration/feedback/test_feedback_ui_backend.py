"""What the annotator UI needs from the queue, on real PostgreSQL: shown_left stored and measured, done today."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from services.feedback import store
from services.feedback.queue import TaskQueue
from services.feedback.queue_rules import Judgement
from shared.errors import ContractError
from tests.integration.feedback.queue_fixtures import record, task_queue
from tests.support.builders import annotation_request_body

pytestmark = pytest.mark.timeout(120)

ALICE = store.Annotator(annotator_id="alice", domains=("medical", "legal"))
BOB = store.Annotator(annotator_id="bob", domains=("medical",))


async def ingest(queue: TaskQueue, *bodies: dict) -> None:
    await queue.ingest([record(json.dumps(b).encode(), offset=i) for i, b in enumerate(bodies)])


async def judge(queue: TaskQueue, annotator: store.Annotator, verdict: str, shown_left: str | None) -> str:
    leased = await queue.lease(annotator, None)
    assert leased is not None
    task_id = leased.request.task_id
    given = Judgement(verdict=verdict, shown_left=shown_left)
    await queue.submit_verdict(annotator, task_id, given)
    return task_id


async def test_shown_left_is_stored_and_the_stats_split_left_from_right(database_url: str) -> None:
    async with task_queue(database_url) as queue:
        await ingest(queue, *(annotation_request_body(f"m{i}", "medical", priority=10.0 - i) for i in range(6)))
        # (verdict, shown_left): chose left, left, right, neither, left, and one client that did not say.
        plan = [("A", "A"), ("B", "B"), ("B", "A"), ("tie", "B"), ("A", "A"), ("B", None)]
        judged = [await judge(queue, ALICE, verdict, shown) for verdict, shown in plan]
        stored = await queue.pool.fetch(
            "SELECT task_id, shown_left FROM task_verdicts WHERE annotator_id = 'alice' ORDER BY task_id"
        )
        assert {r["task_id"]: r["shown_left"] for r in stored} == dict(zip(judged, [s for _, s in plan], strict=True))
        position = (await queue.stats(None)).domains["medical"].position
    assert position is not None
    assert (position.left, position.right, position.neither) == (3, 1, 1)
    assert position.verdicts == 5 and position.left_share == pytest.approx(0.75)
    assert position.p_value is not None and 0.0 < position.p_value <= 1.0


async def test_a_rewrite_task_refuses_b_on_the_left(database_url: str) -> None:
    lone = annotation_request_body("r1", "medical", kind="rewrite")
    del lone["candidates"]["B"]
    async with task_queue(database_url) as queue:
        await ingest(queue, lone)
        leased = await queue.lease(ALICE, None)
        assert leased is not None and leased.request.kind == "rewrite"
        with pytest.raises(ContractError):
            await queue.submit_verdict(ALICE, "r1", Judgement(verdict="A", shown_left="B"))
        await queue.submit_verdict(ALICE, "r1", Judgement(verdict="A", shown_left="A"))
        # One answer alone has no position: the verdict is stored, but not counted as "chose left".
        assert await queue.pool.fetchval("SELECT shown_left FROM task_verdicts WHERE task_id = 'r1'") == "A"
        assert (await queue.stats(None)).domains["medical"].position is None


async def test_done_today_counts_only_this_annotators_verdicts_since_its_day_start(database_url: str) -> None:
    async with task_queue(database_url) as queue:
        await ingest(queue, *(annotation_request_body(f"d{i}", "medical", priority=10.0 - i) for i in range(5)))
        for _ in range(3):
            await judge(queue, ALICE, "A", "A")
        await judge(queue, BOB, "B", "A")
        mine = (await queue.stats(ALICE.domains, "alice")).annotator
        assert mine is not None and (mine.annotator_id, mine.verdicts_today) == ("alice", 3)
        assert mine.day_start <= datetime.now(UTC)
        tomorrow = datetime.now(UTC) + timedelta(days=1)
        later = (await queue.stats(ALICE.domains, "alice", tomorrow)).annotator
        assert later is not None and later.verdicts_today == 0
        assert (await queue.stats(None)).annotator is None
