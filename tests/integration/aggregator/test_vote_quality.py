"""Vote quality in the aggregator against real Tansu and PostgreSQL (ARCHITECTURE.md "Vote quality").

Quarantined votes are counted in the stats and move no pair; a ballot stuffer shows as raw 50 vs
effective 1; an always-👍 bot is flagged, its votes leave the pair they had decided (re-decided
without them), and an admin's clear brings them back; the admin routes need the token.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from tests.integration.aggregator.aggregator_flow import (
    Flow,
    app_for,
    interaction,
    key_of,
    later,
    outputs,
    settings_for,
    thumbs,
    vote,
)
from tests.support.apps import running_app
from tests.support.isolation import isolated_pipeline
from tests.support.kafka import producing
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)
ADMIN = "admin-token-for-vote-quality-tests"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
# No window boundary near the test's event times (see test_aggregator_scenarios.py).
STATS_WINDOW_S = 10 * 365 * 24 * 3600


@dataclass
class QualityFlow:
    flow: Flow
    http: httpx.AsyncClient


@pytest.fixture(scope="module")
async def quality(kafka_bootstrap: str, pg_server_url: str, template_db: str) -> AsyncIterator[QualityFlow]:
    async with isolated_pipeline(kafka_bootstrap, pg_server_url, template_db) as (url, prefix):
        group_id = f"aggregator-{prefix}"
        settings = settings_for(
            kafka_bootstrap,
            url,
            prefix,
            group_id,
            stats_window_s=STATS_WINDOW_S,
            admin_token=ADMIN,
            # Five thumbs make a pair, and no compare task below ten: one vote more or less decides.
            min_votes=5,
            min_votes_for_task=10,
            voter_redecide_interval_s=0.2,
            voter_gauge_interval_s=0.2,
        )
        async with (
            running_app(app_for(settings)) as http,
            outputs(kafka_bootstrap, prefix) as out,
            producing(kafka_bootstrap, prefix) as producer,
        ):
            yield QualityFlow(Flow(kafka_bootstrap, url, group_id, producer, out), http)


def app_id() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"


async def window_of(flow: Flow, app: str, **expected: int) -> dict[str, Any]:
    """The latest feedback-stats message of the app's one window, once it shows `expected`."""

    async def check() -> dict[str, Any]:
        await flow.out.poll()
        values = [json.loads(r.value) for r in flow.out.stats.records if r.value is not None]
        mine = [v for v in values if v["app_id"] == app]
        assert mine, "no stats yet"
        latest = mine[-1]
        assert {k: latest[k] for k in expected} == expected, latest
        return latest

    return await eventually(check, timeout=30)


async def test_quarantined_votes_move_no_pair_and_are_counted_in_the_stats(quality: QualityFlow) -> None:
    flow, app, prompt = quality.flow, app_id(), "Is it safe to swim after eating?"
    await flow.send([interaction(app, prompt, "a", "Yes."), interaction(app, prompt, "b", "No, wait 3 hours.")])
    marked = [
        vote(app, r_id, f"heavy-{i}", kind="thumb", value=value, quarantine_reason="voter_hourly_budget")
        for i, (r_id, value) in enumerate([("a", 1)] * 5 + [("b", -1)] * 5)
    ]
    await flow.send(marked)
    window = await window_of(flow, app, thumbs_up=5, thumbs_down=5, quarantined_votes=10)
    assert (window["effective_thumbs_up"], window["effective_thumbs_down"]) == (0, 0)
    await flow.settled()
    assert await flow.current_pairs(key_of(app, prompt)) == {}
    metrics = (await quality.http.get("/metrics")).text
    assert 'aggregator_inputs_total{kind="votes_quarantined"}' in metrics
    # The same votes unmarked do move the pair.
    await flow.send(thumbs(app, "a", 5, 0) + thumbs(app, "b", 0, 5))
    await flow.live_pairs(key_of(app, prompt), 1)
    await window_of(flow, app, thumbs_up=10, effective_thumbs_up=5, effective_thumbs_down=5, quarantined_votes=10)


async def test_a_ballot_stuffer_counts_once_in_pairs_and_stats(quality: QualityFlow) -> None:
    flow, app, prompt = quality.flow, app_id(), "Best pizza topping?"
    await flow.send([interaction(app, prompt, "a", "Basil."), interaction(app, prompt, "b", "Pineapple.")])
    stuffed = [vote(app, "a", "stuffer", later(i * 0.01), kind="thumb", value=1) for i in range(50)]
    await flow.send(stuffed + thumbs(app, "b", 0, 3))
    window = await window_of(flow, app, thumbs_up=50, effective_thumbs_up=1, thumbs_down=3, effective_thumbs_down=3)
    assert window["thumbs_up_rate"] > 0.9  # the raw rate, the gap is visible beside it
    await flow.settled()
    # One 👍 and three 👎 are four votes: under min_votes (5), so the stuffer made no pair.
    assert await flow.current_pairs(key_of(app, prompt)) == {}
    stats = (await quality.http.get("/v1/stats", params={"app_id": app})).json()
    (row,) = stats if isinstance(stats, list) else stats["windows"]
    assert (row["thumbs_up"], row["effective_thumbs_up"]) == (50, 1)


