"""The per-voter hourly budget in PostgreSQL (quarantine.py's store): one function per named query.

A voter is (app_id, hash of user_ref): the raw user_ref is never stored here. Buckets are locked in key order
so that concurrent batches cannot deadlock. A batch is decided by one statement (`decide_budget_votes`): no
transaction of its own, so one round trip per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from services.feedback.store import QUERIES
from shared import db


@dataclass(frozen=True, slots=True)
class BudgetedVotes:
    """A batch of budgeted votes as the statement takes them: one column per field, in the batch's order."""

    event_ids: list[UUID]
    app_ids: list[str]
    voter_hashes: list[bytes]
    received_at: list[datetime]


@dataclass(frozen=True, slots=True)
class BudgetDecision:
    """A vote's decision: its quarantine reason (None: counted), and whether it was taken now (not reused)."""

    reason: str | None
    fresh: bool


async def decide_budget_votes(
    pool: asyncpg.Pool, votes: BudgetedVotes, max_votes_per_hour: int, reason: str
) -> dict[UUID, BudgetDecision]:
    """event_id -> decision: earlier decisions reused, the others counted, decided and remembered (one statement)."""
    rows = await pool.fetch(
        QUERIES["decide_budget_votes"],
        votes.event_ids,
        votes.app_ids,
        votes.voter_hashes,
        votes.received_at,
        max_votes_per_hour,
        reason,
    )
    return {r["event_id"]: BudgetDecision(r["quarantine_reason"], r["fresh"]) for r in rows}


async def delete_budget_before(pool: asyncpg.Pool, hour: datetime) -> int:
    """Forget the counts and decisions of hours before `hour`; how many counts were forgotten."""
    async with db.translate_errors(), pool.acquire() as conn, conn.transaction():
        await conn.execute(QUERIES["delete_budget_decisions_before"], hour)
        status = await conn.execute(QUERIES["delete_budget_hours_before"], hour)
    return int(status.split()[-1])
