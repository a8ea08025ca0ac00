"""Concurrent single posts share a group commit (shared.edge_group), against the real broker and database.

Many posts in flight at once, some sharing an event_id (same body or another): each id is accepted
exactly once, later posts of it are duplicates (202) or conflicts (409) by their body, every accepted
event is on the topic exactly once with the accepted body, and the posts were carried by fewer
flushes than there were posts (publish_duration_seconds counts one observation per flush).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.feedback.app import create_app as create_feedback
from services.feedback.settings import FeedbackSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from shared import topics
from tests.support.apps import running_apps
from tests.support.builders import interaction_body, vote_body
from tests.support.isolation import isolated_pipeline
from tests.support.kafka import reading
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)

SHARED_IDS = 8
POSTS_PER_ID = 4
UNIQUE_POSTS = 24


@pytest.fixture(scope="module")
async def edge(kafka_bootstrap: str, pg_server_url: str, template_db: str) -> AsyncIterator[tuple[Any, Any, str]]:
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
            yield ingest, feedback, prefix


def workload(make: Any) -> list[dict[str, Any]]:
    """Posts in arrival order: SHARED_IDS ids posted POSTS_PER_ID times (the third with another body),
    interleaved with unique ones."""
    posts: list[dict[str, Any]] = []
    shared = [make() for _ in range(SHARED_IDS)]
    uniques = iter(make() for _ in range(UNIQUE_POSTS))
    for copy in range(POSTS_PER_ID):
        for body in shared:
            posts.append({**body, "user_ref": "u-other"} if copy == 2 else dict(body))
            if len(posts) % 3 == 0:
                posts.append(next(uniques))
    posts.extend(uniques)
    return posts


async def flushes(client: httpx.AsyncClient, stream: str) -> float:
    text = (await client.get("/metrics")).text
    match = re.search(rf'^publish_duration_seconds_count{{stream="{stream}"}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def post_concurrently(client: httpx.AsyncClient, path: str, posts: list[dict[str, Any]]) -> list[httpx.Response]:
    return list(await asyncio.gather(*(client.post(path, json=body) for body in posts)))


def check_results(posts: list[dict[str, Any]], responses: list[httpx.Response]) -> dict[str, dict[str, Any]]:
    """Each id accepted once; the others duplicates of the accepted body or conflicts; the accepted bodies."""
    accepted: dict[str, dict[str, Any]] = {}
    for body, response in zip(posts, responses, strict=True):
        if response.status_code == 202 and response.json()["status"] == "accepted":
            assert body["event_id"] not in accepted, f"{body['event_id']} accepted twice"
            accepted[body["event_id"]] = body
    assert set(accepted) == {body["event_id"] for body in posts}, "every id accepted once"
    for body, response in zip(posts, responses, strict=True):
        first = accepted[body["event_id"]]
        if body is first:
            continue
        if body == first:
            assert (response.status_code, response.json()["status"]) == (202, "duplicate"), response.text
            assert response.json()["accepted"] == [body["event_id"]]
        else:
            assert response.status_code == 409, response.text
            assert response.json()["status"] == "conflict"
            assert response.json()["detail"][0]["loc"] == ["body", "event_id"]
    return accepted


async def on_topic_once(bootstrap: str, prefix: str, name: str, accepted: dict[str, dict[str, Any]]) -> None:
    marker_ids = set(accepted)
    async with reading(bootstrap, prefix, name) as reader:

        async def all_there() -> bool:
            await reader.poll()
            return marker_ids <= {json.loads(r.value)["event_id"] for r in reader.records}

        await eventually(all_there, timeout=20.0)
        await asyncio.sleep(0.5)
        await reader.poll()
    seen = Counter(json.loads(r.value)["event_id"] for r in reader.records)
    assert {event_id: seen[event_id] for event_id in marker_ids} == dict.fromkeys(marker_ids, 1)
    for record in reader.records:
        event = json.loads(record.value)
        sent = accepted[event["event_id"]]
        assert event["user_ref"] == sent["user_ref"], "the body published is the one accepted"


async def test_concurrent_single_interactions_are_judged_once_each_and_share_flushes(
    edge: tuple[Any, Any, str], kafka_bootstrap: str
) -> None:
    ingest, _, prefix = edge
    posts = workload(interaction_body)
    before = await flushes(ingest, "interactions")
    responses = await post_concurrently(ingest, "/v1/interactions", posts)
    accepted = check_results(posts, responses)
    assert len(accepted) == SHARED_IDS + UNIQUE_POSTS
    carried_by = await flushes(ingest, "interactions") - before
    assert 1 <= carried_by < len(posts), f"{len(posts)} posts in {carried_by} flushes: no sharing"
    await on_topic_once(kafka_bootstrap, prefix, topics.INTERACTIONS, accepted)


async def test_concurrent_single_votes_are_judged_once_each(edge: tuple[Any, Any, str], kafka_bootstrap: str) -> None:
    _, feedback, prefix = edge
    posts = workload(vote_body)
    responses = await post_concurrently(feedback, "/v1/votes", posts)
    accepted = check_results(posts, responses)
    await on_topic_once(kafka_bootstrap, prefix, topics.VOTES, accepted)


async def test_a_batch_and_singles_in_flight_together_are_judged_in_arrival_order(edge: tuple[Any, Any, str]) -> None:
    ingest, _, _ = edge
    body = interaction_body()
    batch = ingest.post("/v1/interactions/batch", json=[interaction_body(), body])
    singles = [ingest.post("/v1/interactions", json=dict(body)) for _ in range(5)]
    responses = await asyncio.gather(batch, *singles)
    statuses = [r["status"] for r in responses[0].json()["results"]] + [r.json()["status"] for r in responses[1:]]
    assert Counter(statuses[1:]) == Counter({"accepted": 1, "duplicate": 5}), statuses


async def test_a_failed_shared_publish_fails_each_post_as_it_fails_a_lone_one(
    kafka_bootstrap: str, pg_server_url: str, template_db: str
) -> None:
    """A broker that never acknowledges in time (a deadline no publish meets): 503 alike, alone or together."""
    async with isolated_pipeline(kafka_bootstrap, pg_server_url, template_db) as (url, prefix):
        settings = IngestSettings(
            kafka_bootstrap_servers=kafka_bootstrap,
            database_url=url,
            topic_prefix=prefix,
            group_id=f"ingest-{prefix}",
            publish_timeout_s=1e-6,
            log_format="console",
        )
        async with running_apps(create_ingest(settings)) as (ingest,):
            lone = await ingest.post("/v1/interactions", json=interaction_body())
            posts = [interaction_body() for _ in range(12)]
            together = await post_concurrently(ingest, "/v1/interactions", posts)
            assert lone.status_code == 503, lone.text
            assert {(r.status_code, r.text, r.headers.get("retry-after")) for r in together} == {
                (503, lone.text, lone.headers.get("retry-after"))
            }
            assert await flushes(ingest, "interactions") == 0, "nothing was acknowledged"
            again = await ingest.post("/v1/interactions", json=posts[0])
            assert again.status_code == 503, "nothing was recorded as published: a retry is judged afresh"
