"""Hot groups' state kept between batches in this process, used only while nobody else locked the group.

A busy group is locked and read by every batch that touches it: its answers, latest votes (with their
marks), published pairs (with the leaderboard battle each counts for) and the domain its approval is
counted under, read again and built into objects again each time. All of these change only under the
group's row lock, and every transaction that takes that lock (`store.lock_groups`: batches, re-decides,
the leaderboard backfill, in any instance) adds one to the group's `generation` and gets the new value.
So the state this process's last batch of a group left, kept with the generation that batch's lock
returned, is exactly what is stored when the next lock here returns that generation plus one: nobody
locked the group in between (another instance after a rebalance, a re-decide, the backfill). Otherwise
the group is read whole, as without this cache.

A batch's states are kept only after its transaction committed (intake.py): a batch that rolled back
leaves nothing here, and its generation went back with its writes. A redelivered batch finds the state
its first delivery committed. Never kept (read by every batch, `store.load_group_state`): the group's
requests and budget tasks (a batch admitting tasks may promote another group's task under the domain's
lock, not the group's) and which voters are flagged (no group lock either).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.aggregator.leaderboard_counts import BattleKey, battle_of
from services.aggregator.outputs import PairRow
from services.aggregator.pairs import Answer
from services.aggregator.store import GroupRows
from services.aggregator.vote_quality import CountedGroup, VoteMarks
from shared.events import Vote


@dataclass(frozen=True, slots=True)
class KeptGroup:
    """A group's state as a committed batch of this process left it (the parts only its lock holder writes)."""

    generation: int
    answers: tuple[Answer, ...]
    votes: Mapping[str, Vote]
    marks: Mapping[str, VoteMarks]
    emitted_pairs: Mapping[str, str]
    battles: Mapping[str, BattleKey]
    counted_domain: str | None

    def fill(self, rows: GroupRows) -> None:
        """Give a locked group this state (copies: nothing the batch does to them reaches what is kept)."""
        rows.answers = list(self.answers)
        rows.votes = dict(self.votes)
        rows.marks = dict(self.marks)
        rows.emitted_pairs = dict(self.emitted_pairs)
        rows.battles = dict(self.battles)
        rows.counted_domain = self.counted_domain


def kept_as_loaded(rows: GroupRows) -> KeptGroup:
    """A locked group's state when the batch writes nothing of it (its dicts are the batch's own: no copies)."""
    return KeptGroup(
        generation=rows.generation,
        answers=tuple(rows.answers),
        votes=rows.votes,
        marks=rows.marks,
        emitted_pairs=rows.emitted_pairs,
        battles=rows.battles,
        counted_domain=rows.counted_domain,
    )


def kept_as_decided(rows: GroupRows, counted: CountedGroup, pair_rows: Iterable[PairRow], domain: str) -> KeptGroup:
    """A decided group's state after the batch's writes: its votes and marks now, the pair rows written (and
    the battle each counts for now), the domain its approval is counted under now (leaderboard_store)."""
    emitted, battles = dict(rows.emitted_pairs), dict(rows.battles)
    for row in pair_rows:
        emitted[row.pair_id] = row.state_hash
        if (battle := battle_of(row.pair)) is None:
            battles.pop(row.pair_id, None)
        else:
            battles[row.pair_id] = battle
    return KeptGroup(
        generation=rows.generation,
        answers=tuple(rows.answers),
        votes=counted.state,
        marks=counted.marks,
        emitted_pairs=emitted,
        battles=battles,
        counted_domain=domain,
    )


class GroupCache:
    """The kept states of the most recently used groups, at most `max_groups` (0: keeps nothing)."""

    def __init__(self, max_groups: int) -> None:
        self.max_groups = max_groups
        self._kept: OrderedDict[str, KeptGroup] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._kept)

    def fill(self, groups: Mapping[str, GroupRows]) -> set[str]:
        """Fill the locked groups nobody else locked since this process kept them; return their prompt keys."""
        filled: set[str] = set()
        for prompt_key, rows in groups.items():
            kept = self._kept.pop(prompt_key, None)
            if kept is not None and kept.generation + 1 == rows.generation:
                kept.fill(rows)
                filled.add(prompt_key)
        self.hits += len(filled)
        self.misses += len(groups) - len(filled)
        return filled

    def keep(self, states: Mapping[str, KeptGroup]) -> None:
        """Keep the states a committed batch left (call only after its commit)."""
        if not self.max_groups:
            return
        for prompt_key, state in states.items():
            held = self._kept.get(prompt_key)
            if held is None or held.generation < state.generation:
                self._kept[prompt_key] = state
            self._kept.move_to_end(prompt_key)
        while len(self._kept) > self.max_groups:
            self._kept.popitem(last=False)
