"""A consumer whose position lies beyond its partition's end starts that partition again from its beginning.

Kafka answers a fetch past a partition's end with OFFSET_OUT_OF_RANGE, and the consumer applies its
reset policy (`earliest` for every consumer of this pipeline). The local broker (Tansu) answers with
no records instead, and serves from that offset once the log has grown past it. After Tansu restarts
with memory storage its logs are empty again: a consumer that kept its old position (one of the
aggregator's consumers did not rejoin its group on the new broker, seen once in the fault tests)
would skip every new record below that position, for good.

The guard does what Kafka's answer would make the client do. A partition is reset only when its
position stayed past the end the fetches report (the highwater) at two checks in a row: positions
never pass the highwater of a log that only grows, so on Kafka the guard never acts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

log = structlog.get_logger(__name__)


def beyond_end(consumer: AIOKafkaConsumer) -> dict[TopicPartition, tuple[int, int]]:
    """The consumer's partitions whose position is past the end its last fetch saw: tp -> (position, end)."""
    found: dict[TopicPartition, tuple[int, int]] = {}
    for tp in consumer.assignment():
        end = consumer.highwater(tp)
        state = consumer._subscription.subscription.assignment.state_value(tp)  # no await: a snapshot
        if end is not None and state is not None and state.has_valid_position and state.position > end:
            found[tp] = (state.position, end)
    return found


@dataclass
class LogEndGuard:
    """Resets partitions seen past their end at two consecutive `check` calls (see the module docstring)."""

    suspects: dict[tuple[int, TopicPartition], tuple[int, int]] = field(default_factory=dict)

    async def check(self, consumers: Iterable[AIOKafkaConsumer]) -> int:
        """Check each consumer; returns how many partitions were sent back to their beginning."""
        seen: dict[tuple[int, TopicPartition], tuple[int, int]] = {}
        reset = 0
        for consumer in consumers:
            for tp, (position, end) in beyond_end(consumer).items():
                key = (id(consumer), tp)
                if self.suspects.get(key, (None, None))[0] != position:
                    seen[key] = (position, end)
                    continue
                log.warning("consumer_position_beyond_log_end", topic=tp.topic, partition=tp.partition,
                            position=position, end=end)  # fmt: skip
                await consumer.seek_to_beginning(tp)
                reset += 1
        self.suspects = seen
        return reset
