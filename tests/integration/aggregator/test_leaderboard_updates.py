"""The live leaderboard follows the pairs (real broker and database): a flip moves a battle, a retraction removes it,
the alarm clears when the evidence no longer says so; bad input; one refit per board; older state backfilled."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from services.aggregator.leaderboard_counts import BoardKey
from services.aggregator.leaderboard_store import BOARD_LOCK_CLASS, board_lock_key
from tests.integration.aggregator.leaderboard_flow import (
    Board,
    answer,
    approval_recount,
    battle_recount,
    live_battles,
    running_board,
    settled,
    standings,
    stored_approvals,
    stored_battles,
    stored_pair_battles,
    thumbs_of,
)
from tests.support.isolation import isolated_pipeline
from tests.support.kafka import committed_all
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)
NOW = datetime.now(UTC).replace(microsecond=0)
GROUPS = 6


@pytest.fixture(scope="module")
async def board(kafka_bootstrap: str, pg_server_url: str, template_db: str) -> AsyncIterator[Board]:
    async with isolated_pipeline(kafka_bootstrap, pg_server_url, template_db) as (url, prefix):
        async with running_board(kafka_bootstrap, url, prefix) as running:
            yield running


async def consumed(board: Board) -> None:
    bootstrap = board.settings.kafka_bootstrap_servers
    await eventually(lambda: committed_all(bootstrap, board.settings.group_id, board.producer), timeout=30)


def app_id() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"


def voters(tag: str, n: int) -> list[str]:
    return [f"{tag}-{i}" for i in range(n)]


async def test_an_unknown_app_is_a_404_naming_it(board: Board) -> None:
    response = await board.leaderboard("no-such-app")
    assert response.status_code == 404 and "no-such-app" in response.json()["detail"]
    for bad in ({"app_id": "a\x00b"}, {"app_id": ""}, {"app_id": "app", "domain": "x\ny"}, {}):
        assert (await board.http.get("/v1/leaderboard", params=bad)).status_code == 422, bad


async def test_an_app_without_battles_or_votes_and_a_domain_with_nothing_list_nothing_and_say_why(board: Board) -> None:
    app = app_id()
    await board.send([answer(app, "What is TCP?", "q1", "v1", NOW), answer(app, "What is TCP?", "q2", "v2", NOW)])
    await consumed(board)
    body = (await board.leaderboard(app)).json()
    assert body["app_id"] == app and body["models"] == [] and body["battles"] == 0
    assert body["reason"] == "no battles or votes in this app yet"
    empty = await board.leaderboard(app, "astrology")
    assert empty.status_code == 200 and empty.json()["models"] == [] and empty.json()["domain"] == "astrology"
    assert "domain 'astrology'" in empty.json()["reason"]
    await board.send(thumbs_of(app, "q1", {"u1": 1}, NOW))  # votes, still no battle: listed, unrated, and why
    body = await eventually(lambda: settled(board, app), timeout=20)
    (row,) = body["models"]
    assert (row["model_version"], row["rank"], row["votes"]) == ("v1", None, 1)
    assert row["unrated_reason"] == "too_few_battles"
    assert body["reason"].startswith("no battles in this app yet")


async def test_a_flip_moves_a_battle_a_retraction_removes_it_and_the_alarm_clears(board: Board) -> None:
    app = app_id()
    old_at, new_at = NOW - timedelta(seconds=120), NOW - timedelta(seconds=60)
    records, up, down = [], voters("up", 5), voters("down", 5)
    for g in range(GROUPS):
        prompt = f"How do I reset my password, case {g}?"
        records += [answer(app, prompt, f"old{g}", "v1", old_at), answer(app, prompt, f"new{g}", "v2", new_at)]
        records += thumbs_of(app, f"old{g}", dict.fromkeys(up, 1), NOW)
        records += thumbs_of(app, f"new{g}", dict.fromkeys(down, -1), NOW)
    await board.send(records)
    first = await eventually(lambda: settled(board, app), timeout=30)
    rows = standings(first)
    assert first["battles"] == GROUPS and (rows["v1"]["wins"], rows["v2"]["losses"]) == (GROUPS, GROUPS)

    async def alarm(status: str) -> dict:
        events = [a for a in await board.alert_events(app) if a["metric"] == "approval" and a["domain"] is None]
        assert events and events[-1]["status"] == status, events
        return events[-1]

    raised = await eventually(lambda: alarm("raised"), timeout=20)
    assert (raised["previous_version"], raised["new_version"]) == ("v1", "v2")
    assert raised["previous"]["evidence"] == raised["new"]["evidence"] == 5 * GROUPS
    await eventually(lambda: _gauge_is(board, app, 1.0), timeout=10)

    # A flip: the same voters change their minds on group 0, so v2 wins that battle now.
    later = NOW + timedelta(seconds=1)
    await board.send(
        thumbs_of(app, "old0", dict.fromkeys(up, -1), later) + thumbs_of(app, "new0", dict.fromkeys(down, 1), later)
    )
    flipped = await eventually(lambda: _wins(board, app, {"v1": GROUPS - 1, "v2": 1}, battles=GROUPS), timeout=30)

    async def on_topic() -> bool:
        latest = await board.published(app)  # None until the reader has caught up with the topic
        return latest is not None and latest["event_id"] == flipped["event_id"]

    await eventually(on_topic, timeout=10)

    # A retraction: group 1 becomes a 3-2 split, its pair is withdrawn and its battle with it.
    await board.send(
        thumbs_of(app, "old1", dict.fromkeys(up[:2], -1), later)
        + thumbs_of(app, "new1", dict.fromkeys(down[:2], 1), later)
    )
    await eventually(lambda: _wins(board, app, {"v1": GROUPS - 2, "v2": 1}, battles=GROUPS - 1), timeout=30)

    # The new version's voters like it after all: approval no longer says it is worse, the alarm clears.
    liked = [r for g in range(2, GROUPS) for r in thumbs_of(app, f"new{g}", dict.fromkeys(down, 1), later)]
    await board.send(liked)
    cleared = await eventually(lambda: alarm("cleared"), timeout=30)
    assert cleared["new"]["estimate"] > cleared["previous"]["estimate"]
    await eventually(lambda: _gauge_is(board, app, 0.0), timeout=10)

    await consumed(board)
    await eventually(lambda: settled(board, app), timeout=20)
    assert await stored_battles(board) == await battle_recount(board)
    assert await stored_approvals(board) == await approval_recount(board)
    # Each pair counts for the battle it is now, and the retracted one for none (it is no live pair).
    assert await stored_pair_battles(board) == await live_battles(board)


async def _gauge_is(board: Board, app: str, value: float) -> bool:
    return await board.gauge(app, "chat", "v1->v2", "approval") == value


async def _wins(board: Board, app: str, wins: dict[str, int], *, battles: int) -> dict:
    body = await settled(board, app)
    rows = standings(body)
    assert body["battles"] == battles and {v: rows[v]["wins"] for v in wins} == wins, body
    return body


async def test_a_board_another_instance_is_refitting_is_skipped(board: Board) -> None:
    app = app_id()
    await board.send([answer(app, "Hello?", "h1", "v1", NOW), *thumbs_of(app, "h1", {"u1": 1}, NOW)])
    await eventually(lambda: settled(board, app), timeout=20)
    key = BoardKey(app)
    conn = await board.connect()
    try:
        lock = (BOARD_LOCK_CLASS, board_lock_key(key))
        assert await conn.fetchval("SELECT pg_try_advisory_lock($1::integer, $2::integer)", *lock)
        await conn.execute("UPDATE agg_boards SET change_seq = change_seq + 1 WHERE app_id = $1", app)
        assert not await board.context.leaderboards.refit(key)  # "another instance" holds the board
        await conn.fetchval("SELECT pg_advisory_unlock($1::integer, $2::integer)", *lock)
        await eventually(lambda: settled(board, app), timeout=20)  # refitted once the lock is free
    finally:
        await conn.close()


async def test_the_backfill_counts_approval_of_groups_taken_in_before_the_leaderboard(board: Board) -> None:
    app = app_id()
    answers = [answer(app, "Old question?", "o1", "v1", NOW), answer(app, "Old question?", "o2", "v2", NOW)]
    await board.send(answers + thumbs_of(app, "o1", {"a": 1, "b": 1}, NOW) + thumbs_of(app, "o2", {"a": -1}, NOW))
    await consumed(board)
    conn = await board.connect()
    try:  # as if the groups had been taken in before migration 0002: nothing of them counted
        await conn.execute("DELETE FROM agg_approval_counts WHERE app_id = $1", app)
        await conn.execute("DELETE FROM agg_counted_groups WHERE app_id = $1", app)
    finally:
        await conn.close()
    assert await stored_approvals(board) != await approval_recount(board)
    assert await board.context.leaderboards.backfill() >= 1
    assert await stored_approvals(board) == await approval_recount(board)
    assert await board.context.leaderboards.backfill() == 0


async def test_the_docs_describe_the_route_and_both_topics(board: Board) -> None:
    openapi = (await board.http.get("/openapi.json")).json()
    assert "/v1/leaderboard" in openapi["paths"]
    asyncapi = (await board.http.get("/asyncapi.json")).json()
    prefix = board.settings.topic_prefix
    names = {channel["address"].removeprefix(prefix) for channel in asyncapi["channels"].values()}
    assert {"model-leaderboard", "model-alerts"} <= names, names
    schemas = asyncapi["components"]["schemas"]
    assert {"ModelLeaderboard", "ModelAlert"} <= set(schemas), sorted(schemas)
