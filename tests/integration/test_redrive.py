"""Dead letters go home, against the real broker and database: votes parked past the TTL, redriven once.

Votes arrive before their interactions and wait past the parked-vote TTL: dead-lettered. The
interactions arrive late. A dry run (the CLI, as an operator runs it) lists the letters and sends
nothing; the admin route sends them back to `votes` with a `redriven_from` header, and the pair
appears; a second redrive (the CLI) sends nothing. A vote whose interaction still never comes goes
back to dead-letter, as a new letter.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from shared import topics
from shared.events import utcnow
from tests.integration.aggregator.aggregator_flow import (
    Flow,
    app_for,
    interaction,
    key_of,
    outputs,
    settings_for,
    thumbs,
    vote,
)
from tests.support.apps import running_app
from tests.support.isolation import isolated_pipeline
from tests.support.kafka import producing, reading
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)
PARKED_TTL_S = 2.0
ADMIN = "redrive-admin-token"
REASON = "parked_vote_expired"


@dataclass
class Stack:
    flow: Flow
    aggregator: httpx.AsyncClient
    prefix: str


@pytest.fixture(scope="module")
async def stack(kafka_bootstrap: str, pg_server_url: str, template_db: str) -> AsyncIterator[Stack]:
    async with isolated_pipeline(kafka_bootstrap, pg_server_url, template_db) as (url, prefix):
        group_id = f"aggregator-{prefix}"
        settings = settings_for(
            kafka_bootstrap, url, prefix, group_id, parked_vote_ttl_s=PARKED_TTL_S, admin_token=ADMIN,
            redrive_read_idle_s=0.3,
        )  # fmt: skip
        async with (
            running_app(app_for(settings)) as client,
            outputs(kafka_bootstrap, prefix) as out,
            producing(kafka_bootstrap, prefix) as producer,
        ):
            yield Stack(Flow(kafka_bootstrap, url, group_id, producer, out), client, prefix)


async def ops(stack: Stack, *args: str) -> dict[str, Any]:
    """`python -m services.ops redrive ...` as an operator runs it, against this module's broker and database."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": stack.flow.bootstrap,
        "DATABASE_URL": stack.flow.database_url,
        "TOPIC_PREFIX": stack.prefix,
        "REDRIVE_READ_IDLE_S": "0.3",
        "OPS_STACK_FILE": "/nonexistent/stack.json",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.ops", "redrive", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    return json.loads(stdout)


def expired_letters(flow: Flow, event_ids: set[str]) -> list[dict[str, Any]]:
    letters = [json.loads(r.value) for r in flow.out.dead_letters.records]
    return [
        d for d in letters
        if d["error_code"] == REASON and d["raw_value"] and json.loads(d["raw_value"])["event_id"] in event_ids
    ]  # fmt: skip


async def redriven_rows(flow: Flow) -> list[Any]:
    conn = await asyncpg.connect(flow.database_url)
    try:
        return await conn.fetch("SELECT dead_letter_id, sent_at FROM redriven_dead_letters")
    finally:
        await conn.close()


async def test_votes_parked_past_the_ttl_come_home_once_their_interactions_arrived(stack: Stack) -> None:
    flow, aggregator = stack.flow, stack.aggregator
    app, prompt = f"app-{uuid.uuid4().hex[:6]}", "Which route is faster?"
    early = thumbs(app, "a", 4, 0) + thumbs(app, "b", 0, 4)
    orphan = vote(app, "never-arrives", "u-orphan", kind="thumb", value=1)
    ids = {json.loads(r.value or b"")["event_id"] for r in [*early, orphan]}
    started = utcnow()
    await flow.send([*early, orphan])

    async def all_expired() -> list[dict[str, Any]]:
        await flow.out.poll()
        letters = expired_letters(flow, ids)
        assert len(letters) == len(ids), f"{len(letters)} of {len(ids)} expired"
        return letters

    letters = await eventually(all_expired, timeout=PARKED_TTL_S + 60)
    await flow.send([interaction(app, prompt, "a", "The highway."), interaction(app, prompt, "b", "Downtown.")])
    await flow.settled()
    assert await flow.current_pairs(key_of(app, prompt)) == {}, "the dead-lettered votes are not in the state"

    dry = await ops(stack, "--reason", REASON, "--dry-run")
    assert dry["dry_run"] and dry["redriven"] == len(ids)
    assert {item["status"] for item in dry["items"]} == {"would_redrive"}
    assert await redriven_rows(flow) == [], "a dry run claims nothing"

    body = {"reason": REASON, "since": (started - timedelta(minutes=1)).isoformat()}
    assert (await aggregator.post("/v1/admin/dead-letters/redrive", json=body)).status_code == 401
    response = await aggregator.post(
        "/v1/admin/dead-letters/redrive", json=body, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["matched"], report["redriven"]) == (len(ids), len(ids))
    assert {item["dead_letter_id"] for item in report["items"]} == {d["event_id"] for d in letters}

    (pair,) = (await flow.live_pairs(key_of(app, prompt), 1)).values()
    assert (pair["chosen"]["interaction_id"], pair["method"]) == ("a", "votes")
    async with reading(flow.bootstrap, stack.prefix, topics.VOTES) as votes:
        await eventually(lambda: _redriven_on(votes, len(ids)), timeout=20)
        headers = {dict(r.headers)["redriven_from"].decode() for r in votes.records if r.headers}
    assert headers == {d["event_id"] for d in letters}

    again = await ops(stack, "--reason", REASON)
    statuses = {item["dead_letter_id"]: item["status"] for item in again["items"]}
    assert all(statuses[d["event_id"]] == "already_redriven" for d in letters), "each letter goes home at most once"
    resent = {item["dead_letter_id"] for item in again["items"] if item["status"] == "redriven"}
    assert all(row["sent_at"] is not None for row in await redriven_rows(flow))

    orphan_id = json.loads(orphan.value or b"")["event_id"]

    async def back_in_dead_letter() -> list[dict[str, Any]]:
        await flow.out.poll()
        found = expired_letters(flow, {orphan_id})
        assert len(found) == 2, "the orphan vote is not dead-lettered again yet"
        return found

    # Its interaction still never came: the orphan goes back to dead-letter as a new letter, which
    # only the second redrive may have sent (if it expired again before that redrive read the topic).
    again_letters = await eventually(back_in_dead_letter, timeout=PARKED_TTL_S + 60)
    assert resent <= {d["event_id"] for d in again_letters} - {d["event_id"] for d in letters}
    future = await ops(stack, "--reason", REASON, "--since", (utcnow() + timedelta(hours=1)).isoformat())
    assert (future["matched"], future["redriven"]) == (0, 0)


async def _redriven_on(reader: Any, count: int) -> bool:
    await reader.poll()
    found = [r for r in reader.records if r.headers and "redriven_from" in dict(r.headers)]
    assert len(found) >= count, f"{len(found)} of {count} redriven votes on votes"
    return True
