"""What the aggregator takes in, against real Tansu and PostgreSQL: every vote has an effect or a dead letter.

- A verdict counts only for a task the aggregator issued, with that task's candidates: a made-up
  task_id is dead-lettered `unknown_task`, a real one with other (or swapped) candidates
  `candidates_mismatch`; neither changes a pair or a task.
- A comparison waits until both compared answers are known: in two prompt groups it is dead-lettered
  `cross_group_comparison`; an answer that never comes, `parked_vote_expired` at the TTL.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from tests.integration.aggregator.aggregator_flow import (
    Flow,
    interaction,
    key_of,
    later,
    outputs,
    running,
    settings_for,
    thumbs,
    vote,
)
from tests.support.isolation import isolated_pipeline
from tests.support.kafka import Record, producing
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(120)
PARKED_TTL_S = 3.0


@pytest.fixture(scope="module")
async def flow(kafka_bootstrap: str, pg_server_url: str, template_db: str) -> AsyncIterator[Flow]:
    async with isolated_pipeline(kafka_bootstrap, pg_server_url, template_db) as (url, prefix):
        group_id = f"aggregator-{prefix}"
        settings = settings_for(kafka_bootstrap, url, prefix, group_id, parked_vote_ttl_s=PARKED_TTL_S)
        async with (
            running(settings),
            outputs(kafka_bootstrap, prefix) as out,
            producing(kafka_bootstrap, prefix) as producer,
        ):
            yield Flow(kafka_bootstrap, url, group_id, producer, out)


def app_id() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"


def event_id(record: Record) -> str:
    return json.loads(record.value or b"")["event_id"]


async def dead_letter_of(flow: Flow, record: Record, timeout: float = 20) -> dict[str, Any]:
    wanted = event_id(record)

    async def found() -> dict[str, Any]:
        await flow.out.poll()
        letters = [json.loads(r.value) for r in flow.out.dead_letters.records]
        mine = [d for d in letters if d["raw_value"] and json.loads(d["raw_value"]).get("event_id") == wanted]
        assert len(mine) == 1, mine
        return mine[0]

    return await eventually(found, timeout=timeout)


async def stored_vote_ids(flow: Flow) -> set[str]:
    conn = await asyncpg.connect(flow.database_url)
    try:
        return {str(r["event_id"]) for r in await conn.fetch("SELECT event_id FROM agg_votes")}
    finally:
        await conn.close()


async def test_forged_verdicts_are_dead_lettered_and_change_no_pair_and_no_task(flow: Flow) -> None:
    app, settled_prompt, open_prompt = app_id(), "Is a tomato a fruit?", "Best name for a cat?"
    settled, open_ = key_of(app, settled_prompt), key_of(app, open_prompt)
    await flow.send([interaction(app, settled_prompt, "x", "Yes."), interaction(app, settled_prompt, "y", "No.")])
    await flow.send([interaction(app, open_prompt, "c1", "Tom."), interaction(app, open_prompt, "c2", "Felix.")])
    await flow.send(thumbs(app, "x", 4, 0) + thumbs(app, "y", 0, 4) + thumbs(app, "c1", 3, 2) + thumbs(app, "c2", 2, 3))
    (pair,) = (await flow.live_pairs(settled, 1)).values()
    assert (pair["method"], pair["chosen"]["interaction_id"]) == ("votes", "x")
    task = await flow.task_of(open_)
    a, b = task["candidates"]["A"]["interaction_id"], task["candidates"]["B"]["interaction_id"]
    over_settled = {"a_interaction_id": "x", "b_interaction_id": "y", "interaction_id": "x"}
    forged = [
        # The verdict: a made-up task over the settled pair, B (y) better.
        flow.verdict_on({**task, "task_id": "anything"}, "B", later(60), **over_settled),
        # A real task_id (read from annotation-requests) over other candidates, then over its own swapped.
        flow.verdict_on(task, "B", later(60), **over_settled),
        flow.verdict_on(task, "A", later(60), a_interaction_id=b, b_interaction_id=a, interaction_id=b),
    ]
    await flow.send(forged)
    codes = [(await dead_letter_of(flow, record))["error_code"] for record in forged]
    assert codes == ["unknown_task", "candidates_mismatch", "candidates_mismatch"]
    await flow.settled()
    assert await flow.current_pairs(settled) == {pair["pair_id"]: pair}, "the settled pair did not move"
    assert await flow.current_pairs(open_) == {}
    task_records = [r for r in flow.out.requests.records if r.key == task["task_id"].encode()]
    assert task_records[-1].value is not None, "the real task was not withdrawn"
    assert not {event_id(r) for r in forged} & await stored_vote_ids(flow)

    await flow.send([flow.verdict_on(task, "A", later(90))])  # the task's own verdict does count

    async def expert_pair() -> list[tuple[str, str]]:
        live = [(p["method"], p["chosen"]["interaction_id"]) for p in (await flow.current_pairs(open_)).values()]
        assert live == [("expert", a)], live
        return live

    await eventually(expert_pair, timeout=20)


async def test_a_comparison_across_two_groups_is_dead_lettered_once_both_answers_are_seen(flow: Flow) -> None:
    app = app_id()
    one, two = interaction(app, "First prompt?", "p1", "One."), interaction(app, "Second prompt?", "p2", "Two.")
    known = vote(app, "p1", "u1", kind="comparison", preferred_interaction_id="p1", other_interaction_id="p2")
    early = vote(app, "p1", "u2", kind="comparison", preferred_interaction_id="p2", other_interaction_id="p1")
    await flow.send([one, early])  # p2 is not known yet: the comparison waits for it
    await eventually(lambda: parked_count(flow, app, 1), timeout=10)
    await flow.send([two, known])
    for record in (early, known):
        letter = await dead_letter_of(flow, record)
        assert (letter["error_code"], letter["service"]) == ("cross_group_comparison", "aggregator")
        assert letter["source_topic"].endswith("votes") and letter["source_offset"] is not None
    assert not {event_id(early), event_id(known)} & await stored_vote_ids(flow)


async def parked_count(flow: Flow, app: str, count: int) -> bool:
    conn = await asyncpg.connect(flow.database_url)
    try:
        found = await conn.fetchval("SELECT count(*) FROM agg_parked_votes WHERE app_id = $1", app)
    finally:
        await conn.close()
    assert found == count, found
    return True


async def test_a_comparison_whose_other_answer_never_comes_is_dead_lettered_at_the_ttl(flow: Flow) -> None:
    app = app_id()
    waiting = vote(app, "a", "u1", kind="comparison", preferred_interaction_id="a", other_interaction_id="never")
    await flow.send([interaction(app, "A prompt?", "a", "An answer."), waiting])
    letter = await dead_letter_of(flow, waiting, timeout=PARKED_TTL_S + 15)
    assert letter["error_code"] == "parked_vote_expired" and "never" in letter["reason"]
    assert event_id(waiting) not in await stored_vote_ids(flow)


async def test_a_comparison_whose_other_answer_comes_late_gives_its_pair(flow: Flow) -> None:
    app, prompt = app_id(), "Late answers?"
    early = vote(app, "b", "u1", kind="comparison", preferred_interaction_id="b", other_interaction_id="a")
    await flow.send([interaction(app, prompt, "b", "Later, better."), early])
    await eventually(lambda: parked_count(flow, app, 1), timeout=10)
    await flow.send([interaction(app, prompt, "a", "First, worse.")])
    (pair,) = (await flow.live_pairs(key_of(app, prompt), 1)).values()
    assert (pair["method"], pair["chosen"]["interaction_id"]) == ("comparison", "b")
