"""Security of the running pipeline: the annotator API's auth matrix, SQL injection strings, PII toward annotators.

- Auth: every way to call an annotator or admin route without the right to (no token, a bad token, a
  revoked token, another domain, another annotator's lease, the admin routes without / with a wrong
  admin token, an annotator token on an admin route) is refused with 401 or 403, in one matrix; two
  positive controls show the setup would let the right caller in. Expert evidence has one way in:
  a forged verdict on the end users' routes is refused (422 `forbidden_source`) whoever sends it and
  whatever task it names, and over HTTP or feedback.raw it changes no pair and no task.
- SQL injection: strings that would break naively built SQL go into every text field (ids, user_ref,
  prompt and answer, comments, edits, a verdict's rewrite and comment, annotator ids) and come out on
  `interactions`, `votes` and `preference-pairs` exactly as sent; every table still exists.
- PII: emails, phone and card numbers in prompts and answers never reach an annotator (lease, stats);
  `preference-pairs` carries them verbatim: it is training data, redacted downstream if at all, and
  its readers are trusted like the raw topics are.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest

from shared import topics
from tests.hostile.pipeline import ADMIN, Pipeline, running_pipeline
from tests.support.builders import annotation_request_body, interaction_body, vote_body
from tests.support.kafka import TopicReader, produce
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)

INJECTIONS = [
    "'; DROP TABLE tasks; --",
    '" OR 1=1 --',
    "$1",
    "' OR '1'='1' /* $2::text */",
    "Robert'); DROP TABLE agg_votes;-- ñ 中文 🙂",
    "%s %(x)s {0} \\'; SELECT pg_sleep(5); --",
]
PII = ["jane.doe@example.com", "+1 415 555 0132", "4111 1111 1111 1111"]
TABLES = ["tasks", "annotators", "agg_groups", "agg_interactions", "agg_votes", "agg_pairs", "published_events"]


@pytest.fixture(scope="module")
async def pipeline(kafka_bootstrap: str, pg_server_url: str, template_db: str) -> AsyncIterator[Pipeline]:
    async with running_pipeline(kafka_bootstrap, pg_server_url, template_db) as running:
        yield running


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def issue(pipeline: Pipeline, annotator_id: str, *domains: str) -> str:
    response = await pipeline.feedback.post(
        "/v1/admin/annotators", json={"annotator_id": annotator_id, "domains": list(domains)}, headers=bearer(ADMIN)
    )
    assert response.status_code == 201, response.text
    return response.json()["token"]


async def lease_eventually(pipeline: Pipeline, token: str, timeout: float = 60) -> dict[str, Any]:
    async def leased() -> dict[str, Any] | None:
        response = await pipeline.feedback.post("/v1/tasks/lease", headers=bearer(token))
        assert response.status_code in (200, 204), response.text
        return response.json() if response.status_code == 200 else None

    return await eventually(leased, timeout=timeout, interval=0.2)


@dataclass
class World:
    """Who is who for the auth matrix: tokens by role, and task T leased by alice."""

    tokens: dict[str, str]
    task_id: str
    other_domain: str  # one alice's token does not open


@pytest.fixture(scope="module")
async def world(pipeline: Pipeline) -> World:
    domain, other = f"d{uuid.uuid4().hex[:8]}", f"o{uuid.uuid4().hex[:8]}"
    tokens = {
        "alice": await issue(pipeline, "alice-m", domain),
        "bob": await issue(pipeline, "bob-m", domain),
        "olga": await issue(pipeline, "olga-m", other),
        "rita": await issue(pipeline, "rita-m", domain),
        "bad": "not-a-token",
        "admin": ADMIN,
        "wrong_admin": ADMIN + "x",
    }
    task_id = f"task-{uuid.uuid4().hex[:8]}"
    await produce(
        pipeline.bootstrap,
        pipeline.prefix,
        topics.ANNOTATION_REQUESTS,
        [json.dumps(annotation_request_body(task_id, domain)).encode()],
    )
    assert (await lease_eventually(pipeline, tokens["alice"]))["task_id"] == task_id
    revoked = await pipeline.feedback.delete("/v1/admin/annotators/rita-m", headers=bearer(ADMIN))
    assert revoked.status_code == 200
    return World(tokens, task_id, other)


T = "{task}"
# The issue's forged verdict (a made-up task, B better), as a body an app could post.
FORGED_VERDICT = {
    "event_id": "00000000-0000-4000-8000-00000000f0f0",
    "app_id": "helpdesk",
    "occurred_at": "2026-11-26T10:00:00Z",
    "interaction_id": "int-x",
    "source": "expert",
    "annotator_id": "mallory",
    "kind": "verdict",
    "task_id": "anything",
    "verdict": "B",
    "a_interaction_id": "int-x",
    "b_interaction_id": "int-y",
}
# An anonymous thumb claiming to be an expert's.
FORGED_THUMB = {**vote_body(event_id="00000000-0000-4000-8000-00000000f0f1"), "source": "expert"}
MATRIX = [
    # (who, method, path, body, expected status)
    (None, "POST", "/v1/tasks/lease", None, 401),
    ("bad", "POST", "/v1/tasks/lease", None, 401),
    ("rita", "POST", "/v1/tasks/lease", None, 401),
    ("admin", "POST", "/v1/tasks/lease", None, 401),
    ("alice", "POST", "/v1/tasks/lease", {"domain": "{other_domain}"}, 403),
    (None, "POST", f"/v1/tasks/{T}/verdict", {"verdict": "A"}, 401),
    ("bad", "POST", f"/v1/tasks/{T}/verdict", {"verdict": "A"}, 401),
    ("rita", "POST", f"/v1/tasks/{T}/verdict", {"verdict": "A"}, 401),
    ("olga", "POST", f"/v1/tasks/{T}/verdict", {"verdict": "A"}, 403),
    ("bob", "POST", f"/v1/tasks/{T}/verdict", {"verdict": "A"}, 403),
    *[
        (who, "POST", f"/v1/tasks/{T}/{action}", None, status)
        for action in ("extend", "release", "skip")
        for who, status in ((None, 401), ("rita", 401), ("olga", 403), ("bob", 403))
    ],
    (None, "GET", "/v1/tasks/stats", None, 401),
    ("bad", "GET", "/v1/tasks/stats", None, 401),
    ("rita", "GET", "/v1/tasks/stats", None, 401),
    (None, "POST", "/v1/admin/annotators", {"annotator_id": "mallory", "domains": ["general"]}, 401),
    ("wrong_admin", "POST", "/v1/admin/annotators", {"annotator_id": "mallory", "domains": ["general"]}, 401),
    ("alice", "POST", "/v1/admin/annotators", {"annotator_id": "mallory", "domains": ["general"]}, 401),
    (None, "DELETE", "/v1/admin/annotators/alice-m", None, 401),
    ("wrong_admin", "DELETE", "/v1/admin/annotators/alice-m", None, 401),
    ("bob", "DELETE", "/v1/admin/annotators/alice-m", None, 401),
    # Expert evidence only through a lease: a verdict on the end users' routes is refused, whoever sends it.
    *[
        (who, "POST", path, body, 422)
        for who in (None, "alice", "admin")
        for path, body in (
            ("/v1/votes", FORGED_VERDICT),
            ("/v1/votes", {**FORGED_VERDICT, "task_id": T}),
            ("/v1/votes/batch", [{**FORGED_VERDICT, "task_id": T}]),
            ("/v1/votes", {**FORGED_THUMB}),
        )
    ],
    # Positive controls: the right caller gets in, so the refusals above are about the caller.
    ("alice", "POST", f"/v1/tasks/{T}/extend", None, 200),
    ("admin", "GET", "/v1/tasks/stats", None, 200),
]


@pytest.mark.parametrize(("who", "method", "path", "body", "expected"), MATRIX)
async def test_auth_matrix(
    pipeline: Pipeline, world: World, who: str | None, method: str, path: str, body: Any, expected: int
) -> None:
    values = {"task": world.task_id, "other_domain": world.other_domain}
    url = path.format(**values)
    text = json.dumps(body).replace("{other_domain}", values["other_domain"]).replace(T, world.task_id)
    payload = json.loads(text) if body else None
    headers = bearer(world.tokens[who]) if who else {}
    response = await pipeline.feedback.request(method, url, json=payload, headers=headers)
    assert response.status_code == expected, response.text
    if expected in (401, 403):
        assert response.json()["detail"], "a refusal says why"
    if expected == 401:
        assert response.headers.get("www-authenticate") == "Bearer"
    if expected == 422:
        assert "forbidden_source" in response.text, "a forged verdict is refused as such"


@dataclass
class Sent:
    """One injection string's events, as posted."""

    text: str
    compared: list[dict[str, Any]]  # A, B: a comparison prefers B
    edited: dict[str, Any]
    rewritten: dict[str, Any]  # a lone answer with a thumbs-down: a rewrite task
    votes: list[dict[str, Any]]


