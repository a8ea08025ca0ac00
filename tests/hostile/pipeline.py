"""The three services in-process on one broker, one database and one topic prefix, for a hostile test module."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from services.aggregator.app import create_app as create_aggregator
from services.aggregator.settings import AggregatorSettings
from services.feedback.app import create_app as create_feedback
from services.feedback.settings import FeedbackSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from shared import topics
from shared.events import DeadLetter
from tests.support.apps import running_apps
from tests.support.isolation import isolated_pipeline
from tests.support.kafka import TopicReader, reading

ADMIN = "hostile-admin-token"
MAX_RAW_BYTES = 8_192


@dataclass
class Pipeline:
    ingest: httpx.AsyncClient
    feedback: httpx.AsyncClient
    aggregator: httpx.AsyncClient
    bootstrap: str
    prefix: str
    database_url: str

    def topic(self, name: str) -> str:
        return topics.topic(self.prefix, name)

    def reading(self, name: str):
        return reading(self.bootstrap, self.prefix, name)


@asynccontextmanager
async def running_pipeline(
    kafka_bootstrap: str, pg_server_url: str, template_db: str, **aggregator: Any
) -> AsyncIterator[Pipeline]:
    """ingest + feedback + aggregator on a fresh database and topic prefix (`aggregator`: its extra settings)."""
    async with isolated_pipeline(kafka_bootstrap, pg_server_url, template_db) as (url, prefix):
        async with _running(kafka_bootstrap, url, prefix, aggregator) as pipeline:
            yield pipeline


@asynccontextmanager
async def _running(kafka_bootstrap: str, url: str, prefix: str, aggregator: dict[str, Any]) -> AsyncIterator[Pipeline]:
    common: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "database_url": url,
        "topic_prefix": prefix,
        "http_port": 0,
        "admin_token": ADMIN,
        "kafka_max_raw_bytes": MAX_RAW_BYTES,
        "outbox_poll_interval_s": 0.1,
        "log_format": "console",
    }
    apps = [
        create_ingest(IngestSettings(**{k: v for k, v in common.items() if k != "outbox_poll_interval_s"})),
        create_feedback(FeedbackSettings(**common, group_id=f"feedback-{prefix}", tasks_group_id=f"tasks-{prefix}")),
        create_aggregator(AggregatorSettings(**common, group_id=f"aggregator-{prefix}", **aggregator)),
    ]
    async with running_apps(*apps) as (ingest, feedback, aggregator_client):
        yield Pipeline(ingest, feedback, aggregator_client, kafka_bootstrap, prefix, url)


def event_ids(reader: TopicReader) -> dict[str, Any]:
    """event_id -> the first record carrying it, of what the reader has read so far."""
    found: dict[str, Any] = {}
    for record in reader.records:
        if record.value is not None:
            found.setdefault(json.loads(record.value)["event_id"], record)
    return found


def dead_letters(reader: TopicReader) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(r.value) for r in reader.records if r.value is not None]
