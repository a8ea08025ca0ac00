"""The annotation budget across the aggregator and feedback's queue: at most a cap of open tasks per domain.

Both services run in-process on one broker, one database and one topic prefix, with a cap of 2. Groups
whose thumbs split evenly (k up and k down on each of two answers) each ask for one compare task, and the
more votes the higher its priority (traffic x the chance an expert changes the pair). Checked at each
settled point: the live state of annotation-requests (latest value per task_id, compaction applied by
hand) and feedback's queue hold at most the cap per domain; a higher-priority task withdraws the lowest
open one (a tombstone; feedback stops offering it, and a lease held on it ends: its verdict is refused);
a task users settle makes room for the best waiting one (re-published, offered again); the open set
ends as the top `cap` by priority whatever the order and batching of the inputs.
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

from services.aggregator.app import create_app as create_aggregator
from services.aggregator.settings import AggregatorSettings
from services.feedback.app import create_app as create_feedback
from services.feedback.settings import FeedbackSettings
from shared import topics as topic_names
from tests.integration.aggregator.aggregator_flow import interaction, key_of, later, thumbs
from tests.support.apps import running_apps
from tests.support.kafka import Producer, TopicReader, producing, reading
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(240)
ADMIN = "budget-admin-token"
CAP = 2
APP = "budget-app"


@dataclass
class Budget:
    feedback: httpx.AsyncClient
    producer: Producer
    requests: TopicReader
    database_url: str

    async def open_group(self, domain: str, name: str, k: int) -> None:
        """A group of two answers whose thumbs split k-k on each: one compare task, priority rising with k."""
        prompt = _prompt(domain, name)
        await self.producer.send(
            [
                interaction(APP, prompt, f"{domain}-{name}-a", "One answer.", domain=domain),
                interaction(APP, prompt, f"{domain}-{name}-b", "Another answer.", domain=domain),
            ]
        )
        await self.producer.send(thumbs(APP, f"{domain}-{name}-a", k, k) + thumbs(APP, f"{domain}-{name}-b", k, k))

    async def live(self) -> dict[str, dict[str, Any]]:
        """task_id -> latest request on annotation-requests, tombstoned tasks left out."""
        latest: dict[bytes, bytes | None] = {}
        for record in await self.requests.poll():
            latest[record.key] = record.value
        return {k.decode(): json.loads(v) for k, v in latest.items() if v is not None}

    async def history(self, task_id: str) -> list[dict[str, Any] | None]:
        """Every value published under a task_id, in order (None: a tombstone)."""
        records = await self.requests.poll()
        return [json.loads(r.value) if r.value is not None else None for r in records if r.key == task_id.encode()]

    async def queue(self) -> dict[str, str]:
        """task_id -> status in feedback's queue."""
        return {r["task_id"]: r["status"] for r in await self._fetch("SELECT task_id, status FROM tasks")}

    async def open_per_domain(self) -> dict[str, int]:
        """Open tasks per domain in feedback's queue."""
        query = "SELECT domain, count(*) AS n FROM tasks WHERE status = 'open' GROUP BY domain"
        return {r["domain"]: r["n"] for r in await self._fetch(query)}

    async def _fetch(self, query: str) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.database_url)
        try:
            return await conn.fetch(query)
        finally:
            await conn.close()

    async def lease(self, headers: dict[str, str]) -> dict[str, Any] | None:
        response = await self.feedback.post("/v1/tasks/lease", headers=headers)
        assert response.status_code in (200, 204), response.text
        return response.json() if response.status_code == 200 else None


def _prompt(domain: str, name: str) -> str:
    return f"Budget question {name} about {domain}?"


def task_of(live: dict[str, dict[str, Any]], domain: str, name: str) -> str:
    (task_id,) = [t for t, r in live.items() if r["prompt_key"] == key_of(APP, _prompt(domain, name))]
    return task_id


@pytest.fixture
async def budget(kafka_bootstrap: str, database_url: str, topics: str) -> AsyncIterator[Budget]:
    prefix = topics
    common: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "database_url": database_url,
        "topic_prefix": prefix,
        "http_port": 0,
        "admin_token": ADMIN,
        "outbox_poll_interval_s": 0.1,
        "log_level": "WARNING",
    }
    feedback = create_feedback(
        FeedbackSettings(
            **common,
            group_id=f"feedback-{prefix}",
            tasks_group_id=f"feedback-tasks-{prefix}",
            max_open_tasks_per_domain=CAP,  # the same cap as the aggregator's (one variable in a deployment)
        )
    )
    aggregator = create_aggregator(
        AggregatorSettings(**common, group_id=f"aggregator-{prefix}", max_open_tasks_per_domain=CAP)
    )
    async with (
        running_apps(feedback, aggregator) as (client, _),
        producing(kafka_bootstrap, prefix) as producer,
        reading(kafka_bootstrap, prefix, topic_names.ANNOTATION_REQUESTS) as requests,
    ):
        yield Budget(client, producer, requests, database_url)