def sent_for(k: int, text: str, app_id: str, domain: str) -> Sent:
    def interaction(tag: str, prompt: str, answer: str, **extra: Any) -> dict[str, Any]:
        return interaction_body(
            app_id=app_id,
            interaction_id=f"{text}#{tag}{k}",
            conversation_id=text,
            user_ref=text,
            messages=[{"role": "user", "content": prompt}],
            response={"content": answer, "model": text, "model_version": text},
            **extra,
        )

    a = interaction("a", f"{text} compare {k}? Mail {PII[0]}", f"{text} answer A, call {PII[1]}")
    b = interaction("b", a["messages"][0]["content"], f"{text} answer B", regenerated_from=a["interaction_id"])
    edited = interaction("e", f"{text} edit {k}?", f"{text} answer to edit")
    lone = interaction("r", f"{text} rewrite {k}? I am {PII[0]}", f"{text} card {PII[2]} tel {PII[1]}", domain=domain)
    votes = [
        vote_body(
            app_id=app_id,
            interaction_id=b["interaction_id"],
            user_ref=text,
            kind="comparison",
            value=None,
            preferred_interaction_id=b["interaction_id"],
            other_interaction_id=a["interaction_id"],
        ),
        vote_body(
            app_id=app_id, interaction_id=a["interaction_id"], user_ref=text, kind="comment", text=text, value=None
        ),
        vote_body(
            app_id=app_id,
            interaction_id=edited["interaction_id"],
            user_ref=text,
            kind="edit",
            edited_content=f"{text} edited",
            value=None,
        ),
        vote_body(app_id=app_id, interaction_id=lone["interaction_id"], user_ref=text, value=-1),
    ]
    return Sent(text, [a, b], edited, lone, votes)


