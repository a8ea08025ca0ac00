"""The feedback-stats windows' PostgreSQL state (sql/stats.sql), one function per named query.

Functions taking `conn` run in the caller's transaction: a batch adds its increments in its own
(rows in key order, after the group locks: see the lock order in batches.py); the publishing job
(jobs.py) reads and marks windows in another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg

from services.aggregator.stats import StatsCounts, StatsDeltas, columns
from services.aggregator.store import SQL_DIR
from shared import db

QUERIES = db.load_queries(SQL_DIR / "stats.sql")


@dataclass(kw_only=True, frozen=True, slots=True)
class StatsWindow:
    """One stored feedback-stats window (counts so far; `is_final` once it closed)."""

    app_id: str
    model_version: str
    window_start: datetime
    window_end: datetime
    interactions: int
    thumbs_up: int
    thumbs_down: int
    ratings: int
    rating_sum: int
    effective_thumbs_up: int
    effective_thumbs_down: int
    effective_ratings: int
    effective_rating_sum: int
    quarantined_votes: int
    pairs_emitted: int
    tasks_queued: int
    is_final: bool


async def add_stats(conn: asyncpg.Connection, deltas: StatsDeltas) -> None:
    """Add a batch's increments, rows in key order (the lock order every writer uses)."""
    rows = deltas.rows()
    if not rows:
        return
    values = [columns(counts) for _, _, counts, _ in rows]
    await conn.execute(
        QUERIES["add_stats"],
        [k.app_id for k, _, _, _ in rows],
        [k.model_version for k, _, _, _ in rows],
        [k.window_start for k, _, _, _ in rows],
        [end for _, end, _, _ in rows],
        *([v[i] for v in values] for i in range(len(fields(StatsCounts)))),
        [newest for _, _, _, newest in rows],
    )


async def select_newest_event_at(conn: asyncpg.Connection) -> datetime | None:
    return await conn.fetchval(QUERIES["select_newest_event_at"])


async def select_stats_to_publish(conn: asyncpg.Connection, closed_before: datetime, limit: int) -> list[Any]:
    return await conn.fetch(QUERIES["select_stats_to_publish"], closed_before, limit)


async def mark_stats_published(conn: asyncpg.Connection, rows: Sequence[Any], finals: Sequence[bool]) -> None:
    if not rows:
        return
    await conn.execute(
        QUERIES["mark_stats_published"],
        [r["app_id"] for r in rows],
        [r["model_version"] for r in rows],
        [r["window_start"] for r in rows],
        list(finals),
    )


async def select_stats(pool: asyncpg.Pool, app_id: str | None, limit: int) -> list[StatsWindow]:
    async with db.translate_errors():
        rows = await pool.fetch(QUERIES["select_stats"], app_id, limit)
    return [StatsWindow(**{name: row[name] for name in StatsWindow.__dataclass_fields__}) for row in rows]