async def export_rows(http: httpx.AsyncClient, kind: str, app: str) -> list[dict[str, Any]]:
    response = await http.get(f"/v1/exports/{kind}.jsonl", params={"app_id": app, "test_size": "0"})
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line]


async def board_approvals(flow: Flow, app: str) -> tuple[int, int]:
    """The leaderboard's approval counts (up, down) of the app, summed over versions and domains."""
    conn = await asyncpg.connect(flow.database_url)
    try:
        row = await conn.fetchrow(
            "SELECT coalesce(sum(up), 0) AS up, coalesce(sum(down), 0) AS down FROM agg_approval_counts"
            " WHERE app_id = $1",
            app,
        )
    finally:
        await conn.close()
    return row["up"], row["down"]


async def voters(http: httpx.AsyncClient, app: str, **params: Any) -> list[dict[str, Any]]:
    response = await http.get("/v1/admin/voters", params={"app_id": app, **params}, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_flagged_bot_leaves_the_pair_it_decided_and_a_clear_brings_it_back(quality: QualityFlow) -> None:
    flow, http, app = quality.flow, quality.http, app_id()
    decided = "Which is faster, a plane or a train?"
    await flow.send([interaction(app, decided, "x1", "A plane."), interaction(app, decided, "x2", "A train.")])
    # The bot's 👍 is the fifth vote: with it, a pair; without it, four votes decide nothing.
    await flow.send(thumbs(app, "x1", 2, 0, tag="d-") + thumbs(app, "x2", 0, 2, tag="d-"))
    await flow.send([vote(app, "x1", "bot", kind="thumb", value=1)])
    (pair,) = (await flow.live_pairs(key_of(app, decided), 1)).values()
    assert pair["evidence"]["chosen_up"] == 3
    # The bot's edit of another answer: an edit pair and an SFT example.
    edited = "Spell colour or color?"
    await flow.send([interaction(app, edited, "e1", "Colur.")])
    await flow.send([vote(app, "e1", "bot", kind="edit", edited_content="Colour (UK) or color (US).")])
    await flow.live_pairs(key_of(app, edited), 1)
    assert len(await export_rows(http, "sft", app)) == 1
    # Twelve answers everyone else finds bad, each liked by the bot: its 👍 disagree with a settled 👎.
    traps = [(f"trap {i}: what is 2 + 2?", f"t{i}") for i in range(12)]
    await flow.send([interaction(app, prompt, iid, "Five.") for prompt, iid in traps])
    await flow.send([r for _, iid in traps for r in thumbs(app, iid, 0, 4, tag="h-")])
    await flow.send([vote(app, iid, "bot", later(1 + n), kind="thumb", value=1) for n, (_, iid) in enumerate(traps)])

    async def flagged() -> dict[str, Any]:
        found = await voters(http, app, flagged="true")
        assert len(found) == 1, found
        (bot,) = found
        assert bot["voter"] == "bot" and bot["redecide_pending"] is False
        return bot

    bot = await eventually(flagged, timeout=30)
    assert bot["votes"] >= 10 and bot["p_value"] < 0.002 and bot["disagreements"] >= 10
    await flow.live_pairs(key_of(app, decided), 0)  # re-decided without the bot: retracted
    await flow.live_pairs(key_of(app, edited), 0)
    assert await export_rows(http, "sft", app) == []
    approvals = [r for r in await export_rows(http, "kto", app) if r["method"] == "approval"]
    assert sorted(r["interaction_id"] for r in approvals) == sorted(iid for _, iid in traps)
    assert {(r["votes_up"], r["votes_down"], r["label"]) for r in approvals} == {(0, 4, False)}
    assert await board_approvals(flow, app) == (2, 2 + 12 * 4)  # the leaderboard's counts follow
    honest = await voters(http, app, flagged="false")
    assert honest and not any(v["flagged"] for v in honest)
    await window_of(flow, app, thumbs_up=3 + 12, effective_thumbs_up=2)
    assert "aggregator_flagged_voters" in (await http.get("/metrics")).text

    cleared = await http.post("/v1/admin/voters/bot/clear", params={"app_id": app}, headers=AUTH)
    assert cleared.status_code == 200 and cleared.json()["flagged"] is False
    (pair,) = (await flow.live_pairs(key_of(app, decided), 1)).values()
    assert pair["evidence"]["chosen_up"] == 3
    await flow.live_pairs(key_of(app, edited), 1)
    assert len(await export_rows(http, "sft", app)) == 1
    assert await board_approvals(flow, app) == (3 + 12, 2 + 12 * 4)
    await window_of(flow, app, thumbs_up=3 + 12, effective_thumbs_up=3 + 12)


async def test_the_voter_routes_need_the_admin_token(quality: QualityFlow) -> None:
    http = quality.http
    assert (await http.get("/v1/admin/voters")).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await http.get("/v1/admin/voters", headers=wrong)).status_code == 401
    assert (await http.post("/v1/admin/voters/bot/clear", params={"app_id": "x"})).status_code == 401
    missing = await http.post("/v1/admin/voters/nobody/clear", params={"app_id": app_id()}, headers=AUTH)
    assert missing.status_code == 404
