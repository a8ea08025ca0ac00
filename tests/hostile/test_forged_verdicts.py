"""The issue's forged expert verdict, through the whole running pipeline: refused, and nothing moves.

A pair 8 users settled (X over Y) and a real task waiting in the annotators' queue (its task_id read
from annotation-requests, as an outside client could). A forged verdict (`source: expert`, `kind:
verdict`, B better) goes in every way an app can send one: POST /v1/votes, POST /v1/votes/batch and
feedback.raw, with a made-up task_id, with the real one over X/Y, and with the real one over the
task's own candidates. Each is refused (422 / dead letter `forbidden_source`); afterwards the pair
is as it was, nothing new was published for it, and the task is still queued and leased to an
annotator of its domain.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared import topics
from shared.events import DeadLetter
from tests.hostile.pipeline import ADMIN, Pipeline, running_pipeline
from tests.support.builders import interaction_body, vote_body
from tests.support.kafka import TopicReader, produce
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
async def pipeline(kafka_bootstrap: str, pg_server_url: str, template_db: str) -> AsyncIterator[Pipeline]:
    async with running_pipeline(kafka_bootstrap, pg_server_url, template_db) as running:
        yield running


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def forged(app: str, task_id: str, a: str, b: str) -> dict[str, Any]:
    body = vote_body(app_id=app, interaction_id=a, value=None, source="expert", annotator_id="mallory",
                     kind="verdict", task_id=task_id, verdict="B", a_interaction_id=a, b_interaction_id=b)  # fmt: skip
    body.pop("user_ref")
    return body


async def latest(reader: TopicReader, key: bytes, what: str) -> Any:
    async def found() -> Any:
        await reader.poll()
        values = [r for r in reader.records if r.key == key]
        assert values, f"no {what} yet"
        return values

    return await eventually(found, timeout=60, interval=0.2)


async def queued_in(pipeline: Pipeline, domain: str) -> int:
    stats = (await pipeline.feedback.get("/v1/tasks/stats", headers=bearer(ADMIN))).json()
    return stats["domains"].get(domain, {}).get("queued", 0)


def answer(app: str, interaction_id: str, prompt: str, content: str, **extra: Any) -> dict[str, Any]:
    return interaction_body(
        app_id=app,
        interaction_id=interaction_id,
        messages=[{"role": "user", "content": prompt}],
        response={"content": content, "model": "m", "model_version": interaction_id},
        **extra,
    )


async def settle_one_pair_and_open_one_task(pipeline: Pipeline, app: str, domain: str) -> None:
    """x over y, settled by 8 users; c1 against c2, 3-2 and 2-3: a task for `domain`."""
    answers = [
        answer(app, "x", "Is the earth round?", "Yes."),
        answer(app, "y", "Is the earth round?", "No."),
        answer(app, "c1", "Best pasta shape?", "Penne.", domain=domain),
        answer(app, "c2", "Best pasta shape?", "Fusilli.", domain=domain),
    ]
    assert (await pipeline.ingest.post("/v1/interactions/batch", json=answers)).status_code == 202
    thumbs = [("x", 1)] * 4 + [("y", -1)] * 4 + [("c1", 1)] * 3 + [("c1", -1)] * 2 + [("c2", 1)] * 2 + [("c2", -1)] * 3
    votes = [vote_body(app_id=app, interaction_id=i, user_ref=f"u{k}", value=v) for k, (i, v) in enumerate(thumbs)]
    assert (await pipeline.feedback.post("/v1/votes/batch", json=votes)).status_code == 202


async def send_every_way(pipeline: Pipeline, dead: TopicReader, bodies: list[dict[str, Any]]) -> None:
    """Each body over POST /v1/votes, all in one batch, and on feedback.raw: each refused as forbidden_source."""
    for body in bodies:
        response = await pipeline.feedback.post("/v1/votes", json=body)
        assert response.status_code == 422 and "forbidden_source" in response.text, response.text
    again = [{**b, "event_id": str(uuid.uuid4())} for b in bodies]
    batch = await pipeline.feedback.post("/v1/votes/batch", json=again)
    assert batch.status_code == 422 and {r["status"] for r in batch.json()["results"]} == {"rejected"}
    raw = [{**b, "event_id": str(uuid.uuid4())} for b in bodies]
    await produce(pipeline.bootstrap, pipeline.prefix, topics.FEEDBACK_RAW, [json.dumps(b).encode() for b in raw])
    letters = await letters_of(dead, {r["event_id"] for r in raw})
    assert {d.error_code for d in letters} == {"forbidden_source"}


async def test_a_forged_verdict_changes_no_pair_and_no_task(pipeline: Pipeline) -> None:
    app, domain = f"app-{uuid.uuid4().hex[:6]}", f"d{uuid.uuid4().hex[:6]}"
    await settle_one_pair_and_open_one_task(pipeline, app, domain)
    async with (
        pipeline.reading(topics.PREFERENCE_PAIRS) as pairs,
        pipeline.reading(topics.ANNOTATION_REQUESTS) as requests,
        pipeline.reading(topics.DEAD_LETTER) as dead,
    ):
        pair_records = await latest_pair(pairs, app)
        before = json.loads(pair_records[-1].value)
        assert (before["chosen"]["interaction_id"], before["method"]) == ("x", "votes")
        task = await task_of(requests, app)
        await eventually(lambda: _is_queued(pipeline, domain), timeout=60, interval=0.2)
        a, b = task["candidates"]["A"]["interaction_id"], task["candidates"]["B"]["interaction_id"]
        real = task["task_id"]
        await send_every_way(pipeline, dead, [forged(app, "anything", "x", "y"), forged(app, real, "x", "y"),
                                              forged(app, real, a, b)])  # fmt: skip
        marker = vote_body(app_id=app, interaction_id="x", user_ref="u-marker", value=1)  # after the forged ones
        assert (await pipeline.feedback.post("/v1/votes", json=marker)).status_code == 202
        moved = await eventually(lambda: _pair_moved(pairs, app, len(pair_records)), timeout=60, interval=0.2)
        assert (moved["chosen"]["interaction_id"], moved["method"]) == ("x", "votes"), "only the marker moved it"
        assert moved["evidence"] == {**before["evidence"], "chosen_up": 5}
        await requests.poll()
        assert [r for r in requests.records if r.key == real.encode()][-1].value is not None, "task not withdrawn"
    assert await queued_in(pipeline, domain) == 1, "the real task is still in the annotators' queue"
    grant = {"annotator_id": f"honest-{domain}", "domains": [domain]}
    token = (await pipeline.feedback.post("/v1/admin/annotators", json=grant, headers=bearer(ADMIN))).json()["token"]
    leased = await pipeline.feedback.post("/v1/tasks/lease", headers=bearer(token))
    assert leased.status_code == 200 and leased.json()["task_id"] == real


async def latest_pair(reader: TopicReader, app: str) -> list[Any]:
    async def found() -> list[Any]:
        await reader.poll()
        mine = [r for r in reader.records if r.value and json.loads(r.value)["app_id"] == app]
        assert mine, "no pair yet"
        return mine

    return await eventually(found, timeout=60, interval=0.2)


async def _pair_moved(reader: TopicReader, app: str, count: int) -> dict[str, Any] | None:
    await reader.poll()
    mine = [r for r in reader.records if r.value and json.loads(r.value)["app_id"] == app]
    return json.loads(mine[-1].value) if len(mine) > count else None


async def task_of(reader: TopicReader, app: str) -> dict[str, Any]:
    async def found() -> dict[str, Any]:
        await reader.poll()
        mine = [json.loads(r.value) for r in reader.records if r.value and json.loads(r.value)["app_id"] == app]
        assert mine, "no annotation request yet"
        return mine[-1]

    return await eventually(found, timeout=60, interval=0.2)


async def _is_queued(pipeline: Pipeline, domain: str) -> bool:
    return await queued_in(pipeline, domain) == 1


async def letters_of(reader: TopicReader, event_ids: set[str]) -> list[DeadLetter]:
    async def found() -> list[DeadLetter]:
        await reader.poll()
        letters = [DeadLetter.model_validate_json(r.value) for r in reader.records]
        mine = [d for d in letters if d.raw_value and json.loads(d.raw_bytes() or b"{}").get("event_id") in event_ids]
        assert len(mine) == len(event_ids), f"{len(mine)} of {len(event_ids)} dead letters"
        return mine

    return await eventually(found, timeout=60, interval=0.2)
