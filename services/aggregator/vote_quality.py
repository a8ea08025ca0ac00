"""What each vote of a group is worth now, pure: counted or not, the outlier test's observations, effective votes.

The rules (ARCHITECTURE.md, "Vote quality"; the outlier test itself is in voters.py):

- A quarantined vote (feedback stamps `quarantine_reason` past the per-voter hourly budget) never enters a
  group's state: the shell counts it in the stats (raw and quarantined) and folds nothing with it.
- A vote *counts* unless its voter (an end user, (app_id, user_ref)) is flagged. Only counted votes are
  evidence for the pair rules, effective votes in the stats, approval on the leaderboard and rows of the
  exports. A flagged voter's votes stay stored (the latest per slot, as ever) and count again once an
  admin clears the flag.
- Effective votes: a stored thumb or rating that counted and no longer does (its voter was flagged, or a
  later vote replaced it) leaves the stats window of its own time; one that counts now enters the window
  of its time. A window's effective counts are so the counted latest votes of its time (while it is
  open), and a ballot stuffer's 50 👍 on one answer count once.
- The outlier test: each counted end-user thumb, rating (not 3) or comparison is tested once per slot
  (a voter who changes their mind is not tested again on the same question), the first time its
  question is settled without it: against the group's counted evidence minus the vote itself.
- A voter's tally takes its new observations in vote order (occurred_at, event_id). A flagged voter is
  not tested any more; the flag records how many votes the voter had sent up to the vote whose test
  decided it (`flagged_after_votes`, see `update_voter`).
  Clearing a flag starts the tally again (its peak would flag the voter at once) and asks for the
  voter's groups to be decided again, as flagging does.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from services.aggregator.evidence import Evidence, Tally, approval_of, collect_evidence, fold_votes
from services.aggregator.voters import (
    Observation,
    VoterRules,
    VoterTally,
    comparison_observation,
    decide,
    thumb_observation,
)
from shared.events import ComparisonVote, RatingVote, ThumbVote, Vote

VoterKey = tuple[str, str]  # (app_id, user_ref)


def voter_of(vote: Vote) -> VoterKey | None:
    """The end user behind a vote; None for an expert's verdict (never tested, never flagged)."""
    if vote.source != "end_user" or vote.user_ref is None:
        return None
    return vote.app_id, vote.user_ref


def _order(vote: Vote) -> tuple[datetime, int]:
    # The event_id's int orders as its str did (evidence._order): no str made per vote and sort.
    return vote.occurred_at, vote.event_id.int


@dataclass(frozen=True, slots=True)
class VoteMarks:
    """What is stored beside a slot's latest vote."""

    is_counted: bool = True
    is_tested: bool = False


# The four marks there are, made once: a hot group's every slot is marked again by every batch that
# touches it (frozen, so one instance can stand for every slot with these marks).
_MARKS = {(c, t): VoteMarks(is_counted=c, is_tested=t) for c in (True, False) for t in (True, False)}
_UNMARKED = VoteMarks()


def vote_marks(is_counted: bool, is_tested: bool) -> VoteMarks:
    """The marks (a shared instance)."""
    return _MARKS[is_counted, is_tested]


def observe(vote: Vote, evidence: Evidence, rules: VoterRules) -> Observation | None:
    """The outlier test's observation of a counted vote against the group's counted evidence minus itself."""
    if isinstance(vote, ComparisonVote):
        first, second = sorted((vote.preferred_interaction_id, vote.other_interaction_id))
        prefers_first = vote.preferred_interaction_id == first
        first_wins, second_wins = evidence.comparison_counts(first, second)
        first_wins, second_wins = (first_wins - 1, second_wins) if prefers_first else (first_wins, second_wins - 1)
        return comparison_observation(prefers_first, first_wins, second_wins, rules)
    approval = approval_of(vote)
    if not approval:
        return None
    tally = evidence.tally(vote.interaction_id)
    others = Tally(tally.up - (approval > 0), tally.down - (approval < 0))
    return thumb_observation(approval, others, rules)


