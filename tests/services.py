"""Test plumbing: run a service app in-process, read and write topics on the real broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from fastapi import FastAPI

from shared.topics import topic


@asynccontextmanager
async def running_app(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan (broker, pool, consumers) and give an HTTP client bound to it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield client


async def produce(bootstrap: str, topic_name: str, values: Iterable[bytes | None], key: bytes | None = None) -> None:
    """Publish raw values (as an app would) and wait for the broker's acknowledgement."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic_name, value, key=key or uuid.uuid4().bytes) for value in values]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


@dataclass
class TopicReader:
    """Reads every partition of a topic from the beginning, without a consumer group (no join wait)."""

    bootstrap: str
    topic_name: str
    records: list[Any] = field(default_factory=list)
    _consumer: AIOKafkaConsumer | None = None

    async def start(self) -> TopicReader:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
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
async def reading(bootstrap: str, prefix: str, name: str) -> AsyncIterator[TopicReader]:
    reader = await TopicReader(bootstrap, topic(prefix, name)).start()
    try:
        yield reader
    finally:
        await reader.stop()


def values_where(records: Iterable[Any], predicate: Callable[[Any], bool] = lambda r: True) -> list[Any]:
    return [r for r in records if predicate(r)]
