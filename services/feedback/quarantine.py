"""The per-voter hourly budget at the edge: the I/O shell of voter_budget.py, run on each batch of fresh votes.

Fresh means admitted (first of its event_id): the edge calls `mark` after its de-duplication and before
it publishes, so a re-post is never counted twice. One statement per batch (budget_store.decide_budget_votes,
atomic alone): the decisions already taken on these event_ids are reused (a publish that failed and is
retried stamps the same mark), the others are counted in their (app_id, voter, hour) bucket and decided by
voter_budget's rule (`decide_batch`, which the statement is tested against), and each decision is
remembered. A quarantined vote is published with `quarantine_reason` (it is accepted and kept; the
aggregator counts it in the stats and moves nothing with it). The budget is advisory like the edge's
other checks: without the database, votes go out unmarked (and a warning is logged).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import structlog
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as CounterMetric

from services.feedback import budget_store
from services.feedback.voter_budget import QUARANTINE_REASON, VoterBudget, hour_of, is_budgeted
from shared import db
from shared.errors import TransientError
from shared.events import CommentVote, ComparisonVote, EditVote, Event, RatingVote, ThumbVote, utcnow

log = structlog.get_logger(__name__)

# The `votes` topic's model of each end-user kind: the one that carries quarantine_reason.
_TOPIC_MODELS = {"thumb": ThumbVote, "rating": RatingVote, "comparison": ComparisonVote, "edit": EditVote,
                 "comment": CommentVote}  # fmt: skip


def quarantined(event: Event, reason: str) -> Event:
    """The vote as the `votes` topic carries it, marked quarantined (already validated: no second validation)."""
    fields = dict(event)
    fields["quarantine_reason"] = reason
    return _TOPIC_MODELS[fields["kind"]].model_construct(**fields)


def voter_hash(app_id: str, user_ref: str) -> bytes:
    """What the budget stores of a voter: the reference itself is never needed."""
    return hashlib.sha256(f"{app_id}\x1f{user_ref}".encode()).digest()[:16]


def budgeted_votes(votes: Sequence[Event]) -> budget_store.BudgetedVotes:
    """The columns the budget's statement takes of budgeted votes (stamped, with a user_ref)."""
    return budget_store.BudgetedVotes(
        event_ids=[v.event_id for v in votes],
        app_ids=[v.app_id for v in votes],
        voter_hashes=[voter_hash(v.app_id, v.user_ref) for v in votes],  # type: ignore[attr-defined]
        received_at=[v.received_at for v in votes],  # type: ignore[attr-defined]
    )


class BudgetMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.quarantined = CounterMetric(
            "votes_quarantined", "End-user votes published marked quarantined", ["reason"], registry=registry
        )


@dataclass(kw_only=True)
class VoterBudgetGate:
    """Marks the votes past the per-voter hourly budget (the votes stream's `mark`)."""

    pool: asyncpg.Pool
    budget: VoterBudget
    metrics: BudgetMetrics
    timeout_s: float

    async def mark(self, events: Sequence[Event]) -> list[Event]:
        """The events in order, those past the budget marked quarantined."""
        budgeted = [e for e in events if is_budgeted(e)]  # type: ignore[arg-type]
        if not budgeted:
            return list(events)
        try:
            async with db.translate_errors(), asyncio.timeout(self.timeout_s):
                decisions = await budget_store.decide_budget_votes(
                    self.pool, budgeted_votes(budgeted), self.budget.max_votes_per_hour, QUARANTINE_REASON
                )
        except (TransientError, TimeoutError) as exc:
            log.warning("voter_budget_unavailable", votes=len(budgeted), error=type(exc).__name__)
            return list(events)
        for decision in decisions.values():
            if decision.fresh and decision.reason:
                self.metrics.quarantined.labels(decision.reason).inc()
        reasons = {event_id: d.reason for event_id, d in decisions.items() if d.reason}
        return [quarantined(e, reasons[e.event_id]) if e.event_id in reasons else e for e in events]

    async def prune(self) -> int:
        """Forget the hours before the previous one (a retry comes within minutes; the budget is per hour)."""
        return await budget_store.delete_budget_before(self.pool, hour_of(utcnow()) - timedelta(hours=1))
