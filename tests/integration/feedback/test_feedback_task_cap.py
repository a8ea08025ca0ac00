"""The cap on offered tasks in a running feedback, fed from the real annotation-requests topic (task_cap.py).

The aggregator displaces the lowest open task with a tombstone when a better one enters; the two records
are keyed by different task_ids and travel on different partitions. Produced here in the bad order (the
new request first, on another partition than the tombstone): the queue annotators are offered (tasks
open per domain, sampled all along) never exceeds the cap, the request waits held, and once the tombstone
arrives the right tasks are open. A verdict that closes a task opens the best held one at once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest

from services.feedback.app import create_app
from services.feedback.settings import FeedbackSettings
from shared import topics
from tests.integration.feedback.queue_fixtures import later, record, task_queue
from tests.support.apps import running_app
from tests.support.builders import annotation_request_body
from tests.support.kafka import Producer, Record, producing
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)
ADMIN = "cap-admin-token"
CAP = 3
DOMAIN = "general"


@dataclass
class Queue:
    """A running feedback with a cap of 3, the producer feeding it, and its database."""

    client: httpx.AsyncClient
    producer: Producer
    database_url: str
    most_open: int = 0
    samples: int = 0
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)

    async def send(self, *records: tuple[str, float | None, int]) -> None:
        """(task_id, priority or None for a tombstone, partition), produced in this order."""
        await self.producer.send(
            [
                Record(
                    topic=topics.ANNOTATION_REQUESTS,
                    value=None if priority is None else json.dumps(_request(task_id, priority)).encode(),
                    key=task_id.encode(),
                    partition=partition,
                )
                for task_id, priority, partition in records
            ]
        )

    async def statuses(self) -> dict[str, str]:
        conn = await asyncpg.connect(self.database_url)
        try:
            return {r["task_id"]: r["status"] for r in await conn.fetch("SELECT task_id, status FROM tasks")}
        finally:
            await conn.close()

    async def until(self, expected: dict[str, str]) -> None:
        async def reached() -> bool:
            statuses = await self.statuses()
            return {t: statuses.get(t) for t in expected} == expected

        await eventually(reached, timeout=30, interval=0.05)

    async def lease(self, annotator: str) -> str | None:
        if annotator not in self.tokens:
            response = await self.client.post(
                "/v1/admin/annotators",
                json={"annotator_id": annotator, "domains": [DOMAIN]},
                headers={"Authorization": f"Bearer {ADMIN}"},
            )
            assert response.status_code == 201, response.text
            self.tokens[annotator] = {"Authorization": f"Bearer {response.json()['token']}"}
        response = await self.client.post("/v1/tasks/lease", headers=self.tokens[annotator])
        assert response.status_code in (200, 204), response.text
        return response.json()["task_id"] if response.status_code == 200 else None

    async def verdict(self, annotator: str, task_id: str) -> None:
        response = await self.client.post(
            f"/v1/tasks/{task_id}/verdict", json={"verdict": "A"}, headers=self.tokens[annotator]
        )
        assert response.status_code == 200, response.text

    async def sample(self) -> None:
        """Tasks open in the domain, as often as the database answers, until cancelled."""
        conn = await asyncpg.connect(self.database_url)
        query = "SELECT count(*) FROM tasks WHERE domain = $1 AND status = 'open'"
        try:
            while True:
                self.most_open = max(self.most_open, await conn.fetchval(query, DOMAIN))
                self.samples += 1
                await asyncio.sleep(0.002)
        finally:
            await conn.close()


def _request(task_id: str, priority: float) -> dict[str, Any]:
    return annotation_request_body(task_id, DOMAIN, priority=priority, updated_at=later(priority))


@asynccontextmanager
async def sampling(queue: Queue) -> AsyncIterator[None]:
    sampler = asyncio.create_task(queue.sample())
    try:
        yield
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
    assert queue.samples > 10


@pytest.fixture
async def queue(kafka_bootstrap: str, database_url: str, topics: str) -> AsyncIterator[Queue]:
    settings = FeedbackSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=database_url,
        topic_prefix=topics,
        admin_token=ADMIN,
        http_port=0,
        group_id=f"feedback-{topics}",
        tasks_group_id=f"feedback-tasks-{topics}",
        max_open_tasks_per_domain=CAP,
        held_tasks_interval_s=3600.0,  # only tombstones and verdicts make room in these tests
        log_level="WARNING",
    )
    async with running_app(create_app(settings)) as client, producing(kafka_bootstrap, topics) as producer:
        yield Queue(client, producer, database_url)


async def test_a_request_before_the_tombstone_of_the_task_it_displaced_waits_held(queue: Queue) -> None:
    await queue.send(("t1", 3.0, 0), ("t2", 2.0, 1), ("t3", 1.0, 2))
    await queue.until({"t1": "open", "t2": "open", "t3": "open"})
    async with sampling(queue):
        # The aggregator let t4 in by displacing t3: the request comes first, on another partition.
        await queue.send(("t4", 5.0, 0))
        await queue.until({"t4": "held"})
        leased = {await queue.lease(f"ann{i}") for i in range(4)}
        assert leased == {"t1", "t2", "t3", None}, "t4 is kept, not offered, while the domain is at the cap"
        stats = (await queue.client.get("/v1/tasks/stats", headers=queue.tokens["ann0"])).json()
        assert (stats["domains"][DOMAIN]["queued"], stats["domains"][DOMAIN]["held"]) == (3, 1)
        await queue.send(("t3", None, 1))
        await queue.until({"t1": "open", "t2": "open", "t3": "withdrawn", "t4": "open"})
        assert await queue.lease("ann3") == "t4"

        # Both again, back to back in the bad order (a redelivery), and a request below every open one.
        await queue.send(("t4", 5.0, 0), ("t3", None, 1), ("t5", 0.5, 2))
        await queue.until({"t1": "open", "t2": "open", "t3": "withdrawn", "t4": "open", "t5": "held"})
    assert queue.most_open <= CAP


async def test_a_verdict_that_closes_a_task_offers_the_best_held_one(queue: Queue) -> None:
    await queue.send(("t1", 3.0, 0), ("t2", 2.0, 1), ("t3", 1.0, 2))
    await queue.until({"t1": "open", "t2": "open", "t3": "open"})
    async with sampling(queue):
        # Over the cap with no tombstone coming (a cap lower than the aggregator's): both wait held.
        await queue.send(("t4", 0.5, 0), ("t5", 0.7, 1))
        await queue.until({"t4": "held", "t5": "held"})
        assert await queue.lease("ann") == "t1"
        await queue.verdict("ann", "t1")
        assert (await queue.statuses())["t5"] == "open", "opened by the verdict's own call, not later"
        await queue.until({"t1": "completed", "t2": "open", "t3": "open", "t4": "held", "t5": "open"})
    assert queue.most_open <= CAP


async def test_a_periodic_pass_offers_held_tasks_where_the_cap_has_room(database_url: str) -> None:
    """A raised cap (at a restart) opens held tasks on the next pass, best first, and never past the cap."""
    bodies = [_request(f"t{i}", float(i)) for i in range(1, 7)]
    async with task_queue(database_url, max_open_tasks_per_domain=CAP) as queue:
        await queue.ingest([record(json.dumps(b).encode(), i, key=b["task_id"].encode()) for i, b in enumerate(bodies)])
        assert await queue.offer_held() == 0
    async with task_queue(database_url, max_open_tasks_per_domain=CAP + 2) as raised:
        assert await raised.offer_held() == 2
        rows = await raised.pool.fetch("SELECT task_id, status FROM tasks ORDER BY task_id")
    assert dict(rows) == {"t1": "held", "t2": "open", "t3": "open", "t4": "open", "t5": "open", "t6": "open"}
