"""Vote quality's PostgreSQL state: the voters of the outlier test (sql/voters.sql), one function per named query.

Functions taking `conn` run in the caller's transaction. Voter rows are locked by `lock_voters`, sorted
by (app_id, user_ref), after the group locks of the same transaction (see batches.py); an admin's clear
locks one voter row alone (`select_voter_for_update`), holding nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from services.aggregator.store import SQL_DIR
from services.aggregator.vote_quality import VoterKey, VoterState
from services.aggregator.voters import VoterTally
from shared import db

QUERIES = db.load_queries(SQL_DIR / "voters.sql")
# The first key of the two-key advisory locks of voters' re-decides: apart from boards (13), the annotation
# budget's domains (17, budget_store.DOMAIN_LOCK_CLASS) and the one-key locks.
VOTER_LOCK_CLASS = 19
_COLUMNS = ("votes", "disagreements", "log_e_any", "log_e_up", "log_e_down", "peak_log_e")


def _state(row: Any) -> VoterState:
    return VoterState(
        app_id=row["app_id"],
        user_ref=row["user_ref"],
        tally=VoterTally(**{name: row[name] for name in _COLUMNS}),
        votes_seen=row["votes_seen"],
        flagged=row["flagged"],
        flagged_at=row["flagged_at"],
        flagged_after_votes=row["flagged_after_votes"],
        cleared_at=row["cleared_at"],
        redecide_pending=row["redecide_pending"],
    )


def _split(keys: Sequence[VoterKey]) -> tuple[list[str], list[str]]:
    return [k[0] for k in keys], [k[1] for k in keys]


async def lock_voters(conn: asyncpg.Connection, voters: Iterable[VoterKey]) -> dict[VoterKey, VoterState]:
    """Row-lock these voters in key order (creating the new ones) and return their state."""
    keys = sorted(set(voters))
    if not keys:
        return {}
    rows = await conn.fetch(QUERIES["lock_voters"], *_split(keys))
    return {(r["app_id"], r["user_ref"]): _state(r) for r in rows}


async def update_voters(conn: asyncpg.Connection, states: Sequence[VoterState]) -> None:
    """Write voters' state (locked by `lock_voters` or `select_voter_for_update` in this transaction)."""
    if not states:
        return
    ordered = sorted(states, key=lambda s: s.key)
    await conn.execute(
        QUERIES["update_voters"],
        [s.app_id for s in ordered],
        [s.user_ref for s in ordered],
        [s.votes_seen for s in ordered],
        *([getattr(s.tally, name) for s in ordered] for name in _COLUMNS),
        [s.flagged for s in ordered],
        [s.flagged_at for s in ordered],
        [s.flagged_after_votes for s in ordered],
        [s.cleared_at for s in ordered],
        [s.redecide_pending for s in ordered],
    )


async def select_voters(pool: asyncpg.Pool, flagged: bool | None, app_id: str | None, limit: int) -> list[VoterState]:
    async with db.translate_errors():
        rows = await pool.fetch(QUERIES["select_voters"], flagged, app_id, limit)
    return [_state(r) for r in rows]


async def select_voter_for_update(conn: asyncpg.Connection, voter: VoterKey) -> VoterState | None:
    row = await conn.fetchrow(QUERIES["select_voter"], *voter)
    return None if row is None else _state(row)


async def select_redecide_pending(pool: asyncpg.Pool, limit: int) -> list[VoterKey]:
    async with db.translate_errors():
        rows = await pool.fetch(QUERIES["select_redecide_pending"], limit)
    return [(r["app_id"], r["user_ref"]) for r in rows]


def voter_lock_key(voter: VoterKey) -> int:
    """A signed 32-bit key per voter (a collision only makes two re-decides take turns)."""
    return db.advisory_lock_key(f"{voter[0]}\x1f{voter[1]}")


async def try_lock_voter(conn: asyncpg.Connection, voter: VoterKey) -> bool:
    """Take this voter's re-decide lock until the transaction ends, unless another one holds it (never waits)."""
    return bool(await conn.fetchval(QUERIES["try_lock_voter"], VOTER_LOCK_CLASS, voter_lock_key(voter)))


async def select_voter_flag(conn: asyncpg.Connection, voter: VoterKey) -> bool | None:
    return await conn.fetchval(QUERIES["select_voter_flag"], *voter)


async def select_stale_voter_groups(conn: asyncpg.Connection, voter: VoterKey, flagged: bool, limit: int) -> list[str]:
    """Groups where this voter's votes do not count as its flag says yet (counted though flagged, or the reverse)."""
    rows = await conn.fetch(QUERIES["select_stale_voter_groups"], *voter, flagged, limit)
    return [r["prompt_key"] for r in rows]


async def finish_redecide(conn: asyncpg.Connection, voter: VoterKey, flagged: bool) -> None:
    """No group left to decide again for the flag acted on (`flagged`)."""
    await conn.execute(QUERIES["finish_redecide"], *voter, flagged)


async def count_flagged_voters(pool: asyncpg.Pool) -> dict[str, int]:
    async with db.translate_errors():
        rows = await pool.fetch(QUERIES["count_flagged_voters"])
    return {r["app_id"]: r["voters"] for r in rows}
