"""Publishing in one batch per partition (shared.kafka_batches) against the real broker.

What the edge relies on: every record is on the topic once acknowledged, on the partition the
producer's own send path gives its key (so a prompt group keeps its partition whichever path
published it), in the order given within a key, with the headers FastStream's publish gives a
record; and a partition with more than one batch's bytes goes out in several batches.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.kafka import OutRecord, make_broker, publish_records
from shared.kafka_batches import aiokafka_producer, publish_batched
from shared.topics import INTERACTIONS, topic
from tests.support.isolation import topic_settings
from tests.support.kafka import reading
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(120)

KEYS = [f"prompt-{i}".encode() for i in range(12)]
PER_KEY = 8


async def test_batched_records_land_where_the_send_path_puts_them_in_order_with_its_headers(
    kafka_bootstrap: str, topics: str
) -> None:
    name = topic(topics, INTERACTIONS)
    # Small batches: each partition's records need several (overflow starts a new batch).
    broker = make_broker(topic_settings(kafka_bootstrap, topics, kafka_max_batch_bytes=2048), client_id="test")
    await broker.connect()
    try:
        assert aiokafka_producer(broker) is not None
        probes = [OutRecord(topic=name, key=key, value=b"probe") for key in KEYS]
        await publish_records(broker, probes, timeout_s=10)
        batched = [
            OutRecord(topic=name, key=key, value=f"{n}:".encode() + b"x" * 300, headers=(("source", "test"),))
            for n in range(PER_KEY)
            for key in KEYS
        ]
        await publish_batched(broker, batched, timeout_s=10)
    finally:
        await broker.stop()

    async with reading(kafka_bootstrap, topics, INTERACTIONS) as reader:
        expected = len(probes) + len(batched)

        async def read_all() -> list[Any] | None:
            records = await reader.poll()
            return records if len(records) >= expected else None

        records = await eventually(read_all, timeout=30)
    probe_partition = {r.key: r.partition for r in records if r.value == b"probe"}
    probe_headers = {name for r in records if r.value == b"probe" for name, _ in r.headers}
    ours = sorted((r for r in records if r.value != b"probe"), key=lambda r: (r.partition, r.offset))
    assert len(ours) == len(batched)
    for key in KEYS:
        of_key = [r for r in ours if r.key == key]
        assert {r.partition for r in of_key} == {probe_partition[key]}
        assert [int(r.value.split(b":")[0]) for r in of_key] == list(range(PER_KEY))
    for record in ours:
        headers = dict(record.headers)
        assert set(headers) == probe_headers | {"source"}
        assert headers["source"] == b"test" and headers["content-type"] == b""
    assert len({dict(r.headers)["correlation_id"] for r in ours}) == len(ours)
