"""The annotation budget's shell: a batch's task offers and releases, admitted per domain under its lock.

One function per named query of sql/budget.sql, on the caller's connection and transaction, and
`admit_tasks`, the batch's one call (after the group locks, before the leaderboard's rows: see the
lock order in batches.py):
1. lock the domains the offers and releases touch (advisory locks, keys sorted);
2. read, now that they are held, the touched tasks' rows and a window of each domain: its open count
   and its 2k + 1 lowest open and best waiting tasks for k decisions (budget.DomainQueue), in one statement;
3. decide with the pure rules, per domain: releases by task_id, then offers by task_id;
4. write the budget rows, publish what is open and not published as it is, tombstone what was
   published and is not open (outputs.plan_task_emissions), and record what was published.
A task's row changes only under its domain's lock, except its offered state hash and domain, which
only its own group's batch changes (under the group's lock): so those are read before step 1
(with the group's state: `store.load_group_state`, `GroupRows.budget`), and the statuses only after it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import asyncpg

from services.aggregator import store
from services.aggregator.budget import Admission, DomainQueue, Ranked, rebalance
from services.aggregator.outputs import Emission, TaskOffer, TaskState, plan_task_emissions
from services.aggregator.store import SQL_DIR, BudgetedTask
from shared import db
from shared.events import AnnotationRequest

QUERIES = db.load_queries(SQL_DIR / "budget.sql")
# The first key of the two-key advisory locks of domains: apart from the batches' one-key locks and
# the leaderboard's boards (13).
DOMAIN_LOCK_CLASS = 17


@dataclass(frozen=True, slots=True)
class _Row:
    """A task's rows now: in the budget (domain, priority, status...) and / or as published."""

    task_id: str
    prompt_key: str
    kind: str
    domain: str | None
    priority: float | None
    status: str | None
    state_hash: str | None
    published_hash: str | None
    request: str | None


@dataclass(kw_only=True)
class BudgetOutcome:
    """What one batch's admission did: messages, first publications (for stats), decisions by kind."""

    emissions: list[Emission] = field(default_factory=list)
    first_published: list[AnnotationRequest] = field(default_factory=list)
    decisions: Counter[str] = field(default_factory=Counter)


async def lock_domains(conn: asyncpg.Connection, domains: Iterable[str]) -> None:
    """Advisory-lock these domains for the transaction, in sorted key order (every caller uses the same)."""
    keys = db.advisory_lock_keys(domains)
    if keys:
        await conn.execute(QUERIES["lock_budget_domains"], DOMAIN_LOCK_CLASS, keys)


async def _select_rows(conn: asyncpg.Connection, task_ids: Iterable[str], *, with_request: bool) -> dict[str, _Row]:
    wanted = sorted(set(task_ids))
    if not wanted:
        return {}
    rows = await conn.fetch(QUERIES["select_budget_states"], wanted, with_request)
    return {r["task_id"]: _Row(**{name: r[name] for name in _Row.__dataclass_fields__}) for r in rows}


async def _select_view(
    conn: asyncpg.Connection, touched: Sequence[str], decisions: Mapping[str, int], cap: int
) -> tuple[dict[str, _Row], dict[str, DomainQueue]]:
    """The touched tasks' rows, and each domain's window: enough of its ends for `decisions[domain]`
    decisions, and the touched tasks (one statement: select_budget_view)."""
    domains = sorted(decisions)
    sizes = [2 * decisions[d] + 1 for d in domains]
    rows: dict[str, _Row] = {}
    loaded: dict[str, tuple[dict[str, float], dict[str, float]]] = {d: ({}, {}) for d in domains}
    counts: dict[str, int] = {}
    for r in await conn.fetch(QUERIES["select_budget_view"], sorted(set(touched)), domains, sizes):
        if r["part"] == "task":
            rows[r["task_id"]] = _Row(**{name: r[name] for name in _Row.__dataclass_fields__ if name != "request"},
                                      request=None)  # fmt: skip
        elif r["part"] == "window":
            loaded[r["domain"]][0 if r["status"] == "open" else 1][r["task_id"]] = r["priority"]
        else:
            counts[r["domain"]] = r["open_tasks"]
    for row in rows.values():
        if row.domain in loaded and row.status is not None and row.priority is not None:
            loaded[row.domain][0 if row.status == "open" else 1][row.task_id] = row.priority
    queues = {
        d: DomainQueue(cap, open_, waiting, hidden_open=counts.get(d, 0) - len(open_))
        for d, (open_, waiting) in loaded.items()
    }
    return rows, queues


def _operations(
    offers: Mapping[str, TaskOffer], releases: Sequence[str], held: Mapping[str, BudgetedTask]
) -> dict[str, list[tuple[str, TaskOffer | None]]]:
    """Per domain, in order: releases (and offers moving out of the domain) by task_id, then offers by task_id."""
    operations: dict[str, list[tuple[str, TaskOffer | None]]] = defaultdict(list)
    for task_id in sorted({*releases, *offers}):
        offer, budgeted = offers.get(task_id), held.get(task_id)
        if budgeted is not None and (offer is None or offer.domain != budgeted.domain):
            operations[budgeted.domain].append((task_id, None))
    for task_id in sorted(offers):
        operations[offers[task_id].domain].append((task_id, offers[task_id]))
    return operations


