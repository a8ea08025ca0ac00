"""Test plumbing for the aggregator: canonical events as ingest/feedback publish them, and output readers."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import asyncpg
from aiokafka import ConsumerRecord
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.aggregator.app import SERVICE, create_app
from services.aggregator.context import input_policy
from services.aggregator.intake import BatchIntake
from services.aggregator.metrics import AggregatorMetrics
from services.aggregator.rules import batch_rules
from services.aggregator.settings import AggregatorSettings
from shared import topics
from shared.events import Interaction, Message, Response
from shared.prompt_key import prompt_key
from tests.support.apps import running_app
from tests.support.kafka import Producer, Record, TopicReader, committed_all, consumed_record
from tests.support.outbox import unstarted_relay
from tests.support.waiting import eventually

# Event times near the wall clock: stats windows stay open for the whole module.
T0 = datetime.now(UTC).replace(microsecond=0)


def settings_for(bootstrap: str, database_url: str, prefix: str, group_id: str, **extra: Any) -> AggregatorSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "database_url": database_url,
        "topic_prefix": prefix,
        "group_id": group_id,
        "http_port": 0,
        "log_format": "console",
        "log_level": "WARNING",
        "stats_publish_interval_s": 0.2,
        "parked_sweep_interval_s": 0.5,
        "outbox_poll_interval_s": 0.1,
        **extra,
    }
    return AggregatorSettings(**values)


def app_for(settings: AggregatorSettings) -> FastAPI:
    return create_app(settings)


def intake_for(settings: AggregatorSettings, pool: asyncpg.Pool) -> BatchIntake:
    """The service's intake on `pool`, its relay never started: the outbox rows stay in the table to be read."""
    registry = CollectorRegistry()
    relay = unstarted_relay(SERVICE, settings, pool, registry)
    metrics = AggregatorMetrics(registry)
    runtime = SimpleNamespace(db=pool, service=SERVICE)
    policy = input_policy(runtime, settings, relay, metrics)  # type: ignore[arg-type]
    return BatchIntake(pool=pool, relay=relay, rules=batch_rules(settings, SERVICE), metrics=metrics, policy=policy)


def consumed(prefix: str, records: Sequence[Record]) -> tuple[ConsumerRecord, ...]:
    """`records` as one consumed batch, in the order given (offsets counted per topic)."""
    offsets: dict[str, int] = {}
    batch = []
    for record in records:
        topic = topics.topic(prefix, record.topic)
        offset = offsets[topic] = offsets.get(topic, -1) + 1
        batch.append(consumed_record(topic, record.value, offset=offset, key=record.key))
    return tuple(batch)


def interaction(app_id: str, prompt: str, interaction_id: str, content: str, at: datetime = T0, **extra: Any) -> Record:
    messages = [Message(role="user", content=prompt)]
    event = Interaction(
        event_id=uuid.uuid4(),
        occurred_at=at,
        received_at=at,
        app_id=app_id,
        interaction_id=interaction_id,
        conversation_id=f"conv-{interaction_id}",
        user_ref="u-asker",
        messages=messages,
        response=Response(content=content, model="acme-chat", model_version="v1"),
        prompt_key=prompt_key(app_id, messages),
        **extra,
    )
    return Record(topic=topics.INTERACTIONS, key=event.prompt_key.encode(), value=event.model_dump_json().encode())


def vote(app_id: str, interaction_id: str, voter: str, at: datetime = T0, **body: Any) -> Record:
    value = {
        "event_id": str(uuid.uuid4()),
        "app_id": app_id,
        "occurred_at": at.isoformat(),
        "received_at": at.isoformat(),
        "interaction_id": interaction_id,
        **({"annotator_id": voter} if body.get("source") == "expert" else {"user_ref": voter}),
        **body,
    }
    return Record(topic=topics.VOTES, key=interaction_id.encode(), value=json.dumps(value).encode())


def thumbs(app_id: str, interaction_id: str, up: int, down: int, at: datetime = T0, tag: str = "") -> list[Record]:
    ids = [(f"{tag}{interaction_id}-up{i}", 1) for i in range(up)] + [
        (f"{tag}{interaction_id}-down{i}", -1) for i in range(down)
    ]
    return [vote(app_id, interaction_id, voter, at, kind="thumb", value=value) for voter, value in ids]


