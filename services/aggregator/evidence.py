"""Folding a group's votes into evidence: latest vote per slot, approval tallies, comparisons, verdicts.

Pure functions over the v1 contracts (no I/O). A *slot* is what one vote may replace:

- thumb and rating share the approval slot of (voter, interaction): a user who rates after a
  thumb changed their mind;
- comparison: (voter, the unordered pair of interactions), so flipping a preference replaces it;
- edit and comment: (voter, interaction, kind);
- verdict: the task (the feedback service sends one combined verdict per task).

In a slot the latest vote wins: the greatest (occurred_at, event_id), so duplicates and any
delivery order give the same state.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from shared.events import ComparisonVote, EditVote, RatingVote, ThumbVote, VerdictVote, Vote

# What json.dumps(ensure_ascii=False) escapes in a string: quotes, backslashes, control characters.
_ESCAPED = re.compile(r'[\x00-\x1f"\\]')
# Ratings as approval evidence: 4-5 count as a thumbs-up, 1-2 as a thumbs-down, 3 is neutral.
RATING_UP_MIN = 4
RATING_DOWN_MAX = 2


def vote_slot(vote: Vote) -> str:
    """The slot a vote occupies; a later vote in the same slot replaces it."""
    if isinstance(vote, (ThumbVote, RatingVote)):
        parts = ["approval", vote.voter, vote.interaction_id]
    elif isinstance(vote, ComparisonVote):
        first, second = sorted((vote.preferred_interaction_id, vote.other_interaction_id))
        parts = ["comparison", vote.voter, first, second]
    elif isinstance(vote, VerdictVote):
        parts = ["verdict", vote.task_id]
    else:
        parts = [vote.kind, vote.voter, vote.interaction_id]
    # JSON keeps the slot unambiguous whatever characters the ids hold; parts with nothing JSON escapes
    # (the usual ids) are joined as json.dumps would write them, without its encoder.
    if any(_ESCAPED.search(part) for part in parts):
        return json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    return '["' + '","'.join(parts) + '"]'


def _order(vote: Vote) -> tuple[datetime, int]:
    # A UUID's int orders as its str does (32 hex digits, dashes at fixed places), and is no work to get.
    return vote.occurred_at, vote.event_id.int


def fold_votes(current: Mapping[str, Vote], new: Iterable[Vote]) -> tuple[dict[str, Vote], set[str]]:
    """Apply new votes to the latest-per-slot state; return the new state and the slots that changed."""
    state = dict(current)
    changed: set[str] = set()
    for vote in new:
        slot = vote_slot(vote)
        held = state.get(slot)
        if held is None or _order(vote) > _order(held):
            state[slot] = vote
            changed.add(slot)
    return state, changed


def approval_of(vote: Vote) -> int:
    """+1 (approves), -1 (disapproves) or 0 (neutral, or not an approval vote)."""
    if isinstance(vote, ThumbVote):
        return vote.value
    if isinstance(vote, RatingVote):
        if vote.value >= RATING_UP_MIN:
            return 1
        if vote.value <= RATING_DOWN_MAX:
            return -1
    return 0


@dataclass(frozen=True, slots=True)
class Tally:
    """Approval evidence on one answer."""

    up: int = 0
    down: int = 0

    @property
    def total(self) -> int:
        return self.up + self.down


_NO_VOTES = Tally()  # what an answer without approval votes has: one shared instance, not one per look-up


@dataclass(kw_only=True, frozen=True)
class Evidence:
    """Everything a group's latest votes say, indexed for the pair rules."""

    tallies: dict[str, Tally] = field(default_factory=dict)
    # (preferred, other) -> how many voters prefer `preferred` over `other`.
    comparisons: dict[tuple[str, str], int] = field(default_factory=dict)
    edits: dict[str, list[EditVote]] = field(default_factory=dict)
    verdicts: list[VerdictVote] = field(default_factory=list)
    newest_at: dict[str, datetime] = field(default_factory=dict)

    def tally(self, interaction_id: str) -> Tally:
        return self.tallies.get(interaction_id, _NO_VOTES)

    def comparison_counts(self, a: str, b: str) -> tuple[int, int]:
        """(voters preferring a over b, voters preferring b over a)."""
        return self.comparisons.get((a, b), 0), self.comparisons.get((b, a), 0)

    def last_evidence_at(self, *interaction_ids: str) -> datetime | None:
        times = [self.newest_at[i] for i in interaction_ids if i in self.newest_at]
        return max(times) if times else None


def collect_evidence(votes: Iterable[Vote]) -> Evidence:
    """Index latest-per-slot votes (the output of `fold_votes`) by answer and kind."""
    evidence = Evidence()
    ups: dict[str, int] = {}
    downs: dict[str, int] = {}
    newest_at = evidence.newest_at
    for vote in votes:
        if type(vote) is ThumbVote:  # most votes: counted and dated inline (a hot group has thousands)
            interaction_id, at = vote.interaction_id, vote.occurred_at
            counts = ups if vote.value > 0 else downs
            counts[interaction_id] = counts.get(interaction_id, 0) + 1
            seen = newest_at.get(interaction_id)
            if seen is None or at > seen:
                newest_at[interaction_id] = at
            continue
        touched = [vote.interaction_id]
        approval = approval_of(vote)
        if approval > 0:
            ups[vote.interaction_id] = ups.get(vote.interaction_id, 0) + 1
        elif approval < 0:
            downs[vote.interaction_id] = downs.get(vote.interaction_id, 0) + 1
        elif isinstance(vote, ComparisonVote):
            key = (vote.preferred_interaction_id, vote.other_interaction_id)
            evidence.comparisons[key] = evidence.comparisons.get(key, 0) + 1
            touched = list(key)
        elif isinstance(vote, EditVote):
            evidence.edits.setdefault(vote.interaction_id, []).append(vote)
        elif isinstance(vote, VerdictVote):
            evidence.verdicts.append(vote)
            touched = [i for i in (vote.a_interaction_id, vote.b_interaction_id) if i]
        for interaction_id in touched:
            seen = evidence.newest_at.get(interaction_id)
            if seen is None or vote.occurred_at > seen:
                evidence.newest_at[interaction_id] = vote.occurred_at
    for interaction_id in set(ups) | set(downs):
        evidence.tallies[interaction_id] = Tally(ups.get(interaction_id, 0), downs.get(interaction_id, 0))
    for edits in evidence.edits.values():
        edits.sort(key=_order)
    evidence.verdicts.sort(key=_order)
    return evidence