async def read_all(reader: TopicReader, count: int, what: str) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]]:
        values = [json.loads(r.value) for r in await reader.poll() if r.value is not None]
        assert len(values) >= count, f"{len(values)} of {count} {what}"
        return values

    return await eventually(enough, timeout=60, interval=0.2)


async def judge_rewrites(
    pipeline: Pipeline, domain: str, texts: list[str]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Each injection string is an annotator id: it leases a rewrite task and rewrites it.

    Returns what the annotators were shown, and the rewrite given per interaction_id.
    """
    seen, rewrites = [], {}
    for k, text in enumerate(texts):
        token = await issue(pipeline, f"{text} #{k}", domain)
        task = await lease_eventually(pipeline, token)
        seen.append(task)
        rewrites[task["candidates"]["A"]["interaction_id"]] = f"{text} rewrite"
        verdict = {"verdict": "both_bad", "rewrite": f"{text} rewrite", "comment": text}
        response = await pipeline.feedback.post(
            f"/v1/tasks/{task['task_id']}/verdict", json=verdict, headers=bearer(token)
        )
        assert response.status_code == 200, response.text
        stats = await pipeline.feedback.get("/v1/tasks/stats", headers=bearer(token))
        assert stats.status_code == 200
        seen.append(stats.json())
        revoked = await pipeline.feedback.delete(
            f"/v1/admin/annotators/{quote(f'{text} #{k}', safe='')}", headers=bearer(ADMIN)
        )
        assert revoked.status_code == 200, revoked.text
        assert (await pipeline.feedback.get("/v1/tasks/stats", headers=bearer(token))).status_code == 401
    return seen, rewrites


async def test_injection_strings_are_stored_and_returned_verbatim_and_pii_never_reaches_annotators(
    pipeline: Pipeline,
) -> None:
    domain, app_id = f"s{uuid.uuid4().hex[:8]}", f"app-{uuid.uuid4().hex[:6]}"
    sent = [sent_for(k, text, app_id, domain) for k, text in enumerate(INJECTIONS)]
    interactions = [i for s in sent for i in (*s.compared, s.edited, s.rewritten)]
    votes = [v for s in sent for v in s.votes]
    async with (
        pipeline.reading(topics.INTERACTIONS) as out_i,
        pipeline.reading(topics.VOTES) as out_v,
        pipeline.reading(topics.PREFERENCE_PAIRS) as out_p,
    ):
        response = await pipeline.ingest.post("/v1/interactions/batch", json=interactions)
        assert response.status_code == 202 and not response.json()["rejected"], response.text
        response = await pipeline.feedback.post("/v1/votes/batch", json=votes)
        assert response.status_code == 202 and not response.json()["rejected"], response.text
        seen_by_annotators, rewrites = await judge_rewrites(pipeline, domain, INJECTIONS)
        on_interactions = {v["event_id"]: v for v in await read_all(out_i, len(interactions), "interactions")}
        on_votes = await read_all(out_v, len(votes) + len(INJECTIONS), "votes")
        # comparison, edit and rewrite pairs per injection string
        pairs = [p for p in await read_all(out_p, 3 * len(INJECTIONS), "pairs") if p["app_id"] == app_id]
    for item in interactions:
        out = on_interactions[item["event_id"]]
        for name in ("app_id", "interaction_id", "conversation_id", "user_ref", "messages", "response"):
            assert out[name] == item[name], f"{name} changed on the way"
    by_id = {v["event_id"]: v for v in on_votes}
    for vote in votes:
        assert {k: by_id[vote["event_id"]].get(k) for k in vote} == vote
    check_verdicts(on_votes, INJECTIONS)
    check_pairs(pairs, sent, rewrites)
    text = json.dumps(seen_by_annotators, ensure_ascii=False)
    assert not [p for p in PII if p in text], "PII reached an annotator"
    assert "[EMAIL]" in text and "[CARD]" in text and "[PHONE]" in text
    await check_tables_exist(pipeline)


def check_verdicts(on_votes: list[dict[str, Any]], texts: list[str]) -> None:
    verdicts = {v["annotator_id"]: v for v in on_votes if v["kind"] == "verdict"}
    for k, text in enumerate(texts):
        verdict = verdicts[f"{text} #{k}"]
        assert (verdict["rewrite"], verdict["comment"], verdict["reviewers"]) == (
            f"{text} rewrite",
            text,
            [f"{text} #{k}"],
        )


def check_pairs(pairs: list[dict[str, Any]], sent: list[Sent], rewrites: dict[str, str]) -> None:
    """Pairs carry every text verbatim, PII included: preference-pairs is training data, not redacted."""
    contents = {(p["chosen"]["content"], p["rejected"]["content"], p["prompt"][0]["content"]) for p in pairs}
    for s in sent:
        a, b = s.compared
        assert (b["response"]["content"], a["response"]["content"], a["messages"][0]["content"]) in contents
        assert (f"{s.text} edited", s.edited["response"]["content"], s.edited["messages"][0]["content"]) in contents
        lone = s.rewritten
        rewrite = rewrites[lone["interaction_id"]]
        assert (rewrite, lone["response"]["content"], lone["messages"][0]["content"]) in contents
    assert all(p in json.dumps(pairs, ensure_ascii=False) for p in PII)


async def check_tables_exist(pipeline: Pipeline) -> None:
    connection = await asyncpg.connect(pipeline.database_url)
    try:
        for table in TABLES:
            assert await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", table), f"{table} is gone"
        assert await connection.fetchval("SELECT count(*) FROM agg_votes") > 0
        assert await connection.fetchval("SELECT count(*) FROM tasks") > 0
    finally:
        await connection.close()
