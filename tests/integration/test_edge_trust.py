"""Trust at the edge against the real broker and database: who may say what, one event_id one body, one group.

- A body claiming expert evidence is refused: 422 naming each field (`forbidden_source`) over HTTP,
  `dead-letter` with error_code `forbidden_source` from feedback.raw; nothing reaches `votes`.
- One event_id, one body: the same body again is `duplicate`, another body `conflict` (409 single,
  per item in a batch, dead-lettered from a raw topic); nothing is published for either.
- A comparison of two answers the edge knows in different prompt groups: 422 `cross_group_comparison`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.feedback.app import create_app as create_feedback
from services.feedback.settings import FeedbackSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from shared import topics
from shared.events import DeadLetter
from tests.support.apps import running_apps
from tests.support.builders import interaction_body, vote_body
from tests.support.isolation import isolated_pipeline
from tests.support.kafka import TopicReader, produce, reading
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)

FORGED_VERDICT = {
    "source": "expert",
    "annotator_id": "mallory",
    "kind": "verdict",
    "task_id": "anything",
    "verdict": "B",
    "a_interaction_id": "int-x",
    "b_interaction_id": "int-y",
}
EXPERT_FIELDS = {"source", "kind", "annotator_id", "task_id", "verdict", "a_interaction_id", "b_interaction_id"}


class Edge:
    def __init__(self, bootstrap: str, prefix: str, ingest: httpx.AsyncClient, feedback: httpx.AsyncClient) -> None:
        self.bootstrap, self.prefix, self.ingest, self.feedback = bootstrap, prefix, ingest, feedback

    def reading(self, name: str):
        return reading(self.bootstrap, self.prefix, name)


@pytest.fixture(scope="module")
async def edge(kafka_bootstrap: str, pg_server_url: str, template_db: str) -> AsyncIterator[Edge]:
    async with isolated_pipeline(kafka_bootstrap, pg_server_url, template_db) as (url, prefix):
        common: dict[str, Any] = {
            "kafka_bootstrap_servers": kafka_bootstrap,
            "database_url": url,
            "topic_prefix": prefix,
            "log_format": "console",
        }
        apps = (
            create_ingest(IngestSettings(**common, group_id=f"ingest-{prefix}")),
            create_feedback(FeedbackSettings(**common, group_id=f"feedback-{prefix}")),
        )
        async with running_apps(*apps) as (ingest, feedback):
            yield Edge(kafka_bootstrap, prefix, ingest, feedback)


def forged_verdict(**overrides: Any) -> dict[str, Any]:
    body = vote_body(**{**FORGED_VERDICT, "value": None}, **overrides)
    body.pop("user_ref")
    return body


def on_topic(reader: TopicReader, event_id: str) -> list[Any]:
    return [r for r in reader.records if r.value is not None and json.loads(r.value)["event_id"] == event_id]


async def after_marker(edge: Edge, name: str, marker_post: Any, marker_id: str) -> TopicReader:
    """Read `name` until the marker (posted last) is on it: what was refused before it would be there too."""
    await marker_post
    async with edge.reading(name) as reader:

        async def arrived() -> bool:
            await reader.poll()
            return bool(on_topic(reader, marker_id))

        await eventually(arrived, timeout=20)
        return reader


async def dead_letter_of(edge: Edge, source: str, event_id: str) -> DeadLetter:
    async with edge.reading(topics.DEAD_LETTER) as reader:

        async def found() -> DeadLetter | None:
            await reader.poll()
            for record in reader.records:
                letter = DeadLetter.model_validate_json(record.value)
                raw = letter.raw_bytes() or b""
                if letter.source_topic == topics.topic(edge.prefix, source) and event_id.encode() in raw:
                    return letter
            return None

        return await eventually(found, timeout=20)


def detail_types(detail: list[dict[str, Any]]) -> dict[str, str]:
    return {".".join(str(p) for p in e["loc"]): e["type"] for e in detail}


async def test_a_forged_verdict_over_http_is_refused_naming_each_expert_field(edge: Edge) -> None:
    forged, batch_forged, thumb = forged_verdict(), forged_verdict(), vote_body(source="expert")
    single = await edge.feedback.post("/v1/votes", json=forged)
    assert single.status_code == 422, single.text
    types = detail_types(single.json()["detail"])
    assert {k.removeprefix("body.") for k, t in types.items() if t == "forbidden_source"} == EXPERT_FIELDS
    anonymous = await edge.feedback.post("/v1/votes", json=thumb)
    assert (anonymous.status_code, detail_types(anonymous.json()["detail"])) == (
        422,
        {"body.source": "forbidden_source"},
    )
    good = vote_body()
    batch = await edge.feedback.post("/v1/votes/batch", json=[batch_forged, good])
    assert batch.status_code == 202, batch.text
    refused, accepted = batch.json()["results"]
    assert (refused["status"], accepted["status"]) == ("rejected", "accepted")
    assert {e["loc"][0] for e in refused["errors"] if e["type"] == "forbidden_source"} == EXPERT_FIELDS
    marker = vote_body()
    votes = await after_marker(edge, topics.VOTES, edge.feedback.post("/v1/votes", json=marker), marker["event_id"])
    assert on_topic(votes, good["event_id"])
    for body in (forged, batch_forged, thumb):
        assert not on_topic(votes, body["event_id"]), "a refused vote reached votes"


async def test_a_forged_verdict_on_feedback_raw_is_dead_lettered_and_the_partition_flows(edge: Edge) -> None:
    forged, after = forged_verdict(), vote_body()
    values = [json.dumps(forged).encode(), json.dumps(after).encode()]
    await produce(edge.bootstrap, edge.prefix, topics.FEEDBACK_RAW, values, key=b"one-partition")
    letter = await dead_letter_of(edge, topics.FEEDBACK_RAW, forged["event_id"])
    assert (letter.error_code, letter.service) == ("forbidden_source", "feedback")
    assert {e["loc"][0] for e in letter.errors if e["type"] == "forbidden_source"} == EXPERT_FIELDS
    assert json.loads(letter.raw_bytes() or b"") == forged
    votes = await after_marker(edge, topics.VOTES, _noop(), after["event_id"])
    assert not on_topic(votes, forged["event_id"])


async def _noop() -> None:
    return None


@pytest.mark.parametrize(("kind", "value"), [("thumb", True), ("thumb", 1.0), ("rating", 4.0), ("rating", False)])
async def test_booleans_and_floats_are_not_votes(edge: Edge, kind: str, value: Any) -> None:
    response = await edge.feedback.post("/v1/votes", json=vote_body(kind=kind, value=value))
    assert response.status_code == 422, response.text
    assert detail_types(response.json()["detail"]) == {"body.value": "int_type"}


async def test_one_event_id_one_body_over_http(edge: Edge) -> None:
    body = interaction_body()
    other = {**body, "response": {**body["response"], "content": "Another answer."}}
    first = await edge.ingest.post("/v1/interactions", json=body)
    same = await edge.ingest.post("/v1/interactions", json=dict(reversed(list(body.items()))))
    conflict = await edge.ingest.post("/v1/interactions", json=other)
    assert (first.status_code, first.json()["status"]) == (202, "accepted")
    assert (same.status_code, same.json()["status"]) == (202, "duplicate"), "key order is not a body change"
    assert conflict.status_code == 409, conflict.text
    refusal = conflict.json()
    assert (refusal["status"], refusal["event_id"]) == ("conflict", body["event_id"])
    (detail,) = refusal["detail"]
    assert (detail["loc"], detail["type"]) == (["body", "event_id"], "conflict")
    assert body["event_id"] in detail["msg"]

    vote = vote_body(value=-1)
    assert (await edge.feedback.post("/v1/votes", json=vote)).json()["status"] == "accepted"
    up = await edge.feedback.post("/v1/votes", json={**vote, "value": 1})
    assert (up.status_code, up.json()["status"]) == (409, "conflict"), "the first body of an id stays"

    marker = interaction_body()
    posted = edge.ingest.post("/v1/interactions", json=marker)
    out = await after_marker(edge, topics.INTERACTIONS, posted, marker["event_id"])
    (published,) = on_topic(out, body["event_id"])
    assert json.loads(published.value)["response"]["content"] == body["response"]["content"]


async def test_a_batch_reports_repeats_and_conflicts_per_item_never_both_accepted(edge: Edge) -> None:
    a, b = interaction_body(interaction_id="int-a"), interaction_body(interaction_id="int-b")
    a_other = {**a, "conversation_id": "another"}
    response = await edge.ingest.post("/v1/interactions/batch", json=[a, a_other, b, b, a])
    assert response.status_code == 202, response.text
    result = response.json()
    assert [r["status"] for r in result["results"]] == ["accepted", "conflict", "accepted", "duplicate", "duplicate"]
    assert [(c["index"], c["errors"][0]["type"]) for c in result["conflicts"]] == [(1, "conflict")]
    assert result["accepted"] == [a["event_id"], b["event_id"], b["event_id"], a["event_id"]]

    later = await edge.ingest.post("/v1/interactions/batch", json=[a_other, {**b, "tags": ["x"]}])
    assert later.status_code == 409, later.text
    assert [r["status"] for r in later.json()["results"]] == ["conflict", "conflict"]

    marker = interaction_body()
    posted = edge.ingest.post("/v1/interactions", json=marker)
    out = await after_marker(edge, topics.INTERACTIONS, posted, marker["event_id"])
    assert len(on_topic(out, a["event_id"])) == 1 and len(on_topic(out, b["event_id"])) == 1
    assert json.loads(on_topic(out, a["event_id"])[0].value)["conversation_id"] == a["conversation_id"]


async def test_a_conflicting_raw_record_is_dead_lettered_as_conflict(edge: Edge) -> None:
    vote = vote_body()
    values = [json.dumps(vote).encode(), json.dumps({**vote, "value": -1}).encode(), json.dumps(vote).encode()]
    await produce(edge.bootstrap, edge.prefix, topics.FEEDBACK_RAW, values, key=b"one-partition")
    letter = await dead_letter_of(edge, topics.FEEDBACK_RAW, vote["event_id"])
    assert letter.error_code == "conflict" and json.loads(letter.raw_bytes() or b"")["value"] == -1
    marker = vote_body()
    votes = await after_marker(edge, topics.VOTES, edge.feedback.post("/v1/votes", json=marker), marker["event_id"])
    (published,) = on_topic(votes, vote["event_id"])
    assert json.loads(published.value)["value"] == 1


async def test_a_comparison_across_two_known_prompt_groups_is_refused(edge: Edge) -> None:
    app = f"app-{uuid.uuid4().hex[:6]}"
    x = interaction_body(app_id=app, interaction_id="x", messages=[{"role": "user", "content": "Prompt one?"}])
    x2 = interaction_body(app_id=app, interaction_id="x2", messages=x["messages"])
    y = interaction_body(app_id=app, interaction_id="y", messages=[{"role": "user", "content": "Prompt two?"}])
    assert (await edge.ingest.post("/v1/interactions/batch", json=[x, x2, y])).status_code == 202

    def comparison(preferred: str, other: str) -> dict[str, Any]:
        return vote_body(
            app_id=app, interaction_id=preferred, kind="comparison", value=None,
            preferred_interaction_id=preferred, other_interaction_id=other,
        )  # fmt: skip

    across = await edge.feedback.post("/v1/votes", json=comparison("x", "y"))
    assert across.status_code == 422, across.text
    assert detail_types(across.json()["detail"]) == {"body.other_interaction_id": "cross_group_comparison"}
    within = await edge.feedback.post("/v1/votes", json=comparison("x", "x2"))
    unknown = await edge.feedback.post("/v1/votes", json=comparison("x", "not-yet-seen"))
    assert (within.status_code, unknown.status_code) == (202, 202), "the aggregator judges what the edge cannot"
    batch = await edge.feedback.post("/v1/votes/batch", json=[comparison("y", "x2"), comparison("x2", "x")])
    assert [r["status"] for r in batch.json()["results"]] == ["rejected", "accepted"]

    raw = comparison("y", "x")
    await produce(edge.bootstrap, edge.prefix, topics.FEEDBACK_RAW, [json.dumps(raw).encode()])
    letter = await dead_letter_of(edge, topics.FEEDBACK_RAW, raw["event_id"])
    assert letter.error_code == "cross_group_comparison"
