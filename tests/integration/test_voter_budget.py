"""The per-voter hourly budget end to end: feedback marks votes past it, the aggregator moves nothing with them.

Real broker and PostgreSQL: feedback's HTTP edge (FEEDBACK_MAX_VOTES_PER_VOTER_PER_HOUR = 2) and one
aggregator. Votes past the budget are accepted (202), published to `votes` with quarantine_reason,
counted in the feedback metric and in feedback-stats (raw and quarantined), and move no pair.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from services.aggregator.pairs import pair_id
from services.feedback.app import create_app as create_feedback
from services.feedback.settings import FeedbackSettings
from shared import topics
from tests.integration.aggregator.aggregator_flow import T0, app_for, interaction, key_of, settings_for
from tests.support.apps import running_app
from tests.support.builders import vote_body
from tests.support.isolation import isolated_pipeline
from tests.support.kafka import producing, reading
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)
BUDGET = 2
STATS_WINDOW_S = 10 * 365 * 24 * 3600


@dataclass
class Stack:
    bootstrap: str
    prefix: str
    feedback: httpx.AsyncClient
    aggregator: httpx.AsyncClient
    producer: Any


@pytest.fixture(scope="module")
async def stack(kafka_bootstrap: str, pg_server_url: str, template_db: str) -> AsyncIterator[Stack]:
    async with isolated_pipeline(kafka_bootstrap, pg_server_url, template_db) as (url, prefix):
        feedback_settings = FeedbackSettings(
            kafka_bootstrap_servers=kafka_bootstrap,
            database_url=url,
            topic_prefix=prefix,
            group_id=f"feedback-{prefix}",
            log_format="console",
            max_votes_per_voter_per_hour=BUDGET,
        )
        aggregator_settings = settings_for(
            kafka_bootstrap, url, prefix, f"aggregator-{prefix}", stats_window_s=STATS_WINDOW_S, min_votes=5,
            min_votes_for_task=10,
        )  # fmt: skip
        async with (
            running_app(create_feedback(feedback_settings)) as feedback,
            running_app(app_for(aggregator_settings)) as aggregator,
            producing(kafka_bootstrap, prefix) as producer,
        ):
            yield Stack(kafka_bootstrap, prefix, feedback, aggregator, producer)


def thumb(app: str, interaction_id: str, user: str, value: int) -> dict[str, Any]:
    return vote_body(app_id=app, interaction_id=interaction_id, user_ref=user, value=value, occurred_at=T0.isoformat())


async def test_votes_past_the_budget_are_accepted_marked_counted_and_move_no_pair(stack: Stack) -> None:
    app, prompt = f"app-{uuid.uuid4().hex[:8]}", "Should I back up my laptop?"
    await stack.producer.send([interaction(app, prompt, "a", "Yes, daily."), interaction(app, prompt, "b", "Never.")])
    honest = [thumb(app, "a", "u1", 1), thumb(app, "a", "u2", 1), thumb(app, "b", "u3", -1), thumb(app, "b", "u4", -1)]
    # The heavy voter's first two votes are within the budget (on another answer), the third is past it.
    heavy = [thumb(app, "elsewhere-1", "heavy", 1), thumb(app, "elsewhere-2", "heavy", 1), thumb(app, "a", "heavy", 1)]
    for body in [*honest, *heavy]:
        response = await stack.feedback.post("/v1/votes", json=body)
        assert response.status_code == 202, response.text
    refused = await stack.feedback.post("/v1/votes", json={**thumb(app, "a", "u5", 1), "quarantine_reason": "x"})
    assert refused.status_code == 422, "apps cannot set quarantine_reason"

    async with reading(stack.bootstrap, stack.prefix, topics.VOTES) as votes:

        async def published() -> dict[str, dict[str, Any]]:
            await votes.poll()
            seen = {v["event_id"]: v for r in votes.records if r.value and (v := json.loads(r.value))["app_id"] == app}
            assert len(seen) == 7, len(seen)
            return seen

        seen = await eventually(published, timeout=30)
    assert [seen[b["event_id"]].get("quarantine_reason") for b in heavy] == [None, None, "voter_hourly_budget"]
    assert all(seen[b["event_id"]].get("quarantine_reason") is None for b in honest)
    metrics = (await stack.feedback.get("/metrics")).text
    assert 'votes_quarantined_total{reason="voter_hourly_budget"} 1.0' in metrics

    async def window() -> dict[str, Any]:
        rows = (await stack.aggregator.get("/v1/stats", params={"app_id": app})).json()
        # Every vote counted: a's and b's votes are on two partitions, and one may be applied well after the other.
        assert rows and rows[0]["quarantined_votes"] == 1, rows
        assert (rows[0]["thumbs_up"], rows[0]["thumbs_down"]) == (3, 2), rows
        return rows[0]

    row = await eventually(window, timeout=30)
    assert (row["effective_thumbs_up"], row["effective_thumbs_down"]) == (2, 2)
    # Four counted votes are under min_votes (5): the quarantined fifth made no pair; a counted fifth does.
    assert (await stack.aggregator.get(f"/v1/pairs/{_pair_id(app, prompt)}")).status_code == 404
    await stack.feedback.post("/v1/votes", json=thumb(app, "a", "u6", 1))

    async def pair() -> dict[str, Any]:
        response = await stack.aggregator.get(f"/v1/pairs/{_pair_id(app, prompt)}")
        assert response.status_code == 200, response.text
        return response.json()

    assert (await eventually(pair, timeout=30))["pair"]["evidence"]["chosen_up"] == 3


def _pair_id(app: str, prompt: str) -> str:
    return pair_id(key_of(app, prompt), "a", "b")
