"""The annotation queue's PostgreSQL access: one function per named query in sql/queries.sql.

The only module of the queue that touches asyncpg. Functions taking `conn` run inside the caller's
transaction (`transaction(pool)`); those taking `pool` run one statement on their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg

from services.feedback.position_bias import PositionRow
from services.feedback.queue_rules import AgreementRow, Outcome, TaskCount, TaskState, Verdict
from shared import db

SQL_DIR = Path(__file__).parent / "sql"
QUERIES = db.load_queries(SQL_DIR / "queries.sql")
MIGRATIONS_DIR = SQL_DIR / "migrations"


@dataclass(kw_only=True, frozen=True, slots=True)
class NewTask:
    """One row of `upsert_tasks`."""

    task_id: str
    app_id: str
    kind: str
    domain: str
    priority: float
    request: dict[str, Any]
    request_updated_at: datetime
    reviewers_needed: int


@dataclass(kw_only=True, frozen=True, slots=True)
class LeasedTask:
    task_id: str
    kind: str
    domain: str
    priority: float
    request: dict[str, Any]
    lease_expires_at: datetime


@dataclass(kw_only=True, frozen=True, slots=True)
class LockedTask:
    """A task row locked FOR UPDATE: its lease state plus what a verdict needs."""

    state: TaskState
    app_id: str
    reviewers_needed: int
    request: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Annotator:
    annotator_id: str
    domains: tuple[str, ...]


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection inside a transaction; asyncpg errors come out as the pipeline's errors."""
    async with db.translate_errors(), pool.acquire() as conn, conn.transaction():
        yield conn


async def withdraw_tasks(conn: asyncpg.Connection, task_ids: Sequence[str]) -> None:
    if task_ids:
        await conn.execute(QUERIES["withdraw_tasks"], list(task_ids))


async def upsert_tasks(conn: asyncpg.Connection, tasks: Sequence[NewTask]) -> None:
    if not tasks:
        return
    await conn.execute(
        QUERIES["upsert_tasks"],
        [t.task_id for t in tasks],
        [t.app_id for t in tasks],
        [t.kind for t in tasks],
        [t.domain for t in tasks],
        [t.priority for t in tasks],
        [t.request for t in tasks],
        [t.request_updated_at for t in tasks],
        [t.reviewers_needed for t in tasks],
    )


async def lease_next_task(
    pool: asyncpg.Pool, annotator_id: str, domains: Sequence[str], lease_seconds: float
) -> LeasedTask | None:
    async with db.translate_errors():
        row = await pool.fetchrow(QUERIES["lease_next_task"], annotator_id, list(domains), lease_seconds)
    if row is None:
        return None
    return LeasedTask(
        task_id=row["task_id"],
        kind=row["kind"],
        domain=row["domain"],
        priority=row["priority"],
        request=row["request"],
        lease_expires_at=row["lease_expires_at"],
    )


async def select_task_for_update(conn: asyncpg.Connection, task_id: str) -> LockedTask | None:
    row = await conn.fetchrow(QUERIES["select_task_for_update"], task_id)
    if row is None:
        return None
    state = TaskState(
        task_id=row["task_id"],
        domain=row["domain"],
        kind=row["kind"],
        status=row["status"],
        leases={a: datetime.fromisoformat(at) for a, at in (row["leases"] or {}).items()},
        reviewed_by=tuple(row["reviewed_by"]),
        now=row["db_now"],
    )
    return LockedTask(
        state=state, app_id=row["app_id"], reviewers_needed=row["reviewers_needed"], request=row["request"]
    )


async def extend_lease(conn: asyncpg.Connection, task_id: str, annotator_id: str, lease_seconds: float) -> datetime:
    return await conn.fetchval(QUERIES["extend_lease"], task_id, annotator_id, lease_seconds)


async def release_lease(conn: asyncpg.Connection, task_id: str, annotator_id: str) -> None:
    await conn.execute(QUERIES["release_lease"], task_id, annotator_id)


async def skip_task(conn: asyncpg.Connection, task_id: str, annotator_id: str) -> None:
    await conn.execute(QUERIES["skip_task"], task_id, annotator_id)


