"""Transactional outbox: state and outgoing messages commit together; a relay publishes them.

A crash between the state commit and the publish loses nothing: the rows stay until the broker
acknowledged them. A crash between the acknowledgement and the delete publishes them again, so
every consumer is idempotent (event_id, pair_id, task_id). Only one relay per service works at a
time (an advisory lock), which keeps messages of one key in the order they were written.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Sequence

import asyncpg
import structlog
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry, Counter, Gauge

from shared import db
from shared.errors import PipelineError
from shared.kafka import OutRecord
from shared.kafka_batches import publish_batched

log = structlog.get_logger(__name__)
QUERIES = db.SHARED_QUERIES


async def insert_outbox(conn: asyncpg.Connection, service: str, records: Sequence[OutRecord]) -> None:
    """Queue records in the caller's transaction."""
    if not records:
        return
    await conn.execute(
        QUERIES["insert_outbox"],
        service,
        [r.topic for r in records],
        [r.key for r in records],
        [r.value for r in records],
        [dict(r.headers) for r in records],
    )


class OutboxRelay:
    """Publishes a service's outbox rows in id order, deleting them once acknowledged."""

    def __init__(
        self,
        *,
        service: str,
        pool: asyncpg.Pool,
        broker: KafkaBroker,
        registry: CollectorRegistry,
        batch_size: int,
        poll_interval_s: float,
        publish_timeout_s: float,
        max_backoff_s: float,
    ) -> None:
        self.service = service
        self.pool = pool
        self.broker = broker
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.publish_timeout_s = publish_timeout_s
        self.max_backoff_s = max_backoff_s
        self._wake = asyncio.Event()
        self._stopping = False
        self.relayed = Counter("outbox_relayed", "Outbox messages published", ["service"], registry=registry)
        self.pending = Gauge(
            "outbox_pending", "Outbox messages waiting to be relayed (counted after each poll)", ["service"],
            registry=registry,
        )  # fmt: skip

    def stop(self) -> None:
        """Let `run` return once the cycle in progress is done (shutdown: the final `flush` comes next, and a
        cycle holding the relay lock would make the flush find the lock taken and relay nothing)."""
        self._stopping = True
        self._wake.set()

    def notify(self) -> None:
        """Wake the relay now (call after committing outbox rows)."""
        self._wake.set()

    async def relay_once(self) -> int:
        """Publish one batch; return how many rows were relayed (0 when idle or another relay holds the lock)."""
        async with db.translate_errors(), self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval(QUERIES["lock_outbox_relay"], self.service):
                return 0
            rows = await conn.fetch(QUERIES["select_outbox_batch"], self.service, self.batch_size)
            if not rows:
                return 0
            records = [
                OutRecord(
                    topic=row["topic"],
                    key=row["key"],
                    value=row["value"],
                    headers=tuple(_headers(row["headers"]).items()),
                )
                for row in rows
            ]
            # One closed batch per partition (no producer linger: the rows are all there), in id order.
            await publish_batched(self.broker, records, timeout_s=self.publish_timeout_s)
            await conn.execute(QUERIES["delete_outbox_through"], self.service, [row["id"] for row in rows])
        self.relayed.labels(self.service).inc(len(rows))
        return len(rows)

    async def flush(self, timeout_s: float) -> None:
        """Relay until the outbox is empty or the deadline passes (used on shutdown)."""
        try:
            async with asyncio.timeout(timeout_s):
                while await self.relay_once():
                    pass
                await self.count_pending()
        except (TimeoutError, PipelineError) as exc:
            log.warning("outbox_flush_incomplete", service=self.service, error=type(exc).__name__)

    async def run(self) -> None:
        """Relay until `stop()`: right after `notify()`, else every `poll_interval_s`; back off on failures.

        The wake-up is cleared before each poll, so a `notify()` made while a poll runs is not lost (it
        was, when cleared after an empty poll: those rows then waited for the next poll interval). A poll
        that relayed a full batch polls again at once; one that relayed less took what was committed, and
        rows committed since come with their own `notify()`, so it waits (before, every busy poll was
        followed by an empty one: five statements per batch of the service for nothing).
        The `outbox_pending` gauge is recounted after a poll when the last count is `poll_interval_s` old:
        at most that stale, and one query per interval rather than one per poll.
        """
        backoff = self.poll_interval_s
        counted_at = -math.inf
        while not self._stopping:
            self._wake.clear()
            try:
                relayed = await self.relay_once()
                if time.monotonic() - counted_at >= self.poll_interval_s:
                    await self.count_pending()
                    counted_at = time.monotonic()
                backoff = self.poll_interval_s
            except (PipelineError, OSError, TimeoutError) as exc:
                log.warning("outbox_relay_retry", service=self.service, error=type(exc).__name__, backoff_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(max(backoff * 2, 0.05), self.max_backoff_s)
                continue
            if relayed >= self.batch_size:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval_s)
            except TimeoutError:
                pass

    async def count_pending(self) -> int:
        """The rows of this service waiting in the outbox now; also sets the `outbox_pending` gauge."""
        async with db.translate_errors():
            count = await self.pool.fetchval(QUERIES["count_outbox"], self.service)
        self.pending.labels(self.service).set(count)
        return count


def _headers(raw: object) -> dict[str, str]:
    if isinstance(raw, str):
        raw = json.loads(raw)
    return {str(k): str(v) for k, v in (raw or {}).items()}