@dataclass(frozen=True)
class TestedGroup:
    """A group's latest votes after the batch, and the outlier test's new observations of them."""

    state: dict[str, Vote]
    changed: set[str]  # slots whose vote this batch replaced or added
    tested: set[str]  # slots tested, before or now
    observations: list[tuple[VoterKey, Vote, Observation]] = field(default_factory=list)
    evidence: Evidence = field(default_factory=Evidence)
    """The evidence of the votes that count (flagged voters' left out): `collect_evidence` of
    `count_group(...).after`, the same votes in the same order, so the group is decided on it."""


def fold_and_test(
    stored: Mapping[str, Vote],
    marks: Mapping[str, VoteMarks],
    new: Iterable[Vote],
    flagged: set[VoterKey],
    rules: VoterRules,
) -> TestedGroup:
    """Fold the new votes in, then test every counted, untested vote whose question is settled without it."""
    state, changed = fold_votes(stored, new)
    tested = {slot for slot, mark in marks.items() if mark.is_tested}
    counted = (v for v in state.values() if voter_of(v) not in flagged) if flagged else state.values()
    evidence = collect_evidence(counted)
    group = TestedGroup(state=state, changed=changed, tested=tested, evidence=evidence)
    # The untested votes of unflagged voters, in vote order: picked out before sorting, as a hot group's
    # votes are mostly tested already (sorting all of them every batch grew with the group).
    untested = [
        (slot, vote, voter)
        for slot, vote in state.items()
        if slot not in tested and (voter := voter_of(vote)) is not None and voter not in flagged
    ]
    for slot, vote, voter in sorted(untested, key=lambda item: _order(item[1])):
        observation = observe(vote, evidence, rules)
        if observation is not None:
            tested.add(slot)
            group.observations.append((voter, vote, observation))
    return group


def _is_stat_vote(vote: Vote | None) -> bool:
    return isinstance(vote, (ThumbVote, RatingVote))


@dataclass(frozen=True)
class CountedGroup:
    """What counts in a group now, the slots to write, and the effective-vote changes for the stats."""

    state: dict[str, Vote]
    marks: dict[str, VoteMarks]
    written: list[str]  # the vote of the slot is new: write it with its marks
    remarked: list[str]  # the vote stays, its marks changed
    effective: list[tuple[Vote, int]]  # (vote, +1 / -1) in the window of the vote's time
    stored: Mapping[str, Vote] = field(repr=False, compare=False)  # the latest votes before the batch
    stored_marks: Mapping[str, VoteMarks] = field(repr=False, compare=False)  # and their marks

    @property
    def is_changed(self) -> bool:
        return bool(self.written or self.remarked)

    @functools.cached_property
    def before(self) -> dict[str, Vote]:
        """The votes that counted before the batch."""
        return {s: v for s, v in self.stored.items() if self.stored_marks.get(s, _UNMARKED).is_counted}

    @functools.cached_property
    def after(self) -> dict[str, Vote]:
        """The votes that count now."""
        return {s: v for s, v in self.state.items() if self.marks[s].is_counted}

    def changed_counts(self) -> tuple[dict[str, Vote], dict[str, Vote]]:
        """`before` and `after` of the written and re-marked slots only: every other slot holds the same vote
        with the same marks on both sides, so what the group counts moved by exactly their difference (a hot
        group's thousands of votes are not gone through again for the few this batch changed)."""
        slots = (*self.written, *self.remarked)
        before = {
            s: v
            for s in slots
            if (v := self.stored.get(s)) is not None and self.stored_marks.get(s, _UNMARKED).is_counted
        }
        return before, {s: self.state[s] for s in slots if self.marks[s].is_counted}


def _effective_change(before: Vote | None, was_counted: bool, after: Vote, counts: bool) -> list[tuple[Vote, int]]:
    same = before is not None and before.event_id == after.event_id
    changes = []
    if was_counted and _is_stat_vote(before) and not (same and counts):
        changes.append((before, -1))
    if counts and _is_stat_vote(after) and not (same and was_counted):
        changes.append((after, 1))
    return changes  # type: ignore[return-value]


