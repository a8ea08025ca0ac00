"""Consumed batches into the aggregator's state: one transaction per batch, poison narrowed down and dead-lettered.

The I/O shell around `batches.apply_batch`: a batch applies in one transaction (locks, load, pure
decide, state and outbox rows) and the subscriber returns, so its offsets are committed only after
the commit. A TransientError (database or broker down) rewinds the batch for redelivery after a
capped pause; any other failure is retried one record at a time, and a record that still fails is
dead-lettered, so nothing blocks a partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import asyncpg
import structlog
from aiokafka import ConsumerRecord

from services.aggregator.batches import BatchInput, BatchRules, apply_batch
from services.aggregator.decoders import Decode
from services.aggregator.metrics import AggregatorMetrics
from shared import db
from shared.errors import ProcessingError, TransientError
from shared.events import utcnow
from shared.kafka import RedeliveryPause, dead_letter_for
from shared.outbox import OutboxRelay, insert_outbox

log = structlog.get_logger(__name__)
# A record that fails this many times for a reason other than an outage is dead-lettered: a
# conflict with a concurrent instance clears on retry, a bug does not.
POISON_ATTEMPTS = 3


@dataclass(kw_only=True)
class BatchIntake:
    """Takes consumed batches into the state, with the pool, the outbox relay and the rules."""

    pool: asyncpg.Pool
    relay: OutboxRelay
    rules: BatchRules
    metrics: AggregatorMetrics
    pause: RedeliveryPause

    async def take(self, records: tuple[ConsumerRecord, ...], decode: Decode, topic_name: str) -> None:
        """Apply a batch in one transaction; a batch that cannot be applied is narrowed to its poison."""
        try:
            await self._apply(decode(records, self.rules), topic_name)
        except TransientError as exc:
            await self._pause_and_raise(exc)
        except Exception as exc:
            log.warning("batch_isolating_poison", records=len(records), error=type(exc).__name__)
            for record in records:
                await self._take_one(record, decode, topic_name)
        self.pause.succeeded()

    async def _take_one(self, record: ConsumerRecord, decode: Decode, topic_name: str) -> None:
        """Apply one record; after `POISON_ATTEMPTS` non-transient failures, dead-letter it."""
        for attempt in range(1, POISON_ATTEMPTS + 1):
            try:
                await self._apply(decode((record,), self.rules), topic_name)
                return
            except TransientError as exc:
                await self._pause_and_raise(exc)
            except Exception as exc:
                if attempt == POISON_ATTEMPTS:
                    log.exception("message_processing_failed", partition=record.partition, offset=record.offset)
                    await self._dead_letter_failed(record, exc)

    async def _pause_and_raise(self, exc: TransientError) -> NoReturn:
        pause_s = await self.pause.failed()
        log.warning("batch_failed", **exc.to_log_context(), backoff_s=pause_s)
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
