"""One failure policy for every batch consumer: outages wait, poison is isolated and dead-lettered, nothing blocks.

Every consumer of the pipeline (the edge raw topics, the aggregator's interactions and votes,
feedback's annotation-requests) hands its batches to `ConsumerPolicy.consume` with the function that
applies a batch:

- the batch applies: its offsets are committed (the subscriber returns);
- TransientError (database or broker unavailable): a capped, growing pause, then the error is
  re-raised, so the batch is redelivered and nothing is committed;
- any other exception: the batch is isolated, each record applied alone; a record that still fails
  is tried `max_attempts` times (a conflict with a concurrent instance clears on retry, a bug does
  not) and then dead-lettered as `processing_failed` with its origin, and the next record goes on.
  A ContractError raised for a record alone is dead-lettered at once: it is permanent.

Decoding errors (bad JSON, a broken contract) are the consumers' own: each dead-letters them inside
the batch it applies, in the same step as the rest. The policy only decides what a failure means.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

import asyncpg
import structlog
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker

from shared import db
from shared.errors import ContractError, PipelineError, ProcessingError, TransientError
from shared.kafka import RedeliveryPause, dead_letter_for, publish_records
from shared.outbox import OutboxRelay, insert_outbox
from shared.settings import PipelineSettings

log = structlog.get_logger(__name__)

Apply = Callable[[Sequence[ConsumerRecord]], Awaitable[None]]
DeadLetterSink = Callable[[ConsumerRecord, PipelineError], Awaitable[None]]


@dataclass(kw_only=True)
class ConsumerPolicy:
    """What a consumer does when applying a batch fails (see the module docstring)."""

    name: str
    """The consumer, in logs (e.g. the topic it reads)."""
    pause: RedeliveryPause
    max_attempts: int
    dead_letter: DeadLetterSink
    """Sends one record's dead letter (the consumer's way: its outbox, or the broker directly)."""

    async def consume(self, records: Sequence[ConsumerRecord], apply: Apply) -> None:
        """Apply a batch under the policy; returns when its offsets may be committed, raises when they may not."""
        try:
            await apply(records)
        except TransientError as exc:
            await self._pause_and_raise(exc)
        except Exception as exc:
            log.warning("batch_isolating_poison", consumer=self.name, records=len(records), error=type(exc).__name__)
            for record in records:
                await self._apply_alone(record, apply)
        self.pause.succeeded()

    async def _apply_alone(self, record: ConsumerRecord, apply: Apply) -> None:
        try:
            error = await self.attempt(lambda: apply((record,)), partition=record.partition, offset=record.offset)
        except TransientError as exc:
            await self._pause_and_raise(exc)
        if error is not None:
            await self._send_dead_letter(record, error)

    async def attempt(self, step: Callable[[], Awaitable[None]], **where: object) -> PipelineError | None:
        """Run one record's `step` up to `max_attempts` times: None once it applies, else the error to dead-letter
        it with (a ContractError at once: it is permanent; processing_failed after the last attempt).

        A TransientError is raised as it comes, for the caller to pause on (once, however deep the step).
        `where` says which record, in the log of a step that failed for good.
        """
        for attempt in range(1, self.max_attempts + 1):
            try:
                await step()
                return None
            except TransientError:
                raise
            except ContractError as exc:
                return exc
            except Exception as exc:
                if attempt < self.max_attempts:
                    continue
                log.exception("message_processing_failed", consumer=self.name, attempts=attempt, **where)
                return ProcessingError(f"could not be processed after {attempt} attempts: {type(exc).__name__}")
        raise ValueError("max_attempts must be at least 1")

    async def _send_dead_letter(self, record: ConsumerRecord, error: PipelineError) -> None:
        try:
            await self.dead_letter(record, error)
        except TransientError as exc:
            await self._pause_and_raise(exc)
        log.warning(
            "message_dead_lettered",
            consumer=self.name,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            **error.to_log_context(),
        )

    async def _pause_and_raise(self, exc: TransientError) -> NoReturn:
        pause_s = await self.pause.failed()
        log.warning("batch_failed", consumer=self.name, **exc.to_log_context(), backoff_s=pause_s)
        raise exc


def outbox_dead_letters(*, pool: asyncpg.Pool, relay: OutboxRelay, service: str, topic_prefix: str) -> DeadLetterSink:
    """Dead letters through the service's outbox (its relay publishes them): for stateful consumers."""

    async def send(record: ConsumerRecord, error: PipelineError) -> None:
        letter = dead_letter_for(topic_prefix, service, record, error)
        async with db.translate_errors(), pool.acquire() as conn, conn.transaction():
            await insert_outbox(conn, service, [letter])
        relay.notify()

    return send


def broker_dead_letters(*, broker: KafkaBroker, service: str, topic_prefix: str, timeout_s: float) -> DeadLetterSink:
    """Dead letters published at once, acknowledged before the offset moves: for the edge, which has no outbox."""

    async def send(record: ConsumerRecord, error: PipelineError) -> None:
        letter = dead_letter_for(topic_prefix, service, record, error)
        await publish_records(broker, [letter], timeout_s=timeout_s)

    return send


def consumer_policy(settings: PipelineSettings, *, name: str, dead_letter: DeadLetterSink) -> ConsumerPolicy:
    """The policy of one consumer, from the settings (backoff, attempts), with its own pause."""
    return ConsumerPolicy(
        name=name,
        pause=RedeliveryPause(settings.retry_initial_backoff_s, settings.retry_max_backoff_s),
        max_attempts=settings.consumer_max_attempts,
        dead_letter=dead_letter,
    )
