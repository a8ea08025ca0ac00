"""The per-voter hourly budget's one statement (decide_budget_votes) on real PostgreSQL, through VoterBudgetGate.

The statement applies voter_budget's rule in SQL: these tests hold its marks, stored ordinals and counts to
`decide_batch` (the pure rule) over random batches, check that a retried batch reuses its decisions and
counts nothing twice, and that concurrent batches of the same voters count every vote once.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from services.feedback.quarantine import BudgetMetrics, VoterBudgetGate, voter_hash
from services.feedback.settings import FeedbackSettings
from services.feedback.voter_budget import QUARANTINE_REASON, BucketKey, VoterBudget, decide_batch
from shared import db
from shared.events import Event
from tests.support.builders import thumb_vote, verdict_vote

pytestmark = pytest.mark.timeout(120)

HOUR = datetime(2026, 11, 26, 10, tzinfo=UTC)
BUDGET = VoterBudget(max_votes_per_hour=3)


@asynccontextmanager
async def budget_gate(database_url: str) -> AsyncIterator[tuple[VoterBudgetGate, CollectorRegistry]]:
    pool = await db.create_pool(FeedbackSettings(database_url=database_url, db_pool_max_size=12))
    registry = CollectorRegistry()
    try:
        yield VoterBudgetGate(pool=pool, budget=BUDGET, metrics=BudgetMetrics(registry), timeout_s=10.0), registry
    finally:
        await pool.close()


def quarantined_total(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("votes_quarantined_total", {"reason": QUARANTINE_REASON}) or 0.0


def reasons(events: list[Event]) -> list[str | None]:
    return [getattr(e, "quarantine_reason", None) for e in events]


def random_batch(rnd: random.Random) -> list[Event]:
    """Votes of a few voters of two apps (one user_ref in both), over two hours; same-moment votes too; experts."""
    votes: list[Event] = []
    for _ in range(rnd.randint(1, 12)):
        moment = HOUR + timedelta(minutes=rnd.choice([0, 0, 15, 59, 60, 61, 119]), microseconds=rnd.randint(0, 2))
        if rnd.random() < 0.1:
            votes.append(verdict_vote(moment))
        else:
            votes.append(
                thumb_vote(rnd.choice(["u1", "u2", "U1"]), moment, app=rnd.choice(["helpdesk", "Zeta-app", "été"]))
            )
    return votes


async def test_the_statement_decides_as_the_rule_does_batch_after_batch(database_url: str) -> None:
    rnd = random.Random(15)
    counts: dict[BucketKey, int] = {}
    expected_ordinals: dict[uuid.UUID, tuple[datetime, int, str | None]] = {}
    quarantined = 0
    async with budget_gate(database_url) as (gate, registry):
        for _ in range(40):
            batch = random_batch(rnd)
            decisions, touched = decide_batch(batch, counts, BUDGET)  # type: ignore[arg-type]
            counts.update(touched)
            marked = await gate.mark(batch)
            assert [m.event_id for m in marked] == [e.event_id for e in batch]
            assert reasons(marked) == [d.reason for d in decisions]
            assert all(m is e for m, e, d in zip(marked, batch, decisions, strict=True) if d.reason is None)
            for event, decision in zip(batch, decisions, strict=True):
                if decision.bucket is not None:
                    expected_ordinals[event.event_id] = (decision.bucket[2], decision.ordinal, decision.reason)
            quarantined += sum(d.quarantined for d in decisions)
        stored = await gate.pool.fetch("SELECT event_id, hour, ordinal, quarantine_reason FROM voter_budget_votes")
        hours = await gate.pool.fetch("SELECT app_id, voter_hash, hour, votes FROM voter_budget_hours")
    assert quarantined > 0 and quarantined_total(registry) == quarantined
    assert {r["event_id"]: (r["hour"], r["ordinal"], r["quarantine_reason"]) for r in stored} == expected_ordinals
    assert {(r["app_id"], bytes(r["voter_hash"]), r["hour"]): r["votes"] for r in hours} == {
        (app, voter_hash(app, user), hour): n for (app, user, hour), n in counts.items()
    }


async def test_a_retried_batch_reuses_its_decisions_and_counts_nothing_twice(database_url: str) -> None:
    first = [thumb_vote("u1", HOUR + timedelta(seconds=i)) for i in range(5)]
    async with budget_gate(database_url) as (gate, registry):
        marked = await gate.mark(first)
        assert reasons(marked) == [None, None, None, QUARANTINE_REASON, QUARANTINE_REASON]
        assert quarantined_total(registry) == 2
        # The publish failed: the same votes come again, with a new one of the voter and one of another voter.
        retried = [*reversed(first), thumb_vote("u1", HOUR), thumb_vote("u2", HOUR)]
        again = await gate.mark(retried)
        votes = await gate.pool.fetchval("SELECT sum(votes) FROM voter_budget_hours")
    assert reasons(again) == [QUARANTINE_REASON, QUARANTINE_REASON, None, None, None, QUARANTINE_REASON, None]
    assert quarantined_total(registry) == 3, "a reused decision is not counted again"
    assert votes == 7


async def test_concurrent_batches_of_the_same_voters_count_every_vote_once(database_url: str) -> None:
    rnd = random.Random(7)
    users = ["u1", "u2", "u3", "u4"]
    batches = []
    for _ in range(16):
        # Each batch touches the same buckets, listed in another order: the statement locks them in key order.
        batch = [thumb_vote(u, HOUR + timedelta(minutes=rnd.randint(0, 59))) for u in rnd.sample(users, 4)]
        batches.append(batch + [thumb_vote(u, HOUR) for u in rnd.sample(users, 2)])
    async with budget_gate(database_url) as (gate, registry):
        results = await asyncio.gather(*(gate.mark(b) for b in batches))
        rows = await gate.pool.fetch("SELECT hour, ordinal FROM voter_budget_votes")
        hours = await gate.pool.fetch("SELECT voter_hash, votes FROM voter_budget_hours")
    per_voter = {voter_hash("helpdesk", u): sum(1 for b in batches for v in b if v.user_ref == u) for u in users}
    assert {bytes(r["voter_hash"]): r["votes"] for r in hours} == per_voter
    assert len(rows) == sum(per_voter.values())
    counted = sum(r is None for marked in results for r in reasons(marked))
    assert counted == len(users) * BUDGET.max_votes_per_hour, "exactly the budget of each voter is counted"
    assert quarantined_total(registry) == sum(per_voter.values()) - counted


async def test_votes_that_are_never_budgeted_leave_the_database_alone(database_url: str) -> None:
    unbudgeted = [verdict_vote(HOUR), thumb_vote("u1", HOUR).model_copy(update={"user_ref": None})]
    async with budget_gate(database_url) as (gate, _):
        marked = await gate.mark(unbudgeted)
        stored = await gate.pool.fetchval("SELECT count(*) FROM voter_budget_votes")
    assert [m is e for m, e in zip(marked, unbudgeted, strict=True)] == [True, True]
    assert stored == 0
