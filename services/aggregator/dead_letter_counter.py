"""The aggregator's consumer of `dead-letter`: every service's dead letters counted for the analyst UI.

No service saw the dead letters once published; this counter reads them in a consumer group of its own
(AGGREGATOR_DEAD_LETTER_GROUP_ID) and counts each per (service, error_code, hour of failed_at), once per
event_id: a batch's new event ids and their counts commit in one transaction, then its offsets, so a
redelivered letter finds its id seen and counts nothing. The ids are kept while the topic may still hold
the letter (its retention and a day more), then forgotten in the same transactions.

It runs as a background task of the runtime with its own aiokafka consumer, not as a FastStream
subscriber: aiokafka's start waits for the group's first assignment (seconds on the local broker), and
the broker starts its subscribers one after the other before the service is ready; the analyst's counts
must not hold up the pipeline's start. Order: the batch's transaction, then the commit of its offsets; a
batch that fails is read again from its first offsets after a capped pause (RedeliveryPause), and the
task is cancelled (its consumer closed) when the runtime stops. A record that is not a v1 dead letter is
skipped with a warning: a dead letter is never dead-lettered again (that would loop).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry, Counter

from services.aggregator import analytics_store
from services.aggregator.analytics import CountedLetter, read_dead_letter
from services.aggregator.settings import AggregatorSettings
from shared import db, topics
from shared.events import utcnow
from shared.kafka import RedeliveryPause, batch_log_context
from shared.kafka_security import kafka_client_kwargs
from shared.log_end_guard import LogEndGuard
from shared.runtime import Runtime

log = structlog.get_logger(__name__)
# The ids of letters the topic no longer holds cannot come again; a day more covers clocks and slow consumers.
SEEN_MARGIN = timedelta(days=1)


def dead_letter_group(settings: AggregatorSettings) -> str:
    return settings.dead_letter_group_id or f"{settings.group_id}-dead-letters"


class DeadLetterCounter:
    """Reads `dead-letter` in its own group and counts each letter once (see the module docstring)."""

    def __init__(self, pool: asyncpg.Pool, settings: AggregatorSettings, registry: CollectorRegistry) -> None:
        self.pool = pool
        self.settings = settings
        self.keep_seen = timedelta(milliseconds=settings.dead_letter_retention_ms) + SEEN_MARGIN
        self.guard = LogEndGuard()
        self.pause = RedeliveryPause(settings.retry_initial_backoff_s, settings.retry_max_backoff_s)
        self.outcomes = Counter(
            "aggregator_dead_letters_read",
            "Dead letters read by the analyst UI's counter, by outcome (counted, duplicate, unreadable)",
            ["outcome"],
            registry=registry,
        )

    def _consumer(self) -> AIOKafkaConsumer:
        settings = self.settings
        return AIOKafkaConsumer(
            topics.topic(settings.topic_prefix, topics.DEAD_LETTER),
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=dead_letter_group(settings),
            client_id="aggregator-dead-letters",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
            **kafka_client_kwargs(settings),
        )

    async def run(self) -> None:
        """Until cancelled: connect, then count batch after batch; a failure reconnects after a capped pause."""
        while True:
            error = await self._run_once()
            backoff_s = await self.pause.failed()
            log.warning("dead_letter_counter_failed", error=error, backoff_s=backoff_s)

    async def _run_once(self) -> str:
        """One consumer's life: returns why it ended (the consume loop itself never returns)."""
        consumer = self._consumer()
        try:
            await consumer.start()
            await self._consume(consumer)
        except Exception as exc:
            return type(exc).__name__
        finally:
            await consumer.stop()
        return "stopped"

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        """Count batch after batch, committing each batch's offsets after its transaction."""
        while True:
            batches = await consumer.getmany(
                timeout_ms=self.settings.kafka_fetch_max_wait_ms, max_records=self.settings.kafka_max_batch_records
            )
            records = [record for partition in batches.values() for record in partition]
            if not records:
                await self.guard.check([consumer])
                continue
            try:
                await self.count(records)
                await consumer.commit()
            except Exception as exc:
                # Read the batch again: from its first offset on every partition it came from.
                for partition, held in batches.items():
                    consumer.seek(TopicPartition(partition.topic, partition.partition), held[0].offset)
                backoff_s = await self.pause.failed()
                where = batch_log_context(records)
                log.warning("dead_letter_count_failed", error=type(exc).__name__, backoff_s=backoff_s, **where)
                continue
            self.pause.succeeded()

    async def count(self, records: Sequence[ConsumerRecord]) -> int:
        """Count the letters of these records not counted before, in one transaction; how many were new."""
        letters: list[CountedLetter] = []
        for record in records:
            letter = read_dead_letter(record.value)
            if letter is None:
                self.outcomes.labels("unreadable").inc()
                log.warning("dead_letter_unreadable", partition=record.partition, offset=record.offset)
            else:
                letters.append(letter)
        async with db.translate_errors(), self.pool.acquire() as conn, conn.transaction():
            counted = await analytics_store.count_dead_letters(conn, letters)
            await analytics_store.delete_dead_letters_seen_before(conn, utcnow() - self.keep_seen)
        self.outcomes.labels("counted").inc(counted)
        self.outcomes.labels("duplicate").inc(len(letters) - counted)
        if counted:
            log.debug("dead_letters_counted", letters=counted)
        return counted


def start_dead_letter_counter(runtime: Runtime, settings: AggregatorSettings) -> None:
    """Run the counter in the background (nothing when AGGREGATOR_DEAD_LETTERS_COUNTED is false)."""
    if settings.dead_letters_counted:
        runtime.spawn("count_dead_letters", DeadLetterCounter(runtime.db, settings, runtime.registry).run())
