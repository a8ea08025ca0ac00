"""The aggregator against real Tansu and PostgreSQL: canonical events in, pairs / requests / stats out.

One aggregator runs for the whole module (a group join costs ~5 s); each test uses its own app_id,
so its prompt groups, pairs and tasks are its own.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from services.aggregator.pairs import pair_id
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
from tests.support.kafka import producing
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(120)
PARKED_TTL_S = 4.0


@pytest.fixture(scope="module")
async def flow(kafka_bootstrap: str, pg_server_url: str, template_db: str) -> AsyncIterator[Flow]:
    async with isolated_pipeline(kafka_bootstrap, pg_server_url, template_db) as (url, prefix):
        group_id = f"aggregator-{prefix}"
        settings = settings_for(
            kafka_bootstrap, url, prefix, group_id, parked_vote_ttl_s=PARKED_TTL_S, stats_window_s=STATS_WINDOW_S
        )
        async with (
            running(settings),
            outputs(kafka_bootstrap, prefix) as out,
            producing(kafka_bootstrap, prefix) as producer,
        ):
            yield Flow(kafka_bootstrap, url, group_id, producer, out)


# Tests send events at T0 and a few seconds later: with hour-long windows a run that crossed the hour
# closed the window under test. Windows are aligned to the epoch; ten years leave no boundary near T0.
STATS_WINDOW_S = 10 * 365 * 24 * 3600


def app_id() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"


async def test_clear_thumbs_split_gives_one_pair(flow: Flow) -> None:
    app, prompt = app_id(), "Can diabetic patients do intense exercise?"
    await flow.send([interaction(app, prompt, "a", "Yes, with care."), interaction(app, prompt, "b", "No, never.")])
    await flow.send(thumbs(app, "a", 5, 0) + thumbs(app, "b", 0, 5))
    live = await flow.live_pairs(key_of(app, prompt), 1)
    (pair,) = live.values()
    assert (pair["chosen"]["interaction_id"], pair["rejected"]["interaction_id"]) == ("a", "b")
    assert pair["method"] == "votes" and pair["confidence"] >= 0.9
    assert pair["domain"] == "medical"
    assert pair["pair_id"] == pair_id(key_of(app, prompt), "a", "b")


async def test_three_two_split_gives_an_annotation_request_not_a_pair(flow: Flow) -> None:
    app, prompt = app_id(), "Which laptop should I buy? Mail me at ann@example.org"
    await flow.send([interaction(app, prompt, "a", "The light one."), interaction(app, prompt, "b", "The fast one.")])
    votes = thumbs(app, "a", 3, 2) + thumbs(app, "b", 2, 3)
    await flow.send(votes[::2] + votes[1::2])

    async def requested() -> dict[str, Any]:
        await flow.out.poll()
        requests = flow.out.requests_of(key_of(app, prompt))
        assert requests, "no annotation request yet"
        request = requests[-1]
        assert request["evidence"] == {"a_up": 3, "a_down": 2, "b_up": 2, "b_down": 3}, request["evidence"]
        return request

    request = await eventually(requested, timeout=20)
    assert request["kind"] == "compare" and set(request["candidates"]) == {"A", "B"}
    assert "ann@example.org" not in json.dumps(request)
    await flow.settled()
    await flow.out.poll()
    assert flow.out.live_pairs(key_of(app, prompt)) == {}


async def test_a_request_users_settle_later_is_withdrawn_with_a_tombstone(flow: Flow) -> None:
    app, prompt = app_id(), "Tea or coffee for a long night?"
    await flow.send([interaction(app, prompt, "a", "Tea."), interaction(app, prompt, "b", "Coffee.")])
    await flow.send(thumbs(app, "a", 3, 2) + thumbs(app, "b", 2, 3))
    request = await eventually(lambda: _polled_requests(flow, key_of(app, prompt)), timeout=20)
    task_key = request[-1]["task_id"].encode()

    await flow.send(thumbs(app, "a", 6, 0, at=later(5), tag="late") + thumbs(app, "b", 0, 6, at=later(5), tag="late"))

    async def withdrawn() -> bool:
        await flow.out.poll()
        latest = [r.value for r in flow.out.requests.records if r.key == task_key]
        assert latest[-1] is None, "the task's latest value is not a tombstone yet"
        return bool(flow.out.live_pairs(key_of(app, prompt)))

    assert await eventually(withdrawn, timeout=20)
    (pair,) = flow.out.live_pairs(key_of(app, prompt)).values()
    assert pair["chosen"]["interaction_id"] == "a"


async def _polled_requests(flow: Flow, prompt_key: str) -> list[dict[str, Any]]:
    await flow.out.poll()
    return flow.out.requests_of(prompt_key)


async def test_votes_before_their_interaction_are_applied_when_it_arrives(flow: Flow) -> None:
    app, prompt = app_id(), "How do I reset my router?"
    await flow.send(thumbs(app, "a", 0, 4) + thumbs(app, "b", 4, 0))

    async def parked() -> bool:
        conn = await asyncpg.connect(flow.database_url)
        try:
            count = await conn.fetchval("SELECT count(*) FROM agg_parked_votes WHERE app_id = $1", app)
        finally:
            await conn.close()
        assert count == 8, count
        return True

    await eventually(parked, timeout=PARKED_TTL_S)
    await flow.send([interaction(app, prompt, "a", "Unplug it."), interaction(app, prompt, "b", "Hold reset 10 s.")])
    (pair,) = (await flow.live_pairs(key_of(app, prompt), 1)).values()
    assert pair["chosen"]["interaction_id"] == "b"


async def test_a_flip_updates_the_same_pair(flow: Flow) -> None:
    app, prompt = app_id(), "Summarise the meeting."
    key = key_of(app, prompt)
    await flow.send([interaction(app, prompt, "a", "Short summary."), interaction(app, prompt, "b", "Long summary.")])
    await flow.send(thumbs(app, "a", 4, 0) + thumbs(app, "b", 0, 4))
    (first,) = (await flow.live_pairs(key, 1)).values()
    assert first["chosen"]["interaction_id"] == "a"
    # Every voter changes their mind: the later vote wins, under the same pair_id.
    flipped = [
        vote(app, iid, f"{iid}-{kind}{i}", later(60), kind="thumb", value=value)
        for iid, kind, value in (("a", "up", -1), ("b", "down", 1))
        for i in range(4)
    ]
    await flow.send(flipped)

    async def flipped_pair() -> dict[str, Any]:
        live = list((await flow.current_pairs(key)).values())
        assert len(live) == 1 and live[0]["chosen"]["interaction_id"] == "b", live
        return live[0]

    second = await eventually(flipped_pair, timeout=20)
    assert second["pair_id"] == first["pair_id"]


async def test_a_tie_on_a_task_withdrawn_since_still_counts_and_retracts_the_pair(flow: Flow) -> None:
    """An expert who judged a task before users settled it was asked exactly that: the verdict counts."""
    app, prompt = app_id(), "Tea or coffee before an exam?"
    key = key_of(app, prompt)
    await flow.send([interaction(app, prompt, "a", "Tea."), interaction(app, prompt, "b", "Coffee.")])
    await flow.send(thumbs(app, "a", 3, 2) + thumbs(app, "b", 2, 3))
    task = await flow.task_of(key)
    await flow.send(thumbs(app, "a", 6, 0, at=later(5), tag="late") + thumbs(app, "b", 0, 6, at=later(5), tag="late"))
    (pair,) = (await flow.live_pairs(key, 1)).values()
    await flow.send([flow.verdict_on(task, "tie", later(120))])
    await flow.live_pairs(key, 0)
    records = flow.out.pair_records(key)
    assert records[-1].key.decode() == pair["pair_id"] and records[-1].value is None


async def test_explicit_comparison_and_expert_choice(flow: Flow) -> None:
    app, prompt = app_id(), "Write a haiku about autumn."
    key = key_of(app, prompt)
    await flow.send([interaction(app, prompt, "a", "Leaves fall."), interaction(app, prompt, "b", "Red leaves drift.")])
    await flow.send([vote(app, "b", "u1", kind="comparison", preferred_interaction_id="b", other_interaction_id="a")])
    (pair,) = (await flow.live_pairs(key, 1)).values()
    assert (pair["method"], pair["chosen"]["interaction_id"]) == ("comparison", "b")
    # A second user disagrees: the pair is ambiguous, and an expert is asked.
    await flow.send([vote(app, "a", "u2", kind="comparison", preferred_interaction_id="a", other_interaction_id="b")])
    task = await flow.task_of(key)
    assert task["reason"] == "split_comparisons"
    await flow.send([flow.verdict_on(task, "A", later(30))])

    async def expert_pair() -> bool:
        live = [(p["method"], p["chosen"]["interaction_id"]) for p in (await flow.current_pairs(key)).values()]
        assert live == [("expert", task["candidates"]["A"]["interaction_id"])], live
        return True

    await eventually(expert_pair, timeout=20)


async def test_an_edit_gives_an_edit_pair_and_an_sft_example(flow: Flow) -> None:
    app, prompt = app_id(), "Translate 'good morning' to French."
    await flow.send([interaction(app, prompt, "a", "Bon matin.")])
    await flow.send([vote(app, "a", "u1", kind="edit", edited_content="Bonjour.")])
    (pair,) = (await flow.live_pairs(key_of(app, prompt), 1)).values()
    assert (pair["method"], pair["chosen"]["content"], pair["rejected"]["content"]) == (
        "edit",
        "Bonjour.",
        "Bon matin.",
    )
    conn = await asyncpg.connect(flow.database_url)
    try:
        stored = await conn.fetchval("SELECT content FROM agg_sft_examples WHERE prompt_key = $1", key_of(app, prompt))
    finally:
        await conn.close()
    assert stored == "Bonjour."


async def test_every_message_delivered_twice_gives_the_same_output_as_once(flow: Flow) -> None:
    app, prompt = app_id(), "Is this mushroom edible?"
    key = key_of(app, prompt)
    sent = [interaction(app, prompt, "a", "Ask an expert."), interaction(app, prompt, "b", "Sure, eat it.")]
    sent += thumbs(app, "a", 4, 1) + thumbs(app, "b", 0, 5)
    await flow.send(sent)
    await flow.live_pairs(key, 1)
    await flow.settled()
    await flow.out.poll()
    before = [(r.key, r.value) for r in flow.out.pair_records(key)]
    await flow.send(sent)
    await flow.settled()
    await flow.out.poll()
    assert [(r.key, r.value) for r in flow.out.pair_records(key)] == before


async def test_a_bad_message_is_dead_lettered_and_the_rest_goes_on(flow: Flow) -> None:
    app, prompt = app_id(), "What is 2 + 2?"
    bad = vote(app, "a", "u1", kind="thumb", value=7)
    await flow.send([bad, interaction(app, prompt, "a", "4"), interaction(app, prompt, "b", "5")])
    await flow.send(thumbs(app, "a", 3, 0) + thumbs(app, "b", 0, 3))
    await flow.live_pairs(key_of(app, prompt), 1)

    async def dead_lettered() -> dict[str, Any]:
        await flow.out.poll()
        letters = [json.loads(r.value) for r in flow.out.dead_letters.records]
        matching = [d for d in letters if d["raw_value"] == bad.value.decode()]
        assert len(matching) == 1, matching
        return matching[0]

    letter = await eventually(dead_lettered, timeout=10)
    assert letter["error_code"] == "contract_violation" and letter["service"] == "aggregator"


async def test_a_vote_whose_interaction_never_comes_is_dead_lettered_after_the_ttl(flow: Flow) -> None:
    orphan = vote(app_id(), "ghost", "u1", kind="thumb", value=1)
    await flow.send([orphan])

    async def expired() -> dict[str, Any]:
        await flow.out.poll()
        letters = [json.loads(r.value) for r in flow.out.dead_letters.records]
        wanted = json.loads(orphan.value)["event_id"]
        matching = [d for d in letters if d["raw_value"] and json.loads(d["raw_value"]).get("event_id") == wanted]
        assert len(matching) == 1, matching
        return matching[0]

    letter = await eventually(expired, timeout=PARKED_TTL_S + 10)
    assert letter["error_code"] == "parked_vote_expired" and letter["source_topic"].endswith("votes")


async def test_feedback_stats_count_the_window(flow: Flow) -> None:
    app, prompt = app_id(), "Name a prime number."
    await flow.send([interaction(app, prompt, "a", "7"), interaction(app, prompt, "b", "9")])
    await flow.send(thumbs(app, "a", 4, 0) + thumbs(app, "b", 0, 4))

    async def counted() -> dict[str, Any]:
        await flow.out.poll()
        values = [json.loads(r.value) for r in flow.out.stats.records]
        mine = [v for v in values if v["app_id"] == app]
        assert mine, "no stats yet"
        latest = mine[-1]
        assert (latest["interactions"], latest["thumbs_up"], latest["thumbs_down"]) == (2, 4, 4), latest
        assert latest["pairs_emitted"] == 1, latest
        return latest

    latest = await eventually(counted, timeout=20)
    assert latest["model_version"] == "v1" and latest["thumbs_up_rate"] == 0.5
    assert latest["is_final"] is False
