"""The edge flow shared by ingest and feedback: validate, stamp, dedupe by event_id, publish.

Both edge services take events over HTTP (single and batch) and from a raw topic, and publish
canonical events to one output topic. An event_id already published is accepted and publishes
nothing (the `published_events` table); the table is written only after the broker acknowledged
the publish, so a crash in between publishes again rather than losing (at-least-once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import asyncpg
import structlog
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry, Counter, Histogram

from shared import db
from shared.errors import ContractError, PipelineError, TransientError
from shared.events import Event, utcnow
from shared.kafka import OutRecord, RedeliveryPause, dead_letter_for, publish_records
from shared.settings import PipelineSettings, limits_from

log = structlog.get_logger(__name__)
QUERIES = db.SHARED_QUERIES

ItemStatus = Literal["accepted", "duplicate", "rejected"]


@dataclass(kw_only=True, frozen=True, slots=True)
class ItemResult:
    index: int
    status: ItemStatus
    event_id: str | None = None
    errors: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"index": self.index, "status": self.status, "event_id": self.event_id}
        if self.errors:
            body["errors"] = list(self.errors)
        return body


@dataclass(kw_only=True, frozen=True)
class EdgeStream:
    """What one edge service publishes: how to parse, stamp and key its events."""

    name: str
    output_topic: str
    parse: Callable[..., Event]
    stamp: Callable[[Event, datetime], Event]
    key: Callable[[Event], bytes]


class EdgeMetrics:
    def __init__(self, registry: CollectorRegistry, stream: str) -> None:
        labels = ["stream", "via"]
        self.accepted = Counter("events_accepted", "Events published to the output topic", labels, registry=registry)
        self.duplicates = Counter(
            "events_duplicate", "Events whose event_id was already published", labels, registry=registry
        )
        self.rejected = Counter("events_rejected", "Invalid events refused over HTTP", labels, registry=registry)
        self.dead_lettered = Counter(
            "events_dead_lettered",
            "Invalid raw-topic messages sent to dead-letter",
            ["stream", "error_code"],
            registry=registry,
        )
        self.publish_latency = Histogram(
            "publish_duration_seconds",
            "From validation to broker acknowledgement, per batch",
            ["stream"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.stream = stream


class EdgePublisher:
    """Carries validated events to the output topic, exactly once per event_id in effect."""

    def __init__(
        self,
        *,
        service: str,
        stream: EdgeStream,
        broker: KafkaBroker,
        pool: asyncpg.Pool,
        settings: PipelineSettings,
        metrics: EdgeMetrics,
    ) -> None:
        self.service = service
        self.stream = stream
        self.broker = broker
        self.pool = pool
        self.settings = settings
        self.metrics = metrics
        self.pause = RedeliveryPause(settings.retry_initial_backoff_s, settings.retry_max_backoff_s)
        # Built once per publisher, not once per event.
        self.limits = limits_from(settings)

    def validate(self, item: bytes | dict[str, Any]) -> Event:
        """Parse and stamp one event; raises ContractError naming the bad fields."""
        if not isinstance(item, (bytes, dict)):
            raise ContractError(
                "each item must be a JSON object",
                errors=[{"loc": [], "msg": "Input should be a valid dictionary", "type": "dict_type"}],
            )
        return self.stream.stamp(self.stream.parse(item, self.limits), utcnow())

    async def accept_items(self, items: Sequence[Any], *, via: str) -> list[ItemResult]:
        """Validate each item on its own and publish the good ones: one bad item rejects only itself."""
        results: list[ItemResult | None] = [None] * len(items)
        good: list[tuple[int, Event]] = []
        for index, item in enumerate(items):
            try:
                good.append((index, self.validate(item)))
            except ContractError as exc:
                event_id = item.get("event_id") if isinstance(item, dict) else None
                results[index] = ItemResult(
                    index=index,
                    status="rejected",
                    event_id=str(event_id) if event_id else None,
                    errors=tuple(exc.errors),
                )
                self.metrics.rejected.labels(self.stream.name, via).inc()
        fresh_ids = await self.publish([event for _, event in good], via=via)
        for index, event in good:
            status: ItemStatus = "accepted" if event.event_id in fresh_ids else "duplicate"
            results[index] = ItemResult(index=index, status=status, event_id=str(event.event_id))
        return [r for r in results if r is not None]

    async def consume_records(self, records: Sequence[ConsumerRecord]) -> None:
        """Raw-topic batch: good records are published, bad ones dead-lettered; nothing blocks."""
        good: list[Event] = []
        letters: list[OutRecord] = []
        for record in records:
            try:
                good.append(self._validate_record(record))
            except ContractError as exc:
                letters.append(dead_letter_for(self.settings.topic_prefix, self.service, record, exc))
                self.metrics.dead_lettered.labels(self.stream.name, exc.code).inc()
                log.warning(
                    "message_dead_lettered",
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    **exc.to_log_context(),
                )
        try:
            await self.publish(good, via="kafka", extra=letters)
        except TransientError as exc:
            pause_s = await self.pause.failed()
            log.warning("batch_failed", stream=self.stream.name, **exc.to_log_context(), backoff_s=pause_s)
            raise
        self.pause.succeeded()

    def _validate_record(self, record: ConsumerRecord) -> Event:
        if record.value is None:
            raise ContractError(
                "empty message (null value)", errors=[{"loc": [], "msg": "message has no value", "type": "missing"}]
            )
        if len(record.value) > self.settings.kafka_max_raw_bytes:
            raise ContractError(
                f"message is {len(record.value)} bytes, more than the limit of {self.settings.kafka_max_raw_bytes}",
                errors=[{"loc": [], "msg": "message too large", "type": "too_large"}],
            )
        return self.validate(record.value)

    async def publish(self, events: Sequence[Event], *, via: str, extra: Sequence[OutRecord] = ()) -> set[UUID]:
        """Publish the events not yet published (plus `extra` records); return the ids published now."""
        started = asyncio.get_running_loop().time()
        unique: dict[UUID, Event] = {}
        for event in events:
            unique.setdefault(event.event_id, event)
        seen = await self._already_published(list(unique))
        fresh = [e for eid, e in unique.items() if eid not in seen]
        # The serializer's bytes are what model_dump_json() decodes to str: skip the str round trip.
        records = [
            OutRecord(
                topic=self.stream.output_topic, key=self.stream.key(e), value=e.__pydantic_serializer__.to_json(e)
            )
            for e in fresh
        ]
        await publish_records(self.broker, [*records, *extra], timeout_s=self.settings.publish_timeout_s)
        fresh_ids = {e.event_id for e in fresh}
        await self._record_published(list(fresh_ids))
        self.metrics.accepted.labels(self.stream.name, via).inc(len(fresh))
        self.metrics.duplicates.labels(self.stream.name, via).inc(len(events) - len(fresh))
        self.metrics.publish_latency.labels(self.stream.name).observe(asyncio.get_running_loop().time() - started)
        return fresh_ids

    async def _already_published(self, event_ids: list[UUID]) -> set[UUID]:
        if not event_ids:
            return set()
        try:
            async with db.translate_errors(), asyncio.timeout(self.settings.db_acquire_timeout_s):
                rows = await self.pool.fetch(QUERIES["select_published_event_ids"], event_ids)
        except (TransientError, TimeoutError) as exc:
            # Dedupe is an optimisation here (every consumer is idempotent by event_id):
            # without the database, publish rather than refuse.
            log.warning("dedupe_unavailable", stream=self.stream.name, error=type(exc).__name__)
            return set()
        return {row["event_id"] for row in rows}

    async def _record_published(self, event_ids: list[UUID]) -> None:
        if not event_ids:
            return
        try:
            async with db.translate_errors(), asyncio.timeout(self.settings.db_acquire_timeout_s):
                await self.pool.execute(QUERIES["insert_published_events"], event_ids, self.stream.name)
        except (PipelineError, TimeoutError) as exc:
            log.warning("dedupe_record_failed", stream=self.stream.name, error=type(exc).__name__)


async def prune_published(pool: asyncpg.Pool, window: timedelta) -> int:
    """Forget published event ids older than the dedupe window; return how many."""
    async with db.translate_errors():
        status = await pool.execute(QUERIES["delete_published_events_before"], utcnow() - window)
    return int(status.split()[-1])