async def insert_verdict(conn: asyncpg.Connection, task_id: str, verdict: Verdict) -> None:
    await conn.execute(
        QUERIES["insert_verdict"],
        task_id,
        verdict.annotator_id,
        verdict.verdict,
        verdict.rewrite,
        verdict.comment,
        verdict.shown_left,
    )


async def select_task_verdicts(conn: asyncpg.Connection, task_id: str) -> list[Verdict]:
    rows = await conn.fetch(QUERIES["select_task_verdicts"], task_id)
    return [
        Verdict(annotator_id=r["annotator_id"], verdict=r["verdict"], rewrite=r["rewrite"], comment=r["comment"])
        for r in rows
    ]


async def update_task_after_verdict(
    conn: asyncpg.Connection, task_id: str, annotator_id: str, outcome: Outcome
) -> datetime:
    """Store the outcome; returns the completion time (or the update time while the task stays open)."""
    row = await conn.fetchrow(
        QUERIES["update_task_after_verdict"],
        task_id,
        annotator_id,
        outcome.status,
        outcome.reviewers_needed,
        outcome.to_result(),
    )
    return row["completed_at"] or row["updated_at"]


async def count_tasks_by_domain(pool: asyncpg.Pool, domains: Sequence[str] | None) -> list[TaskCount]:
    async with db.translate_errors():
        rows = await pool.fetch(QUERIES["count_tasks_by_domain"], list(domains) if domains is not None else None)
    return [TaskCount(domain=r["domain"], status=r["status"], tasks=r["tasks"], leased=r["leased"]) for r in rows]


async def select_agreement_verdicts(
    pool: asyncpg.Pool, domains: Sequence[str] | None, max_tasks: int
) -> list[AgreementRow]:
    async with db.translate_errors():
        rows = await pool.fetch(
            QUERIES["select_agreement_verdicts"], list(domains) if domains is not None else None, max_tasks
        )
    return [
        AgreementRow(
            task_id=r["task_id"],
            domain=r["domain"],
            annotator_id=r["annotator_id"],
            verdict=r["verdict"],
            combined=r["combined"],
        )
        for r in rows
    ]


async def count_position_verdicts(pool: asyncpg.Pool, domains: Sequence[str] | None) -> list[PositionRow]:
    async with db.translate_errors():
        rows = await pool.fetch(QUERIES["count_position_verdicts"], list(domains) if domains is not None else None)
    return [
        PositionRow(domain=r["domain"], shown_left=r["shown_left"], verdict=r["verdict"], verdicts=r["verdicts"])
        for r in rows
    ]


async def count_annotator_verdicts_since(pool: asyncpg.Pool, annotator_id: str, since: datetime) -> int:
    async with db.translate_errors():
        return await pool.fetchval(QUERIES["count_annotator_verdicts_since"], annotator_id, since)


async def upsert_annotator(conn: asyncpg.Connection, annotator_id: str, domains: Sequence[str]) -> None:
    await conn.execute(QUERIES["upsert_annotator"], annotator_id, list(domains))


async def insert_annotator_token(conn: asyncpg.Connection, token_hash: bytes, annotator_id: str) -> None:
    await conn.execute(QUERIES["insert_annotator_token"], token_hash, annotator_id)


async def select_annotator_by_token(pool: asyncpg.Pool, token_hash: bytes) -> Annotator | None:
    async with db.translate_errors():
        row = await pool.fetchrow(QUERIES["select_annotator_by_token"], token_hash)
    return None if row is None else Annotator(row["annotator_id"], tuple(row["domains"]))


async def revoke_annotator(conn: asyncpg.Connection, annotator_id: str) -> bool:
    """True when the annotator existed (it is revoked now, with every token)."""
    return await conn.fetchval(QUERIES["revoke_annotator"], annotator_id) is not None


async def release_annotator_leases(conn: asyncpg.Connection, annotator_id: str) -> None:
    await conn.execute(QUERIES["release_annotator_leases"], annotator_id)


# The per-voter hourly budget (services/feedback/quarantine.py). A voter is (app_id, hash of user_ref).

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
