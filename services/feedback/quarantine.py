"""The per-voter hourly budget at the edge: the I/O shell of voter_budget.py, run on each batch of fresh votes.

Fresh means admitted (first of its event_id): the edge calls `mark` after its de-duplication and before
it publishes, so a re-post is never counted twice. In one transaction: the decisions already taken on
these event_ids are reused (a publish that failed and is retried stamps the same mark), the others are
counted in their (app_id, voter, hour) bucket (an upsert in key order that returns the totals: the
count before each bucket's first new vote is total - added) and decided by `decide_batch`, and each
decision is remembered. A quarantined vote is published with `quarantine_reason` (it is accepted and
kept; the aggregator counts it in the stats and moves nothing with it). The budget is advisory like the
edge's other checks: without the database, votes go out unmarked (and a warning is logged).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import structlog
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as CounterMetric

from services.feedback import budget_store, store
from services.feedback.voter_budget import BucketKey, VoterBudget, bucket_of, decide_batch, hour_of
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


def _stored(bucket: BucketKey) -> budget_store.BudgetBucket:
    app_id, user_ref, hour = bucket
    return app_id, voter_hash(app_id, user_ref), hour


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
        budgeted = [e for e in events if bucket_of(e) is not None]  # type: ignore[arg-type]
        if not budgeted:
            return list(events)
        try:
            async with db.translate_errors(), asyncio.timeout(self.timeout_s), store.transaction(self.pool) as conn:
                reasons = await self._decide(conn, budgeted)
        except (TransientError, TimeoutError) as exc:
            log.warning("voter_budget_unavailable", votes=len(budgeted), error=type(exc).__name__)
            return list(events)
        return [quarantined(e, reasons[e.event_id]) if reasons.get(e.event_id) else e for e in events]

    async def _decide(self, conn: asyncpg.Connection, votes: list[Event]) -> dict:
        """event_id -> quarantine reason (None: counted), reusing earlier decisions on the same ids."""
        reasons = await budget_store.select_budget_decisions(conn, [v.event_id for v in votes])
        fresh = list({v.event_id: v for v in votes if v.event_id not in reasons}.values())
        added = Counter(_stored(bucket_of(v)) for v in fresh)  # type: ignore[arg-type]
        totals = await budget_store.add_budget_votes(conn, added)
        before: dict[BucketKey, int] = {}
        for vote in fresh:
            bucket = bucket_of(vote)  # type: ignore[arg-type]
            before[bucket] = totals[_stored(bucket)] - added[_stored(bucket)]  # type: ignore[index]
        decisions, _ = decide_batch(fresh, before, self.budget)  # type: ignore[arg-type]
        await budget_store.insert_budget_decisions(
            conn, [(v.event_id, d.bucket[2], d.ordinal, d.reason) for v, d in zip(fresh, decisions, strict=True)]
        )
        for vote, decision in zip(fresh, decisions, strict=True):
            reasons[vote.event_id] = decision.reason
            if decision.reason:
                self.metrics.quarantined.labels(decision.reason).inc()
        return reasons

    async def prune(self) -> int:
        """Forget the hours before the previous one (a retry comes within minutes; the budget is per hour)."""
        return await budget_store.delete_budget_before(self.pool, hour_of(utcnow()) - timedelta(hours=1))
