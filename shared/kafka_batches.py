"""Acknowledged publishing with one record batch per partition (aiokafka's create_batch / send_batch).

`shared.kafka.publish_records` hands each record to FastStream's `publish`, which builds a publish
command, a correlation id and aiokafka's per-message accumulator entry and future: about half of a
group commit's publishing CPU in the issue 15 profile. Here records are grouped by topic and
partition (the partition the producer's own default partitioner would pick for the key: murmur2,
so one key keeps its partition whichever path published it), appended to one BatchBuilder per
partition (a new one when it is full), closed and sent with `send_batch`; every batch's future is awaited,
so a return still means every record was acknowledged by the broker. Records carry the headers
FastStream's publish gives them (`content-type`, `correlation_id`), so consumers see the same records.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder
from faststream.kafka import KafkaBroker

from shared.kafka import OutRecord, cancel_pending, publish_errors, publish_records
from shared.kafka_keys import correlation_ids, partitions_of


def aiokafka_producer(broker: KafkaBroker) -> AIOKafkaProducer | None:
    """The started aiokafka producer behind a connected FastStream broker; None under FastStream's test broker."""
    # FastStream 0.7 keeps it in its producer state (faststream.kafka.publisher.state.RealProducer).
    state = getattr(broker.config.producer, "_producer", None)
    producer = getattr(state, "producer", None) if state else None
    return producer if isinstance(producer, AIOKafkaProducer) else None


def partition_for(key: bytes | None, partitions: Sequence[int]) -> int:
    """The partition aiokafka's default partitioner gives `key` among `partitions` (sorted); no key: a random one."""
    return partitions_of([key], partitions)[0]


def record_headers(record: OutRecord, correlation_id: bytes) -> list[tuple[str, bytes]]:
    """What FastStream's publish would send as the record's headers (its correlation id given)."""
    headers = [("content-type", b""), ("correlation_id", correlation_id)]
    if record.headers:
        headers.extend((name, value.encode()) for name, value in record.headers)
    return headers


async def publish_batched(broker: KafkaBroker, records: Sequence[OutRecord], *, timeout_s: float) -> None:
    """Publish `records` in one batch per partition and wait until the broker acknowledged all.

    Raises TransientError as `publish_records` does: the caller must not commit its input, and a
    retry may publish some records twice (consumers dedupe by id).
    """
    await (await start_batched(broker, records, timeout_s=timeout_s))()


async def start_batched(
    broker: KafkaBroker, records: Sequence[OutRecord], *, timeout_s: float
) -> Callable[[], Awaitable[None]]:
    """Hand `records` to the producer (one batch per partition); return what waits for the broker's acknowledgement.

    Records handed over by one call are queued behind those of an earlier call on each partition (the
    producer keeps one request in flight per broker and sends batches per partition in order), so a
    second call can start while the first one's acknowledgement is awaited. Both stages raise
    TransientError as `publish_records` does, each within `timeout_s`.
    """
    producer = aiokafka_producer(broker)
    if producer is None or not records:

        async def unbatched() -> None:
            await publish_records(broker, records, timeout_s=timeout_s)

        return unbatched
    futures: list[asyncio.Future[Any]] = []
    try:
        async with publish_errors(len(records), timeout_s):
            for (topic, partition), group in (await _by_partition(producer, records)).items():
                futures.extend(await _send_partition(producer, topic, partition, group))
    except BaseException:
        cancel_pending(futures)
        raise

    async def acknowledged() -> None:
        try:
            async with publish_errors(len(records), timeout_s):
                await asyncio.gather(*futures)
        finally:
            cancel_pending(futures)

    return acknowledged


async def _by_partition(
    producer: AIOKafkaProducer, records: Sequence[OutRecord]
) -> dict[tuple[str, int], list[OutRecord]]:
    """Records by (topic, partition), each partition's in the order given."""
    by_topic: dict[str, list[OutRecord]] = defaultdict(list)
    for record in records:
        by_topic[record.topic].append(record)
    groups: dict[tuple[str, int], list[OutRecord]] = defaultdict(list)
    for topic, topic_records in by_topic.items():
        partitions = sorted(await producer.partitions_for(topic))
        chosen = partitions_of([r.key for r in topic_records], partitions)
        for record, partition in zip(topic_records, chosen, strict=True):
            groups[(topic, partition)].append(record)
    return groups


async def _send_partition(
    producer: AIOKafkaProducer, topic: str, partition: int, records: list[OutRecord]
) -> list[asyncio.Future[object]]:
    """Queue `records` for one partition in as few batches as fit; the futures of their acknowledgements."""
    futures = []
    batch = producer.create_batch()
    for record, correlation_id in zip(records, correlation_ids(len(records)), strict=True):
        headers = record_headers(record, correlation_id)
        if batch.append(key=record.key, value=record.value, timestamp=None, headers=headers) is None:
            # Full (a batch's first record always fits): send it and start the next.
            futures.append(await _send_closed(producer, batch, topic, partition))
            batch = producer.create_batch()
            batch.append(key=record.key, value=record.value, timestamp=None, headers=headers)
    futures.append(await _send_closed(producer, batch, topic, partition))
    return futures


async def _send_closed(
    producer: AIOKafkaProducer, batch: BatchBuilder, topic: str, partition: int
) -> asyncio.Future[object]:
    # Closed: the caller gathered the batch (a group commit is its linger), so it goes out without lingering
    # (aiokafka sends a closed builder's batch at the next drain), and no producer.send() of another path joins it.
    batch.close()
    return await producer.send_batch(batch, topic, partition=partition)
