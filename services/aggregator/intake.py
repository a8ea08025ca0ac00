"""Consumed batches into the aggregator's state: one transaction per batch, under the consumers' failure policy.

The I/O shell around `batches.apply_batch`: a batch applies in one transaction (locks, load, pure
decide, state and outbox rows) and the subscriber returns, so its offsets are committed only after
the commit. What a failure means is decided in one place for every consumer (shared.consumer): an
outage rewinds the batch after a capped pause; any other failure isolates the record that causes
it, which is tried alone a bounded number of times and then dead-lettered through the outbox.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg
import structlog
from aiokafka import ConsumerRecord

from services.aggregator.batches import BatchInput, BatchRules, apply_batch
from services.aggregator.decoders import Decode
from services.aggregator.metrics import AggregatorMetrics
from shared import db
from shared.consumer import ConsumerPolicy
from shared.events import utcnow
from shared.outbox import OutboxRelay

log = structlog.get_logger(__name__)


@dataclass(kw_only=True)
class BatchIntake:
    """Takes consumed batches into the state, with the pool, the outbox relay, the rules and a policy per topic."""

    pool: asyncpg.Pool
    relay: OutboxRelay
    rules: BatchRules
    metrics: AggregatorMetrics
    policies: Mapping[str, ConsumerPolicy]
    """The failure policy of each input topic (by its name without prefix)."""

    async def take(self, records: Sequence[ConsumerRecord], decode: Decode, topic_name: str) -> None:
        """Apply a batch in one transaction; a batch that cannot be applied is narrowed to its poison."""

        async def apply(batch: Sequence[ConsumerRecord]) -> None:
            await self._apply(decode(tuple(batch), self.rules), topic_name)

        await self.policies[topic_name].consume(records, apply)

    async def _apply(self, batch: BatchInput, topic_name: str) -> None:
        with self.metrics.batch_seconds.labels(topic_name).time():
            async with db.translate_errors(), self.pool.acquire() as conn, conn.transaction():
                outcome = await apply_batch(conn, batch, self.rules, utcnow())
        self.relay.notify()
        self.metrics.record(outcome)
        if outcome.pairs or outcome.tombstones or outcome.requests or outcome.withdrawals:
            log.info(
                "group_outputs_queued",
                pairs=outcome.pairs,
                tombstones=outcome.tombstones,
                requests=outcome.requests,
                withdrawals=outcome.withdrawals,
            )