def count_group(
    stored: Mapping[str, Vote], marks: Mapping[str, VoteMarks], tested: TestedGroup, flagged: set[VoterKey]
) -> CountedGroup:
    """Which latest votes count now (voters flagged now left out), what to write, what the stats gain and lose."""
    now: dict[str, VoteMarks] = {}
    remarked = []
    for slot, vote in tested.state.items():
        mark = now[slot] = _MARKS[not flagged or voter_of(vote) not in flagged, slot in tested.tested]
        if slot not in tested.changed and mark is not (old := marks.get(slot, _UNMARKED)) and mark != old:
            remarked.append(slot)
    written = sorted(tested.changed)
    remarked.sort()
    effective = []
    for slot in (*written, *remarked):
        before = stored.get(slot)
        was_counted = before is not None and marks.get(slot, _UNMARKED).is_counted
        effective += _effective_change(before, was_counted, tested.state[slot], now[slot].is_counted)
    return CountedGroup(
        state=tested.state,
        marks=now,
        written=written,
        remarked=remarked,
        effective=effective,
        stored=stored,
        stored_marks=marks,
    )


def observations_by_voter(groups: Iterable[TestedGroup]) -> dict[VoterKey, list[tuple[Vote, Observation]]]:
    """Each voter's new observations across the groups with the vote each tested, in vote order (the tally
    depends on the order)."""
    found: dict[VoterKey, list[tuple[Vote, Observation]]] = defaultdict(list)
    for group in groups:
        for voter, vote, observation in group.observations:
            found[voter].append((vote, observation))
    return {voter: sorted(items, key=lambda item: _order(item[0])) for voter, items in found.items()}


@dataclass(frozen=True)
class VoterState:
    """One voter's stored row: the tally, votes taken in, the flag."""

    app_id: str
    user_ref: str
    tally: VoterTally = field(default_factory=VoterTally)
    votes_seen: int = 0
    flagged: bool = False
    flagged_at: datetime | None = None
    flagged_after_votes: int | None = None
    cleared_at: datetime | None = None
    redecide_pending: bool = False

    @property
    def key(self) -> VoterKey:
        return self.app_id, self.user_ref


def update_voter(
    state: VoterState,
    observations: Sequence[tuple[Vote, Observation]],
    votes: Sequence[Vote],
    rules: VoterRules,
    now: datetime,
) -> VoterState:
    """The voter after a batch: its new `votes` taken in, the new observations added in order, flagged if the
    test says so.

    The test is sequential (its statistic is a running peak, see voters.py), so the flag belongs to the
    first observation at which it holds: `flagged_after_votes` counts the voter's votes up to the vote that
    observation tested, not the rest of the batch that carried it (a burst of one voter's votes in one batch
    would otherwise move the count). A stored vote tested only now counts the votes sent before this batch.
    """
    votes_seen = state.votes_seen + len(votes)
    if state.flagged or not observations:
        return replace(state, votes_seen=votes_seen)
    tally, deciding = state.tally, None
    for vote, observation in observations:
        tally = tally.add(observation, rules)
        if deciding is None and decide(state.user_ref, tally, rules).flagged:
            deciding = vote
    updated = replace(state, tally=tally, votes_seen=votes_seen)
    if deciding is None:
        return updated
    sent_by_then = state.votes_seen + sum(1 for vote in votes if _order(vote) <= _order(deciding))
    return replace(updated, flagged=True, flagged_at=now, flagged_after_votes=sent_by_then, redecide_pending=True)


def cleared(state: VoterState, now: datetime) -> VoterState:
    """An admin cleared the flag: the tally starts again and the voter's groups are decided again with the votes."""
    return replace(
        state,
        tally=VoterTally(),
        flagged=False,
        flagged_at=None,
        flagged_after_votes=None,
        cleared_at=now,
        redecide_pending=True,
    )
