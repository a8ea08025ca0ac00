"""The annotator UI's routes on a running feedback (no browser): headers, auth, the lease view, guidelines."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.feedback.app import create_app
from services.feedback.settings import FeedbackSettings
from services.feedback.ui_view import shown_left, word_diff
from shared import topics
from shared.web_pages import CONTENT_SECURITY_POLICY
from tests.support.apps import running_app
from tests.support.builders import annotation_request_body
from tests.support.isolation import isolated_pipeline
from tests.support.kafka import produce
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)
ADMIN = "ui-http-admin"


@pytest.fixture(scope="module")
async def service(
    kafka_bootstrap: str, pg_server_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, str, str]]:
    guidelines = tmp_path_factory.mktemp("guidelines")
    (guidelines / "general.md").write_text("# General\n\nJudge the text.\n")
    (guidelines / "medical.md").write_text("# Medical\n\n<script>alert(1)</script> Safety first.\n")
    async with isolated_pipeline(kafka_bootstrap, pg_server_url, template_db) as (url, prefix):
        settings = FeedbackSettings(
            kafka_bootstrap_servers=kafka_bootstrap,
            database_url=url,
            topic_prefix=prefix,
            admin_token=ADMIN,
            http_port=0,
            group_id=f"feedback-{prefix}",
            tasks_group_id=f"feedback-tasks-{prefix}",
            guidelines_dir=Path(guidelines),
        )
        async with running_app(create_app(settings)) as client:
            yield client, kafka_bootstrap, prefix


async def issue(client: httpx.AsyncClient, annotator: str, *domains: str) -> dict[str, str]:
    response = await client.post(
        "/v1/admin/annotators",
        json={"annotator_id": annotator, "domains": list(domains)},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def test_the_page_and_its_files_carry_the_policy_and_name_no_other_origin(service: Any) -> None:
    client, _, _ = service
    page = await client.get("/ui/")
    assert page.status_code == 200 and page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["referrer-policy"] == "no-referrer"
    html = page.text
    assert "http://" not in html and "https://" not in html and "<style" not in html and "style=" not in html
    assert "<script>" not in html and 'id="token"' in html and 'name="' not in html.split('id="token"')[1][:80]
    script = await client.get("/ui/static/annotate.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    again = await client.get("/ui/static/annotate.js", headers={"If-None-Match": script.headers["etag"]})
    assert again.status_code == 304
    assert (await client.get("/ui/static/../app.py")).status_code == 404
    assert (await client.get("/ui", follow_redirects=False)).headers["location"] == "/ui/"


async def test_me_and_lease_need_a_token_and_the_lease_says_how_to_show_the_task(service: Any) -> None:
    client, bootstrap, prefix = service
    assert (await client.get("/ui/api/me")).status_code == 401
    assert (await client.post("/ui/api/lease", json={})).status_code == 401
    domain = f"d{uuid.uuid4().hex[:8]}"
    alice = await issue(client, "alice-ui", domain)
    me = (await client.get("/ui/api/me", headers=alice)).json()
    assert me == {"annotator_id": "alice-ui", "domains": [domain], "lease_seconds": 600.0}
    assert (await client.post("/ui/api/lease", json={}, headers=alice)).status_code == 204
    assert (await client.post("/ui/api/lease", json={"domain": "other"}, headers=alice)).status_code == 403

    body = annotation_request_body(f"task-{uuid.uuid4().hex[:6]}", domain)
    body["candidates"]["A"]["content"] = "Check your glucose before training."
    body["candidates"]["B"]["content"] = "Check your glucose only if unwell."
    await produce(bootstrap, prefix, topics.ANNOTATION_REQUESTS, [json.dumps(body).encode()])

    async def leased() -> dict[str, Any] | None:
        response = await client.post("/ui/api/lease", json={}, headers=alice)
        return response.json() if response.status_code == 200 else None

    shown = await eventually(leased, timeout=30, interval=0.1)
    assert shown["task"]["task_id"] == body["task_id"] and shown["task"]["lease_expires_at"]
    left = shown_left(body["task_id"], "alice-ui", "compare")
    assert shown["shown_left"] == left
    right = "B" if left == "A" else "A"
    contents = {k: v["content"] for k, v in body["candidates"].items()}
    assert shown["diff"] == word_diff(contents[left], contents[right])
    # The lease is the API's own: the verdict route takes it, with the side that was shown left.
    verdict = await client.post(
        f"/v1/tasks/{body['task_id']}/verdict", json={"verdict": "B", "shown_left": left}, headers=alice
    )
    assert verdict.status_code == 200, verdict.text
    bad_side = await client.post(f"/v1/tasks/{body['task_id']}/verdict", json={"verdict": "A", "shown_left": "C"})
    assert bad_side.status_code in (401, 422)


async def test_guidelines_of_the_domain_or_the_general_ones_escaped_and_only_for_the_tokens_domains(
    service: Any,
) -> None:
    client, _, _ = service
    medic = await issue(client, "medic-ui", "medical", "code")
    own = (await client.get("/ui/api/guidelines/medical", headers=medic)).json()
    assert own["source"] == "medical.md" and "Safety first." in own["html"]
    assert "<script>" not in own["html"] and "&lt;script&gt;" in own["html"]
    fallback = (await client.get("/ui/api/guidelines/code", headers=medic)).json()
    assert fallback["source"] == "general.md" and "Judge the text." in fallback["html"]
    assert (await client.get("/ui/api/guidelines/legal", headers=medic)).status_code == 403
    assert (await client.get("/ui/api/guidelines/medical")).status_code == 401
