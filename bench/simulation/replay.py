"""The outlier test on a simulation, replayed vote by vote through the aggregator's pure core, and its bound.

What the pipeline does per batch (batches.decide_groups: vote_quality.fold_and_test, count_group,
observations_by_voter, update_voter), one vote a batch, with no broker or database: so the flag
latency bench/results/quality.md measures on the running stack (the votes a voter had sent when the
test flagged them) can be measured over many seeds in seconds (bench.quality_seeds) and pinned by tests.

The bound. A 👍 that agrees with the crowd must never count against a voter: an honest user who only
ever 👍 answers they like looks exactly like an always-👍 bot on good answers (test_voters.py). A test
built from per-vote bets (Arena's, ours) multiplies its wealth by a when a tested vote agrees and by x
when it disagrees; under the crowd null a vote disagrees with probability d, so the bet is valid only
if d x + (1 - d) a <= 1, and agreement does not count against the voter only if a <= 1: then
x <= 1/d. The wealth any such test can have from a voter's tested votes is so at most the product of
1/d over its disagreements, and it flags at significance alpha only once that reaches 1/alpha
(Ville's inequality). `bound` is the vote at which that product first reaches 1/alpha: no such test
can flag the voter sooner, ours included (it also waits for `min_votes` tested votes and spreads its
wealth over three bets). For an always-👍 bot it is tight (its disagreements are its 👍 on answers the
crowd rejects, and it never agrees on those); for a contrarian it is loose (a = 0 would lose
everything at its first agreement). For contrarians `hindsight_bound` is the earliest vote at which a
bet on a constant disagreement rate rho (ours bets rho = `alternative`), with rho picked afterwards as the
best for the votes so far, reaches 1/alpha: no bet of that kind, however its rho is chosen, flags sooner.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench.simulation.generate import generate
from bench.simulation.offline import parsed
from bench.simulation.scenario import Scenario, VoterKind
from services.aggregator.vote_quality import (
    VoteMarks,
    VoterKey,
    VoterState,
    count_group,
    fold_and_test,
    observations_by_voter,
    update_voter,
    voter_of,
)
from services.aggregator.voters import Observation, VoterRules
from shared.events import Vote
from shared.prompt_key import prompt_key

NOW = datetime(2026, 11, 30, tzinfo=UTC)


@dataclass
class Replay:
    """Every voter's state after the replay, its kind in the truth, and its tested votes as (sent, observation)."""

    states: dict[VoterKey, VoterState] = field(default_factory=dict)
    kinds: dict[VoterKey, VoterKind] = field(default_factory=dict)
    tested: dict[VoterKey, list[tuple[int, Observation]]] = field(default_factory=lambda: defaultdict(list))

    def flagged_after(self, voter: VoterKey) -> int | None:
        state = self.states.get(voter)
        return state.flagged_after_votes if state is not None else None

    def voters(self, kind: VoterKind) -> list[VoterKey]:
        return [voter for voter, k in self.kinds.items() if k == kind]


def bound(tested: list[tuple[int, Observation]], significance: float) -> int | None:
    """The vote at which the disagreements' product of 1/d first reaches 1/significance (module docstring)."""
    log_wealth, goal = 0.0, math.log(1.0 / significance)
    for sent, observation in tested:
        if observation.disagreed:
            log_wealth -= math.log(observation.null_disagreement)
            if log_wealth >= goal - 1e-12:  # 1/d products that equal 1/alpha exactly
                return sent
    return None


def _log_wealth(observations: list[Observation], rho: float) -> float:
    return sum(observation.log_likelihood_ratio(rho) for observation in observations)


def hindsight_bound(tested: list[tuple[int, Observation]], significance: float) -> int | None:
    """The vote at which the best constant-rho bet for the votes so far first reaches 1/significance."""
    goal, rhos = math.log(1.0 / significance), [r / 100 for r in range(51, 100)]
    for count, (sent, _) in enumerate(tested, start=1):
        observations = [observation for _, observation in tested[:count]]
        if max(_log_wealth(observations, rho) for rho in rhos) >= goal:
            return sent
    return None


def replay(scenario: Scenario, rules: VoterRules) -> Replay:
    """The scenario's votes through the pure core one at a time, in send order."""
    sim = generate(scenario)
    interactions, votes = parsed(sim)
    group_of = {i.interaction_id: prompt_key(i.app_id, i.messages) for i in interactions}
    stored: dict[str, dict[str, Vote]] = defaultdict(dict)
    marks: dict[str, dict[str, VoteMarks]] = defaultdict(dict)
    result = Replay(kinds={key: truth.kind for key, truth in sim.truth.voters.items()})
    states = result.states
    for vote in votes:
        key = group_of[vote.interaction_id]
        flagged = {voter for voter, state in states.items() if state.flagged}
        tested = fold_and_test(stored[key], marks[key], [vote], flagged, rules)
        counted = count_group(stored[key], marks[key], tested, flagged)
        stored[key], marks[key] = counted.state, counted.marks
        observations = observations_by_voter([tested])
        sender = voter_of(vote)
        for voter in {sender} - {None} | observations.keys():
            state = states.get(voter) or VoterState(*voter)
            states[voter] = update_voter(
                state, observations.get(voter, []), [vote] if voter == sender else [], rules, NOW
            )
            result.tested[voter] += [(states[voter].votes_seen, o) for _, o in observations.get(voter, [])]
    return result
