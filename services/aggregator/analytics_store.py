"""The analyst UI's PostgreSQL reads, and the dead-letter counts: one function per named query of sql/analytics.sql.

Reads take the pool (each is one statement: a consistent snapshot of its own); the dead-letter writes run
on the caller's connection, inside the caller's transaction: seen event ids first, then the counts in key
order, so two instances counting the same letters never deadlock and never count one twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import asyncpg

from services.aggregator.analytics import (
    AlertRow,
    ApprovalRow,
    CountedLetter,
    DeadLetterRow,
    FlowRow,
    QueueGroup,
    count_letters,
    distinct_letters,
)
from services.aggregator.store import SQL_DIR
from shared import db
from shared.events import Message

QUERIES = db.load_queries(SQL_DIR / "analytics.sql")


async def select_apps(pool: asyncpg.Pool) -> dict[str, list[str]]:
    """Every known app with the domains that have a board of their own."""
    apps: dict[str, list[str]] = {r["app_id"]: [] for r in await pool.fetch(QUERIES["select_known_apps"])}
    for row in await pool.fetch(QUERIES["select_board_domains"]):
        apps.setdefault(row["app_id"], []).append(row["domain"])
    return apps


async def select_version_models(pool: asyncpg.Pool, app_id: str) -> dict[str, list[str]]:
    """model_version -> the models that answered under it, in one app."""
    models: dict[str, list[str]] = {}
    for row in await pool.fetch(QUERIES["select_version_models"], app_id):
        models.setdefault(row["model_version"], []).append(row["model"])
    return models


async def select_approval_buckets(pool: asyncpg.Pool, app_id: str, since: datetime, bucket_s: int) -> list[ApprovalRow]:
    rows = await pool.fetch(QUERIES["select_approval_buckets"], app_id, since, bucket_s)
    return [
        ApprovalRow(
            model_version=r["model_version"],
            bucket_start=r["bucket_start"],
            up=r["up"],
            down=r["down"],
            interactions=r["interactions"],
        )
        for r in rows
    ]


async def select_flow_buckets(pool: asyncpg.Pool, app_id: str | None, since: datetime, bucket_s: int) -> list[FlowRow]:
    rows = await pool.fetch(QUERIES["select_flow_buckets"], app_id, since, bucket_s)
    return [FlowRow(kind=r["kind"], bucket_start=r["bucket_start"], count=r["count"]) for r in rows]


async def select_open_request_groups(pool: asyncpg.Pool, app_id: str | None) -> list[QueueGroup]:
    rows = await pool.fetch(QUERIES["select_open_request_groups"], app_id)
    return [
        QueueGroup(
            prompt_key=r["prompt_key"],
            own_domain=r["own_domain"],
            prompt=tuple(Message.model_validate(m) for m in r["prompt"]["messages"]) if r["prompt"] else (),
            compare=r["compare"],
            rewrite=r["rewrite"],
            oldest_requested_at=r["oldest_requested_at"],
        )
        for r in rows
    ]


async def select_alerts(pool: asyncpg.Pool, app_id: str | None) -> list[AlertRow]:
    rows = await pool.fetch(QUERIES["select_alerts"], app_id)
    return [
        AlertRow(
            app_id=r["app_id"],
            domain=r["domain"],
            model=r["model"],
            previous_version=r["previous_version"],
            new_version=r["new_version"],
            metric=r["metric"],
            is_raised=r["is_raised"],
            transitions=r["transitions"],
            updated_at=r["updated_at"],
        )
        for r in rows
    ]


async def select_board_bodies(pool: asyncpg.Pool, boards: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    """(app_id, domain) -> the board's latest body, for those refitted at least once."""
    wanted = sorted(set(boards))
    if not wanted:
        return {}
    rows = await pool.fetch(QUERIES["select_board_bodies"], [b[0] for b in wanted], [b[1] for b in wanted])
    return {(r["app_id"], r["domain"]): r["body"] for r in rows}


async def select_dead_letter_counts(pool: asyncpg.Pool, since: datetime) -> list[DeadLetterRow]:
    rows = await pool.fetch(QUERIES["select_dead_letter_counts"], since)
    return [
        DeadLetterRow(service=r["service"], error_code=r["error_code"], hour=r["hour"], letters=r["letters"])
        for r in rows
    ]


async def count_dead_letters(conn: asyncpg.Connection, letters: Sequence[CountedLetter]) -> int:
    """Count the letters not counted before (by event_id); how many were new."""
    distinct = distinct_letters(letters)
    if not distinct:
        return 0
    rows = await conn.fetch(
        QUERIES["insert_dead_letters_seen"], [d.event_id for d in distinct], [d.failed_at for d in distinct]
    )
    new_ids = {r["event_id"] for r in rows}
    counts = count_letters(d for d in distinct if d.event_id in new_ids)
    if counts:
        keys = list(counts)
        await conn.execute(
            QUERIES["add_dead_letter_counts"],
            [k.service for k in keys],
            [k.error_code for k in keys],
            [k.hour for k in keys],
            [counts[k] for k in keys],
        )
    return len(new_ids)


async def delete_dead_letters_seen_before(conn: asyncpg.Connection, before: datetime) -> None:
    await conn.execute(QUERIES["delete_dead_letters_seen_before"], before)
