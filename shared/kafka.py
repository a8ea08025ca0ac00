"""Kafka plumbing: the broker factory, batch subscribers, acknowledged publishing, dead letters, topics.

FastStream carries the subscribers (consumer groups, acks, AsyncAPI docs); publishing goes through
its producer without awaiting each send (`no_confirm`), and a batch is acknowledged as a whole,
which is what the measured throughput on Tansu asks for (see ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream import AckPolicy, Depends
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared import topics
from shared.errors import PipelineError, TransientError
from shared.events import DeadLetter, utcnow
from shared.kafka_security import kafka_broker_security, kafka_client_kwargs
from shared.settings import PipelineSettings

log = structlog.get_logger(__name__)
# Creating topics is a deploy step, not a hot path: one bound for the whole admin exchange.
TOPIC_ADMIN_TIMEOUT_S = 30.0


@dataclass(kw_only=True, frozen=True, slots=True)
class OutRecord:
    """One message to publish. `value=None` with a key is a tombstone."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, str], ...] = ()


def make_broker(settings: PipelineSettings, *, client_id: str) -> KafkaBroker:
    """A FastStream Kafka broker for this process (idempotence off: Tansu lacks it; acks=all; TLS/SASL: `settings`)."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=kafka_broker_security(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        linger_ms=settings.kafka_linger_ms,
        max_batch_size=settings.kafka_max_batch_bytes,
        max_request_size=settings.kafka_max_request_size,
        allow_auto_create_topics=False,
        # FastStream logs a line per message at this level: keep it below INFO.
        log_level=logging.DEBUG,
        logger=structlog.get_logger("faststream"),
    )


def batch_subscriber(
    broker: KafkaBroker,
    settings: PipelineSettings,
    *topic_names: str,
    group_id: str,
    raw_records: bool = False,
    fetch_max_wait_ms: int | None = None,
    **extra: Any,
) -> Callable[..., Any]:
    """Decorator: a batch consumer of `topic_names` in `group_id` whose offsets are committed per batch.

    Several topics make one consumer: a batch may hold records of each (`record.topic` tells them apart).

    The handler gets the raw `aiokafka` records (`msg.raw_message`). Returning commits the batch;
    raising rewinds every partition of the batch to its first record, so it is delivered again
    (at-least-once: handlers must be idempotent). Every log line of the handler carries the batch's
    topic, partitions and offsets (structlog contextvars, see `bind_batch_log_context`).

    `raw_records`: the handler takes the records themselves as its message body (one argument typed
    `Any`, undecoded: `keep_raw_records`), asks for no `KafkaMessage`, and binds the log context
    itself (`batch_log_scope`). FastDepends resolves a `KafkaMessage` argument, the handler's or a
    dependency's, in a worker thread: a thread hop per batch each, which a hot consumer does not pay.

    `fetch_max_wait_ms`: the consumer's fetch wait, `kafka_fetch_max_wait_ms` unless given (consumers off the
    event -> pair path pass `kafka_background_fetch_max_wait_ms`).
    """
    if raw_records:
        dependencies = list(extra.pop("dependencies", ()))
        extra["decoder"] = keep_raw_records
    else:
        dependencies = [Depends(bind_batch_log_context), *extra.pop("dependencies", ())]
    return broker.subscriber(
        *(topics.topic(settings.topic_prefix, name) for name in topic_names),
        group_id=group_id,
        batch=True,
        max_records=settings.kafka_max_batch_records,
        batch_timeout_ms=settings.kafka_batch_timeout_ms,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms if fetch_max_wait_ms is None else fetch_max_wait_ms,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        dependencies=dependencies,
        **extra,
    )


async def keep_raw_records(msg: KafkaMessage) -> tuple[ConsumerRecord, ...]:
    """The decoder of `raw_records` subscribers: the batch's records as they are.

    FastStream's own decoder JSON-decodes every record of the batch into the handler's body.
    """
    return msg.raw_message


def batch_log_context(records: Sequence[ConsumerRecord]) -> dict[str, Any]:
    """Where a batch comes from: its topic, partitions, and first-last offset per partition.

    A batch of several topics (one consumer of several, `batch_subscriber`) names them all, and each
    partition as `topic:partition`.
    """
    spans: dict[tuple[str, int], tuple[int, int]] = {}
    for record in records:
        where = (record.topic, record.partition)
        first, last = spans.get(where, (record.offset, record.offset))
        spans[where] = (min(first, record.offset), max(last, record.offset))
    names = sorted({topic for topic, _ in spans})
    if len(names) > 1:
        return {
            "topic": ",".join(names),
            "partitions": [f"{topic}:{partition}" for topic, partition in sorted(spans)],
            "offsets": [f"{t}:{partition}:{first}-{last}" for (t, partition), (first, last) in sorted(spans.items())],
        }
    return {
        "topic": names[0] if names else None,
        "partitions": [partition for _, partition in sorted(spans)],
        "offsets": [f"{partition}:{first}-{last}" for (_, partition), (first, last) in sorted(spans.items())],
    }


def batch_log_scope(records: Sequence[ConsumerRecord]) -> contextlib.AbstractContextManager[None]:
    """The batch's origin bound to structlog's contextvars while the block runs."""
    return structlog.contextvars.bound_contextvars(**batch_log_context(records))


async def bind_batch_log_context(msg: KafkaMessage) -> AsyncIterator[None]:
    """Subscriber dependency: bind the batch's origin to structlog's contextvars while its handler runs."""
    with batch_log_scope(msg.raw_message):
        yield


def document_output(
    broker: KafkaBroker, settings: PipelineSettings, topic_name: str, model: type, *, key: str, description: str
) -> None:
    """Describe an output topic in the service's AsyncAPI document (/asyncapi.json).

    Messages are sent through `publish_records` (acknowledged in bulk); this declares the channel,
    its key and its payload schema so that readers of the topic find them beside the inputs.
    """
    broker.publisher(
        topics.topic(settings.topic_prefix, topic_name),
        title=topic_name,
        description=f"{description} Key: {key}.",
        schema=model,
    )


@dataclass
class RedeliveryPause:
    """Capped exponential pause before a failed batch is redelivered.

    A batch handler that raises is redelivered at once; without a pause a database or broker
    outage becomes a busy loop. Call `failed()` before re-raising and `succeeded()` after a batch.
    """

    initial_s: float
    max_s: float
    current_s: float = 0.0

    async def failed(self) -> float:
        self.current_s = min(max(self.current_s * 2, self.initial_s), self.max_s)
        await asyncio.sleep(self.current_s)
        return self.current_s

    def succeeded(self) -> None:
        self.current_s = 0.0


async def publish_records(broker: KafkaBroker, records: Sequence[OutRecord], *, timeout_s: float) -> None:
    """Send every record without waiting for each, then wait until the broker acknowledged all.

    Raises TransientError if any send fails or the deadline passes: the caller must not commit
    its input, and a retry may publish some records twice (consumers dedupe by id).
    """
    if not records:
        return
    futures: list[asyncio.Future[Any]] = []
    try:
        async with publish_errors(len(records), timeout_s):
            for record in records:
                futures.append(
                    await broker.publish(
                        record.value,
                        record.topic,
                        key=record.key,
                        headers=dict(record.headers) if record.headers else None,
                        no_confirm=True,
                    )
                )
            await asyncio.gather(*futures)
    finally:
        cancel_pending(futures)


@contextlib.asynccontextmanager
async def publish_errors(records: int, timeout_s: float) -> AsyncIterator[None]:
    """The block within `timeout_s`; any failure of it raised as a TransientError (a PipelineError as it is)."""
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except (TimeoutError, OSError) as exc:
        raise TransientError("broker did not acknowledge the publish", records=records) from exc
    except Exception as exc:
        if isinstance(exc, PipelineError):
            raise
        # aiokafka raises KafkaError subclasses for every broker-side failure.
        raise TransientError(f"publish failed: {type(exc).__name__}", records=records) from exc


def cancel_pending(futures: Sequence[asyncio.Future[Any]]) -> None:
    for future in futures:
        if not future.done():
            future.cancel()


def dead_letter_record(
    prefix: str,
    *,
    service: str,
    error: PipelineError,
    raw_value: bytes | None,
    source_topic: str,
    source_partition: int | None = None,
    source_offset: int | None = None,
    source_key: bytes | None = None,
) -> OutRecord:
    """The dead-letter record for input that cannot be processed, keyed by its origin."""
    raw, encoding = DeadLetter.encode_raw(raw_value)
    key_text, _ = DeadLetter.encode_raw(source_key)
    letter = DeadLetter(
        event_id=uuid.uuid4(),
        failed_at=utcnow(),
        service=service,
        source_topic=source_topic,
        source_partition=source_partition,
        source_offset=source_offset,
        source_key=key_text,
        raw_value=raw,
        raw_encoding=encoding,
        error_code=error.code,
        reason=error.message,
        errors=getattr(error, "errors", []),
    )
    origin = f"{source_topic}:{source_partition}:{source_offset}"
    return OutRecord(
        topic=topics.topic(prefix, topics.DEAD_LETTER),
        key=origin.encode(),
        value=letter.model_dump_json().encode(),
        headers=(("error_code", error.code), ("service", service)),
    )


def dead_letter_for(prefix: str, service: str, record: ConsumerRecord, error: PipelineError) -> OutRecord:
    """The dead-letter record of one consumed Kafka record."""
    return dead_letter_record(
        prefix,
        service=service,
        error=error,
        raw_value=record.value,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        source_key=record.key,
    )


async def ensure_topics(settings: PipelineSettings) -> list[str]:
    """Create every topic of the pipeline that does not exist yet (partitions, retention: `settings`).

    Returns the names of the topics created now.
    """
    bootstrap, timeout_s = settings.kafka_bootstrap_servers, TOPIC_ADMIN_TIMEOUT_S
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000), **kafka_client_kwargs(settings)
    )
    async with asyncio.timeout(timeout_s):
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            wanted = [_new_topic(spec, settings) for spec in topics.ALL_TOPICS]
            wanted = [t for t in wanted if t.name not in existing]
            if wanted:
                await admin.create_topics(wanted)
                log.info("topics_created", topics=[t.name for t in wanted], partitions=settings.topic_partitions)
            return [t.name for t in wanted]
        finally:
            await admin.close()


def _new_topic(spec: topics.TopicSpec, settings: PipelineSettings) -> NewTopic:
    if spec.is_compacted:
        config = {"cleanup.policy": "compact"}
    else:
        keep = settings.dead_letter_retention_ms if spec.is_dead_letter else settings.topic_retention_ms
        config = {"cleanup.policy": "delete", "retention.ms": str(keep)}
    return NewTopic(
        topics.topic(settings.topic_prefix, spec.name),
        settings.topic_partitions,
        settings.topic_replication_factor,
        topic_configs=config,
    )
