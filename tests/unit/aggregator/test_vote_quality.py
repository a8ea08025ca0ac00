"""vote_quality.py: which latest votes count, what the stats gain and lose, and when a vote is tested."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.aggregator.evidence import collect_evidence, vote_slot
from services.aggregator.leaderboard_counts import version_approvals
from services.aggregator.vote_quality import (
    VoteMarks,
    VoterState,
    cleared,
    count_group,
    fold_and_test,
    observations_by_voter,
    update_voter,
)
from services.aggregator.voters import VoterRules, decide, tally_of
from shared.events import ThumbVote, Vote
from tests.strategies import answer

T0 = datetime(2026, 11, 30, tzinfo=UTC)
RULES = VoterRules()


def thumb(user: str, interaction_id: str, value: int, second: float = 0.0) -> ThumbVote:
    at = T0 + timedelta(seconds=second)
    return ThumbVote(
        event_id=uuid.uuid4(), app_id="app", occurred_at=at, received_at=at, interaction_id=interaction_id,
        user_ref=user, kind="thumb", value=value,
    )  # fmt: skip


def step(stored: dict[str, Vote], marks: dict[str, VoteMarks], new: list[Vote], flagged: set):
    tested = fold_and_test(stored, marks, new, flagged, RULES)
    counted = count_group(stored, marks, tested, flagged)
    return tested, counted


def test_a_ballot_stuffer_counts_once() -> None:
    stuffed = [thumb("stuffer", "a", 1, second=i) for i in range(50)]
    _, counted = step({}, {}, stuffed, set())
    assert len(counted.after) == 1
    assert [sign for _, sign in counted.effective] == [1]


def test_a_flagged_voters_votes_stop_counting_and_leave_the_stats() -> None:
    votes = [thumb(f"u{i}", "a", 1) for i in range(3)] + [thumb("bot", "a", -1)]
    _, first = step({}, {}, votes, set())
    stored, marks = first.state, first.marks
    _, second = step(stored, marks, [], {("app", "bot")})
    bot_slot = vote_slot(votes[-1])
    assert bot_slot in second.remarked and second.written == []  # others may be newly tested: remarked too
    assert second.marks[bot_slot].is_counted is False
    assert bot_slot in second.before and bot_slot not in second.after
    assert [(v.user_ref, sign) for v, sign in second.effective] == [("bot", -1)]
    # Cleared: counted again, back in the stats.
    _, third = step(second.state, second.marks, [], set())
    assert [(v.user_ref, sign) for v, sign in third.effective] == [("bot", 1)]


def test_a_vote_is_tested_once_when_its_question_is_settled_without_it() -> None:
    tested, counted = step({}, {}, [thumb("bot", "a", 1)], set())
    assert tested.observations == []  # nobody else voted: nothing settled
    others = [thumb(f"u{i}", "a", -1, second=1) for i in range(4)]
    tested, counted = step(counted.state, counted.marks, others, set())
    bot = [o for voter, _, o in tested.observations if voter == ("app", "bot")]
    assert len(bot) == 1 and bot[0].disagreed
    again, _ = step(counted.state, counted.marks, [thumb("u9", "a", -1, second=2)], set())
    assert not [o for voter, _, o in again.observations if voter == ("app", "bot")]


def test_a_voter_always_disagreeing_is_flagged_and_a_clear_starts_again() -> None:
    groups = []
    for n in range(12):
        iid = f"t{n}"
        votes = [thumb(f"h{n}-{i}", iid, -1) for i in range(4)] + [thumb("bot", iid, 1, second=1 + n)]
        groups.append(step({}, {}, votes, set())[0])
    observations = observations_by_voter(groups)[("app", "bot")]
    bot_votes = [vote for vote, _ in observations]
    state = update_voter(VoterState("app", "bot"), observations, bot_votes, RULES, T0)
    # The flag belongs to the first vote at which the sequential test holds, not to the batch's end.
    tested = [o for _, o in observations]
    first = next(n for n in range(1, 13) if decide("bot", tally_of(tested[:n], RULES), RULES).flagged)
    assert first < 12, "the case must tell the deciding vote from the batch's last"
    assert state.flagged and state.redecide_pending and state.flagged_after_votes == first
    assert state.votes_seen == 12 and state.tally == tally_of(tested, RULES)
    later = update_voter(VoterState("app", "bot", votes_seen=5), observations, bot_votes, RULES, T0)
    assert later.flagged_after_votes == 5 + first
    assert (
        update_voter(state, observations, bot_votes[:1], RULES, T0).tally == state.tally
    )  # no more testing once flagged
    fresh = cleared(state, T0)
    assert not fresh.flagged and fresh.tally.votes == 0 and fresh.redecide_pending


batches = st.lists(
    st.tuples(
        st.lists(st.tuples(st.sampled_from("uvwxyz"), st.sampled_from("ab"), st.sampled_from([-1, 1])), max_size=6),
        st.sets(st.sampled_from("uvwxyz")),
    ),
    min_size=1,
    max_size=8,
)


def replayed(history):
    """Each batch of the history as thumbs one second apart, with the voters flagged by then."""
    second = 0.0
    for new, flagged_users in history:
        votes = []
        for user, iid, value in new:
            second += 1
            votes.append(thumb(user, iid, value, second))
        yield votes, {("app", u) for u in flagged_users}


@settings(max_examples=200, deadline=None)
@given(batches)
def test_effective_changes_add_up_to_the_counted_latest_votes(history) -> None:
    """However votes arrive and flags change, the +1/-1 changes sum to the counted latest thumbs."""
    stored: dict[str, Vote] = {}
    marks: dict[str, VoteMarks] = {}
    total = {1: 0, -1: 0}
    for votes, flagged in replayed(history):
        _, counted = step(stored, marks, votes, flagged)
        for vote, sign in counted.effective:
            total[vote.value] += sign  # type: ignore[union-attr]
        stored, marks = counted.state, counted.marks
        expected = {1: 0, -1: 0}
        for vote in counted.after.values():
            expected[vote.value] += 1  # type: ignore[union-attr]
        assert total == expected


@settings(max_examples=200, deadline=None)
@given(batches)
def test_the_tested_evidence_is_the_counted_votes_evidence(history) -> None:
    """The evidence a group is decided on (fold_and_test's) is collect_evidence of the votes that count."""
    stored: dict[str, Vote] = {}
    marks: dict[str, VoteMarks] = {}
    for votes, flagged in replayed(history):
        tested, counted = step(stored, marks, votes, flagged)
        assert tested.evidence == collect_evidence(counted.after.values())
        stored, marks = counted.state, counted.marks


def _moved(before: dict[str, Vote], after: dict[str, Vote]) -> dict:
    """(up, down) per model version that `after` counts more than `before` (answers a and b: two versions)."""
    answers = [answer("a", model_version="v1"), answer("b", model_version="v2")]
    old, new = version_approvals(before.values(), answers), version_approvals(after.values(), answers)
    moved = {}
    for version in old.keys() | new.keys():
        (up0, down0), (up1, down1) = old.get(version, (0, 0)), new.get(version, (0, 0))
        if (up1 - up0, down1 - down0) != (0, 0):
            moved[version] = (up1 - up0, down1 - down0)
    return moved


@settings(max_examples=200, deadline=None)
@given(batches)
def test_the_changed_slots_move_approval_as_the_whole_group_does(history) -> None:
    """changed_counts (the written and re-marked slots only) moves the leaderboard's approval by what the
    group's whole before and after do, however votes arrive and flags change."""
    stored: dict[str, Vote] = {}
    marks: dict[str, VoteMarks] = {}
    for votes, flagged in replayed(history):
        _, counted = step(stored, marks, votes, flagged)
        assert _moved(*counted.changed_counts()) == _moved(counted.before, counted.after)
        stored, marks = counted.state, counted.marks
