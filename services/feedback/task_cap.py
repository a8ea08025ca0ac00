"""The cap on the tasks annotators are offered, per domain: requests over it are held until room appears.

The aggregator opens at most `AGGREGATOR_MAX_OPEN_TASKS_PER_DOMAIN` tasks per domain, and a new task
enters at the cap only by displacing the lowest open one (a tombstone under that task's id). The new
request and the tombstone are keyed by their own task_ids, so they travel on different partitions of
`annotation-requests` and may reach this queue in either order. The queue keeps the same cap
(`FEEDBACK_MAX_OPEN_TASKS_PER_DOMAIN`, which defaults to the aggregator's setting):

- every request is stored `held` (kept, never leased); a re-request of an open task leaves it open;
- under the domain's advisory lock, held tasks are opened, best first (priority, then the greater
  task_id, the aggregator's rank), while the domain has fewer than `cap` open tasks. Nothing else ever
  opens a task, so the open tasks of a domain never exceed the cap, whatever the arrival order;
- room appears when a tombstone withdraws a task or a verdict closes one. The annotation-requests
  consumer fills the domains of its batch (its requests', and its tombstones' tasks' whatever their
  status: a task closed by a verdict is withdrawn by the aggregator afterwards, so its tombstone
  fills that room); a periodic pass fills every domain holding tasks (a contested task sends no
  tombstone, and a cap lower than the aggregator's leaves tasks held until tasks close).

Lock order: domains' advisory locks (sorted keys, class `DOMAIN_LOCK_CLASS`) before any task row, in
every transaction that takes them; the lease and verdict statements take no domain lock and never
open a task.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg

from services.feedback.store import QUERIES
from shared import db

# The first key of the queue's two-key advisory locks; the aggregator's classes (13, 17, 19) are apart,
# should both services share one database.
DOMAIN_LOCK_CLASS = 23


async def select_task_domains(conn: asyncpg.Connection, task_ids: Sequence[str]) -> set[str]:
    if not task_ids:
        return set()
    return {r["domain"] for r in await conn.fetch(QUERIES["select_task_domains"], list(task_ids))}


async def select_held_domains(conn: asyncpg.Connection) -> set[str]:
    return {r["domain"] for r in await conn.fetch(QUERIES["select_held_domains"])}


async def lock_domains(conn: asyncpg.Connection, domains: Iterable[str]) -> None:
    """Advisory-lock these domains until the transaction ends, in sorted key order (every caller's order)."""
    keys = db.advisory_lock_keys(domains)
    if keys:
        await conn.execute(QUERIES["lock_task_domains"], DOMAIN_LOCK_CLASS, keys)


async def offer_held_tasks(conn: asyncpg.Connection, domains: Iterable[str], cap: int) -> list[str]:
    """Open the best held tasks of these domains (locked by `lock_domains` first) up to the cap; those opened."""
    names = sorted(set(domains))
    if not names:
        return []
    return [r["task_id"] for r in await conn.fetch(QUERIES["offer_held_tasks"], names, cap)]
