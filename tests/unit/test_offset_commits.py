"""Background offset commits (shared/offset_commits.py): the batch's own offsets, in batch order, failures dropped."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from shared.offset_commits import OrderedCommits, batch_offsets, committing_later


def _record(partition: int, offset: int, topic: str = "t") -> ConsumerRecord:
    return ConsumerRecord(topic, partition, offset, 0, 0, b"k", b"v", None, 1, 1, ())


class FakeConsumer:
    """Records commits and seeks; a commit waits for its gate when one is set, and may fail."""

    def __init__(self) -> None:
        self.committed: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.gates: list[asyncio.Event] = []
        self.failures = 0

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.gates:
            await self.gates.pop(0).wait()
        if self.failures:
            self.failures -= 1
            raise RuntimeError("rebalanced")
        self.committed.append(offsets)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition, offset))


def test_a_batch_commits_each_partitions_last_record_plus_one() -> None:
    records = [_record(1, 7), _record(0, 3), _record(1, 5), _record(0, 4), _record(2, 0, topic="u")]
    assert batch_offsets(records) == {TopicPartition("t", 0): 5, TopicPartition("t", 1): 8, TopicPartition("u", 2): 1}


async def test_commits_go_out_in_batch_order_even_when_the_first_is_slow() -> None:
    consumer, commits = FakeConsumer(), OrderedCommits("t")
    gate = asyncio.Event()
    consumer.gates.append(gate)
    commits.commit_later(consumer, {TopicPartition("t", 0): 10})
    commits.commit_later(consumer, {TopicPartition("t", 0): 20})
    await asyncio.sleep(0.01)
    assert consumer.committed == [], "the second commit waits for the first"
    gate.set()
    await commits.flush()
    assert consumer.committed == [{TopicPartition("t", 0): 10}, {TopicPartition("t", 0): 20}]


async def test_a_failed_commit_is_dropped_and_the_next_one_goes_out() -> None:
    consumer, commits = FakeConsumer(), OrderedCommits("t")
    consumer.failures = 1
    commits.commit_later(consumer, {TopicPartition("t", 0): 10})
    commits.commit_later(consumer, {TopicPartition("t", 0): 20})
    await commits.flush()
    assert consumer.committed == [{TopicPartition("t", 0): 20}]


class FakeMessage:
    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer


async def test_the_ack_returns_before_the_broker_answers_and_a_nack_still_rewinds() -> None:
    consumer, commits = FakeConsumer(), OrderedCommits("t")
    gate = asyncio.Event()
    consumer.gates.append(gate)
    records = (_record(0, 3), _record(0, 4))

    async def original(batch: Any) -> FakeMessage:
        return FakeMessage(consumer)

    message = await committing_later(commits)(records, original)
    await asyncio.wait_for(message.consumer.commit(), timeout=1.0)  # queued: does not wait for the gate
    assert consumer.committed == []
    message.consumer.seek(TopicPartition("t", 0), 3)
    assert consumer.seeks == [(TopicPartition("t", 0), 3)]
    gate.set()
    await commits.flush()
    assert consumer.committed == [{TopicPartition("t", 0): 5}]
