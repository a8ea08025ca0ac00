"""aggregator's handlers: the `interactions` and `votes` batch consumers and the read-only HTTP routes.

Each batch: decode (bad messages become dead letters) -> one transaction (store load -> pure
decide -> state and outbox rows) -> return, so the offsets are committed only after the commit.
A TransientError raised here rewinds the batch for redelivery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import asyncpg
import structlog
from aiokafka import ConsumerRecord
from fastapi import APIRouter, Query, Request
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import CollectorRegistry, Counter, Histogram

from services.aggregator import store
from services.aggregator.batches import BatchInput, BatchOutcome, BatchRules, apply_batch
from shared import db, topics
from shared.errors import ContractError, NotFoundError, ProcessingError, TransientError
from shared.events import (
    AnnotationRequest,
    DeadLetter,
    FeedbackStats,
    PreferencePair,
    parse_interaction,
    parse_vote,
    utcnow,
)
from shared.kafka import RedeliveryPause, batch_subscriber, dead_letter_for, document_output
from shared.outbox import OutboxRelay, insert_outbox
from shared.runtime import Runtime

log = structlog.get_logger(__name__)
# A record that fails this many times for a reason other than an outage is dead-lettered: a
# conflict with a concurrent instance clears on retry, a bug does not.
POISON_ATTEMPTS = 3


class AggregatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.taken = Counter("aggregator_inputs", "Inputs taken in", ["kind"], registry=registry)
        self.outputs = Counter("aggregator_outputs", "Messages queued in the outbox", ["kind"], registry=registry)
        self.batch_seconds = Histogram(
            "aggregator_batch_seconds",
            "One batch's transaction, from decode to commit",
            ["topic"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

    def record(self, outcome: BatchOutcome) -> None:
        for kind in ("interactions", "votes_applied", "votes_parked", "duplicates", "dead_letters"):
            self.taken.labels(kind).inc(getattr(outcome, kind))
        for kind in ("pairs", "tombstones", "requests"):
            self.outputs.labels(kind).inc(getattr(outcome, kind))


@dataclass(kw_only=True)
class Aggregator:
    """Per-process state of the consumers: the pool, the outbox relay, the rules."""

    pool: asyncpg.Pool
    relay: OutboxRelay
    rules: BatchRules
    metrics: AggregatorMetrics
    pause: RedeliveryPause

    async def take(
        self, records: tuple[ConsumerRecord, ...], decode: Callable[..., BatchInput], topic_name: str
    ) -> None:
        """Apply a batch in one transaction; a batch that cannot be applied is narrowed to its poison.

        A transient failure (database or broker down) waits (capped backoff) and raises, so the batch
        is redelivered. Any other failure is retried one record at a time, and the record that still
        fails is dead-lettered: nothing blocks a partition.
        """
        try:
            await self._apply(decode(records, self.rules), topic_name)
        except TransientError as exc:
            await self._pause_and_raise(exc, topic_name)
        except Exception as exc:
            log.warning("batch_isolating_poison", topic=topic_name, records=len(records), error=type(exc).__name__)
            for record in records:
                await self._take_one(record, decode, topic_name)
        self.pause.succeeded()

    async def _take_one(self, record: ConsumerRecord, decode: Callable[..., BatchInput], topic_name: str) -> None:
        """Apply one record; after `POISON_ATTEMPTS` non-transient failures, dead-letter it."""
        for attempt in range(1, POISON_ATTEMPTS + 1):
            try:
                await self._apply(decode((record,), self.rules), topic_name)
                return
            except TransientError as exc:
                await self._pause_and_raise(exc, topic_name)
            except Exception as exc:
                if attempt == POISON_ATTEMPTS:
                    log.exception("message_processing_failed", topic=topic_name, offset=record.offset)
                    await self._dead_letter_failed(record, exc)

    async def _pause_and_raise(self, exc: TransientError, topic_name: str) -> NoReturn:
        pause_s = await self.pause.failed()
        log.warning("batch_failed", topic=topic_name, **exc.to_log_context(), backoff_s=pause_s)
        raise exc

    async def _apply(self, batch: BatchInput, topic_name: str) -> None:
        with self.metrics.batch_seconds.labels(topic_name).time():
            async with db.translate_errors(), self.pool.acquire() as conn, conn.transaction():
                outcome = await apply_batch(conn, batch, self.rules, utcnow())
        self.relay.notify()
        self.metrics.record(outcome)
        if outcome.pairs or outcome.tombstones or outcome.requests:
            log.info(
                "group_outputs_queued", pairs=outcome.pairs, tombstones=outcome.tombstones, requests=outcome.requests
            )

    async def _dead_letter_failed(self, record: ConsumerRecord, exc: Exception) -> None:
        error = ProcessingError(f"could not be processed: {type(exc).__name__}")
        async with db.translate_errors(), self.pool.acquire() as conn, conn.transaction():
            letter = dead_letter_for(self.rules.topic_prefix, self.rules.service, record, error)
            await insert_outbox(conn, self.rules.service, [letter])
        self.relay.notify()
        self.metrics.taken.labels("dead_letters").inc()


def _dead_letter(batch: BatchInput, rules: BatchRules, record: ConsumerRecord, exc: ContractError) -> None:
    batch.dead_letters.append(dead_letter_for(rules.topic_prefix, rules.service, record, exc))
    log.warning(
        "message_dead_lettered",
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        **exc.to_log_context(),
    )


def _value(record: ConsumerRecord) -> bytes:
    if record.value is None:
        raise ContractError("empty message (null value)", errors=[{"loc": [], "msg": "no value", "type": "missing"}])
    return record.value


def decode_interactions(records: tuple[ConsumerRecord, ...], rules: BatchRules) -> BatchInput:
    batch = BatchInput()
    for record in records:
        try:
            interaction = parse_interaction(_value(record), rules.limits)
            if not interaction.prompt_key:
                raise ContractError(
                    "canonical interaction without prompt_key",
                    errors=[{"loc": ["prompt_key"], "msg": "set by ingest", "type": "missing"}],
                )
            batch.interactions.append(interaction)
        except ContractError as exc:
            _dead_letter(batch, rules, record, exc)
    return batch


def decode_votes(records: tuple[ConsumerRecord, ...], rules: BatchRules) -> BatchInput:
    batch = BatchInput()
    for record in records:
        try:
            vote = parse_vote(_value(record), rules.limits)
            batch.votes.append(
                store.ParkedVote(
                    vote=vote, source_topic=record.topic, source_partition=record.partition, source_offset=record.offset
                )
            )
        except ContractError as exc:
            _dead_letter(batch, rules, record, exc)
    return batch


def aggregator_of(runtime: Runtime) -> Aggregator:
    aggregator = runtime.state.get("aggregator")
    if aggregator is None:
        # A batch can arrive between broker start and on_started: rewind it rather than lose it.
        raise TransientError("aggregator not started yet")
    return aggregator


def register_subscribers(runtime: Runtime, group_id: str) -> None:
    """Consume `interactions` and `votes` in batches, one transaction per batch."""
    settings = runtime.settings

    @batch_subscriber(
        runtime.broker,
        settings,
        topics.INTERACTIONS,
        group_id=group_id,
        title="interactions",
        description="Canonical interactions (keyed by prompt_key) from ingest.",
    )
    async def on_interactions(msg: KafkaMessage) -> None:
        aggregator = aggregator_of(runtime)
        await aggregator.take(msg.raw_message, decode_interactions, topics.INTERACTIONS)

    @batch_subscriber(
        runtime.broker,
        settings,
        topics.VOTES,
        group_id=group_id,
        title="votes",
        description="End-user votes and expert verdicts (keyed by interaction_id).",
    )
    async def on_votes(msg: KafkaMessage) -> None:
        aggregator = aggregator_of(runtime)
        await aggregator.take(msg.raw_message, decode_votes, topics.VOTES)


def document_outputs(runtime: Runtime) -> None:
    """The output topics in the AsyncAPI document (they are written through the outbox)."""
    broker, settings = runtime.broker, runtime.settings
    for name, model, key, description in (
        (topics.PREFERENCE_PAIRS, PreferencePair, "pair_id", "Chosen/rejected pairs; compacted, null = retracted."),
        (topics.ANNOTATION_REQUESTS, AnnotationRequest, "task_id", "Ambiguous cases for experts; null = withdrawn."),
        (topics.FEEDBACK_STATS, FeedbackStats, "stats_id", "Counts per app, model version and window."),
        (topics.DEAD_LETTER, DeadLetter, "source topic:partition:offset", "What could not be processed, and why."),
    ):
        document_output(broker, settings, name, model, key=key, description=description)


def http_router() -> APIRouter:
    """Read-only debugging routes."""
    router = APIRouter(prefix="/v1", tags=["aggregator"])

    @router.get("/pairs/{pair_id}", summary="A pair as last published (null pair: retracted)")
    async def get_pair(pair_id: str, request: Request) -> dict[str, Any]:
        row = await store.select_pair(request.app.state.runtime.db, pair_id)
        if row is None:
            raise NotFoundError("no such pair", pair_id=pair_id)
        return {
            "pair_id": row["pair_id"],
            "prompt_key": row["prompt_key"],
            "is_retracted": row["pair"] is None,
            "pair": row["pair"],
            "updated_at": row["updated_at"].isoformat(),
        }

    @router.get("/stats", summary="Recent feedback-stats windows")
    async def get_stats(
        request: Request, app_id: str | None = None, limit: int = Query(50, ge=1, le=1000)
    ) -> list[dict[str, Any]]:
        rows = await store.select_stats(request.app.state.runtime.db, app_id, limit)
        return [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in dict(r).items()} for r in rows]

    return router
