"""Kafka for tests: one producer wrapper (publish as an app would, wait for the acks) and a group-less topic reader.

Every client here connects with `security` (aiokafka's security kwargs, `shared.kafka_security.kafka_client_kwargs`);
left None, with the environment's Kafka settings, which tests/conftest.py keeps only for an external Kafka.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from shared.kafka_security import kafka_client_kwargs
from shared.settings import PipelineSettings
from shared.topics import topic

if TYPE_CHECKING:
    from deploy.stack import Stack

Security = Mapping[str, Any] | None


def client_security(security: Security = None) -> dict[str, Any]:
    """`security` as given, or the environment's (empty PLAINTEXT settings unless an external Kafka asks otherwise)."""
    return dict(security) if security is not None else kafka_client_kwargs(PipelineSettings())


def stack_security(stack: Stack) -> Security:
    """The security of a stack's broker: PLAINTEXT (no kwargs) for a local Tansu, else the environment's."""
    return {} if stack.broker is not None else None


@dataclass(frozen=True, kw_only=True)
class Record:
    """One message to publish: the topic's name without the prefix, its value, and optionally key and partition.

    Without a key, each record gets a random one (spread over the partitions, as unrelated app events are).
    """

    topic: str
    value: bytes | None
    key: bytes | None = None
    partition: int | None = None


class Producer:
    """Publishes records under a topic prefix, waits until the broker acknowledged every one.

    Remembers the last offset it got per (topic, partition), to wait for a consumer group to commit past them.
    """

    def __init__(self, bootstrap: str, prefix: str = "", *, security: Security = None) -> None:
        self.prefix = prefix
        self.last_offsets: dict[tuple[str, int], int] = {}
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, enable_idempotence=False, acks="all", **client_security(security)
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, records: Sequence[Record]) -> list[tuple[int, int]]:
        """Publish in order without waiting for each; return the (partition, offset) each record got."""
        futures = [
            await self._producer.send(
                topic(self.prefix, r.topic), r.value, key=r.key or uuid.uuid4().bytes, partition=r.partition
            )
            for r in records
        ]
        origins = []
        for metadata in await asyncio.gather(*futures):
            key = (metadata.topic, metadata.partition)
            self.last_offsets[key] = max(self.last_offsets.get(key, -1), metadata.offset)
            origins.append((metadata.partition, metadata.offset))
        return origins


@asynccontextmanager
async def producing(bootstrap: str, prefix: str = "", *, security: Security = None) -> AsyncIterator[Producer]:
    producer = Producer(bootstrap, prefix, security=security)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def produce(
    bootstrap: str,
    prefix: str,
    name: str,
    values: Iterable[bytes | None],
    *,
    key: bytes | None = None,
    partitions: int | None = None,
    security: Security = None,
) -> list[tuple[int, int]]:
    """Publish raw values to one topic (value i to partition i % `partitions` when given); their origins."""
    records = [
        Record(topic=name, value=value, key=key, partition=None if partitions is None else i % partitions)
        for i, value in enumerate(values)
    ]
    async with producing(bootstrap, prefix, security=security) as producer:
        return await producer.send(records)


async def committed_all(bootstrap: str, group_id: str, producer: Producer, *, security: Security = None) -> bool:
    """True when the group committed past every record the producer sent."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False, **client_security(security)
    )
    await consumer.start()
    try:
        for (topic_name, partition), last in producer.last_offsets.items():
            committed = await consumer.committed(TopicPartition(topic_name, partition))
            if committed is None or committed <= last:
                return False
        return True
    finally:
        await consumer.stop()


@dataclass
class TopicReader:
    """Reads every partition of a topic from the beginning, without a consumer group (no join wait)."""

    bootstrap: str
    topic_name: str
    records: list[Any] = field(default_factory=list)
    security: Security = None
    _consumer: AIOKafkaConsumer | None = None

    async def start(self) -> TopicReader:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=10,
            **client_security(self.security),
        )
        await self._consumer.start()
        partitions = await self._partitions()
        self._consumer.assign([TopicPartition(self.topic_name, p) for p in partitions])
        await self._consumer.seek_to_beginning()
        return self

    async def _partitions(self) -> set[int]:
        assert self._consumer is not None
        for _ in range(100):
            partitions = self._consumer.partitions_for_topic(self.topic_name)
            if partitions:
                return partitions
            await self._consumer._client.force_metadata_update()
            await asyncio.sleep(0.05)
        raise AssertionError(f"topic {self.topic_name} has no partitions")

    async def poll(self) -> list[Any]:
        """Fetch what arrived since the last poll; return every record read so far."""
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=50)
        for records in batches.values():
            self.records.extend(records)
        return self.records

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()


@asynccontextmanager
async def reading(bootstrap: str, prefix: str, name: str, *, security: Security = None) -> AsyncIterator[TopicReader]:
    reader = await TopicReader(bootstrap, topic(prefix, name), security=security).start()
    try:
        yield reader
    finally:
        await reader.stop()


def consumed_record(topic: str, value: bytes | None, *, offset: int = 0, key: bytes | None = None) -> ConsumerRecord:
    """A consumed record (partition 0) as aiokafka hands it to a batch handler."""
    return ConsumerRecord(topic, 0, offset, 0, 0, key, value, None, len(key or b""), len(value or b""), ())
