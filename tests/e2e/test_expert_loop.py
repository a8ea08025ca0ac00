"""The expert loop across all three services: split user votes -> annotation task -> verdict -> expert pair.

ingest, feedback and the aggregator run in-process on one broker, one database and one topic prefix.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.aggregator.app import create_app as create_aggregator
from services.aggregator.settings import AggregatorSettings
from services.feedback.app import create_app as create_feedback
from services.feedback.settings import FeedbackSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from shared import topics
from shared.events import Message
from shared.prompt_key import prompt_key
from tests.support.apps import running_apps
from tests.support.kafka import reading
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)
ADMIN = "e2e-admin-token"
APP_ID = "helpdesk"
PROMPT = "Can diabetic patients do intense exercise? Write to me at jane.doe@example.com"


@dataclass
class Pipeline:
    ingest: httpx.AsyncClient
    feedback: httpx.AsyncClient
    bootstrap: str
    prefix: str


@pytest.fixture
async def pipeline(kafka_bootstrap: str, database_url: str, topics: str) -> AsyncIterator[Pipeline]:
    prefix = topics
    common: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "database_url": database_url,
        "topic_prefix": prefix,
        "http_port": 0,
        "admin_token": ADMIN,
    }
    apps = [
        create_ingest(IngestSettings(**common, group_id=f"ingest-{prefix}")),
        create_feedback(
            FeedbackSettings(
                **common,
                group_id=f"feedback-{prefix}",
                tasks_group_id=f"feedback-tasks-{prefix}",
                outbox_poll_interval_s=0.1,
            )
        ),
        create_aggregator(AggregatorSettings(**common, group_id=f"aggregator-{prefix}", outbox_poll_interval_s=0.1)),
    ]
    async with running_apps(*apps) as (ingest, feedback, _aggregator):
        yield Pipeline(ingest, feedback, kafka_bootstrap, prefix)


def interaction(interaction_id: str, answer: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "app_id": APP_ID,
        "occurred_at": datetime.now(UTC).isoformat(),
        "interaction_id": interaction_id,
        "conversation_id": f"conv-{interaction_id}",
        "user_ref": "u-asker",
        "messages": [{"role": "user", "content": PROMPT}],
        "response": {"content": answer, "model": "acme-chat", "model_version": "2026-11-01"},
        "domain": "medical",
        **extra,
    }


def comparison(user: str, preferred: str, other: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "app_id": APP_ID,
        "occurred_at": datetime.now(UTC).isoformat(),
        "interaction_id": preferred,
        "user_ref": user,
        "kind": "comparison",
        "preferred_interaction_id": preferred,
        "other_interaction_id": other,
    }


async def issue(feedback: httpx.AsyncClient, annotator: str, domain: str) -> dict[str, str]:
    response = await feedback.post(
        "/v1/admin/annotators",
        json={"annotator_id": annotator, "domains": [domain]},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def test_split_votes_reach_an_expert_whose_verdict_becomes_the_pair(pipeline: Pipeline) -> None:
    a, b = f"int-a-{uuid.uuid4().hex[:6]}", f"int-b-{uuid.uuid4().hex[:6]}"
    for body in (
        interaction(a, "Yes, any exercise is fine."),
        interaction(b, "Ask your doctor first.", regenerated_from=a),
    ):
        response = await pipeline.ingest.post("/v1/interactions", json=body)
        assert response.status_code == 202, response.text
    # A 3-2 split among five users: ambiguous, so the aggregator asks an expert.
    votes = [comparison(f"u-{i}", a, b) for i in range(3)] + [comparison(f"u-{i}", b, a) for i in range(3, 5)]
    response = await pipeline.feedback.post("/v1/votes/batch", json=votes)
    assert response.status_code == 202 and not response.json()["rejected"], response.text

    medic = await issue(pipeline.feedback, "dr-alice", "medical")
    lawyer = await issue(pipeline.feedback, "bob-legal", "legal")

    async def leased() -> dict[str, Any] | None:
        response = await pipeline.feedback.post("/v1/tasks/lease", headers=medic)
        assert response.status_code in (200, 204), response.text
        return response.json() if response.status_code == 200 else None

    task = await eventually(leased, timeout=90, interval=0.2)
    assert (task["kind"], task["domain"]) == ("compare", "medical")
    assert {task["candidates"]["A"]["interaction_id"], task["candidates"]["B"]["interaction_id"]} == {a, b}
    assert "jane.doe@example.com" not in json.dumps(task)
    assert (await pipeline.feedback.post("/v1/tasks/lease", headers=lawyer)).status_code == 204

    better = "A" if task["candidates"]["A"]["interaction_id"] == b else "B"
    async with reading(pipeline.bootstrap, pipeline.prefix, topics.PREFERENCE_PAIRS) as pairs:
        response = await pipeline.feedback.post(
            f"/v1/tasks/{task['task_id']}/verdict", json={"verdict": better}, headers=medic
        )
        assert response.status_code == 200, response.text
        key = prompt_key(APP_ID, [Message(role="user", content=PROMPT)])

        async def expert_pair() -> dict[str, Any] | None:
            values = [json.loads(r.value) for r in await pairs.poll() if r.value is not None]
            found = [v for v in values if v["prompt_key"] == key and v["method"] == "expert"]
            return found[-1] if found else None

        pair = await eventually(expert_pair, timeout=60, interval=0.2)
    assert (pair["chosen"]["interaction_id"], pair["rejected"]["interaction_id"]) == (b, a)
    assert pair["domain"] == "medical"
