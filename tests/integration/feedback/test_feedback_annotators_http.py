"""The annotator and admin HTTP API of a running feedback service, fed from the real annotation-requests topic."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from services.feedback.app import create_app
from services.feedback.settings import FeedbackSettings
from shared import topics
from shared.events import DeadLetter, VerdictVote
from shared.runtime import runtime_of
from tests.support.apps import running_app
from tests.support.builders import annotation_request_body
from tests.support.isolation import isolated_pipeline
from tests.support.kafka import produce, reading
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)
ADMIN = "admin-secret-for-tests"


class Service:
    """One running feedback for this module, and how to reach it."""

    def __init__(self, client: httpx.AsyncClient, bootstrap: str, prefix: str, app: Any) -> None:
        self.client = client
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.app = app

    async def publish(self, *bodies: dict[str, Any] | bytes) -> None:
        for body in bodies:
            value = body if isinstance(body, bytes) else json.dumps(body).encode()
            await produce(self.bootstrap, self.prefix, topics.ANNOTATION_REQUESTS, [value])

    async def issue(self, annotator: str, *domains: str) -> dict[str, str]:
        response = await self.client.post(
            "/v1/admin/annotators", json={"annotator_id": annotator, "domains": list(domains)}, headers=bearer(ADMIN)
        )
        assert response.status_code == 201, response.text
        return bearer(response.json()["token"])

    async def lease(self, headers: dict[str, str], domain: str | None = None) -> httpx.Response:
        return await self.client.post("/v1/tasks/lease", json={"domain": domain} if domain else None, headers=headers)

    async def lease_eventually(self, headers: dict[str, str], domain: str | None = None) -> dict[str, Any]:
        """Lease once the consumer has queued something (the first group join takes seconds)."""

        async def leased() -> dict[str, Any] | None:
            response = await self.lease(headers, domain)
            assert response.status_code in (200, 204), response.text
            return response.json() if response.status_code == 200 else None

        return await eventually(leased, timeout=30, interval=0.1)

    def reading(self, name: str):
        return reading(self.bootstrap, self.prefix, name)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_domain() -> str:
    """A domain of one test's own, so the module's tests never lease each other's tasks."""
    return f"d{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
async def service(kafka_bootstrap: str, pg_server_url: str, template_db: str) -> AsyncIterator[Service]:
    async with isolated_pipeline(kafka_bootstrap, pg_server_url, template_db) as (url, prefix):
        settings = FeedbackSettings(
            kafka_bootstrap_servers=kafka_bootstrap,
            database_url=url,
            topic_prefix=prefix,
            admin_token=ADMIN,
            http_port=0,
            group_id=f"feedback-{prefix}",
            tasks_group_id=f"feedback-tasks-{prefix}",
            reviewers_per_domain={"medical": 2},
            outbox_poll_interval_s=0.2,
        )
        app = create_app(settings)
        async with running_app(app) as client:
            yield Service(client, kafka_bootstrap, prefix, app)


async def votes_for(reader: Any, task_id: str) -> list[VerdictVote]:
    records = await reader.poll()
    votes = [VerdictVote.model_validate_json(r.value) for r in records if b'"verdict"' in r.value]
    return [v for v in votes if v.task_id == task_id]


