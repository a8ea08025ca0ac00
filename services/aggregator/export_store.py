"""The exports' PostgreSQL reads (issue 12, sql/exports.sql): one function per named query.

One read-only snapshot per export, read through server-side cursors in chunks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.aggregator.store import SQL_DIR
from shared import db
from shared.exports import ExportFilters

QUERIES = db.load_queries(SQL_DIR / "exports.sql")


@dataclass(kw_only=True, frozen=True, slots=True)
class ExportPoint:
    """Where an export's snapshot stands: the transaction's start time and PostgreSQL's snapshot (xmin:xmax:xips)."""

    taken_at: datetime
    snapshot: str


@asynccontextmanager
async def export_snapshot(pool: asyncpg.Pool, acquire_timeout_s: float) -> AsyncIterator[tuple[Any, ExportPoint]]:
    """A connection in a REPEATABLE READ READ ONLY transaction; every read in it sees one moment.

    Yields (connection, point); the first statement (the point) fixes the snapshot. The transaction
    only reads, so leaving it early (a client gone) just rolls it back.
    """
    async with db.translate_errors(), pool.acquire(timeout=acquire_timeout_s) as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            row = await conn.fetchrow(QUERIES["select_export_snapshot"])
            yield conn, ExportPoint(taken_at=row["taken_at"], snapshot=row["snapshot"])


def _export_filter_args(filters: ExportFilters) -> list[Any]:
    return [
        filters.app_id,
        filters.domain,
        filters.method,
        filters.model_version,
        filters.min_confidence,
        filters.since,
        filters.until,
    ]


async def _chunks(conn: asyncpg.Connection, query: str, args: Sequence[Any], chunk_rows: int) -> AsyncIterator[list]:
    cursor = await conn.cursor(QUERIES[query], *args)
    while True:
        async with db.translate_errors():
            records = await cursor.fetch(chunk_rows)
        if not records:
            return
        yield records


def select_export_pairs(conn: asyncpg.Connection, filters: ExportFilters, chunk_rows: int) -> AsyncIterator[list]:
    """Chunks of live pairs (records of the columns `export_columns.PAIR_COLUMNS` names, in its order)."""
    return _chunks(conn, "select_export_pairs", _export_filter_args(filters), chunk_rows)


def select_export_rewrites(
    conn: asyncpg.Connection, filters: ExportFilters, chunk_rows: int, expert_model: str
) -> AsyncIterator[list]:
    """Chunks of live expert-rewrite pairs, one per rewrite (records as `select_export_pairs` gives them)."""
    return _chunks(conn, "select_export_rewrites", [*_export_filter_args(filters), expert_model], chunk_rows)


def select_export_approvals(
    conn: asyncpg.Connection, filters: ExportFilters, chunk_rows: int, rating_up_min: int, rating_down_max: int
) -> AsyncIterator[list]:
    """Chunks of answers that are a side of no live pair, with their effective approval counts."""
    args = [filters.app_id, filters.model_version, filters.since, filters.until, rating_up_min, rating_down_max]
    return _chunks(conn, "select_export_approvals", args, chunk_rows)


def select_export_edits(conn: asyncpg.Connection, filters: ExportFilters, chunk_rows: int) -> AsyncIterator[list]:
    """Chunks of end users' latest edits (SFT examples) with the edited answer and its live edit pair."""
    args = [filters.app_id, filters.model_version, filters.since, filters.until]
    return _chunks(conn, "select_export_edits", args, chunk_rows)


async def select_export_point(pool: asyncpg.Pool) -> ExportPoint:
    """Where the state stands now (for an ETag: it changes whenever a write transaction has begun)."""
    async with db.translate_errors():
        row = await pool.fetchrow(QUERIES["select_export_snapshot"])
    return ExportPoint(taken_at=row["taken_at"], snapshot=row["snapshot"])