async def issue(feedback: httpx.AsyncClient, annotator: str, domain: str) -> dict[str, str]:
    response = await feedback.post(
        "/v1/admin/annotators",
        json={"annotator_id": annotator, "domains": [domain]},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def settled(budget: Budget, domain: str, open_names: list[str], waiting: list[str]) -> dict[str, str]:
    """Wait until the topic's live state and feedback's queue show exactly `open_names` open in `domain`
    (and the `waiting` ones, published before, withdrawn); return name -> task_id."""
    prompt_keys = {key_of(APP, _prompt(domain, n)): n for n in open_names}

    async def check() -> dict[str, str]:
        live = await budget.live()
        in_domain = {t: r for t, r in live.items() if r["domain"] == domain}
        assert len(in_domain) <= CAP, f"{len(in_domain)} live requests in {domain}"
        assert sorted(prompt_keys.get(r["prompt_key"], "?") for r in in_domain.values()) == sorted(open_names)
        names = {prompt_keys[r["prompt_key"]]: t for t, r in in_domain.items()}
        queue = await budget.queue()
        assert {t for t in names.values() if queue.get(t) == "open"} == set(names.values()), queue
        assert (await budget.open_per_domain()).get(domain, 0) == len(open_names)
        for name in waiting:
            task_id = await _task_id_of(budget, domain, name)
            assert (await budget.history(task_id))[-1] is None, f"{name} not withdrawn on the topic"
            assert queue.get(task_id) == "withdrawn", f"{name}: {queue.get(task_id)} in feedback"
        return names

    names = await eventually(check, timeout=60, interval=0.3)
    assert all(count <= CAP for count in (await budget.open_per_domain()).values())
    return names


async def _task_id_of(budget: Budget, domain: str, name: str) -> str:
    key = key_of(APP, _prompt(domain, name))
    for record in await budget.requests.poll():
        if record.value is not None and json.loads(record.value)["prompt_key"] == key:
            return record.key.decode()
    raise AssertionError(f"{name}: never published")


async def test_the_cap_holds_withdraws_the_lowest_and_promotes_on_release(budget: Budget) -> None:
    medic = await issue(budget.feedback, f"dr-{uuid.uuid4().hex[:6]}", "medical")
    await budget.open_group("medical", "g2", 2)
    await budget.open_group("medical", "g3", 3)
    ids = await settled(budget, "medical", ["g2", "g3"], [])
    live = await budget.live()
    assert live[ids["g2"]]["priority"] < live[ids["g3"]]["priority"]

    held = await budget.lease(medic)  # the best open task: g3, leased before it is withdrawn
    assert held is not None and held["task_id"] == ids["g3"]

    # Higher than both: enters, and the lowest open one (g2) is withdrawn.
    await budget.open_group("medical", "g4", 4)
    ids |= await settled(budget, "medical", ["g3", "g4"], ["g2"])
    # Higher again: the lowest open one now is g3, leased: withdrawn all the same; its lease ends.
    await budget.open_group("medical", "g5", 5)
    ids |= await settled(budget, "medical", ["g4", "g5"], ["g2", "g3"])
    response = await budget.feedback.post(f"/v1/tasks/{ids['g3']}/verdict", json={"verdict": "A"}, headers=medic)
    assert response.status_code == 409, response.text
    offered = [await budget.lease(medic), await budget.lease(medic), await budget.lease(medic)]
    assert sorted(t["task_id"] for t in offered if t is not None) == sorted([ids["g4"], ids["g5"]])
    assert offered[-1] is None, "a withdrawn task was offered"

    # Users settle g5: its task leaves, and the best waiting one (g3, above g2) is published again.
    late = thumbs(APP, "medical-g5-a", 8, 0, at=later(5), tag="late")
    await budget.producer.send(late + thumbs(APP, "medical-g5-b", 0, 8, at=later(5), tag="late"))
    await settled(budget, "medical", ["g3", "g4"], ["g2", "g5"])
    history = await budget.history(ids["g3"])
    assert history[-2] is None and history[-1] is not None, "g3 not re-published after its tombstone"
    assert history[-1]["task_id"] == ids["g3"]
    again = await budget.lease(medic)
    assert again is not None and again["task_id"] == ids["g3"], "the promoted task is not offered again"

    # Feedback's kept counters (triggers) stayed exact through withdrawals and re-openings.
    response = await budget.feedback.get("/v1/tasks/stats", headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status_code == 200, response.text
    statuses = list((await budget.queue()).values())
    medical = response.json()["domains"]["medical"]
    assert (medical["queued"], medical["withdrawn"]) == (statuses.count("open"), statuses.count("withdrawn")) == (2, 2)


async def test_the_cap_is_per_domain_and_the_kept_set_is_the_top_cap_whatever_the_order(budget: Budget) -> None:
    # medical: one at a time, rising; legal: the same groups in one go, falling. Both end at the top two.
    for name, k in (("g2", 2), ("g3", 3), ("g4", 4), ("g5", 5)):
        await budget.open_group("medical", name, k)
    for name, k in (("g5", 5), ("g4", 4), ("g3", 3), ("g2", 2)):
        await budget.open_group("legal", name, k)
    medical = await settled(budget, "medical", ["g4", "g5"], [])
    legal = await settled(budget, "legal", ["g4", "g5"], [])
    live = await budget.live()
    assert len(live) == 2 * CAP, "the cap is per domain: each domain keeps its own top two"
    for names in (medical, legal):
        assert live[names["g4"]]["priority"] < live[names["g5"]]["priority"]
    # The same evidence gives the same priority in both domains: the order of arrival changed nothing.
    assert {n: live[t]["priority"] for n, t in medical.items()} == {n: live[t]["priority"] for n, t in legal.items()}
    queue = await budget.queue()
    assert sum(1 for s in queue.values() if s == "open") == 2 * CAP
