"""Test plumbing for exports: a vote scenario, the app on a real port, the exporter CLI, TRL's format rules.

TRL is not installed in the test environment (it needs torch), so `assert_trl_format` checks the
documented formats the way TRL's own data utilities do (trl/data_utils.py: `is_conversational`, the
key sets `apply_chat_template` accepts, `maybe_extract_prompt` leaving an explicit prompt alone).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from deploy.localstack import free_port
from services.aggregator.pairs import task_id
from shared import topics
from shared.events import Interaction, Message, Response
from shared.prompt_key import prompt_key
from tests.integration.aggregator.aggregator_flow import T0, interaction, later, running, settings_for, thumbs, vote
from tests.support.isolation import isolated_pipeline
from tests.support.kafka import Producer, Record, producing
from tests.support.waiting import eventually

REPO_ROOT = Path(__file__).resolve().parents[3]
CONVERSATION = [
    Message(role="system", content="You are a careful travel assistant."),
    Message(role="user", content="I want to visit Lisbon."),
    Message(role="assistant", content="Lovely! When are you going?"),
    Message(role="user", content="In March. What should I pack?"),
]
# Every key set TRL's apply_chat_template accepts, by kind (trl/data_utils.py).
TRL_KEYS = {
    "dpo": {"prompt", "chosen", "rejected"},
    "reward": {"chosen", "rejected"},
    "kto": {"prompt", "completion", "label"},
    "sft": {"messages"},
}
HAMLET = "Summarise the plot of Hamlet."
SELECT_TASK = "SELECT 1 FROM agg_annotation_requests WHERE task_id = $1"
TRL_SUPPORTED = ("prompt", "chosen", "rejected", "completion", "messages", "label")


def conversation_interaction(app_id: str, interaction_id: str, content: str, model_version: str) -> Record:
    """An interaction whose context has several turns (system, user, assistant, user)."""
    event = Interaction(
        event_id=uuid.uuid4(),
        occurred_at=T0,
        received_at=T0,
        app_id=app_id,
        interaction_id=interaction_id,
        conversation_id="conv-lisbon",
        user_ref="u-traveller",
        messages=CONVERSATION,
        response=Response(content=content, model="acme-chat", model_version=model_version),
        prompt_key=prompt_key(app_id, CONVERSATION),
    )
    return Record(topic=topics.INTERACTIONS, key=event.prompt_key.encode(), value=event.model_dump_json().encode())


@dataclass(frozen=True)
class Scenario:
    """One app's worth of state: which pairs, edits, rewrites and lone answers it produces."""

    app_id: str
    live_pairs: int

    @property
    def rewrite_task_id(self) -> str:
        """The rewrite task the aggregator issues for hamlet-a (one thumbs-down): verdicts need a real task."""
        messages = [Message(role="user", content=HAMLET)]
        return task_id(prompt_key(self.app_id, messages), "rewrite", ("hamlet-a",))

    def records(self) -> tuple[list[Record], list[Record], list[Record]]:
        """Answers, votes, then the expert verdicts (sent once the aggregator has issued their task)."""
        app = self.app_id
        answers = [
            conversation_interaction(app, "trip-a", "Layers and a light raincoat.", "v2"),
            conversation_interaction(app, "trip-b", "Just shorts.", "v1"),
            interaction(app, "Name a prime number.", "prime-a", "7"),
            interaction(app, "Name a prime number.", "prime-b", "9"),
            interaction(app, "Translate 'good morning' to French.", "fr-a", "Bon matin."),
            interaction(app, "Write a haiku about autumn.", "haiku-a", "Leaves fall."),
            interaction(app, "Write a haiku about autumn.", "haiku-b", "Red leaves drift slowly down."),
            interaction(app, "Is the sky blue?", "sky-a", "Yes, because of Rayleigh scattering."),
            interaction(app, "Is 2 a prime?", "two-a", "No."),
            interaction(app, HAMLET, "hamlet-a", "A prince is sad."),
        ]
        votes = thumbs(app, "trip-a", 5, 0) + thumbs(app, "trip-b", 0, 5)
        votes += thumbs(app, "prime-a", 4, 0) + thumbs(app, "prime-b", 0, 4)
        votes.append(vote(app, "fr-a", "u-fr", kind="edit", edited_content="Bonjour."))
        votes.append(
            vote(
                app,
                "haiku-b",
                "u-h",
                kind="comparison",
                preferred_interaction_id="haiku-b",
                other_interaction_id="haiku-a",
            )
        )
        votes += thumbs(app, "sky-a", 4, 0) + thumbs(app, "two-a", 0, 4) + thumbs(app, "hamlet-a", 0, 1)
        verdicts = [
            vote(
                app,
                "hamlet-a",
                "expert-1",
                later(5),
                source="expert",
                kind="verdict",
                task_id=self.rewrite_task_id,
                verdict="both_bad",
                rewrite="Prince Hamlet avenges his father's murder, and nearly everyone dies.",
                a_interaction_id="hamlet-a",
            )
        ]
        return answers, votes, verdicts