async def test_lease_verdict_publishes_one_expert_vote(service: Service) -> None:
    domain, other = new_domain(), new_domain()
    alice = await service.issue("alice-1", domain)
    outsider = await service.issue("olga-1", other)
    body = annotation_request_body(f"task-{uuid.uuid4().hex[:6]}", domain)
    body["prompt"] = [{"role": "user", "content": "I am jane.doe@example.com, is this dose fine?"}]
    await service.publish(body)
    task = await service.lease_eventually(alice)
    assert (task["task_id"], task["kind"], task["domain"]) == (body["task_id"], "compare", domain)
    assert "[EMAIL]" in task["prompt"][0]["content"] and "jane.doe" not in task["prompt"][0]["content"]
    assert set(task["candidates"]) == {"A", "B"} and task["lease_expires_at"]
    assert (await service.lease(outsider)).status_code == 204
    async with service.reading(topics.VOTES) as reader:
        response = await service.client.post(
            f"/v1/tasks/{task['task_id']}/verdict", json={"verdict": "B", "comment": "B is safer"}, headers=alice
        )
        assert response.status_code == 200, response.text
        assert response.json()["task_status"] == "completed"
        (vote,) = await eventually(lambda: votes_for(reader, body["task_id"]), timeout=15)
    assert (vote.source, vote.verdict, vote.annotator_id, vote.reviewers) == ("expert", "B", "alice-1", ["alice-1"])
    assert (vote.interaction_id, vote.b_interaction_id, vote.comment) == (
        f"{body['task_id']}-a",
        f"{body['task_id']}-b",
        "B is safer",
    )
    again = await service.client.post(f"/v1/tasks/{task['task_id']}/verdict", json={"verdict": "A"}, headers=alice)
    assert again.status_code == 409


