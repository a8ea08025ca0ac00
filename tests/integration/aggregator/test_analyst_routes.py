"""The analyst UI's routes and dead-letter counter against real Tansu and PostgreSQL.

One aggregator runs for the module (each test its own app_id): the admin token guards every data route,
the flow and queue count what the aggregator published and what became of it, approval follows the
thumbs, and every service's dead letters are counted once per event_id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from services.aggregator.app import create_app
from services.aggregator.dead_letter_counter import dead_letter_group
from services.aggregator.settings import AggregatorSettings
from shared import topics
from shared.events import DeadLetter
from shared.web_pages import CONTENT_SECURITY_POLICY
from tests.integration.aggregator.aggregator_flow import (
    Outputs,
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
from tests.support.kafka import Producer, Record, committed_all, producing
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)
ADMIN = "analyst-admin-token"
DATA_ROUTES = ("apps", "leaderboard?app_id=x", "approval?app_id=x", "flow", "queue", "dead-letters", "alerts")


@dataclass
class Analytics:
    http: httpx.AsyncClient
    settings: AggregatorSettings
    producer: Producer
    letters: Producer
    out: Outputs

    async def api(self, path: str, **params: Any) -> Any:
        response = await self.http.get(f"/ui/api/{path}", params=params, headers={"Authorization": f"Bearer {ADMIN}"})
        assert response.status_code == 200, response.text
        return response.json()

    async def consumed(self) -> None:
        """Every record sent so far taken in: by the aggregator's group, and by the dead-letter counter's."""

        async def done() -> bool:
            bootstrap = self.settings.kafka_bootstrap_servers
            return await committed_all(bootstrap, self.settings.group_id, self.producer) and await committed_all(
                bootstrap, dead_letter_group(self.settings), self.letters
            )

        await eventually(done, timeout=60, interval=0.3)


@pytest.fixture(scope="module")
async def analytics(kafka_bootstrap: str, pg_server_url: str, template_db: str) -> AsyncIterator[Analytics]:
    async with isolated_pipeline(kafka_bootstrap, pg_server_url, template_db) as (url, prefix):
        settings = settings_for(kafka_bootstrap, url, prefix, f"aggregator-{prefix}", admin_token=ADMIN)
        async with (
            running_app(create_app(settings)) as http,
            producing(kafka_bootstrap, prefix) as producer,
            producing(kafka_bootstrap, prefix) as letters,
            outputs(kafka_bootstrap, prefix) as out,
        ):
            yield Analytics(http, settings, producer, letters, out)


def app_id() -> str:
    return f"analyst-{uuid.uuid4().hex[:8]}"


async def test_the_page_is_public_and_every_data_route_needs_the_admin_token(analytics: Analytics) -> None:
    page = await analytics.http.get("/ui/")
    assert page.status_code == 200 and page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "Admin token" in page.text and '<script type="module" src="/ui/static/analyst.js' in page.text
    redirect = await analytics.http.get("/ui")
    assert (redirect.status_code, redirect.headers["location"]) == (308, "/ui/")
    asset = await analytics.http.get("/ui/static/analyst.js")
    assert asset.status_code == 200 and asset.headers["content-type"].startswith("text/javascript")
    again = await analytics.http.get("/ui/static/analyst.js", headers={"If-None-Match": asset.headers["etag"]})
    assert again.status_code == 304
    for route in DATA_ROUTES:
        for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": f"Basic {ADMIN}"}):
            refused = await analytics.http.get(f"/ui/api/{route}", headers=headers)
            assert refused.status_code == 401, (route, headers, refused.text)
            assert ADMIN not in refused.text
    unknown = await analytics.http.get(
        "/ui/api/leaderboard?app_id=nobody", headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert unknown.status_code == 404 == (await analytics.http.get("/v1/leaderboard?app_id=nobody")).status_code
    bad_range = await analytics.http.get("/ui/api/flow?range=2y", headers={"Authorization": f"Bearer {ADMIN}"})
    assert bad_range.status_code == 422


async def test_without_an_admin_token_set_the_data_routes_are_closed() -> None:
    settings = AggregatorSettings(kafka_bootstrap_servers="127.0.0.1:9", database_url="postgresql://x@127.0.0.1:9/x")
    app = create_app(settings)  # not started: the token is checked before anything is read
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://aggregator") as http:
        for route in DATA_ROUTES:
            refused = await http.get(f"/ui/api/{route}", headers={"Authorization": "Bearer anything"})
            assert refused.status_code == 403, (route, refused.text)
            assert "ADMIN_TOKEN is not set" in refused.text
        assert (await http.get("/ui/")).status_code == 200


async def _request_of(analytics: Analytics, app: str, prompt: str) -> dict[str, Any]:
    async def published() -> dict[str, Any]:
        await analytics.out.poll()
        found = analytics.out.requests_of(key_of(app, prompt))
        assert len(found) == 1, found
        return found[0]

    return await eventually(published, timeout=30)


async def test_flow_queue_and_approval_count_what_the_aggregator_published_and_what_became_of_it(
    analytics: Analytics,
) -> None:
    app = app_id()
    prompts = {
        "pair": "Name the capital of France.",
        "medical": "Is intense exercise fine with diabetes?",  # the domain rules: medical
        "rewrite": "Tell me a joke.",
        "answered": "Which sorting algorithm is stable?",
        "settled": "Is a tomato a fruit?",
    }
    sent = [
        interaction(app, prompts["pair"], f"{app}-a", "Paris.", domain="legal"),  # its own domain wins
        interaction(app, prompts["pair"], f"{app}-b", "Lyon."),
        interaction(app, prompts["medical"], f"{app}-c", "Yes, always."),
        interaction(app, prompts["medical"], f"{app}-d", "Ask your doctor."),
        interaction(app, prompts["rewrite"], f"{app}-e", "No."),
        interaction(app, prompts["answered"], f"{app}-f", "Merge sort."),
        interaction(app, prompts["answered"], f"{app}-g", "Quicksort."),
        interaction(app, prompts["settled"], f"{app}-h", "Yes, botanically."),
        interaction(app, prompts["settled"], f"{app}-i", "No, a vegetable."),
    ]
    await analytics.producer.send(sent)
    votes = thumbs(app, f"{app}-a", 4, 0) + thumbs(app, f"{app}-b", 0, 4)  # a pair
    for x in "cdfghi":  # split votes: compare tasks
        votes += thumbs(app, f"{app}-{x}", 2, 2)
    votes += thumbs(app, f"{app}-e", 0, 2)  # a lone answer voted down: a rewrite task
    await analytics.producer.send(votes)
    answered = await _request_of(analytics, app, prompts["answered"])
    await _request_of(analytics, app, prompts["settled"])
    verdict = {
        "source": "expert",
        "kind": "verdict",
        "task_id": answered["task_id"],
        "verdict": "A",
        "a_interaction_id": answered["candidates"]["A"]["interaction_id"],
        "b_interaction_id": answered["candidates"]["B"]["interaction_id"],
    }
    await analytics.producer.send([vote(app, f"{app}-f", "expert-1", later(30), **verdict)])
    # Users settle the last one before any expert does: its request is withdrawn.
    await analytics.producer.send(
        thumbs(app, f"{app}-h", 8, 0, tag="more-") + thumbs(app, f"{app}-i", 0, 8, tag="more-")
    )
    await analytics.consumed()

    async def counted() -> dict[str, Any]:
        flow = await analytics.api("flow", app_id=app, range="1h")
        totals = {k: sum(b[k] for b in flow["buckets"]) for k in ("pairs", "tasks_requested", "tasks_answered")}
        totals["tasks_withdrawn"] = sum(b["tasks_withdrawn"] for b in flow["buckets"])
        assert totals == {"pairs": 3, "tasks_requested": 4, "tasks_answered": 1, "tasks_withdrawn": 1}, totals
        return flow

    flow = await eventually(counted, timeout=20)
    assert len(flow["buckets"]) == 60 and flow["range"] == {"name": "1h", "span_s": 3600, "bucket_s": 60}
    queue = await analytics.api("queue", app_id=app)
    assert queue["open"] == 2
    assert [(d["domain"], d["open"], d["compare"], d["rewrite"]) for d in queue["domains"]] == [
        ("general", 1, 0, 1),
        ("medical", 1, 1, 0),
    ]
    assert (await analytics.api("queue", app_id=app_id()))["domains"] == []

    approval = await analytics.api("approval", app_id=app, range="1h")
    (series,) = approval["series"]
    up = sum(json.loads(r.value)["value"] > 0 for r in votes if json.loads(r.value)["kind"] == "thumb") + 8
    down = sum(json.loads(r.value)["value"] < 0 for r in votes if json.loads(r.value)["kind"] == "thumb") + 8
    assert (series["model_version"], series["label"], series["up"], series["down"]) == ("v1", "acme-chat v1", up, down)
    assert all(0 <= p["ci_low"] <= p["rate"] <= p["ci_high"] <= 1 for p in series["points"])
    assert app in [a["app_id"] for a in (await analytics.api("apps"))["apps"]]


def _dead_letter(service: str, code: str, failed_at: datetime, event_id: uuid.UUID | None = None) -> Record:
    letter = DeadLetter(
        event_id=event_id or uuid.uuid4(),
        failed_at=failed_at,
        service=service,
        source_topic=f"{service}.raw",
        raw_value="{}",
        error_code=code,
        reason="refused by the test",
    )
    return Record(topic=topics.DEAD_LETTER, key=b"k", value=letter.model_dump_json().encode())


async def test_every_dead_letter_is_counted_once_by_service_reason_and_hour(analytics: Analytics) -> None:
    code = f"code_{uuid.uuid4().hex[:6]}"  # the test's own reason: other tests' letters do not count here
    now = datetime.now(UTC)
    hours_ago = now - timedelta(hours=3)
    letters = [_dead_letter("ingest", code, now) for _ in range(3)] + [_dead_letter("feedback", code, hours_ago)]
    await analytics.letters.send([*letters, letters[0], Record(topic=topics.DEAD_LETTER, key=b"k", value=b"{oops")])
    await analytics.producer.send([Record(topic=topics.VOTES, key=b"poison", value=b"not a vote")])
    await analytics.consumed()

    def ours(view: dict[str, Any]) -> dict[tuple[str, str], int]:
        return {(r["service"], r["error_code"]): r["letters"] for r in view["reasons"] if r["error_code"] == code}

    view = await analytics.api("dead-letters", range="1h")
    assert ours(view) == {("ingest", code): 3, ("feedback", code): 1}
    assert view["span"] == {"name": "1h", "span_s": 86400, "bucket_s": 3600} and len(view["hours"]) == 24
    by_hour = {h["start"]: {(x["service"], x["error_code"]): x["letters"] for x in h["letters"]} for h in view["hours"]}
    hour = hours_ago.replace(minute=0, second=0, microsecond=0).isoformat().replace("+00:00", "Z")
    assert by_hour[hour][("feedback", code)] == 1

    # The aggregator's own dead letter (the poison vote), counted by the same consumer once it is on the topic.
    async def own_letter_counted() -> bool:
        reasons = (await analytics.api("dead-letters", range="1h"))["reasons"]
        return any(r["service"] == "aggregator" and r["error_code"] == "contract_violation" for r in reasons)

    await eventually(own_letter_counted, timeout=20)

    # Delivered again (a replay, a second instance): counted once still.
    await analytics.letters.send(letters)
    await analytics.consumed()
    assert ours(await analytics.api("dead-letters", range="1h")) == {("ingest", code): 3, ("feedback", code): 1}
    conn = await asyncpg.connect(analytics.settings.database_url)
    try:
        seen = await conn.fetchval(
            "SELECT count(*) FROM agg_dead_letters_seen WHERE event_id = ANY($1::uuid[])",
            [json.loads(r.value)["event_id"] for r in letters],
        )
    finally:
        await conn.close()
    assert seen == 4


async def test_alerts_come_raised_first_with_both_versions_readings_from_their_board(analytics: Analytics) -> None:
    app = app_id()
    body = {
        "models": [
            {"model": "chat", "model_version": "v1", "approval_rate": 0.8, "approval_ci_low": 0.7,
             "approval_ci_high": 0.9, "votes": 80},
            {"model": "chat", "model_version": "v2", "approval_rate": 0.3, "approval_ci_low": 0.2,
             "approval_ci_high": 0.4, "votes": 50},
        ]
    }  # fmt: skip
    conn = await asyncpg.connect(analytics.settings.database_url)
    try:
        await conn.execute(
            "INSERT INTO agg_boards (app_id, domain, body) VALUES ($1, '', $2::jsonb)", app, json.dumps(body)
        )
        await conn.execute(
            "INSERT INTO agg_model_alerts (app_id, domain, model, previous_version, new_version, metric, is_raised,"
            " transitions, updated_at) VALUES ($1, '', 'chat', 'v0', 'v1', 'approval', false, 2, now()),"
            " ($1, '', 'chat', 'v1', 'v2', 'approval', true, 1, now() - interval '1 hour')",
            app,
        )
    finally:
        await conn.close()
    alerts = [a for a in (await analytics.api("alerts"))["alerts"] if a["app_id"] == app]
    assert [(a["state"], a["previous_version"], a["new_version"]) for a in alerts] == [
        ("raised", "v1", "v2"),
        ("cleared", "v0", "v1"),
    ]
    raised = alerts[0]
    assert raised["domain"] is None and raised["metric"] == "approval"
    assert raised["previous"] == {"estimate": 0.8, "ci_low": 0.7, "ci_high": 0.9, "evidence": 80}
    assert raised["new"] == {"estimate": 0.3, "ci_low": 0.2, "ci_high": 0.4, "evidence": 50}
    assert alerts[1]["previous"] is None  # v0 is not on the board any more
    assert [a["app_id"] for a in (await analytics.api("alerts", app_id=app))["alerts"]] == [app, app]
