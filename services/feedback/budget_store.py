"""The per-voter hourly budget in PostgreSQL (quarantine.py's store): one function per named query.

A voter is (app_id, hash of user_ref): the raw user_ref is never stored here. Buckets are locked in key order
so that concurrent batches cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from uuid import UUID

import asyncpg

from services.feedback.store import QUERIES
from shared import db

BudgetBucket = tuple[str, bytes, datetime]  # (app_id, voter_hash, hour)


async def select_budget_decisions(conn: asyncpg.Connection, event_ids: Sequence[UUID]) -> dict[UUID, str | None]:
    """event_id -> quarantine reason (None: counted) of the votes decided before."""
    rows = await conn.fetch(QUERIES["select_budget_decisions"], list(event_ids))
    return {r["event_id"]: r["quarantine_reason"] for r in rows}


async def add_budget_votes(conn: asyncpg.Connection, added: Mapping[BudgetBucket, int]) -> dict[BudgetBucket, int]:
    """Add votes to their buckets (locked in key order); each bucket's total after."""
    keys = sorted(added)
    if not keys:
        return {}
    rows = await conn.fetch(
        QUERIES["add_budget_votes"],
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [added[k] for k in keys],
    )
    return {(r["app_id"], bytes(r["voter_hash"]), r["hour"]): r["votes"] for r in rows}


async def insert_budget_decisions(
    conn: asyncpg.Connection, rows: Sequence[tuple[UUID, datetime, int, str | None]]
) -> None:
    """(event_id, hour, ordinal in its bucket, quarantine reason or None) of fresh votes."""
    if rows:
        await conn.execute(QUERIES["insert_budget_decisions"], *(list(column) for column in zip(*rows, strict=True)))


async def delete_budget_before(pool: asyncpg.Pool, hour: datetime) -> int:
    """Forget the counts and decisions of hours before `hour`; how many counts were forgotten."""
    async with db.translate_errors(), pool.acquire() as conn, conn.transaction():
        await conn.execute(QUERIES["delete_budget_decisions_before"], hour)
        status = await conn.execute(QUERIES["delete_budget_hours_before"], hour)
    return int(status.split()[-1])
