"""The aggregator's background jobs (run with `runtime.every`): stats windows, parked-vote expiry, dedupe pruning.

Each job is one transaction that writes its messages to the outbox, and takes its rows with
`FOR UPDATE SKIP LOCKED`, so every instance may run it at once without doing the work twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import structlog

from services.aggregator import stats, stats_store, store
from shared import db, topics
from shared.errors import PipelineError
from shared.events import utcnow
from shared.kafka import OutRecord, dead_letter_record
from shared.outbox import OutboxRelay, insert_outbox

log = structlog.get_logger(__name__)


class ParkedVoteExpiredError(PipelineError):
    """A vote waited longer than the TTL for its interaction."""

    code = "parked_vote_expired"


@dataclass(kw_only=True, frozen=True)
class JobRules:
    service: str
    topic_prefix: str
    stats_allowed_lateness_s: float
    stats_publish_batch: int
    parked_vote_ttl_s: float
    parked_sweep_batch: int
    vote_dedupe_window_s: float


async def publish_stats(pool: asyncpg.Pool, relay: OutboxRelay, rules: JobRules) -> int:
    """Publish windows that changed, final once the watermark passed their end plus the allowed lateness."""
    now = utcnow()
    async with db.translate_errors(), pool.acquire() as conn, conn.transaction():
        watermark = stats.watermark_of(await stats_store.select_newest_event_at(conn), now)
        closed_before = watermark - timedelta(seconds=rules.stats_allowed_lateness_s)
        rows = await stats_store.select_stats_to_publish(conn, closed_before, rules.stats_publish_batch)
        if not rows:
            return 0
        finals = [stats.is_closed(r["window_end"], watermark, rules.stats_allowed_lateness_s) for r in rows]
        records = []
        for row, is_final in zip(rows, finals, strict=True):
            message = stats.stats_message(row, is_final=is_final, now=now)
            records.append(
                OutRecord(
                    topic=topics.topic(rules.topic_prefix, topics.FEEDBACK_STATS),
                    key=message.stats_id.encode(),
                    value=message.model_dump_json().encode(),
                )
            )
        await stats_store.mark_stats_published(conn, rows, finals)
        await insert_outbox(conn, rules.service, records)
    relay.notify()
    log.debug("stats_published", windows=len(rows), closed=sum(finals))
    return len(rows)


async def expire_parked_votes(pool: asyncpg.Pool, relay: OutboxRelay, rules: JobRules) -> int:
    """Dead-letter parked votes whose awaited answer (their own, or a compared one) did not arrive within the TTL.

    Their event ids are forgotten in the same transaction: a dead-lettered vote was never taken in,
    so once its answer arrived, a redrive of its dead letter is taken as a new vote.
    """
    async with db.translate_errors(), pool.acquire() as conn, conn.transaction():
        rows = await store.expire_parked_votes(conn, utcnow(), rules.parked_sweep_batch)
        await store.forget_seen_votes(conn, [row["event_id"] for row in rows])
        letters = [
            dead_letter_record(
                rules.topic_prefix,
                service=rules.service,
                error=ParkedVoteExpiredError(
                    f"interaction {row['interaction_id']} not seen within {rules.parked_vote_ttl_s:g} s"
                ),
                raw_value=json.dumps(row["vote"], separators=(",", ":")).encode(),
                source_topic=row["source_topic"],
                source_partition=row["source_partition"],
                source_offset=row["source_offset"],
                source_key=str(row["vote"].get("interaction_id", "")).encode(),
            )
            for row in rows
        ]
        await insert_outbox(conn, rules.service, letters)
    if rows:
        relay.notify()
        log.warning("parked_votes_expired", count=len(rows), ttl_s=rules.parked_vote_ttl_s)
    return len(rows)


async def prune_seen_votes(pool: asyncpg.Pool, rules: JobRules) -> int:
    """Forget vote event ids older than the dedupe window."""
    async with db.translate_errors():
        return await store.delete_seen_votes_before(pool, utcnow() - timedelta(seconds=rules.vote_dedupe_window_s))
