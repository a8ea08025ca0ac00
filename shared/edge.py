"""The edge flow shared by ingest and feedback: validate, stamp, check, dedupe by event_id and body, publish.

Both edge services take events over HTTP (single and batch) and from a raw topic, and publish
canonical events to one output topic. One event_id, one body: `published_events` keeps the hash of
the body first published under each id (`body_hash`: the validated event without what the pipeline
stamps), so a re-post with the same body is a `duplicate` and one with another body a `conflict`;
neither publishes anything, and two items of one request with the same id are judged the same way,
in order. The table is written only after the broker acknowledged the publish, so a crash in between
publishes again rather than losing (at-least-once).

HTTP posts in flight at once share the work (a group commit, shared.edge_group): one check, one
dedupe query, one acknowledged publish and one insert of the published ids carry all of them, and
each caller gets its own items' results once that publish was acknowledged. Their items are judged
in arrival order as one list, so concurrent posts of one event_id within a process are judged like
items of one batch (first accepted, later duplicate or conflict). With EDGE_GROUP_DEPTH 2, two
groups may be in flight: the next group is judged and handed to the producer while the previous
one's acknowledgement and recording are in flight, against the previous one's ids kept in memory
(shared.edge_flight); a post judged a duplicate or conflict of an id whose group then fails gets
503 (retry), never a wrong answer. A post is answered after its id was recorded (the database up),
so another instance judges a later post of that id against the table. A raw-topic batch and an HTTP
post of one id racing each other (or two processes) may both be published; the consumers' own
dedupe by event_id keeps the first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import structlog
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker

from shared import db
from shared.consumer import broker_dead_letters, consumer_policy
from shared.edge_flight import Flight, InFlight, dependency_failed
from shared.edge_group import Finish, GroupCommit
from shared.edge_items import ItemResult, ItemStatus, body_hash, conflict_with, item_result, serialized
from shared.edge_metrics import EdgeMetrics
from shared.edge_view import prune_edge_view
from shared.errors import ContractError, PipelineError, TransientError
from shared.events import Event, utcnow
from shared.events.json_items import JsonItems
from shared.kafka import OutRecord, dead_letter_for
from shared.kafka_batches import start_batched
from shared.settings import PipelineSettings, limits_from

log = structlog.get_logger(__name__)
QUERIES = db.SHARED_QUERIES

Check = Callable[[asyncpg.Pool, Sequence[Event]], Awaitable[list[ContractError | None]]]
Record = Callable[[asyncpg.Pool, Sequence[Event], Sequence[bytes], str], Awaitable[None]]
Mark = Callable[[Sequence[Event]], Awaitable[list[Event]]]


@dataclass(kw_only=True, frozen=True, slots=True)
class Admission:
    """What becomes of one valid event: published now (`accepted`), `duplicate`, or refused with `error`."""

    status: ItemStatus
    error: PipelineError | None = None
    body_hash: bytes | None = None
    """Of an accepted event: what `published_events` records for it (computed once)."""
    value: bytes | None = None
    """Of an accepted event: its JSON as published (computed once, with the hash)."""
    after: Flight | None = None
    """Of a duplicate or conflict judged against a group still in flight (shared.edge_flight): that group."""


@dataclass(kw_only=True, frozen=True)
class EdgeStream:
    """What one edge service publishes: how to parse, stamp and key its events, and what else it checks."""

    name: str
    output_topic: str
    parse: Callable[..., Event]
    stamp: Callable[[Event, datetime], Event]
    key: Callable[[Event], bytes]
    check: Check | None = None
    """Refusals that need the database (feedback: comparisons across prompt groups); None for an event that passes."""
    record: Record | None = None
    """Records the events published now (ids, body hashes, stream name) and what else the stream keeps of them, in
    one statement (ingest: the edge's view of interactions); None: `record_published`, the ids and hashes only."""
    json_items: JsonItems[Any] | None = None
    """Validates a whole HTTP body from its bytes when nothing in it is refused (shared.events.json_items)."""
    mark: Mark | None = None
    """Stamps fresh events (admitted, first of their id) before they are published, one result per event in order
    (feedback: the per-voter hourly budget's quarantine); a stamp is never part of the body compared by id."""


async def _settled(event: Event, admission: Admission) -> Admission | BaseException:
    """`admission`, or the retryable error of one judged against a group whose publish failed."""
    if admission.after is None or await admission.after.acknowledged():
        return admission
    return dependency_failed(event.event_id)


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
        self.policy = consumer_policy(settings, name=stream.name, dead_letter=self._dead_letter_poison)
        self._publish_dead_letter = broker_dead_letters(
            broker=broker, service=service, topic_prefix=settings.topic_prefix, timeout_s=settings.publish_timeout_s
        )
        # Built once per publisher, not once per event.
        self.limits = limits_from(settings)
        # Concurrent HTTP posts share one admit and one publish (see the module's docstring).
        self.in_flight = InFlight()
        self.http_group: GroupCommit[Event, Admission] = GroupCommit.pipelined(
            self._start_http,
            max_items=settings.edge_group_max_events,
            name=stream.name,
            depth=settings.edge_group_depth,
        )

    def validate(self, item: bytes | dict[str, Any]) -> Event:
        """Parse and stamp one event; raises ContractError naming the bad fields."""
        if not isinstance(item, (bytes, dict)):
            raise ContractError(
                "each item must be a JSON object",
                errors=[{"loc": [], "msg": "Input should be a valid dictionary", "type": "dict_type"}],
            )
        return self.stream.stamp(self.stream.parse(item, self.limits), utcnow())

    async def accept_items(self, items: Sequence[Any], *, via: str) -> list[ItemResult]:
        """Judge each item on its own and publish the good ones: one bad item refuses only itself."""
        results: dict[int, ItemResult] = {}
        good: list[tuple[int, Event]] = []
        for index, item in enumerate(items):
            try:
                good.append((index, self.validate(item)))
            except ContractError as exc:
                event_id = item.get("event_id") if isinstance(item, dict) else None
                results[index] = item_result(index, str(event_id) if event_id else None, "rejected", exc)
                self.metrics.rejected.labels(self.stream.name, via).inc()
        return await self._accept_valid(good, results, via=via)

    async def accept_parsed(self, events: Sequence[Event], *, via: str) -> list[ItemResult]:
        """`accept_items` for items already validated (`EdgeStream.json_items`): stamped here, then judged."""
        return await self._accept_valid(
            [(i, self.stream.stamp(e, utcnow())) for i, e in enumerate(events)], {}, via=via
        )

    async def _accept_valid(
        self, good: list[tuple[int, Event]], results: dict[int, ItemResult], *, via: str
    ) -> list[ItemResult]:
        events = [event for _, event in good]
        if via == "http":
            admissions = await self.http_group.submit(events)
        else:
            admissions = await self._admit_and_publish(events, via=via)
        for (index, event), admission in zip(good, admissions, strict=True):
            results[index] = item_result(index, str(event.event_id), admission.status, admission.error)
            self._count(admission, via)
        return [results[index] for index in sorted(results)]

    async def _start_http(self, events: list[Event]) -> Finish[Admission]:
        """A group's first stage: judge (against the groups in flight too) and hand the accepted to the producer."""
        flight = Flight()
        admissions = await self.admit(events, in_flight=self.in_flight.snapshot())
        accepted = [(e, a) for e, a in zip(events, admissions, strict=True) if a.status == "accepted"]
        self.in_flight.add(flight, {e.event_id: a.body_hash for e, a in accepted if a.body_hash is not None})
        try:
            finish_publish = await self.start_publish(
                [e for e, _ in accepted], via="http", admitted=[a for _, a in accepted]
            )
        except BaseException:
            flight.settle(acknowledged=False)
            self.in_flight.drop(flight)
            raise

        async def finish() -> list[Admission | BaseException]:
            try:
                await finish_publish(on_acknowledged=lambda: flight.settle(acknowledged=True))
            finally:
                flight.settle(acknowledged=False)
                self.in_flight.drop(flight)
            return [await _settled(event, a) for event, a in zip(events, admissions, strict=True)]

        return finish

    async def _admit_and_publish(self, events: Sequence[Event], *, via: str) -> list[Admission]:
        """Admit `events` in order and publish the accepted: one check, one dedupe query, one acknowledged publish."""
        admissions = await self.admit(events)
        accepted = [(e, a) for e, a in zip(events, admissions, strict=True) if a.status == "accepted"]
        await self.publish([e for e, _ in accepted], via=via, admitted=[a for _, a in accepted])
        return admissions

    async def consume(self, records: Sequence[ConsumerRecord]) -> None:
        """A raw-topic batch under the consumers' failure policy (shared.consumer): nothing blocks a partition."""
        await self.policy.consume(records, self.consume_records)

    async def consume_records(self, records: Sequence[ConsumerRecord]) -> None:
        """Raw-topic batch: good records are published, the others dead-lettered, in one acknowledged publish."""
        good: list[tuple[ConsumerRecord, Event]] = []
        letters: list[OutRecord] = []
        for record in records:
            try:
                good.append((record, self._validate_record(record)))
            except ContractError as exc:
                letters.append(self._dead_letter(record, exc))
        admissions = await self.admit([event for _, event in good])
        for (record, _), admission in zip(good, admissions, strict=True):
            if admission.error is not None:
                letters.append(self._dead_letter(record, admission.error))
            self._count(admission, "kafka")
        fresh = [(e, a) for (_, e), a in zip(good, admissions, strict=True) if a.status == "accepted"]
        await self.publish([e for e, _ in fresh], via="kafka", extra=letters, admitted=[a for _, a in fresh])

    async def _dead_letter_poison(self, record: ConsumerRecord, error: PipelineError) -> None:
        """A record the policy gave up on (it failed alone `consumer_max_attempts` times)."""
        await self._publish_dead_letter(record, error)
        self.metrics.dead_lettered.labels(self.stream.name, error.code).inc()

    def _dead_letter(self, record: ConsumerRecord, error: PipelineError) -> OutRecord:
        self.metrics.dead_lettered.labels(self.stream.name, error.code).inc()
        log.warning(
            "message_dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            **error.to_log_context(),
        )
        return dead_letter_for(self.settings.topic_prefix, self.service, record, error)

    def _count(self, admission: Admission, via: str) -> None:
        if admission.status == "duplicate":
            self.metrics.duplicates.labels(self.stream.name, via).inc()
        elif admission.status == "conflict":
            self.metrics.conflicts.labels(self.stream.name, via).inc()
        elif admission.status == "rejected" and via != "kafka":
            self.metrics.rejected.labels(self.stream.name, via).inc()

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

    async def admit(
        self, events: Sequence[Event], *, in_flight: dict[UUID, tuple[bytes, Flight]] | None = None
    ) -> list[Admission]:
        """In order, what becomes of each event: the stream's checks, then one event_id, one body.

        An id published before (or earlier in `events`, or by a group `in_flight`) with the same body is
        a duplicate, with another body a conflict; a row written before bodies were hashed counts as the
        same body. A judgement against a group in flight names it (`after`).
        """
        refusals = await self._check(events)
        candidates = [e for e, refusal in zip(events, refusals, strict=True) if refusal is None]
        published = await self._published_bodies(list({e.event_id for e in candidates}))
        flights: dict[UUID, Flight] = {}
        for event_id, (digest, flight) in (in_flight or {}).items():
            if event_id not in published:
                published[event_id], flights[event_id] = digest, flight
        admissions = []
        for event, refusal in zip(events, refusals, strict=True):
            if refusal is not None:
                admissions.append(Admission(status="rejected", error=refusal))
                continue
            value = serialized(event)
            digest = body_hash(event, value)
            if event.event_id not in published:
                published[event.event_id] = digest
                admissions.append(Admission(status="accepted", body_hash=digest, value=value))
            elif published[event.event_id] in (None, digest):
                admissions.append(Admission(status="duplicate", after=flights.get(event.event_id)))
            else:
                error = conflict_with(event.event_id)
                admissions.append(Admission(status="conflict", error=error, after=flights.get(event.event_id)))
        return admissions

    async def publish(
        self,
        events: Sequence[Event],
        *,
        via: str,
        extra: Sequence[OutRecord] = (),
        admitted: Sequence[Admission] | None = None,
    ) -> None:
        """Publish `events` (admitted: first of their id) and `extra` records, then record the ids as published.

        `admitted`: each event's admission when the caller has it (its body hash and JSON, computed by
        `admit`), else both are computed here.
        """
        await (await self.start_publish(events, via=via, extra=extra, admitted=admitted))()

    async def start_publish(
        self,
        events: Sequence[Event],
        *,
        via: str,
        extra: Sequence[OutRecord] = (),
        admitted: Sequence[Admission] | None = None,
    ) -> Callable[..., Awaitable[None]]:
        """`publish`'s first stage (the records handed to the producer); returns the rest (acknowledged, recorded).

        The rest calls `on_acknowledged` (if given) once the broker acknowledged, before recording.
        """
        started = asyncio.get_running_loop().time()
        given = admitted or [Admission(status="accepted")] * len(events)
        digests = [a.body_hash for a in given]
        values = [a.value for a in given]
        if self.stream.mark is not None and events:
            marked = await self.stream.mark(events)
            # A stamped event is another body on the topic (its hash, the body compared by id, is the same).
            values = [v if m is e else None for e, m, v in zip(events, marked, values, strict=True)]
            events = marked
        records = [
            OutRecord(topic=self.stream.output_topic, key=self.stream.key(e), value=v or serialized(e))
            for e, v in zip(events, values, strict=True)
        ]
        acknowledged = await start_batched(self.broker, [*records, *extra], timeout_s=self.settings.publish_timeout_s)

        async def finish(on_acknowledged: Callable[[], None] | None = None) -> None:
            await acknowledged()
            if on_acknowledged is not None:
                on_acknowledged()
            await self._record_published(events, digests)
            self.metrics.accepted.labels(self.stream.name, via).inc(len(events))
            self.metrics.publish_latency.labels(self.stream.name).observe(asyncio.get_running_loop().time() - started)

        return finish

    async def _check(self, events: Sequence[Event]) -> list[ContractError | None]:
        if self.stream.check is None or not events:
            return [None] * len(events)
        try:
            async with asyncio.timeout(self.settings.db_acquire_timeout_s):
                return await self.stream.check(self.pool, events)
        except (TransientError, TimeoutError) as exc:
            # The checks are advisory (the aggregator refuses what they would): without the database, let through.
            log.warning("edge_check_unavailable", stream=self.stream.name, error=type(exc).__name__)
            return [None] * len(events)

    async def _published_bodies(self, event_ids: list[UUID]) -> dict[UUID, bytes | None]:
        if not event_ids:
            return {}
        try:
            async with db.translate_errors(), asyncio.timeout(self.settings.db_acquire_timeout_s):
                rows = await self.pool.fetch(QUERIES["select_published_bodies"], event_ids)
        except (TransientError, TimeoutError) as exc:
            # Dedupe is an optimisation here (every consumer is idempotent by event_id):
            # without the database, publish rather than refuse.
            log.warning("dedupe_unavailable", stream=self.stream.name, error=type(exc).__name__)
            return {}
        return {row["event_id"]: row["body_hash"] for row in rows}

    async def _record_published(self, events: Sequence[Event], digests: Sequence[bytes | None]) -> None:
        if not events:
            return
        hashes = [d if d is not None else body_hash(e) for e, d in zip(events, digests, strict=True)]
        record = self.stream.record or record_published
        try:
            # One statement (atomic alone): no transaction, so no BEGIN and COMMIT round trips per flush.
            async with db.translate_errors(), asyncio.timeout(self.settings.db_acquire_timeout_s):
                await record(self.pool, events, hashes, self.stream.name)
        except (PipelineError, TimeoutError) as exc:
            log.warning("dedupe_record_failed", stream=self.stream.name, error=type(exc).__name__)


async def record_published(pool: asyncpg.Pool, events: Sequence[Event], digests: Sequence[bytes], stream: str) -> None:
    """Record event ids as published with their body's hash (the first body of an id stays)."""
    await pool.execute(QUERIES["insert_published_bodies"], [e.event_id for e in events], list(digests), stream)


async def prune_published(pool: asyncpg.Pool, window: timedelta) -> int:
    """Forget published event ids (and the edge's view of interactions) older than the dedupe window; how many ids."""
    before = utcnow() - window
    async with db.translate_errors():
        status = await pool.execute(QUERIES["delete_published_events_before"], before)
    await prune_edge_view(pool, before)
    return int(status.split()[-1])
