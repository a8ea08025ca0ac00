"""The log-end guard against the real broker: a consumer left past its partition's end reads the partition again.

The situation the fault tests met: Tansu restarted empty (memory storage) while a consumer kept its old
position. Here the consumer is put past the end by a seek, which is the same state: a position the
partition's log has not reached.
"""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.log_end_guard import LogEndGuard, beyond_end


async def _topic_with(bootstrap: str, records: int) -> str:
    name = f"guard-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for n in range(records):
            await producer.send_and_wait(name, b"%d" % n)
    finally:
        await producer.stop()
    return name


def _consumer(bootstrap: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)


async def _poll(consumer: AIOKafkaConsumer) -> list[int]:
    batches = await consumer.getmany(timeout_ms=1500)
    return [record.offset for records in batches.values() for record in records]


async def test_a_consumer_past_the_end_reads_the_partition_from_its_beginning(kafka_bootstrap: str) -> None:
    name = await _topic_with(kafka_bootstrap, 5)
    tp = TopicPartition(name, 0)
    consumer = _consumer(kafka_bootstrap)
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, 100)
        first = await _poll(consumer)
        guard = LogEndGuard()
        if first:
            # Kafka answered OFFSET_OUT_OF_RANGE and the client reset itself: the guard must stay out of it.
            assert first == [0, 1, 2, 3, 4]
            assert await guard.check([consumer]) == 0
            return
        # Tansu: no records and no error; the position stays past the end the fetch reported.
        assert beyond_end(consumer) == {tp: (100, 5)}
        assert await guard.check([consumer]) == 0, "reset at the first sighting"
        assert await guard.check([consumer]) == 1
        seen: list[int] = []
        for _ in range(5):
            seen += await _poll(consumer)
        assert seen == [0, 1, 2, 3, 4]
    finally:
        await consumer.stop()


async def test_a_consumer_at_the_end_is_left_alone(kafka_bootstrap: str) -> None:
    name = await _topic_with(kafka_bootstrap, 3)
    tp = TopicPartition(name, 0)
    consumer = _consumer(kafka_bootstrap)
    await consumer.start()
    try:
        consumer.assign([tp])
        seen: list[int] = []
        for _ in range(5):
            seen += await _poll(consumer)
            if len(seen) == 3:
                break
        assert seen == [0, 1, 2]
        guard = LogEndGuard()
        assert [await guard.check([consumer]) for _ in range(3)] == [0, 0, 0]
        assert await _poll(consumer) == []
    finally:
        await consumer.stop()
