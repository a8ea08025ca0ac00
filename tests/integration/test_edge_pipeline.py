"""Two groups in flight at the edge (shared.edge_group, shared.edge_flight), against the real broker and database.

Group N's publish is held (its start_publish wrapped so that its acknowledgement waits on a gate)
while later posts form group N+1, which is judged against N's ids from memory: one event_id, one
body holds across the two groups (same body: 202 duplicate, another body: 409 conflict), and when
N's publish fails, the posts of N+1 judged against N get a retryable 503 instead of a wrong 202 or
409, while N+1's other posts are accepted. Across two ingest instances on one database, a post
answered 202 by one is judged by the other against the recorded row.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from shared import topics
from shared.edge import EdgePublisher
from shared.errors import TransientError
from shared.runtime import runtime_of
from tests.support.apps import running_apps
from tests.support.builders import interaction_body
from tests.support.isolation import isolated_pipeline
from tests.support.kafka import reading
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)


def ingest_settings(bootstrap: str, url: str, prefix: str) -> IngestSettings:
    return IngestSettings(
        kafka_bootstrap_servers=bootstrap,
        database_url=url,
        topic_prefix=prefix,
        group_id=f"ingest-{prefix}",
        log_format="console",
        edge_group_depth=2,
    )


@pytest.fixture
async def two_ingests(
    kafka_bootstrap: str, pg_server_url: str, template_db: str
) -> AsyncIterator[tuple[list[Any], list[httpx.AsyncClient], str]]:
    async with isolated_pipeline(kafka_bootstrap, pg_server_url, template_db) as (url, prefix):
        apps = [create_ingest(ingest_settings(kafka_bootstrap, url, prefix)) for _ in range(2)]
        async with running_apps(*apps) as clients:
            yield apps, clients, prefix


async def edge_of(app: Any) -> EdgePublisher:
    return (await runtime_of(app).context()).edge


class HeldFirstPublish:
    """Wraps an edge's start_publish: the first group's acknowledgement waits for `release` (then fails if asked)."""

    def __init__(self, edge: EdgePublisher, *, fail: bool) -> None:
        self.edge = edge
        self.real = edge.start_publish
        self.fail = fail
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.calls = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Callable[..., Awaitable[None]]:
        self.calls += 1
        if self.calls > 1:
            return await self.real(*args, **kwargs)
        self.started.set()
        if self.fail:

            async def never_acknowledged(**_: Any) -> None:
                await self.gate.wait()
                raise TransientError("broker did not acknowledge the publish")

            return never_acknowledged
        finish = await self.real(*args, **kwargs)

        async def held(**finish_kwargs: Any) -> None:
            await self.gate.wait()
            await finish(**finish_kwargs)

        return held


async def second_group_started(edge: EdgePublisher, hold: HeldFirstPublish) -> None:
    async def two_calls() -> bool:
        return hold.calls >= 2

    await eventually(two_calls, timeout=10.0, interval=0.01)


async def post_during_held_publish(
    client: httpx.AsyncClient, edge: EdgePublisher, hold: HeldFirstPublish, first: dict[str, Any], later: list[Any]
) -> list[httpx.Response]:
    """`first` alone in group N (its publish held), then `later` together in group N+1; release N; the answers."""
    edge.start_publish = hold  # type: ignore[method-assign]
    lone = asyncio.create_task(client.post("/v1/interactions", json=first))
    await asyncio.wait_for(hold.started.wait(), 10.0)
    rest = [asyncio.create_task(client.post("/v1/interactions", json=body)) for body in later]
    await second_group_started(edge, hold)
    assert not lone.done(), "group N waits for its acknowledgement"
    hold.gate.set()
    return [await lone, *[await task for task in rest]]


async def on_topic(bootstrap: str, prefix: str, wanted: set[str]) -> Counter[str]:
    async with reading(bootstrap, prefix, topics.INTERACTIONS) as reader:

        async def all_there() -> bool:
            await reader.poll()
            return wanted <= {json.loads(r.value)["event_id"] for r in reader.records}

        await eventually(all_there, timeout=20.0)
        await asyncio.sleep(0.5)
        await reader.poll()
    return Counter(json.loads(r.value)["event_id"] for r in reader.records)


async def test_one_event_id_in_two_groups_in_flight_is_accepted_once_with_one_body(
    two_ingests: tuple[list[Any], list[httpx.AsyncClient], str], kafka_bootstrap: str
) -> None:
    apps, clients, prefix = two_ingests
    edge = await edge_of(apps[0])
    body = interaction_body()
    other = {**body, "user_ref": "u-other"}
    fresh = interaction_body()
    hold = HeldFirstPublish(edge, fail=False)
    answers = await post_during_held_publish(clients[0], edge, hold, body, [dict(body), other, fresh])
    got = [(r.status_code, r.json()["status"]) for r in answers]
    assert got == [(202, "accepted"), (202, "duplicate"), (409, "conflict"), (202, "accepted")], got
    seen = await on_topic(kafka_bootstrap, prefix, {body["event_id"], fresh["event_id"]})
    assert (seen[body["event_id"]], seen[fresh["event_id"]]) == (1, 1)
    assert len(edge.in_flight) == 0, "nothing left in flight once both groups ended"


async def test_when_group_n_fails_the_posts_judged_against_it_get_503_and_the_others_go_through(
    two_ingests: tuple[list[Any], list[httpx.AsyncClient], str],
) -> None:
    apps, clients, _ = two_ingests
    edge = await edge_of(apps[0])
    body = interaction_body()
    fresh = interaction_body()
    hold = HeldFirstPublish(edge, fail=True)
    answers = await post_during_held_publish(
        clients[0], edge, hold, body, [dict(body), {**body, "user_ref": "u-other"}, fresh]
    )
    assert [r.status_code for r in answers] == [503, 503, 503, 202], [r.text for r in answers]
    assert answers[3].json()["status"] == "accepted", "a post that did not depend on group N is accepted"
    assert answers[1].json()["code"] == "transient", answers[1].text
    again = await clients[0].post("/v1/interactions", json=body)
    assert (again.status_code, again.json()["status"]) == (202, "accepted"), "nothing was recorded: judged afresh"


async def test_a_post_answered_by_one_instance_is_judged_by_the_other_against_the_database(
    two_ingests: tuple[list[Any], list[httpx.AsyncClient], str],
) -> None:
    _, (first, second), _ = two_ingests
    body = interaction_body()
    accepted = await first.post("/v1/interactions", json=body)
    assert (accepted.status_code, accepted.json()["status"]) == (202, "accepted")
    same = await second.post("/v1/interactions", json=dict(body))
    assert (same.status_code, same.json()["status"]) == (202, "duplicate")
    other = await second.post("/v1/interactions", json={**body, "user_ref": "u-other"})
    assert (other.status_code, other.json()["status"]) == (409, "conflict")
