"""The per-voter hourly budget: votes past the limit in one hour (by our clock) are quarantined, with the reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.feedback.voter_budget import (
    QUARANTINE_REASON,
    VoterBudget,
    bucket_of,
    decide_batch,
    decide_one,
    hour_of,
)
from tests.support.builders import thumb_vote, verdict_vote

HOUR = datetime(2026, 11, 26, 10, tzinfo=UTC)
BUDGET = VoterBudget(max_votes_per_hour=3)


def test_votes_past_the_limit_in_one_hour_are_quarantined_with_the_reason() -> None:
    votes = [thumb_vote("u-1", HOUR + timedelta(minutes=i)) for i in range(5)]
    decisions, counts = decide_batch(votes, {}, BUDGET)
    assert [d.ordinal for d in decisions] == [1, 2, 3, 4, 5]
    assert [d.quarantined for d in decisions] == [False, False, False, True, True]
    assert {d.reason for d in decisions if d.quarantined} == {QUARANTINE_REASON}
    assert {d.reason for d in decisions if not d.quarantined} == {None}
    assert counts == {("helpdesk", "u-1", HOUR): 5}


def test_the_hour_is_ours_not_the_clients() -> None:
    # A stuffer spreading occurred_at over past hours still lands in the hour we received its votes.
    votes = [thumb_vote("u-1", HOUR + timedelta(minutes=i), occurred_at=HOUR - timedelta(hours=i)) for i in range(5)]
    decisions, _ = decide_batch(votes, {}, BUDGET)
    assert sum(d.quarantined for d in decisions) == 2
    later = [thumb_vote("u-1", HOUR + timedelta(hours=1, minutes=i)) for i in range(3)]
    decisions, counts = decide_batch(later, {("helpdesk", "u-1", HOUR): 5}, BUDGET)
    assert not any(d.quarantined for d in decisions)
    assert counts == {("helpdesk", "u-1", HOUR + timedelta(hours=1)): 3}


def test_voters_apps_and_experts_are_budgeted_apart() -> None:
    at = HOUR + timedelta(minutes=5)
    votes = [thumb_vote("u-1", at), thumb_vote("u-2", at), thumb_vote("u-1", at, app="other"), verdict_vote(at)] * 4
    decisions, counts = decide_batch(votes, {}, BUDGET)
    assert counts == {("helpdesk", "u-1", HOUR): 4, ("helpdesk", "u-2", HOUR): 4, ("other", "u-1", HOUR): 4}
    expert = [d for d in decisions if d.bucket is None]
    assert len(expert) == 4 and not any(d.quarantined for d in expert)
    assert sum(d.quarantined for d in decisions) == 3


def test_counts_carry_over_from_earlier_batches() -> None:
    decisions, _ = decide_batch([thumb_vote("u-1", HOUR)], {("helpdesk", "u-1", HOUR): 3}, BUDGET)
    assert (decisions[0].ordinal, decisions[0].quarantined) == (4, True)
    assert decide_one(2, BUDGET) == (3, False) and decide_one(3, BUDGET) == (4, True)


@given(st.lists(st.tuples(st.sampled_from(["u-1", "u-2"]), st.integers(0, 7200)), max_size=30), st.randoms())
def test_a_batch_decides_the_same_in_any_order_and_split_in_two(items: list, rnd) -> None:
    votes = [thumb_vote(user, HOUR + timedelta(seconds=s)) for user, s in items]
    whole, whole_counts = decide_batch(votes, {}, BUDGET)
    by_id = {d.event_id: d for d in whole}
    shuffled = votes[:]
    rnd.shuffle(shuffled)
    again, again_counts = decide_batch(shuffled, {}, BUDGET)
    assert {d.event_id: d for d in again} == by_id and again_counts == whole_counts
    ordered = sorted(votes, key=lambda v: (v.received_at, str(v.event_id)))
    half = len(ordered) // 2
    first, counts = decide_batch(ordered[:half], {}, BUDGET)
    second, updated = decide_batch(ordered[half:], counts, BUDGET)  # the counts of the buckets it touched
    assert {d.event_id: d for d in first + second} == by_id and {**counts, **updated} == whole_counts
    for bucket, count in whole_counts.items():
        in_bucket = [d for d in whole if d.bucket == bucket]
        assert len(in_bucket) == count
        assert sum(not d.quarantined for d in in_bucket) == min(count, BUDGET.max_votes_per_hour)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        VoterBudget(max_votes_per_hour=0)
    with pytest.raises(ValueError):
        hour_of(datetime(2026, 11, 26, 10))
    unstamped = thumb_vote("u-1", HOUR).model_copy(update={"received_at": None})
    with pytest.raises(ValueError):
        bucket_of(unstamped)
    assert hour_of(datetime(2026, 11, 26, 12, 59, 59, tzinfo=UTC)) == datetime(2026, 11, 26, 12, tzinfo=UTC)
