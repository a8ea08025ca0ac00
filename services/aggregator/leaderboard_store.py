"""The leaderboard's PostgreSQL state: counts kept by each batch, boards and alarms kept by the refit worker.

One function per named query of sql/leaderboard.sql, on the caller's connection and transaction,
except `record_changes`, the batch's one call: given what the changed pairs and decided groups counted
for before (read with the group state: `store.load_group_state`), it applies the pure changes of
`leaderboard_counts.py` and marks the boards changed,
all in the batch's transaction (after the group locks, so the pairs and groups it reads are held).
Shared rows are written in key order, in this order: battle counts, approval counts, boards (then the
batch goes on to stats rows and, last, model versions): see the lock order in batches.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.aggregator.leaderboard import ApprovalCounts, VersionKey
from services.aggregator.leaderboard_counts import (
    ApprovalKey,
    BattleKey,
    BoardChanges,
    BoardKey,
    approval_changes,
    battle_changes,
    boards_of,
)
from services.aggregator.leaderboard_outputs import AlertId, AlertState
from services.aggregator.outputs import PairRow
from services.aggregator.store import SQL_DIR, GroupRows
from shared import db
from shared.events import Interaction

QUERIES = db.load_queries(SQL_DIR / "leaderboard.sql")
# The first key of the two-key advisory locks of boards: apart from the batches' one-key locks.
BOARD_LOCK_CLASS = 13


@dataclass(frozen=True)
class BoardInput:
    """What a refit reads of one board, in one snapshot."""

    change_seq: int
    refitted_seq: int
    body_hash: str | None
    snapshot_at: datetime
    battles: dict[tuple[VersionKey, VersionKey], int]
    approvals: dict[VersionKey, ApprovalCounts]
    release_order: dict[str, list[str]]


async def record_changes(
    conn: asyncpg.Connection,
    changes: BoardChanges,
    pair_rows: Sequence[PairRow],
    groups: Mapping[str, GroupRows],
) -> None:
    """Apply a batch's pair rows and decided groups to the counts, and mark the boards they touch.

    `groups`: the locked groups as `store.load_group_state` read them (the battles their pairs counted
    for and the domain each was counted under before: only a batch holding a group's lock changes them).
    """
    stored = {pair_id: battle for rows in groups.values() for pair_id, battle in rows.battles.items()}
    battles, now = battle_changes(stored, pair_rows)
    counted = {
        g.prompt_key: domain for g in changes.groups if (domain := groups[g.prompt_key].counted_domain) is not None
    }
    approvals, domains = approval_changes(changes.groups, counted)
    await _add_battle_counts(conn, battles)
    await _add_approval_counts(conn, approvals)
    await _mark_boards_changed(conn, boards_of(battles, approvals))
    await _write_pair_battles(conn, stored, now)
    if domains:
        prompt_keys = sorted(domains)
        app_ids, group_domains = zip(*(domains[k] for k in prompt_keys), strict=True)
        await conn.execute(QUERIES["upsert_counted_groups"], prompt_keys, list(app_ids), list(group_domains))


def _battle_columns(keys: Sequence[BattleKey]) -> list[list[str]]:
    return [
        [k.app_id for k in keys],
        [k.domain for k in keys],
        [k.winner.model for k in keys],
        [k.winner.model_version for k in keys],
        [k.loser.model for k in keys],
        [k.loser.model_version for k in keys],
    ]


async def _add_battle_counts(conn: asyncpg.Connection, deltas: Mapping[BattleKey, int]) -> None:
    keys = sorted(deltas)
    if keys:
        await conn.execute(QUERIES["add_battle_counts"], *_battle_columns(keys), [deltas[k] for k in keys])


async def _write_pair_battles(
    conn: asyncpg.Connection, stored: Mapping[str, BattleKey], now: Mapping[str, BattleKey | None]
) -> None:
    """Write the pairs' battles that changed (`stored`: what each pair held before; absent: none)."""
    held = sorted((pid, key) for pid, key in now.items() if key is not None and stored.get(pid) != key)
    gone = sorted(pid for pid, key in now.items() if key is None and pid in stored)
    if held:
        await conn.execute(QUERIES["upsert_pair_battles"], [p for p, _ in held], *_battle_columns([k for _, k in held]))
    if gone:
        await conn.execute(QUERIES["delete_pair_battles"], gone)


async def _add_approval_counts(conn: asyncpg.Connection, deltas: Mapping[ApprovalKey, tuple[int, int]]) -> None:
    keys = sorted(deltas)
    if not keys:
        return
    await conn.execute(
        QUERIES["add_approval_counts"],
        [k.app_id for k in keys],
        [k.domain for k in keys],
        [k.version.model for k in keys],
        [k.version.model_version for k in keys],
        [deltas[k][0] for k in keys],
        [deltas[k][1] for k in keys],
    )


async def _mark_boards_changed(conn: asyncpg.Connection, boards: Sequence[BoardKey]) -> None:
    if boards:
        await conn.execute(QUERIES["mark_boards_changed"], [b.app_id for b in boards], [b.domain for b in boards])


async def note_model_versions(conn: asyncpg.Connection, interactions: Iterable[Interaction]) -> None:
    """Remember when each version was first seen (its release order); call last in the batch's transaction."""
    first: dict[tuple[str, str, str], datetime] = {}
    for i in interactions:
        key = (i.app_id, i.response.model, i.response.model_version)
        first[key] = min(first.get(key, i.occurred_at), i.occurred_at)
    keys = sorted(first)
    if keys:
        columns = [list(c) for c in zip(*keys, strict=True)]
        await conn.execute(QUERIES["note_model_versions"], *columns, [first[k] for k in keys])


async def select_uncounted_groups(conn: asyncpg.Connection, after: str, limit: int) -> list[str]:
    """Groups never counted, in prompt_key order after `after` (keyset pages: the scan never starts over)."""
    return [r["prompt_key"] for r in await conn.fetch(QUERIES["select_uncounted_groups"], after, limit)]


# The refit worker -----------------------------------------------------------------------------------


def board_lock_key(board: BoardKey) -> int:
    """A signed 32-bit key per board (a collision only makes two boards wait for each other)."""
    digest = hashlib.blake2b(f"{board.app_id}\x1f{board.domain}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


async def select_due_boards(pool: asyncpg.Pool, debounce_s: float, max_delay_s: float, limit: int) -> list[BoardKey]:
    async with db.translate_errors():
        rows = await pool.fetch(QUERIES["select_due_boards"], debounce_s, max_delay_s, limit)
    return [BoardKey(r["app_id"], r["domain"]) for r in rows]


async def try_lock_board(conn: asyncpg.Connection, board: BoardKey) -> bool:
    return bool(await conn.fetchval(QUERIES["try_lock_board"], BOARD_LOCK_CLASS, board_lock_key(board)))


async def unlock_board(conn: asyncpg.Connection, board: BoardKey) -> None:
    await conn.fetchval(QUERIES["unlock_board"], BOARD_LOCK_CLASS, board_lock_key(board))


async def load_board_input(conn: asyncpg.Connection, board: BoardKey) -> BoardInput | None:
    """The board's counters, counts and release order; call in a repeatable-read transaction (one snapshot)."""
    state = await conn.fetchrow(QUERIES["select_board_state"], board.app_id, board.domain)
    if state is None:
        return None
    battles = {
        (VersionKey(r["winner_model"], r["winner_version"]), VersionKey(r["loser_model"], r["loser_version"])): int(
            r["battles"]
        )
        for r in await conn.fetch(QUERIES["select_board_battles"], board.app_id, board.domain)
    }
    approvals = {
        VersionKey(r["model"], r["model_version"]): ApprovalCounts(int(r["up"]), int(r["down"]))
        for r in await conn.fetch(QUERIES["select_board_approvals"], board.app_id, board.domain)
    }
    order: dict[str, list[str]] = {}
    for r in await conn.fetch(QUERIES["select_release_order"], board.app_id):
        order.setdefault(r["model"], []).append(r["model_version"])
    return BoardInput(
        change_seq=state["change_seq"],
        refitted_seq=state["refitted_seq"],
        body_hash=state["body_hash"],
        snapshot_at=state["snapshot_at"],
        battles=battles,
        approvals=approvals,
        release_order=order,
    )


async def mark_board_refitted(conn: asyncpg.Connection, board: BoardKey, seq: int, snapshot_at: datetime) -> None:
    await conn.execute(QUERIES["mark_board_refitted"], board.app_id, board.domain, seq, snapshot_at)


async def update_board_body(
    conn: asyncpg.Connection, board: BoardKey, body: dict[str, Any], body_hash: str, computed_at: datetime
) -> None:
    await conn.execute(QUERIES["update_board_body"], board.app_id, board.domain, body, body_hash, computed_at)


async def select_board_alerts(conn: asyncpg.Connection, board: BoardKey) -> dict[AlertId, AlertState]:
    rows = await conn.fetch(QUERIES["select_board_alerts"], board.app_id, board.domain)
    return {
        (r["model"], r["previous_version"], r["new_version"], r["metric"]): AlertState(r["is_raised"], r["transitions"])
        for r in rows
    }


async def upsert_board_alerts(conn: asyncpg.Connection, board: BoardKey, states: Mapping[AlertId, AlertState]):
    ids = sorted(states)
    if not ids:
        return
    await conn.execute(
        QUERIES["upsert_board_alerts"],
        [board.app_id] * len(ids),
        [board.domain] * len(ids),
        *([alert_id[i] for alert_id in ids] for i in range(4)),
        [states[a].is_raised for a in ids],
        [states[a].transitions for a in ids],
    )


async def select_alert_states(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    async with db.translate_errors():
        return await pool.fetch(QUERIES["select_alert_states"])


async def select_board_body(pool: asyncpg.Pool, board: BoardKey) -> tuple[bool, dict[str, Any] | None]:
    """(whether the board exists, its latest body or None before its first refit)."""
    async with db.translate_errors():
        row = await pool.fetchrow(QUERIES["select_board_body"], board.app_id, board.domain)
    return (False, None) if row is None else (True, row["body"])


async def is_known_app(pool: asyncpg.Pool, app_id: str) -> bool:
    async with db.translate_errors():
        return bool(await pool.fetchval(QUERIES["select_is_known_app"], app_id))