async def test_two_reviewer_domain_needs_two_verdicts_and_publishes_one_vote(service: Service) -> None:
    alice, bob, carol = [await service.issue(f"{n}-2", "medical") for n in ("alice", "bob", "carol")]
    task_ids = [f"med-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    await service.publish(*(annotation_request_body(t, "medical", priority=5.0 - i) for i, t in enumerate(task_ids)))
    pool = runtime_of(service.app).db
    # The two requests may sit on different partitions: lease only once both are queued.
    await eventually(lambda: _count_tasks(pool, task_ids), timeout=15)
    async with service.reading(topics.VOTES) as reader:
        for task_id, verdict in zip(task_ids, ("A", "B"), strict=True):
            first = await service.lease_eventually(alice, "medical")
            second = (await service.lease(bob, "medical")).json()
            assert first["task_id"] == second["task_id"] == task_id
            if task_id == task_ids[0]:
                assert (await service.lease(carol, "medical")).json()["task_id"] == task_ids[1]
                await service.client.post(f"/v1/tasks/{task_ids[1]}/release", headers=carol)
            one = await service.client.post(f"/v1/tasks/{task_id}/verdict", json={"verdict": verdict}, headers=alice)
            assert one.json()["task_status"] == "open"
            two = await service.client.post(f"/v1/tasks/{task_id}/verdict", json={"verdict": verdict}, headers=bob)
            assert two.json()["task_status"] == "completed"
        for task_id in task_ids:
            (vote,) = await eventually(lambda t=task_id: votes_for(reader, t), timeout=15)
            assert (sorted(vote.reviewers), vote.agreement) == (["alice-2", "bob-2"], 1.0)
    stats = (await service.client.get("/v1/tasks/stats", headers=carol)).json()
    assert set(stats["domains"]) == {"medical"} and stats["domains"]["medical"]["completed"] == 2
    assert stats["domains"]["medical"]["agreement"]["alpha"] == pytest.approx(1.0)
    assert stats["annotators"] == {}
    context = await runtime_of(service.app).context()
    await context.queue.refresh_gauges()
    metrics = (await service.client.get("/metrics")).text
    assert 'task_agreement_alpha{domain="medical"} 1.0' in metrics


async def _count_tasks(pool: asyncpg.Pool, task_ids: list[str]) -> bool:
    return await pool.fetchval("SELECT count(*) FROM tasks WHERE task_id = ANY($1::text[])", task_ids) == len(task_ids)


async def test_unknown_tasks_bad_verdicts_and_stats_scope(service: Service) -> None:
    """Beyond who may call what (tests/hostile/test_security.py has that matrix): 404, 422, stats scope."""
    domain, other = new_domain(), new_domain()
    alice = await service.issue("alice-3", domain)
    bob = await service.issue("bob-3", domain)
    olga = await service.issue("olga-3", other)
    task_id = f"task-{uuid.uuid4().hex[:6]}"
    await service.publish(annotation_request_body(task_id, domain))
    await service.lease_eventually(alice)
    post = service.client.post
    assert (await post("/v1/tasks/nope/extend", headers=bob)).status_code == 404
    assert (await post(f"/v1/tasks/{task_id}/verdict", json={"verdict": "maybe"}, headers=alice)).status_code == 422
    assert (
        await post(f"/v1/tasks/{task_id}/verdict", json={"verdict": "A", "rewrite": "x"}, headers=alice)
    ).status_code == 422
    assert (await post(f"/v1/tasks/{task_id}/extend", headers=alice)).status_code == 200
    assert set((await service.client.get("/v1/tasks/stats", headers=olga)).json()["domains"]) == {other}
    everything = await service.client.get("/v1/tasks/stats", headers=bearer(ADMIN))
    assert everything.json()["domains"][domain] == {
        "queued": 1,
        "held": 0,
        "leased": 1,
        "completed": 0,
        "contested": 0,
        "withdrawn": 0,
        "agreement": None,
        "position": None,
    }


async def test_revoked_token_is_refused_at_once_and_its_lease_released(service: Service) -> None:
    domain = new_domain()
    alice = await service.issue("alice-4", domain)
    bob = await service.issue("bob-4", domain)
    task_id = f"task-{uuid.uuid4().hex[:6]}"
    await service.publish(annotation_request_body(task_id, domain))
    assert (await service.lease_eventually(alice))["task_id"] == task_id
    revoked = await service.client.delete("/v1/admin/annotators/alice-4", headers=bearer(ADMIN))
    assert revoked.status_code == 200
    assert (await service.lease(alice)).status_code == 401
    assert (
        await service.client.post(f"/v1/tasks/{task_id}/verdict", json={"verdict": "A"}, headers=alice)
    ).status_code == 401
    assert (await service.lease(bob)).json()["task_id"] == task_id
    assert (await service.client.delete("/v1/admin/annotators/nobody", headers=bearer(ADMIN))).status_code == 404


async def test_admin_endpoints_need_the_admin_token(service: Service) -> None:
    body = {"annotator_id": "x", "domains": ["general"]}
    assert (await service.client.post("/v1/admin/annotators", json=body)).status_code == 401
    assert (await service.client.post("/v1/admin/annotators", json=body, headers=bearer("wrong"))).status_code == 401
    annotator = await service.issue("eve-5", "general")
    assert (await service.client.post("/v1/admin/annotators", json=body, headers=annotator)).status_code == 401
    bad = {"annotator_id": "x", "domains": ["Not A Domain"]}
    assert (await service.client.post("/v1/admin/annotators", json=bad, headers=bearer(ADMIN))).status_code == 422


async def test_admin_endpoints_closed_without_an_admin_token() -> None:
    app = create_app(FeedbackSettings(admin_token=None, http_port=0))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        body = {"annotator_id": "x", "domains": ["general"]}
        for headers in ({}, bearer("anything"), bearer("")):
            assert (await client.post("/v1/admin/annotators", json=body, headers=headers)).status_code in (401, 403)
        assert (await client.post("/v1/admin/annotators", json=body, headers=bearer("x"))).status_code == 403
        assert (await client.delete("/v1/admin/annotators/x", headers=bearer("x"))).status_code == 403


async def test_invalid_request_dead_lettered_and_consuming_goes_on(service: Service) -> None:
    domain = new_domain()
    alice = await service.issue("alice-6", domain)
    task_id = f"task-{uuid.uuid4().hex[:6]}"
    async with service.reading(topics.DEAD_LETTER) as reader:
        await service.publish(b'{"task_id": "broken"}', annotation_request_body(task_id, domain))
        assert (await service.lease_eventually(alice))["task_id"] == task_id

        async def letters() -> list[DeadLetter]:
            found = [DeadLetter.model_validate_json(r.value) for r in await reader.poll()]
            return [d for d in found if d.raw_value == '{"task_id": "broken"}']

        (letter,) = await eventually(letters, timeout=15)
    assert (letter.service, letter.error_code) == ("feedback", "contract_violation")
    assert letter.source_topic == topics.topic(service.prefix, topics.ANNOTATION_REQUESTS)