def clear_split(tag: str, answer: str = "Answer {label}.") -> tuple[list[Record], list[Record]]:
    """A group's two answers (`answer` formatted with the label), and 4 thumbs up on one and 4 down on the
    other (one pair)."""
    answers = [interaction("app", f"Question {tag}?", f"{tag}-{label}", answer.format(label=label)) for label in "ab"]
    return answers, thumbs("app", f"{tag}-a", 4, 0) + thumbs("app", f"{tag}-b", 0, 4)


def key_of(app_id: str, prompt: str) -> str:
    return prompt_key(app_id, [Message(role="user", content=prompt)])


@dataclass
class Outputs:
    """Readers of the three output topics (no consumer group: no join wait)."""

    pairs: TopicReader
    requests: TopicReader
    stats: TopicReader
    dead_letters: TopicReader
    readers: list[TopicReader] = field(default_factory=list)

    async def poll(self) -> None:
        for reader in (self.pairs, self.requests, self.stats, self.dead_letters):
            await reader.poll()

    def pair_records(self, prompt: str) -> list[Any]:
        """Every record on preference-pairs of this prompt group (tombstones matched by remembered keys)."""
        keys = {
            r.key for r in self.pairs.records if r.value is not None and json.loads(r.value)["prompt_key"] == prompt
        }
        return [r for r in self.pairs.records if r.key in keys]

    def live_pairs(self, prompt: str) -> dict[str, dict[str, Any]]:
        """Latest value per pair_id of a group (compaction applied by hand), tombstoned ones left out."""
        latest: dict[bytes, Any] = {}
        for record in self.pair_records(prompt):
            latest[record.key] = record.value
        return {k.decode(): json.loads(v) for k, v in latest.items() if v is not None}

    def requests_of(self, prompt: str) -> list[dict[str, Any]]:
        values = [json.loads(r.value) for r in self.requests.records if r.value is not None]
        return [v for v in values if v["prompt_key"] == prompt]


@dataclass
class Flow:
    """One running aggregator of a test module: a producer of its inputs and readers of its outputs."""

    bootstrap: str
    database_url: str
    group_id: str
    producer: Producer
    out: Outputs

    async def send(self, records: list[Any]) -> None:
        await self.producer.send(records)

    async def settled(self) -> None:
        """Every record sent so far is consumed and committed."""
        await eventually(lambda: committed_all(self.bootstrap, self.group_id, self.producer), timeout=30)

    async def current_pairs(self, prompt_key: str) -> dict[str, Any]:
        await self.out.poll()
        return self.out.live_pairs(prompt_key)

    async def live_pairs(self, prompt_key: str, count: int, timeout: float = 20) -> dict[str, Any]:
        async def check() -> dict[str, Any]:
            live = await self.current_pairs(prompt_key)
            assert len(live) == count, f"live pairs: {live}"
            return live or {"none": None}

        return await eventually(check, timeout=timeout)

    async def task_of(self, prompt_key: str, timeout: float = 20) -> dict[str, Any]:
        """The latest annotation request of a group (waits for one)."""

        async def requested() -> dict[str, Any]:
            await self.out.poll()
            requests = self.out.requests_of(prompt_key)
            assert requests, "no annotation request yet"
            return requests[-1]

        return await eventually(requested, timeout=timeout)

    @staticmethod
    def verdict_on(task: dict[str, Any], verdict: str, at: datetime, **overrides: Any) -> Record:
        """The combined verdict feedback would publish for `task` (its own A and B, keyed by A)."""
        a = task["candidates"]["A"]["interaction_id"]
        b = task["candidates"].get("B", {}).get("interaction_id")
        body = {
            "source": "expert", "kind": "verdict", "task_id": task["task_id"], "verdict": verdict,
            "a_interaction_id": a, "b_interaction_id": b, **overrides,
        }  # fmt: skip
        return vote(task["app_id"], body.pop("interaction_id", a), "expert-1", at, **body)


@asynccontextmanager
async def outputs(bootstrap: str, prefix: str) -> AsyncIterator[Outputs]:
    readers = [
        await TopicReader(bootstrap, topics.topic(prefix, name)).start()
        for name in (topics.PREFERENCE_PAIRS, topics.ANNOTATION_REQUESTS, topics.FEEDBACK_STATS, topics.DEAD_LETTER)
    ]
    try:
        yield Outputs(*readers, readers=readers)
    finally:
        for reader in readers:
            await reader.stop()


@asynccontextmanager
async def running(settings: AggregatorSettings) -> AsyncIterator[FastAPI]:
    app = app_for(settings)
    async with running_app(app):
        yield app


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)
