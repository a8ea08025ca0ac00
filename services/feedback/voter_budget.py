"""Per-voter hourly budget, pure: a voter's votes past `max_votes_per_hour` in one hour are quarantined.

A quarantined vote is accepted and kept, marked with the reason, and moves no pair (the aggregator
skips it; stats count it apart). The rules:

- A voter is (app_id, user_ref); expert verdicts are never budgeted nor counted.
- The hour is the vote's `received_at` (our clock) floored to the hour in UTC, not `occurred_at`: the
  client chooses occurred_at, and a stuffer would spread its votes over past hours.
- Only fresh votes count: the shell decides after its event_id de-duplication, so a redelivery or a
  re-post of the same event_id is never counted twice.
- Within one batch, votes are numbered per bucket in (received_at, event_id) order, so a batch gets the
  same decisions whatever order its items came in; vote n of a bucket is quarantined when n > limit.

The shell keeps one counter per (app_id, user_ref, hour) (an upsert adding the batch's votes per bucket,
returning the totals: counts before = total - added), and prunes buckets older than the current hour. It
applies these rules in the one statement that counts a batch (sql/queries.sql, decide_budget_votes: one
round trip per batch); `decide_batch` is the rule that statement is tested against.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

QUARANTINE_REASON = "voter_hourly_budget"

BucketKey = tuple[str, str, datetime]  # (app_id, user_ref, hour start in UTC)


class BudgetedVote(Protocol):
    """What the budget reads of a vote (shared.events' vote models have it once stamped)."""

    @property
    def event_id(self) -> object: ...
    @property
    def app_id(self) -> str: ...
    @property
    def user_ref(self) -> str | None: ...
    @property
    def source(self) -> str: ...
    @property
    def received_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class VoterBudget:
    """The budget's setting (FEEDBACK_MAX_VOTES_PER_VOTER_PER_HOUR)."""

    max_votes_per_hour: int = 60  # a generous human ceiling: a vote a minute for an hour

    def __post_init__(self) -> None:
        if self.max_votes_per_hour < 1:
            raise ValueError("max_votes_per_hour must be at least 1")


@dataclass(frozen=True)
class BudgetDecision:
    """One vote's fate: its bucket, its number in the bucket, and whether it is quarantined (and why)."""

    event_id: str
    bucket: BucketKey | None  # None: not budgeted (an expert verdict)
    ordinal: int
    quarantined: bool
    reason: str | None = None


def hour_of(moment: datetime) -> datetime:
    """The start of the UTC hour holding `moment` (which must be timezone-aware)."""
    if moment.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def is_budgeted(vote: BudgetedVote) -> bool:
    """Whether a vote counts in a voter's budget (an end user's, with a user_ref), once stamped."""
    if vote.source != "end_user" or vote.user_ref is None:
        return False
    if vote.received_at is None:
        raise ValueError("a vote is budgeted after the edge stamped received_at")
    return True


def bucket_of(vote: BudgetedVote) -> BucketKey | None:
    """The (app_id, user_ref, hour) a vote counts in, or None for votes that are never budgeted."""
    if not is_budgeted(vote):
        return None
    return vote.app_id, vote.user_ref, hour_of(vote.received_at)  # type: ignore[arg-type,return-value]


def decide_one(count_before: int, budget: VoterBudget) -> tuple[int, bool]:
    """(this vote's number in its bucket, is it quarantined) given the bucket's count before it."""
    ordinal = count_before + 1
    return ordinal, ordinal > budget.max_votes_per_hour


def decide_batch(
    votes: Iterable[BudgetedVote], counts_before: Mapping[BucketKey, int], budget: VoterBudget
) -> tuple[list[BudgetDecision], dict[BucketKey, int]]:
    """Decisions for a batch of fresh votes (in the batch's order), and the new count of each bucket it touched."""
    items = list(votes)
    buckets = [bucket_of(v) for v in items]
    budgeted = sorted(
        ((i, b) for i, b in enumerate(buckets) if b is not None),
        key=lambda ib: (items[ib[0]].received_at, str(items[ib[0]].event_id)),
    )
    counts = {b: counts_before.get(b, 0) for _, b in budgeted}
    decisions = [BudgetDecision(str(v.event_id), None, 0, False) for v in items]
    for i, bucket in budgeted:
        ordinal, quarantined = decide_one(counts[bucket], budget)
        counts[bucket] = ordinal
        reason = QUARANTINE_REASON if quarantined else None
        decisions[i] = BudgetDecision(str(items[i].event_id), bucket, ordinal, quarantined, reason)
    return decisions, counts
