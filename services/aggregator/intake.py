"""Consumed batches into the aggregator's state: one transaction per batch, under the consumers' failure policy.

The I/O shell around `batches.apply_batch`: a batch applies in one transaction (locks, load, pure
decide, state and outbox rows) and the subscriber returns, so its offsets are committed only after
the commit. What a failure means is decided in one place for every consumer (shared.consumer): an
outage rewinds the batch after a capped pause; any other failure isolates the record that causes
it, which is tried alone a bounded number of times and then dead-lettered through the outbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from uuid import UUID

import asyncpg
import structlog
from aiokafka import ConsumerRecord

from services.aggregator import store
from services.aggregator.batches import BatchInput, BatchRules, apply_batch, refuse_votes
from services.aggregator.decoders import Decode
from services.aggregator.metrics import AggregatorMetrics
from shared import db
from shared.consumer import ConsumerPolicy
from shared.errors import TransientError
from shared.events import utcnow
from shared.outbox import OutboxRelay, insert_outbox

log = structlog.get_logger(__name__)

INPUTS = "inputs"
"""The aggregator's one consumer of `interactions` and `votes`: its name in logs, in the batch-time metric, in
the AsyncAPI document, and its failure policy's."""


@dataclass(kw_only=True)
class BatchIntake:
    """Takes consumed batches into the state, with the pool, the outbox relay, the rules and a policy per topic."""

    pool: asyncpg.Pool
    relay: OutboxRelay
    rules: BatchRules
    metrics: AggregatorMetrics
    policy: ConsumerPolicy
    """The input consumer's failure policy; its name (`INPUTS`) labels the batch-time metric and the logs."""

    async def take(self, records: Sequence[ConsumerRecord], decode: Decode) -> None:
        """Apply a batch in one transaction; a batch that cannot be applied is narrowed to its poison."""

        async def apply(batch: Sequence[ConsumerRecord]) -> None:
            decoded = decode(tuple(batch), self.rules)
            try:
                await self._apply(decoded)
            except TransientError:
                raise
            except Exception:
                if len(batch) != 1 or not decoded.interactions:
                    raise
                await self._apply_parked_apart(decoded)

        await self.policy.consume(records, apply)

    async def _apply_parked_apart(self, alone: BatchInput) -> None:
        """An interaction that failed alone: itself without its parked votes, then each of those votes alone.

        The votes that waited for it are applied with it, so a vote that cannot be processed made the
        interaction fail too. Stored first without them (if it still fails, it is the poison and this
        raises), the votes are then claimed one at a time, and the one that fails for good is
        dead-lettered alone with its own origin. A crash in between leaves them parked; the
        interaction's redelivery claims them again (batches.apply_batch).
        """
        await self._apply(replace(alone, claims_parked=False))
        interaction = alone.interactions[0]
        async with db.translate_errors(), self.pool.acquire() as conn:
            waiting = await store.select_parked_vote_ids(conn, interaction.app_id, interaction.interaction_id)
        log.warning("parked_votes_applied_apart", consumer=self.policy.name, votes=len(waiting))
        for event_id in waiting:
            await self._apply_parked_alone(event_id)

    async def _apply_parked_alone(self, event_id: UUID) -> None:
        batch = BatchInput(claims_parked=False, parked_ids=[event_id])
        error = await self.policy.attempt(lambda: self._apply(batch), parked_vote=str(event_id))
        if error is None:
            return
        async with db.translate_errors(), self.pool.acquire() as conn, conn.transaction():
            taken = await store.claim_parked_votes_by_id(conn, [event_id])
            letters = await refuse_votes(conn, [(vote, error) for vote in taken], self.rules)
            await insert_outbox(conn, self.rules.service, letters)
        self.relay.notify()

    async def _apply(self, batch: BatchInput) -> None:
        with self.metrics.batch_seconds.labels(self.policy.name).time():
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