def _decide(
    queues: dict[str, DomainQueue], operations: Mapping[str, list[tuple[str, TaskOffer | None]]], tally: Counter[str]
) -> dict[str, DomainQueue]:
    """Apply each domain's operations to its window with the pure rules; count the decisions."""
    for domain, steps in operations.items():
        queue, decisions = queues[domain].apply([(t, None if o is None else o.priority) for t, o in steps])
        for decision in decisions:
            if isinstance(decision, Admission):
                tally[decision.outcome] += 1
                tally["withdrawn"] += decision.withdrawn is not None
            else:
                tally["released"] += 1
            tally["promoted"] += decision.promoted is not None
        queues[domain] = queue
    return queues


async def admit_tasks(
    conn: asyncpg.Connection,
    offers: Sequence[TaskOffer],
    releases: Sequence[str],
    held: Mapping[str, BudgetedTask],
    cap: int,
) -> BudgetOutcome:
    """Admit a batch's offers and releases (of groups it holds locked; `held`: their tasks in the budget)."""
    by_id = {offer.task_id: offer for offer in offers}
    touched = sorted(by_id.keys() | set(releases))
    if not touched:
        return BudgetOutcome()
    operations = _operations(by_id, releases, held)
    await lock_domains(conn, operations)
    rows, before = await _select_view(conn, touched, {d: len(steps) for d, steps in operations.items()}, cap)
    outcome = BudgetOutcome()
    after = _decide(dict(before), operations, outcome.decisions)
    was_open = {t for q in before.values() for t in q.open}
    is_open = {t for q in after.values() for t in q.open}
    # Withdrawn or promoted by this batch's decisions, of other groups (the touched ones are written whole).
    loaded = {t for q in before.values() for t in (*q.open, *q.waiting)}
    moved = sorted(t for t in loaded - set(touched) if (t in was_open) != (t in is_open))
    await _write_budget(conn, by_id, is_open, moved, releases)
    others = await _select_rows(conn, moved, with_request=True)
    states = [_state_of(t, rows.get(t), by_id.get(t), t in is_open) for t in touched]
    states += [_state_of(t, others[t], None, t in is_open) for t in moved]
    planned = plan_task_emissions(s for s in states if s is not None)
    await store.upsert_requests(conn, planned.published_rows)
    outcome.emissions = planned.emissions
    outcome.first_published = [AnnotationRequest.model_validate_json(body) for body in planned.first_published]
    return outcome


async def _write_budget(
    conn: asyncpg.Connection,
    by_id: Mapping[str, TaskOffer],
    is_open: set[str],
    moved: Sequence[str],
    releases: Sequence[str],
) -> None:
    """Offered tasks with their request and status, the new status of moved ones; released ones leave."""
    offers = [by_id[t] for t in sorted(by_id)]
    if offers:
        await conn.execute(
            QUERIES["upsert_budget_tasks"],
            [o.task_id for o in offers],
            [o.prompt_key for o in offers],
            [o.kind for o in offers],
            [o.domain for o in offers],
            [o.priority for o in offers],
            ["open" if o.task_id in is_open else "waiting" for o in offers],
            [o.state_hash for o in offers],
            [o.body.decode() for o in offers],
        )
    if moved:
        statuses = ["open" if t in is_open else "waiting" for t in moved]
        await conn.execute(QUERIES["update_budget_status"], list(moved), statuses)
    gone = sorted(set(releases) - by_id.keys())
    if gone:
        await conn.execute(QUERIES["delete_budget_tasks"], gone)


def _state_of(task_id: str, row: _Row | None, offer: TaskOffer | None, is_open: bool) -> TaskState | None:
    """The task as plan_task_emissions sees it: the offer's request if offered now, else the stored one."""
    if offer is not None:
        published = row.published_hash if row is not None else None
        return TaskState(task_id, offer.prompt_key, offer.kind, is_open, offer.state_hash, offer.body, published)
    if row is None:
        return None
    body = row.request.encode() if row.request is not None else None
    return TaskState(task_id, row.prompt_key, row.kind, is_open, row.state_hash, body, row.published_hash)


async def select_budget_domains(conn: asyncpg.Connection) -> list[str]:
    """Every domain with tasks in the budget."""
    return [r["domain"] for r in await conn.fetch(QUERIES["select_budget_domains"])]


async def rebalance_domain(conn: asyncpg.Connection, domain: str, cap: int) -> BudgetOutcome:
    """Make a domain's open tasks its top `cap` again (after the cap changed), under its lock."""
    await lock_domains(conn, [domain])
    ranks = await conn.fetch(QUERIES["select_domain_ranks"], domain, cap)
    open_tasks = [Ranked(r["priority"], r["task_id"]) for r in ranks if r["status"] == "open"]
    waiting = [Ranked(r["priority"], r["task_id"]) for r in ranks if r["status"] != "open"]
    withdraw, promote = rebalance(open_tasks, waiting, cap)
    outcome = BudgetOutcome()
    moved = sorted([*withdraw, *promote])
    if not moved:
        return outcome
    outcome.decisions.update(withdrawn=len(withdraw), promoted=len(promote))
    await conn.execute(QUERIES["update_budget_status"], moved, ["open" if t in promote else "waiting" for t in moved])
    rows = await _select_rows(conn, moved, with_request=True)
    planned = plan_task_emissions(s for t in moved if (s := _state_of(t, rows.get(t), None, t in promote)) is not None)
    await store.upsert_requests(conn, planned.published_rows)
    outcome.emissions = planned.emissions
    outcome.first_published = [AnnotationRequest.model_validate_json(body) for body in planned.first_published]
    return outcome