def standard_scenario() -> Scenario:
    # Pairs: trip (votes), prime (votes), fr edit, haiku comparison, hamlet expert rewrite.
    return Scenario(app_id=f"exp-{uuid.uuid4().hex[:8]}", live_pairs=5)


async def live_pairs(database_url: str, app_id: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM agg_pairs WHERE pair IS NOT NULL AND pair->>'app_id' = $1", app_id
        )
    finally:
        await conn.close()


async def play(producer: Producer, database_url: str, scenario: Scenario) -> None:
    """Send the scenario and wait until its pairs are all live in the aggregator's state."""
    answers, votes, verdicts = scenario.records()
    await producer.send(answers)
    await producer.send(votes)

    async def task_issued() -> bool:
        conn = await asyncpg.connect(database_url)
        try:
            return bool(await conn.fetchval(SELECT_TASK, scenario.rewrite_task_id))
        finally:
            await conn.close()

    await eventually(task_issued, timeout=30)
    await producer.send(verdicts)

    async def settled() -> bool:
        count = await live_pairs(database_url, scenario.app_id)
        assert count == scenario.live_pairs, f"{count} live pairs"
        return True

    await eventually(settled, timeout=30)


@dataclass
class Served:
    database_url: str
    producer: Producer
    client: httpx.AsyncClient
    url: str
    scenario: Scenario
    app: FastAPI


@pytest.fixture(scope="module")
async def served(kafka_bootstrap: str, pg_server_url: str, template_db: str) -> AsyncIterator[Served]:
    async with isolated_pipeline(kafka_bootstrap, pg_server_url, template_db) as (url, prefix):
        settings = settings_for(kafka_bootstrap, url, prefix, f"aggregator-{prefix}")
        async with running(settings) as app, producing(kafka_bootstrap, prefix) as producer, serving(app) as base:
            scenario = standard_scenario()
            await play(producer, url, scenario)
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                yield Served(url, producer, client, base, scenario, app)


async def export_folder(served: Served, out: Path, kind: str, *args: str) -> dict[str, Any]:
    """Run the exporter CLI against the served app; the folder's manifest."""
    result = await run_exporter([kind, "--out", str(out), "--aggregator", served.url, *args])
    assert result.code == 0, result.stderr
    return json.loads((out / "manifest.json").read_text())


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """Serve an already running app on a real loopback port (datasets and the CLI fetch over HTTP)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, timeout=10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


async def run_exporter(args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 60) -> CliResult:
    """`python -m services.exporter ARGS` in a subprocess (the real entry point), stdin closed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.exporter",
        *args,
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return CliResult(process.returncode, stdout.decode(), stderr.decode())


def _is_conversational(example: dict[str, Any]) -> bool:
    # TRL's is_conversational: a supported key whose value is a list of dicts with a role.
    for key in ("prompt", "chosen", "rejected", "completion", "messages"):
        value = example.get(key)
        if isinstance(value, list) and value and isinstance(value[0], dict) and "role" in value[0]:
            return True
    return False


def assert_trl_format(kind: str, example: dict[str, Any]) -> None:
    """One example as TRL reads it: its supported keys, conversational, answers as assistant messages."""
    assert {k for k in example if k in TRL_SUPPORTED} == TRL_KEYS[kind], sorted(example)
    assert _is_conversational(example)
    for key in ("chosen", "rejected", "completion"):
        if key in example and kind != "reward":
            assert [m["role"] for m in example[key]] == ["assistant"], example[key]
    if kind == "reward":
        for key in ("chosen", "rejected"):
            assert example[key][-1]["role"] == "assistant"
            assert example[key][:-1] == example["chosen"][:-1], "chosen and rejected share the prompt"
    if kind in ("dpo", "kto"):
        assert example["prompt"][-1]["role"] in ("user", "tool"), "the prompt ends with the user's turn"
    if kind == "kto":
        assert type(example["label"]) is bool
    if kind == "sft":
        assert example["messages"][-1]["role"] == "assistant"


def assert_utc(moment: Any) -> None:
    assert isinstance(moment, datetime) and moment.utcoffset() is not None and moment.utcoffset().total_seconds() == 0
