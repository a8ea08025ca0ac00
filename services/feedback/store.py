"""The annotation queue's PostgreSQL access: one function per named query in sql/queries.sql.

The only module of the queue that touches asyncpg. Functions taking `conn` run on the caller's
connection (`transaction(pool)` or `connection(pool)`); those taking `pool` run one statement on their own.
A caller is an `Annotator` already known or a `Bearer` token: the lease and verdict statements
authenticate a bearer themselves, which saves a round trip on every request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from services.feedback.agreement import AgreementCount, CoincidenceCell
from services.feedback.position_bias import PositionRow
from services.feedback.queue_rules import Outcome, TaskState, Verdict
from services.feedback.queue_stats import TaskCount
from shared import db
from shared.kafka import OutRecord

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
class VerdictWritten:
    """A verdict's write went through; `held_waiting`: it closed its task while the domain holds tasks back."""

    held_waiting: bool


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


@dataclass(frozen=True, slots=True)
class Bearer:
    """The sha256 of a bearer token, not checked yet: the statement that uses it authenticates it."""

    token_hash: bytes


Caller = Annotator | Bearer


@dataclass(kw_only=True, frozen=True, slots=True)
class LeaseResult:
    """Who leased (authenticated by the lease statement), and the task, or None when nothing is queued.

    `read` is the leased task as a verdict decides on it, as of the lease.
    """

    annotator: Annotator
    task: LeasedTask | None
    read: TaskRead | None


@dataclass(kw_only=True, frozen=True, slots=True)
class TaskRead:
    """A task as read, unlocked, for a verdict: its state (with the database time then) and its verdicts so far."""

    state: TaskState
    app_id: str
    reviewers_needed: int
    request: dict[str, Any]
    request_updated_at: datetime
    verdicts: tuple[Verdict, ...]

    @property
    def is_consistent(self) -> bool:
        """Whether the verdicts read are those of `reviewed_by`.

        The lease statement reads the row it locked in its newest version (READ COMMITTED re-checks a row
        another transaction updated meanwhile) but other tables as of the statement's start, so a verdict
        committed in between shows in `reviewed_by` and not in `verdicts`: such a read is not decided on.
        """
        return sorted(v.annotator_id for v in self.verdicts) == sorted(self.state.reviewed_by)


@dataclass(kw_only=True, frozen=True, slots=True)
class VerdictRead:
    """Who is judging (authenticated by the read), and the task, or None when there is no such task."""

    annotator: Annotator
    task: TaskRead | None


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection inside a transaction; asyncpg errors come out as the pipeline's errors."""
    async with db.translate_errors(), pool.acquire() as conn, conn.transaction():
        yield conn


@asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """One connection for several statements, each its own transaction; errors as the pipeline's."""
    async with db.translate_errors(), pool.acquire() as conn:
        yield conn


def _caller_args(caller: Caller) -> tuple[bytes | None, str | None, list[str] | None]:
    if isinstance(caller, Bearer):
        return caller.token_hash, None, None
    return None, caller.annotator_id, list(caller.domains)


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
    pool: asyncpg.Pool, caller: Caller, domain: str | None, lease_seconds: float
) -> LeaseResult | None:
    """The caller and what it leased; None when the caller's token is unknown or revoked."""
    async with db.translate_errors():
        row = await pool.fetchrow(QUERIES["lease_next_task"], *_caller_args(caller), domain, lease_seconds)
    if row is None:
        return None
    annotator = Annotator(row["annotator_id"], tuple(row["domains"]))
    if row["task_id"] is None:
        return LeaseResult(annotator=annotator, task=None, read=None)
    task = LeasedTask(
        task_id=row["task_id"],
        kind=row["kind"],
        domain=row["domain"],
        priority=row["priority"],
        request=row["request"],
        lease_expires_at=row["lease_expires_at"],
    )
    return LeaseResult(annotator=annotator, task=task, read=_task_read(row))


def _leases(value: dict[str, str] | None) -> dict[str, datetime]:
    return {a: datetime.fromisoformat(at) for a, at in (value or {}).items()}


