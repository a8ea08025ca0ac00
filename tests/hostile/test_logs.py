"""No message content, user reference or token in any service's log, at the default level and at DEBUG.

The three services run as processes (deploy.stack.Stack on the session's broker and a fresh database).
A unique marker goes into every piece of user content the pipeline takes (prompt, answer, user_ref,
comment, edit, a verdict's rewrite and comment, an invalid HTTP body, a poison raw-topic message); the
whole flow runs to a preference pair; then no log file may hold the marker, an annotator token,
the admin token or an app key. App keys are required in this stack: every write carries one, and the
flow also presents a wrong key, a revoked key and a key for another app.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.stack import Stack
from shared import topics
from tests.support.builders import interaction_body, vote_body
from tests.support.kafka import produce, reading
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(240)


async def issue_app_key(client: httpx.AsyncClient, stack: Stack, *app_ids: str) -> str:
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    response = await client.post(
        f"{stack.services['ingest'].url}/v1/admin/apps", json={"app_ids": list(app_ids)}, headers=admin
    )
    assert response.status_code == 201, response.text
    return response.json()["key"]


async def refused_app_keys(client: httpx.AsyncClient, stack: Stack, marker: str) -> list[str]:
    """A wrong key, a revoked key and a key for another app presented to both services; the keys used."""
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    ingest = stack.services["ingest"].url
    other = await issue_app_key(client, stack, "another-app")
    revoked = (await client.post(f"{ingest}/v1/admin/apps", json={"app_ids": ["helpdesk"]}, headers=admin)).json()
    assert (await client.delete(f"{ingest}/v1/admin/apps/{revoked['key_id']}", headers=admin)).status_code == 200
    wrong = f"key-{marker}"
    for key, status in ((wrong, 401), (revoked["key"], 401), (other, 403)):
        headers = {"Authorization": f"Bearer {key}"}
        response = await client.post(f"{ingest}/v1/interactions", json=interaction_body(), headers=headers)
        assert response.status_code == status, response.text
        response = await client.post(f"{stack.services['feedback'].url}/v1/votes", json=vote_body(), headers=headers)
        assert response.status_code == status, response.text
    return [wrong, revoked["key"], other]


async def run_flow(stack: Stack, marker: str) -> list[str]:
    """Every kind of user content through all three services, to an expert pair; the secrets used."""
    domain = "logcheck"
    urls = {name: stack.services[name].url for name in ("ingest", "feedback")}
    # trust_env=False: a proxy in the environment must not capture loopback calls.
    async with httpx.AsyncClient(timeout=30, trust_env=False) as setup:
        app_key = await issue_app_key(setup, stack, "helpdesk")
        refused = await refused_app_keys(setup, stack, marker)
    headers = {"Authorization": f"Bearer {app_key}"}
    async with httpx.AsyncClient(timeout=30, trust_env=False, headers=headers) as client:
        lone = interaction_body(
            interaction_id=f"i-{marker}",
            conversation_id=f"c-{marker}",
            user_ref=f"u-{marker}",
            messages=[{"role": "user", "content": f"prompt {marker}"}],
            response={"content": f"answer {marker}", "model": "m", "model_version": "1"},
            domain=domain,
        )
        assert (await client.post(f"{urls['ingest']}/v1/interactions", json=lone)).status_code == 202
        bad = await client.post(f"{urls['ingest']}/v1/interactions", json={**lone, "language": marker * 3})
        assert bad.status_code == 422
        votes = [
            vote_body(interaction_id=lone["interaction_id"], user_ref=f"u-{marker}", value=-1),
            vote_body(interaction_id=lone["interaction_id"], kind="comment", text=f"comment {marker}", value=None),
            vote_body(interaction_id="other", kind="edit", edited_content=f"edit {marker}", value=None),
        ]
        assert (await client.post(f"{urls['feedback']}/v1/votes/batch", json=votes)).status_code == 202
        admin = {"Authorization": f"Bearer {stack.admin_token}"}
        grant = {"annotator_id": "log-checker", "domains": [domain]}
        token = (await client.post(f"{urls['feedback']}/v1/admin/annotators", json=grant, headers=admin)).json()[
            "token"
        ]
        annotator = {"Authorization": f"Bearer {token}"}

        async def leased() -> dict[str, Any] | None:
            response = await client.post(f"{urls['feedback']}/v1/tasks/lease", headers=annotator)
            return response.json() if response.status_code == 200 else None

        task = await eventually(leased, timeout=60, interval=0.2)
        verdict = {"verdict": "both_bad", "rewrite": f"rewrite {marker}", "comment": f"verdict {marker}"}
        response = await client.post(
            f"{urls['feedback']}/v1/tasks/{task['task_id']}/verdict", json=verdict, headers=annotator
        )
        assert response.status_code == 200, response.text
    poison = f'{{"prompt": "{marker}", broken'.encode()
    await produce(stack.kafka_bootstrap or "", stack.topic_prefix, topics.INTERACTIONS_RAW, [poison])
    return [token, stack.admin_token, app_key, *refused]


async def wait_for_outputs(stack: Stack, marker: str) -> None:
    """The rewrite pair is on preference-pairs and the poison in dead-letter: every service has done its part."""
    bootstrap = stack.kafka_bootstrap or ""
    async with (
        reading(bootstrap, stack.topic_prefix, topics.PREFERENCE_PAIRS) as pairs,
        reading(bootstrap, stack.topic_prefix, topics.DEAD_LETTER) as dead,
    ):

        async def done() -> bool:
            values = [r.value for r in await pairs.poll() if r.value is not None]
            letters = [json.loads(r.value) for r in await dead.poll()]
            assert any(f"rewrite {marker}".encode() in v for v in values), "no rewrite pair yet"
            assert any(marker in (d["raw_value"] or "") for d in letters), "poison not dead-lettered yet"
            return True

        await eventually(done, timeout=60, interval=0.2)


@pytest.mark.parametrize("log_level", ["INFO", "DEBUG"])
async def test_no_content_or_secret_in_any_log(
    tmp_path: Path, kafka_bootstrap: str, database_url: str, log_level: str
) -> None:
    marker = f"MARK{uuid.uuid4().hex}"
    extra_env = {"AGGREGATOR_OUTBOX_POLL_INTERVAL_S": "0.1", "FEEDBACK_OUTBOX_POLL_INTERVAL_S": "0.1"}
    if log_level != "INFO":  # INFO is the default: not set at all in that run
        extra_env["LOG_LEVEL"] = log_level
    stack = Stack(
        tmp_path,
        kafka_bootstrap=kafka_bootstrap,
        database_url=database_url,
        topic_prefix=f"t{uuid.uuid4().hex[:8]}.",
        app_keys_required=True,
        extra_env=extra_env,
    )
    async with stack:
        secrets = await run_flow(stack, marker)
        await wait_for_outputs(stack, marker)
    logs = {path.name: path.read_text(errors="replace") for path in stack.log_dir.glob("*.log")}
    assert set(logs) >= {"ingest.log", "feedback.log", "aggregator.log"}
    assert all(logs.values()), "every service wrote something"
    for name, text in logs.items():
        assert marker not in text, f"{name} logs user content: {_around(text, marker)}"
        for secret in secrets:
            assert secret not in text, f"{name} logs a token or key"


def _around(text: str, needle: str, chars: int = 300) -> str:
    index = text.index(needle)
    return text[max(0, index - chars) : index + chars]
