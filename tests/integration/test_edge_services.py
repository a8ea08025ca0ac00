"""ingest and end-user feedback against the real broker and database: HTTP, raw topics, dead letters."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.feedback.app import create_app as create_feedback
from services.feedback.settings import FeedbackSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from shared import topics
from shared.events import DeadLetter, Message
from shared.prompt_key import prompt_key
from tests.support.apps import running_app
from tests.support.builders import interaction_body, vote_body
from tests.support.isolation import isolated_pipeline
from tests.support.kafka import produce, reading
from tests.support.waiting import eventually

MAX_BATCH = 20
MAX_RAW_BYTES = 8_192

pytestmark = pytest.mark.timeout(180)


class Edge:
    """One running ingest and feedback, sharing a database and a topic prefix, for this module."""

    def __init__(self, bootstrap: str, prefix: str, ingest: httpx.AsyncClient, feedback: httpx.AsyncClient) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.ingest = ingest
        self.feedback = feedback

    def reading(self, name: str):
        return reading(self.bootstrap, self.prefix, name)

    def topic(self, name: str) -> str:
        return topics.topic(self.prefix, name)


@pytest.fixture(scope="module")
async def edge(kafka_bootstrap: str, pg_server_url: str, template_db: str) -> AsyncIterator[Edge]:
    async with isolated_pipeline(kafka_bootstrap, pg_server_url, template_db) as (url, prefix):
        common: dict[str, Any] = {
            "kafka_bootstrap_servers": kafka_bootstrap,
            "database_url": url,
            "topic_prefix": prefix,
            "max_batch_items": MAX_BATCH,
            "max_body_bytes": 64 * 1024,
            "kafka_max_raw_bytes": MAX_RAW_BYTES,
            "log_format": "console",
        }
        ingest_app = create_ingest(IngestSettings(**common, group_id=f"ingest-{prefix}"))
        feedback_app = create_feedback(FeedbackSettings(**common, group_id=f"feedback-{prefix}"))
        async with running_app(ingest_app) as ingest, running_app(feedback_app) as feedback:
            yield Edge(kafka_bootstrap, prefix, ingest, feedback)


def decoded(records: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in records if r.value is not None]


def with_event_id(records: list[Any], event_id: str) -> list[Any]:
    return [r for r in records if r.value is not None and json.loads(r.value)["event_id"] == event_id]


def fields(detail: list[dict[str, Any]]) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in detail}


async def test_health_and_readiness(edge: Edge) -> None:
    for client in (edge.ingest, edge.feedback):
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"broker": True, "database": True}


async def test_posted_interaction_is_published_canonical_and_keyed_by_prompt_key(edge: Edge) -> None:
    body = interaction_body(received_at="1999-01-01T00:00:00Z", messages=[{"role": "user", "content": " Hi  there "}])
    response = await edge.ingest.post("/v1/interactions", json=body)
    assert response.status_code == 202, response.text
    assert response.json() == {"event_id": body["event_id"], "status": "accepted", "accepted": [body["event_id"]]}

    async with edge.reading(topics.INTERACTIONS) as reader:
        (record,) = await until_event(reader, body["event_id"])
    event = json.loads(record.value)
    expected_key = prompt_key("helpdesk", [Message(role="user", content="Hi there")])
    assert record.key == expected_key.encode()
    assert event["prompt_key"] == expected_key
    assert event["received_at"] != "1999-01-01T00:00:00Z", "received_at is always ours"
    assert event["messages"] == body["messages"], "content is published as sent"


async def until_event(reader: Any, event_id: str, count: int = 1, timeout: float = 15.0) -> list[Any]:
    async def check() -> list[Any] | None:
        await reader.poll()
        found = with_event_id(reader.records, event_id)
        return found if len(found) >= count else None

    return await eventually(check, timeout=timeout)


async def test_reposting_an_event_id_is_accepted_and_publishes_nothing(edge: Edge) -> None:
    body = interaction_body()
    first = await edge.ingest.post("/v1/interactions", json=body)
    again = await edge.ingest.post("/v1/interactions", json={**body, "received_at": "2000-01-01T00:00:00Z"})
    assert (first.status_code, first.json()["status"]) == (202, "accepted")
    assert (again.status_code, again.json()["status"]) == (202, "duplicate"), "received_at is ours, not the body's"
    batch = await edge.ingest.post("/v1/interactions/batch", json=[body, body])
    assert [r["status"] for r in batch.json()["results"]] == ["duplicate", "duplicate"]

    marker = interaction_body()  # posted last: once it is on the topic, the duplicates would be too
    await edge.ingest.post("/v1/interactions", json=marker)
    async with edge.reading(topics.INTERACTIONS) as reader:
        await until_event(reader, marker["event_id"])
        assert len(with_event_id(reader.records, body["event_id"])) == 1


async def test_invalid_interaction_gets_422_naming_every_bad_field(edge: Edge) -> None:
    body = interaction_body(event_id="nope", messages=[], language="x" * 50)
    body.pop("user_ref")
    response = await edge.ingest.post("/v1/interactions", json=body)
    assert response.status_code == 422
    assert fields(response.json()["detail"]) == {"body.event_id", "body.messages", "body.language", "body.user_ref"}

    not_json = await edge.ingest.post(
        "/v1/interactions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 422 and fields(not_json.json()["detail"]) == {"body"}
    a_list = await edge.ingest.post("/v1/interactions", json=[interaction_body()])
    assert a_list.status_code == 422


async def test_batch_reports_per_item_and_one_bad_item_rejects_only_itself(edge: Edge) -> None:
    good = [interaction_body(interaction_id=f"int-{i}") for i in range(3)]
    bad = interaction_body(response={"content": "x"})
    response = await edge.ingest.post("/v1/interactions/batch", json=[good[0], bad, good[1], "text", good[2]])
    assert response.status_code == 202, response.text
    result = response.json()
    assert result["accepted"] == [g["event_id"] for g in good]
    assert [r["index"] for r in result["rejected"]] == [1, 3]
    assert fields(result["rejected"][0]["errors"]) == {"response.model", "response.model_version"}
    assert [r["status"] for r in result["results"]] == ["accepted", "rejected", "accepted", "rejected", "accepted"]

    async with edge.reading(topics.INTERACTIONS) as reader:
        for g in good:
            await until_event(reader, g["event_id"])
        assert not with_event_id(reader.records, bad["event_id"])


async def test_batch_limits_hold(edge: Edge) -> None:
    all_bad = await edge.ingest.post("/v1/interactions/batch", json=[{"app_id": "x"}, {}])
    assert all_bad.status_code == 422
    assert all(r["status"] == "rejected" for r in all_bad.json()["results"])

    too_many = await edge.ingest.post("/v1/interactions/batch", json=[interaction_body()] * (MAX_BATCH + 1))
    assert too_many.status_code == 413
    assert too_many.json()["detail"][0]["type"] == "too_many_items"

    huge = interaction_body(messages=[{"role": "user", "content": "x" * (70 * 1024)}])
    too_big = await edge.ingest.post("/v1/interactions", json=huge)
    assert too_big.status_code == 413


async def test_raw_topic_poison_goes_to_dead_letter_and_the_partition_keeps_flowing(edge: Edge) -> None:
    good_before, good_after = interaction_body(), interaction_body()
    poison = [
        b'{"event_id": "truncated',
        json.dumps(interaction_body(schema_version=9)).encode(),
        json.dumps(interaction_body(messages=[{"role": "user", "content": "y" * MAX_RAW_BYTES}])).encode(),
        b"\xff\xfe binary",
    ]
    values = [json.dumps(good_before).encode(), *poison, json.dumps(good_after).encode()]
    # One key: every message on one partition, poison between two good ones.
    await produce(edge.bootstrap, edge.prefix, topics.INTERACTIONS_RAW, values, key=b"one-partition")

    async with edge.reading(topics.INTERACTIONS) as out, edge.reading(topics.DEAD_LETTER) as dead:
        await until_event(out, good_after["event_id"], timeout=30)
        await until_event(out, good_before["event_id"])

        async def all_dead() -> list[DeadLetter] | None:
            await dead.poll()
            letters = [DeadLetter.model_validate_json(r.value) for r in dead.records]
            mine = [d for d in letters if d.source_topic == edge.topic(topics.INTERACTIONS_RAW)]
            return mine if len(mine) >= len(poison) else None

        letters = sorted(await eventually(all_dead, timeout=15), key=lambda d: d.source_offset or -1)
    assert [d.raw_bytes() for d in letters] == poison, "the original bytes, in their input order"
    partitions = {d.source_partition for d in letters}
    assert len(partitions) == 1 and None not in partitions
    offsets = [d.source_offset for d in letters]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(poison)
    assert {d.service for d in letters} == {"ingest"}
    assert all(d.reason and d.error_code == "contract_violation" for d in letters)
    assert any("schema_version" in ".".join(map(str, e["loc"])) for e in letters[1].errors)
    assert "bytes" in letters[2].reason


async def test_votes_single_batch_and_raw_topic(edge: Edge) -> None:
    thumb = vote_body(interaction_id="int-votes")
    response = await edge.feedback.post("/v1/votes", json=thumb)
    assert response.status_code == 202, response.text

    bad = await edge.feedback.post("/v1/votes", json=vote_body(kind="rating", value=9))
    assert bad.status_code == 422 and fields(bad.json()["detail"]) == {"body.value"}

    batch = [
        vote_body(kind="rating", value=5),
        vote_body(kind="comparison", preferred_interaction_id="a", other_interaction_id="b", value=None),
        vote_body(kind="edit", edited_content="Better answer.", value=None),
        vote_body(kind="comment", text="too long", value=None),
        vote_body(kind="verdict", verdict="A", task_id="t", value=None),  # end users give no verdicts
    ]
    result = await edge.feedback.post("/v1/votes/batch", json=batch)
    assert result.status_code == 202
    assert [r["status"] for r in result.json()["results"]] == ["accepted"] * 4 + ["rejected"]

    raw_good = vote_body(kind="thumb", value=-1, interaction_id="int-raw")
    await produce(
        edge.bootstrap, edge.prefix, topics.FEEDBACK_RAW, [b"not json", json.dumps(raw_good).encode()], key=b"k"
    )
    async with edge.reading(topics.VOTES) as out, edge.reading(topics.DEAD_LETTER) as dead:
        (record,) = await until_event(out, raw_good["event_id"], timeout=30)
        assert record.key == b"int-raw", "votes are keyed by interaction_id"
        for vote in [thumb, *batch[:4]]:
            await until_event(out, vote["event_id"])

        async def dead_vote() -> Any:
            await dead.poll()
            letters = [DeadLetter.model_validate_json(r.value) for r in dead.records]
            return [d for d in letters if d.source_topic.endswith(topics.FEEDBACK_RAW)]

        (letter,) = await eventually(dead_vote, timeout=15)
    assert letter.raw_bytes() == b"not json"


async def test_metrics_count_accepted_rejected_and_dead_lettered(edge: Edge) -> None:
    await edge.ingest.post("/v1/interactions", json=interaction_body())
    await edge.ingest.post("/v1/interactions", json={"bad": True})
    text = (await edge.ingest.get("/metrics")).text

    def value(name: str, **labels: str) -> float:
        selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
        lines = [ln for ln in text.splitlines() if ln.startswith(f"{name}{{") and selector in ln]
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)

    assert value("events_accepted_total", stream="interactions", via="http") >= 1
    assert value("events_rejected_total", stream="interactions", via="http") >= 1
    assert value("http_request_duration_seconds_count", route="/v1/interactions") >= 2
    assert "publish_duration_seconds_bucket" in text


async def test_docs_describe_the_http_and_kafka_sides(edge: Edge) -> None:
    for client, channels in (
        (edge.ingest, {"interactions.raw", "interactions", "dead-letter"}),
        (edge.feedback, {"feedback.raw", "votes", "dead-letter", "annotation-requests"}),
    ):
        assert (await client.get("/docs")).status_code == 200
        openapi = (await client.get("/openapi.json")).json()
        assert any(path.startswith("/v1/") for path in openapi["paths"])
        asyncapi = (await client.get("/asyncapi.json")).json()
        names = {channel["address"].removeprefix(edge.prefix) for channel in asyncapi["channels"].values()}
        assert channels <= names, names
