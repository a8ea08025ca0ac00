"""The aggregator's pure core applied offline to a simulation: effective votes, the outlier test, pairs.

Not the pipeline: what its pure functions conclude from the whole stream at once (each vote tested
against the final consensus of the other voters), so tests can measure the outlier test on realistic
traffic without a stack, and the quality benchmark can set the pipeline's result beside it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bench.simulation.scenario import Simulation, VoterKind
from services.aggregator.evidence import Tally, approval_of, collect_evidence, fold_votes
from services.aggregator.pairs import Answer, Group, PairRules, decide
from services.aggregator.rules import pair_rules
from services.aggregator.settings import AggregatorSettings
from services.aggregator.voters import (
    Observation,
    VoterRules,
    comparison_observation,
    first_flag,
    thumb_observation,
)
from shared.events import ComparisonVote, Interaction, Vote, parse_interaction, parse_vote
from shared.prompt_key import prompt_key

VoterKey = tuple[str, str]  # (app_id, user_ref)


@dataclass(frozen=True)
class VoterTrace:
    """A voter's tested votes, each with how many votes the voter had sent by then."""

    voter: VoterKey
    kind: VoterKind
    sent: int
    tested: tuple[tuple[int, Observation], ...]

    def flagged_after(self, rules: VoterRules) -> int | None:
        """Votes the voter had sent when the test flagged them, or None if it never did."""
        count = first_flag((observation for _, observation in self.tested), rules)
        return self.tested[count - 1][0] if count else None


def parsed(sim: Simulation) -> tuple[list[Interaction], list[Vote]]:
    interactions = [parse_interaction(e.body) for e in sim.events if e.kind == "interaction"]
    return interactions, [parse_vote(e.body) for e in sim.events if e.kind == "vote"]


def _key(vote: Vote) -> VoterKey:
    return vote.app_id, vote.user_ref or ""


def _effective(votes: Iterable[Vote]) -> list[Vote]:
    state, _ = fold_votes({}, votes)
    return sorted(state.values(), key=lambda v: (v.occurred_at, str(v.event_id)))


class _Consensus:
    """Every voter's effective approval per answer and preference per pair of answers."""

    def __init__(self, effective: list[Vote]) -> None:
        self.approvals: dict[str, dict[VoterKey, int]] = defaultdict(dict)
        self.preferences: dict[tuple[str, str], dict[VoterKey, str]] = defaultdict(dict)
        for vote in effective:
            if isinstance(vote, ComparisonVote):
                pair = tuple(sorted((vote.preferred_interaction_id, vote.other_interaction_id)))
                self.preferences[pair][_key(vote)] = vote.preferred_interaction_id  # type: ignore[index]
            elif approval_of(vote):
                self.approvals[vote.interaction_id][_key(vote)] = approval_of(vote)

    def observe(self, vote: Vote, rules: VoterRules) -> Observation | None:
        voter = _key(vote)
        if isinstance(vote, ComparisonVote):
            first, second = sorted((vote.preferred_interaction_id, vote.other_interaction_id))
            others = [p for k, p in self.preferences[(first, second)].items() if k != voter]
            wins = sum(1 for p in others if p == first)
            return comparison_observation(vote.preferred_interaction_id == first, wins, len(others) - wins, rules)
        others = [a for k, a in self.approvals[vote.interaction_id].items() if k != voter]
        tally = Tally(sum(1 for a in others if a > 0), sum(1 for a in others if a < 0))
        return thumb_observation(approval_of(vote), tally, rules)


def voter_traces(sim: Simulation, rules: VoterRules) -> dict[VoterKey, VoterTrace]:
    """Each voter's effective votes tested against the others' final consensus, in the order they were sent."""
    _, votes = parsed(sim)
    effective = _effective(votes)
    chosen = {v.event_id for v in effective}
    consensus = _Consensus(effective)
    sent: dict[VoterKey, int] = defaultdict(int)
    tested: dict[VoterKey, list[tuple[int, Observation]]] = defaultdict(list)
    for vote in votes:  # send order
        voter = _key(vote)
        sent[voter] += 1
        observation = consensus.observe(vote, rules) if vote.event_id in chosen else None
        if observation is not None:
            tested[voter].append((sent[voter], observation))
    return {
        key: VoterTrace(key, truth.kind, sent.get(key, 0), tuple(tested.get(key, ())))
        for key, truth in sim.truth.voters.items()
    }


def flagged_voters(traces: Mapping[VoterKey, VoterTrace], rules: VoterRules) -> set[VoterKey]:
    return {key for key, trace in traces.items() if trace.flagged_after(rules) is not None}


def _groups(interactions: Iterable[Interaction], votes: Iterable[Vote]) -> list[Group]:
    """The prompt groups as the aggregator sees them: answers by prompt_key, evidence from effective votes."""
    members: dict[str, list[Interaction]] = defaultdict(list)
    group_of: dict[str, str] = {}
    for interaction in interactions:
        key = prompt_key(interaction.app_id, interaction.messages)
        members[key].append(interaction)
        group_of[interaction.interaction_id] = key
    group_votes: dict[str, list[Vote]] = defaultdict(list)
    for vote in _effective(votes):
        if vote.interaction_id in group_of:
            group_votes[group_of[vote.interaction_id]].append(vote)
    groups = []
    for key, group in members.items():
        answers = tuple(
            Answer(
                interaction_id=i.interaction_id,
                content=i.response.content,
                model=i.response.model,
                model_version=i.response.model_version,
                domain=i.domain,
                occurred_at=i.occurred_at,
            )
            for i in group
        )
        evidence = collect_evidence(group_votes[key])
        groups.append(
            Group(
                prompt_key=key,
                app_id=group[0].app_id,
                prompt=tuple(group[0].messages),
                answers=answers,
                evidence=evidence,
            )
        )
    return groups


def offline_pairs(
    sim: Simulation, rules: PairRules | None = None, excluded: Iterable[VoterKey] = ()
) -> dict[str, dict[str, Any]]:
    """The pair math on every group from all effective votes except the excluded voters'.

    Same shape as a PreferencePair's JSON where scoring looks (chosen, rejected, method).
    """
    interactions, votes = parsed(sim)
    skip = set(excluded)
    pairs: dict[str, dict[str, Any]] = {}
    for group in _groups(interactions, (v for v in votes if _key(v) not in skip)):
        for pid, spec in decide(group, rules or pair_rules(AggregatorSettings())).pairs.items():
            pairs[pid] = {
                "chosen": {"interaction_id": spec.chosen.interaction_id},
                "rejected": {"interaction_id": spec.rejected.interaction_id},
                "method": spec.method,
                "confidence": spec.confidence,
            }
    return pairs