async def select_task_for_update(conn: asyncpg.Connection, task_id: str) -> LockedTask | None:
    row = await conn.fetchrow(QUERIES["select_task_for_update"], task_id)
    if row is None:
        return None
    state = TaskState(
        task_id=row["task_id"],
        domain=row["domain"],
        kind=row["kind"],
        status=row["status"],
        leases=_leases(row["leases"]),
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


def _task_read(row: asyncpg.Record) -> TaskRead:
    state = TaskState(
        task_id=row["task_id"],
        domain=row["domain"],
        kind=row["kind"],
        status=row["status"],
        leases=_leases(row["leases"]),
        reviewed_by=tuple(row["reviewed_by"]),
        now=row["db_now"],
    )
    return TaskRead(
        state=state,
        app_id=row["app_id"],
        reviewers_needed=row["reviewers_needed"],
        request=row["request"],
        request_updated_at=row["request_updated_at"],
        verdicts=tuple(Verdict(**v) for v in row["verdicts"] or ()),
    )


async def select_task_for_verdict(conn: asyncpg.Connection, caller: Caller, task_id: str) -> VerdictRead | None:
    """The caller and the task as it is now; None when the caller's token is unknown or revoked."""
    row = await conn.fetchrow(QUERIES["select_task_for_verdict"], *_caller_args(caller), task_id)
    if row is None:
        return None
    annotator = Annotator(row["annotator_id"], tuple(row["domains"]))
    task = _task_read(row) if row["task_id"] is not None else None
    return VerdictRead(annotator=annotator, task=task)


async def record_verdict(
    conn: asyncpg.Connection,
    caller: Caller,
    task: TaskRead,
    verdict: Verdict,
    outcome: Outcome,
    decided_at: datetime,
    vote: tuple[str, OutRecord] | None,
) -> VerdictWritten | None:
    """Write the verdict decided on `task` as given; None (nothing written) when the task or the caller changed.

    `vote` is the outbox row (service, record) of a completed task's expert vote.
    """
    service, record = vote if vote is not None else (None, None)
    row = await conn.fetchrow(
        QUERIES["record_verdict"],
        *_caller_args(caller),
        task.state.task_id,
        verdict.annotator_id,
        list(task.state.reviewed_by),
        task.request_updated_at,
        outcome.status,
        outcome.reviewers_needed,
        outcome.to_result(),
        decided_at,
        verdict.verdict,
        verdict.rewrite,
        verdict.comment,
        verdict.shown_left,
        service,
        record.topic if record is not None else None,
        record.key if record is not None else None,
        record.value if record is not None else None,
        dict(record.headers) if record is not None else None,
    )
    return None if row is None else VerdictWritten(held_waiting=row["held_waiting"])


def _domains(domains: Sequence[str] | None) -> list[str] | None:
    return list(domains) if domains is not None else None


async def count_tasks_by_domain(conn: asyncpg.Connection, domains: Sequence[str] | None) -> list[TaskCount]:
    rows = await conn.fetch(QUERIES["count_tasks_by_domain"], _domains(domains))
    return [TaskCount(domain=r["domain"], status=r["status"], tasks=r["tasks"]) for r in rows]


async def count_live_leases(conn: asyncpg.Connection, domains: Sequence[str] | None) -> dict[str, int]:
    rows = await conn.fetch(QUERIES["count_live_leases"], _domains(domains))
    return {r["domain"]: r["leases"] for r in rows}


async def sum_coincidences(
    conn: asyncpg.Connection, domains: Sequence[str] | None, annotator_id: str | None
) -> list[CoincidenceCell]:
    rows = await conn.fetch(QUERIES["sum_coincidences"], _domains(domains), annotator_id)
    return [
        CoincidenceCell(
            domain=r["domain"],
            annotator_id=r["annotator_id"],
            first=r["first_verdict"],
            second=r["second_verdict"],
            weight=r["weight"],
        )
        for r in rows
    ]


async def sum_agreement_counts(
    conn: asyncpg.Connection, domains: Sequence[str] | None, annotator_id: str | None
) -> list[AgreementCount]:
    rows = await conn.fetch(QUERIES["sum_agreement_counts"], _domains(domains), annotator_id)
    return [
        AgreementCount(
            domain=r["domain"],
            annotator_id=r["annotator_id"],
            tasks=r["tasks"],
            pairs=r["pairs"],
            agreeing_pairs=r["agreeing_pairs"],
            decided=r["decided"],
            agreed=r["agreed"],
        )
        for r in rows
    ]


async def count_position_verdicts(conn: asyncpg.Connection, domains: Sequence[str] | None) -> list[PositionRow]:
    rows = await conn.fetch(QUERIES["count_position_verdicts"], _domains(domains))
    return [
        PositionRow(domain=r["domain"], shown_left=r["shown_left"], verdict=r["verdict"], verdicts=r["verdicts"])
        for r in rows
    ]


async def count_annotator_verdicts_since(conn: asyncpg.Connection, annotator_id: str, since: datetime) -> int:
    return await conn.fetchval(QUERIES["count_annotator_verdicts_since"], annotator_id, since)


async def compact_queue_counts(pool: asyncpg.Pool) -> int:
    """Fold the counts tables (one row per key); returns how many rows were folded."""
    async with db.translate_errors():
        return await pool.fetchval(QUERIES["compact_queue_counts"])
