"""App keys against the real broker and database: apps write only their own app_id (APP_KEYS_REQUIRED=true).

ingest and feedback run in-process on one database and topic prefix, with app keys required:
- the auth matrix of the end-user write routes (single and batch, both services): no key, a bad
  key, a revoked key, the admin token, an annotator token or another scheme -> 401; a key for
  another app -> 403 naming `body.app_id` (`app_not_allowed`); the admin routes of keys without the
  admin token -> 401 (403 while ADMIN_TOKEN is unset);
- a mixed batch publishes its covered items and only those; a forbidden item claims no event_id and
  is refused before dedupe (never `conflict`);
- a revoke takes effect on the very next request in both services (nothing is cached);
- the database holds the key's sha256, never the key; the CLI issues, lists and revokes.
Keys never reaching the logs is checked with the services as processes in tests/hostile/test_logs.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
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
from tests.support.kafka import TopicReader, reading
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)

ADMIN = "app-keys-admin-token"
APP, OTHER = "helpdesk", "billing"


@dataclass
class Keyed:
    """ingest and feedback with app keys required, and the credentials of each role."""

    ingest: httpx.AsyncClient
    feedback: httpx.AsyncClient
    bootstrap: str
    prefix: str
    database_url: str
    headers: dict[str, dict[str, str]]
    keys: dict[str, dict[str, Any]]

    def client(self, service: str) -> httpx.AsyncClient:
        return self.ingest if service == "ingest" else self.feedback

    def reading(self, name: str):
        return reading(self.bootstrap, self.prefix, name)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def issue(ingest: httpx.AsyncClient, *app_ids: str) -> dict[str, Any]:
    response = await ingest.post("/v1/admin/apps", json={"app_ids": list(app_ids)}, headers=bearer(ADMIN))
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"key_id", "key", "app_ids"} and body["app_ids"] == sorted(set(app_ids))
    return body


@pytest.fixture(scope="module")
async def keyed(kafka_bootstrap: str, pg_server_url: str, template_db: str) -> AsyncIterator[Keyed]:
    async with isolated_pipeline(kafka_bootstrap, pg_server_url, template_db) as (url, prefix):
        common: dict[str, Any] = {
            "kafka_bootstrap_servers": kafka_bootstrap,
            "database_url": url,
            "topic_prefix": prefix,
            "http_port": 0,
            "admin_token": ADMIN,
            "app_keys_required": True,
            "log_format": "console",
        }
        apps = (
            create_ingest(IngestSettings(**common, group_id=f"ingest-{prefix}")),
            create_feedback(FeedbackSettings(**common, group_id=f"feedback-{prefix}", tasks_group_id=f"t-{prefix}")),
        )
        async with running_apps(*apps) as (ingest, feedback):
            keys = {"right": await issue(ingest, APP), "other": await issue(ingest, OTHER)}
            keys["revoked"] = await issue(ingest, APP)
            revoked = await ingest.delete(f"/v1/admin/apps/{keys['revoked']['key_id']}", headers=bearer(ADMIN))
            assert revoked.status_code == 200, revoked.text
            grant = {"annotator_id": "annie", "domains": ["general"]}
            annotator = await feedback.post("/v1/admin/annotators", json=grant, headers=bearer(ADMIN))
            assert annotator.status_code == 201, annotator.text
            headers = {
                "none": {},
                "wrong": bearer("not-an-app-key"),
                "admin": bearer(ADMIN),
                "annotator": bearer(annotator.json()["token"]),
                "basic": {"Authorization": f"Basic {keys['right']['key']}"},
                **{name: bearer(key["key"]) for name, key in keys.items()},
            }
            yield Keyed(ingest, feedback, kafka_bootstrap, prefix, url, headers, keys)


ROUTES = {"ingest": "/v1/interactions", "feedback": "/v1/votes"}


def body_for(service: str, app_id: str = APP, **overrides: Any) -> dict[str, Any]:
    if service == "ingest":
        return interaction_body(app_id=app_id, interaction_id=f"i-{uuid.uuid4().hex[:8]}", **overrides)
    return vote_body(app_id=app_id, **overrides)


MATRIX = [
    (service, is_batch, who, expected)
    for service in ROUTES
    for is_batch in (False, True)
    for who, expected in (
        ("none", 401),
        ("wrong", 401),
        ("revoked", 401),
        ("admin", 401),
        ("annotator", 401),
        ("basic", 401),
        ("other", 403),
        ("right", 202),  # the positive control: the refusals above are about the caller
    )
]


@pytest.mark.parametrize(("service", "is_batch", "who", "expected"), MATRIX)
async def test_write_routes_auth_matrix(keyed: Keyed, service: str, is_batch: bool, who: str, expected: int) -> None:
    items = [body_for(service), body_for(service)]
    path, payload = (f"{ROUTES[service]}/batch", items) if is_batch else (ROUTES[service], items[0])
    response = await keyed.client(service).post(path, json=payload, headers=keyed.headers[who])
    assert response.status_code == expected, response.text
    body = response.json()
    if expected == 401:
        assert response.headers.get("www-authenticate") == "Bearer"
        assert body["code"] == "unauthenticated" and body["detail"]
    if expected == 403:
        where = [["body", 0, "app_id"], ["body", 1, "app_id"]] if is_batch else [["body", "app_id"]]
        assert [e["loc"] for e in body["detail"]] == where
        assert {e["type"] for e in body["detail"]} == {"app_not_allowed"}


ADMIN_ROUTES = [
    ("POST", "/v1/admin/apps", {"app_ids": [APP]}),
    ("GET", "/v1/admin/apps", None),
    ("DELETE", "/v1/admin/apps/{right}", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
@pytest.mark.parametrize("who", ["none", "wrong", "right", "annotator", "basic"])
async def test_admin_routes_of_app_keys_need_the_admin_token(
    keyed: Keyed, who: str, method: str, path: str, body: Any
) -> None:
    url = path.format(right=keyed.keys["right"]["key_id"])
    response = await keyed.ingest.request(method, url, json=body, headers=keyed.headers[who])
    assert response.status_code == 401, response.text
    assert response.headers.get("www-authenticate") == "Bearer"
    # The right key still works: the DELETE above revoked nothing.
    check = await keyed.ingest.post(ROUTES["ingest"], json=body_for("ingest"), headers=keyed.headers["right"])
    assert check.status_code == 202, check.text


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
async def test_admin_routes_of_app_keys_are_closed_while_admin_token_is_unset(
    method: str, path: str, body: Any
) -> None:
    app = create_ingest(IngestSettings(app_keys_required=True, admin_token=None))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
        response = await client.request(method, path.format(right="ak_0"), json=body, headers=bearer("anything"))
    assert response.status_code == 403, response.text
    assert "ADMIN_TOKEN" in response.json()["detail"]


async def event_ids_on(reader: TopicReader, wanted: set[str], timeout: float = 30) -> set[str]:
    """Every event_id read from the topic once all of `wanted` are there."""

    async def arrived() -> set[str]:
        seen = {json.loads(r.value)["event_id"] for r in await reader.poll() if r.value is not None}
        assert wanted <= seen, f"{len(wanted - seen)} of {len(wanted)} not on the topic yet"
        return seen

    return await eventually(arrived, timeout=timeout, interval=0.1)


@pytest.mark.parametrize("service", ROUTES)
async def test_a_mixed_batch_publishes_the_covered_items_and_refuses_the_others(keyed: Keyed, service: str) -> None:
    two_apps = await issue(keyed.ingest, APP, "helpdesk-eu")
    items = [body_for(service), body_for(service, OTHER), body_for(service, "helpdesk-eu"), body_for(service, OTHER)]
    output = topics.INTERACTIONS if service == "ingest" else topics.VOTES
    async with keyed.reading(output) as reader:
        response = await keyed.client(service).post(
            f"{ROUTES[service]}/batch", json=items, headers=bearer(two_apps["key"])
        )
        assert response.status_code == 202, response.text
        body = response.json()
        assert [r["status"] for r in body["results"]] == ["accepted", "forbidden", "accepted", "forbidden"]
        assert body["accepted"] == [items[0]["event_id"], items[2]["event_id"]]
        assert [(f["index"], f["event_id"], f["errors"][0]["type"]) for f in body["forbidden"]] == [
            (1, items[1]["event_id"], "app_not_allowed"),
            (3, items[3]["event_id"], "app_not_allowed"),
        ]
        seen = await event_ids_on(reader, {items[0]["event_id"], items[2]["event_id"]})
    assert not seen & {items[1]["event_id"], items[3]["event_id"]}, "a forbidden item was published"
    metrics = (await keyed.client(service).get("/metrics")).text
    stream = "interactions" if service == "ingest" else "votes"
    assert f'events_forbidden_total{{stream="{stream}",via="http"}}' in metrics


@pytest.mark.parametrize("service", ROUTES)
async def test_a_forbidden_item_claims_no_event_id_and_is_refused_before_dedupe(keyed: Keyed, service: str) -> None:
    client, path = keyed.client(service), ROUTES[service]
    theirs = body_for(service, OTHER)
    output = topics.INTERACTIONS if service == "ingest" else topics.VOTES
    async with keyed.reading(output) as reader:
        refused = await client.post(path, json=theirs, headers=keyed.headers["right"])
        assert refused.status_code == 403 and refused.json()["status"] == "forbidden", refused.text
        # Its owner then posts it: the first post left no trace, so it is accepted, not a duplicate.
        owned = await client.post(path, json=theirs, headers=keyed.headers["other"])
        assert owned.status_code == 202 and owned.json()["status"] == "accepted", owned.text
        await event_ids_on(reader, {theirs["event_id"]})
    # Another body under that event_id: a conflict for a caller who may write it, forbidden for one who may not.
    mine = {**body_for(service, APP), "event_id": theirs["event_id"]}
    assert (await client.post(path, json=mine, headers=keyed.headers["right"])).status_code == 409
    changed = {**body_for(service, OTHER), "event_id": theirs["event_id"]}
    forbidden = await client.post(f"{path}/batch", json=[changed], headers=keyed.headers["right"])
    assert forbidden.status_code == 403 and forbidden.json()["results"][0]["status"] == "forbidden", forbidden.text


async def test_a_revoked_key_is_refused_on_the_next_request_in_both_services(keyed: Keyed) -> None:
    issued = await issue(keyed.ingest, APP)
    headers = bearer(issued["key"])
    for service, path in ROUTES.items():
        response = await keyed.client(service).post(path, json=body_for(service), headers=headers)
        assert response.status_code == 202, response.text
    revoked = await keyed.ingest.delete(f"/v1/admin/apps/{issued['key_id']}", headers=bearer(ADMIN))
    assert revoked.status_code == 200 and revoked.json() == {"key_id": issued["key_id"], "revoked": True}
    for service, path in ROUTES.items():
        single = await keyed.client(service).post(path, json=body_for(service), headers=headers)
        batch = await keyed.client(service).post(f"{path}/batch", json=[body_for(service)], headers=headers)
        assert (single.status_code, batch.status_code) == (401, 401), (service, single.text, batch.text)
    listed = await keyed.ingest.get("/v1/admin/apps", params={"app_id": APP}, headers=bearer(ADMIN))
    assert listed.status_code == 200
    record = next(k for k in listed.json()["keys"] if k["key_id"] == issued["key_id"])
    assert record["revoked_at"] is not None and "key" not in record
    assert issued["key"] not in listed.text
    again = await keyed.ingest.delete(f"/v1/admin/apps/{issued['key_id']}", headers=bearer(ADMIN))
    assert again.status_code == 200
    unknown = await keyed.ingest.delete("/v1/admin/apps/ak_ffffffffffffffff", headers=bearer(ADMIN))
    assert unknown.status_code == 404


async def test_keys_are_stored_as_their_sha256_and_nowhere_in_plain_text(keyed: Keyed) -> None:
    issued = await issue(keyed.ingest, APP, OTHER)
    connection = await asyncpg.connect(keyed.database_url)
    try:
        row = await connection.fetchrow("SELECT key_hash, app_ids FROM app_keys WHERE key_id = $1", issued["key_id"])
        assert bytes(row["key_hash"]) == hashlib.sha256(issued["key"].encode()).digest()
        assert sorted(row["app_ids"]) == [OTHER, APP]
        tables = await connection.fetch("SELECT schemaname, tablename FROM pg_tables WHERE schemaname = 'public'")
        assert "app_keys" in {t["tablename"] for t in tables}
        for table in tables:
            name = '"{}"."{}"'.format(*(part.replace('"', '""') for part in (table["schemaname"], table["tablename"])))
            # A test-only identifier from the catalog; the key is a bind parameter.
            query = f"SELECT count(*) FROM {name} AS t WHERE strpos(t::text, $1) > 0"
            found = await connection.fetchval(query, issued["key"])
            assert found == 0, f"{table['tablename']} holds a key in plain text"
    finally:
        await connection.close()


async def cli(keyed: Keyed, *args: str) -> tuple[int, str, str]:
    """`python -m services.ingest.admin ...` on this module's database; exit code, stdout, stderr."""
    env = {**os.environ, "DATABASE_URL": keyed.database_url, "LOG_FORMAT": "console"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.ingest.admin", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_cli_issues_lists_and_revokes_keys(keyed: Keyed) -> None:
    code, out, err = await cli(keyed, "issue", "--app-ids", f"{APP},cli-app")
    assert code == 0, err
    issued = json.loads(out)
    assert issued["app_ids"] == ["cli-app", APP]
    assert issued["key"] not in err, "the key is printed on stdout only"
    for service, path in ROUTES.items():
        body = body_for(service, "cli-app")
        response = await keyed.client(service).post(path, json=body, headers=bearer(issued["key"]))
        assert response.status_code == 202, response.text
    code, out, _ = await cli(keyed, "list", "--app-id", "cli-app")
    assert code == 0 and [k["key_id"] for k in json.loads(out)["keys"]] == [issued["key_id"]]
    assert issued["key"] not in out
    code, out, err = await cli(keyed, "revoke", "--key-id", issued["key_id"])
    assert (code, json.loads(out)) == (0, {"key_id": issued["key_id"], "revoked": True}), err
    for service, path in ROUTES.items():
        response = await keyed.client(service).post(
            path, json=body_for(service, "cli-app"), headers=bearer(issued["key"])
        )
        assert response.status_code == 401, response.text
    assert (await cli(keyed, "revoke", "--key-id", "ak_ffffffffffffffff"))[0] == 1
    code, _, err = await cli(keyed, "issue", "--app-ids", " , ")
    assert code == 1 and "app_ids" in err
    assert (await cli(keyed, "issue"))[0] == 2
