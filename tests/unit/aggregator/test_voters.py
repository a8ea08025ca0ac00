"""The outlier-voter test: calibration on honest voters, power on bad ones, monotonicity, the incremental form."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom, combine_pvalues

from bench.simulate import Scenario, VoterKind, generate
from bench.simulation.offline import voter_traces
from services.aggregator.evidence import Tally
from services.aggregator.voters import (
    Observation,
    VoterRules,
    VoterTally,
    assess,
    comparison_observation,
    decide,
    first_flag,
    tally_of,
    thumb_observation,
)

RULES = VoterRules()
null_rates = st.floats(min_value=0.05, max_value=0.5)
directions = st.sampled_from([None, "up", "down"])
observations = st.builds(Observation, disagreed=st.booleans(), null_disagreement=null_rates, direction=directions)


def honest_voter(rng: random.Random, rates: list[float], votes: int) -> list[Observation]:
    """A voter drawn from the consensus: each vote disagrees with exactly the null probability."""
    out = []
    for _ in range(votes):
        d = rng.choice(rates)
        out.append(Observation(rng.random() < d, d, rng.choice(("up", "down", None))))
    return out


def test_a_vote_is_tested_only_against_a_settled_consensus_without_it() -> None:
    rules = VoterRules(settle_confidence=0.9)
    assert thumb_observation(1, Tally(1, 1), rules) is None  # a coin flip: not settled
    assert thumb_observation(0, Tally(9, 0), rules) is None  # neutral rating: nothing to test
    up = thumb_observation(-1, Tally(3, 0), rules)  # P(theta > 1/2) = 1 - 1/16
    assert up == Observation(disagreed=True, null_disagreement=1 / 5, direction="down")
    assert up.p_value == pytest.approx(0.2)
    assert thumb_observation(1, Tally(3, 0), rules).p_value == 1.0
    down = thumb_observation(1, Tally(2, 10), rules)
    assert down == Observation(disagreed=True, null_disagreement=3 / 14, direction="up")
    assert comparison_observation(False, 4, 0, rules) == Observation(True, 1 / 6, None)
    assert comparison_observation(True, 1, 1, rules) is None


def test_rules_refuse_settings_that_break_the_test() -> None:
    for bad in ({"significance": 0}, {"min_votes": 0}, {"settle_confidence": 0.5}, {"alternative": 0.4}):
        with pytest.raises(ValueError):
            VoterRules(**bad)
    with pytest.raises(ValueError):
        Observation(True, 0.6)


@given(st.lists(null_rates, min_size=1, max_size=8), st.integers(0, 2**32))
@settings(max_examples=25, deadline=None)
def test_an_honest_voter_drawn_from_the_consensus_is_rarely_flagged(rates: list[float], seed: int) -> None:
    rng = random.Random(seed)
    flagged = sum(assess("v", honest_voter(rng, rates, 60), RULES).flagged for _ in range(300))
    # At most `significance` (0.2%) of honest voters are flagged, 0.6 of 300 expected: 3 happens in 2% of draws,
    # more than 5 in 1 in 100,000 (the 4,000-voter test below pins the rate itself).
    assert flagged <= 5, flagged


def test_false_positive_rate_over_many_honest_voters_stays_below_the_significance() -> None:
    rng = random.Random(11)
    voters = 4000
    flagged = sum(
        assess("v", honest_voter(rng, [rng.uniform(0.05, 0.45) for _ in range(5)], 150), RULES).flagged
        for _ in range(voters)
    )
    # Ville's inequality bounds it by `significance` (0.2%); 3x leaves room for sampling noise.
    assert flagged / voters <= 3 * RULES.significance


@given(null_rates, directions)
def test_a_voter_who_always_disagrees_is_flagged_after_the_minimum(d: float, direction: str | None) -> None:
    votes = [Observation(True, d, direction)] * 60
    one_bet = math.log(RULES.alternative / d)
    other_bets = math.log(RULES.one_sided_alternative / d)
    # The average of the three bets must reach 1 / significance.
    needed = next(
        n
        for n in range(1, 200)
        if (math.exp(n * one_bet) + (math.exp(n * other_bets) + 1 if direction else 2)) / 3 >= 1 / RULES.significance
    )
    assert first_flag(votes, RULES) == max(RULES.min_votes, needed)
    assert max(RULES.min_votes, needed) <= 20


@given(st.lists(observations, min_size=1, max_size=40), st.data())
def test_more_disagreement_never_lowers_suspicion(votes: list[Observation], data: st.DataObject) -> None:
    agreeing = [i for i, o in enumerate(votes) if not o.disagreed]
    if not agreeing:
        return
    i = data.draw(st.sampled_from(agreeing))
    flipped = [*votes[:i], Observation(True, votes[i].null_disagreement, votes[i].direction), *votes[i + 1 :]]
    before, after = assess("v", votes, RULES), assess("v", flipped, RULES)
    assert after.p_value <= before.p_value
    assert after.flagged or not before.flagged
    assert after.disagreements == before.disagreements + 1


@given(st.lists(st.floats(min_value=0.55, max_value=0.97), min_size=1, max_size=300), st.booleans())
def test_a_voter_who_only_ever_agrees_one_way_is_never_flagged(approvals: list[float], thumbs_up: bool) -> None:
    """Many honest users only ever press 👍 on answers they like (or 👎 on ones they dislike): every vote
    agreeing with the crowd is no evidence of a bot, however many and however one-sided they are."""
    # A 👍 on an answer the crowd approves (null disagreement d = 1 - q): an agreeing vote, no direction
    # against the crowd; the mirror image for a 👎 on one it rejects.
    votes = [Observation(False, 1.0 - q, "down" if thumbs_up else "up") for q in approvals]
    assert first_flag(votes, RULES) is None


@given(st.lists(observations, max_size=40), observations)
def test_the_p_value_never_rises_with_more_votes(votes: list[Observation], more: Observation) -> None:
    tally = tally_of(votes, RULES)
    assert tally.add(more, RULES).p_value <= tally.p_value


@given(st.lists(observations, max_size=40))
def test_the_incremental_tally_reaches_what_the_batch_decides(votes: list[Observation]) -> None:
    tally = VoterTally()
    for vote in votes:
        tally = tally.add(vote, RULES)
    assert decide("v", tally, RULES) == assess("v", votes, RULES)
    assert (tally.votes, tally.disagreements) == (len(votes), sum(v.disagreed for v in votes))


@given(st.integers(1, 60), st.data(), st.floats(0.05, 0.5))
def test_the_pooled_bet_is_the_binomial_likelihood_ratio(n: int, data: st.DataObject, d: float) -> None:
    disagreements = data.draw(st.integers(0, n))
    votes = [Observation(True, d)] * disagreements + [Observation(False, d)] * (n - disagreements)
    tally = tally_of(votes, RULES)
    rho = RULES.alternative
    reference = binom.logpmf(disagreements, n, rho) - binom.logpmf(disagreements, n, d)  # scipy, independently
    assert tally.log_e_any == pytest.approx(reference, abs=1e-9)
    assert tally.log_e_up == tally.log_e_down == 0.0


def test_fisher_on_per_vote_p_values_misses_an_always_up_bot_that_the_test_catches() -> None:
    """Why not scipy's Fisher: one vote's p-value takes two values, and chi2 assumes continuous ones."""
    bot = [Observation(True, 0.2, "up") if i % 2 else Observation(False, 0.2, "down") for i in range(20)]
    fisher = combine_pvalues([o.p_value for o in bot], method="fisher").pvalue
    assert fisher > 0.5
    assert assess("bot", bot, RULES).flagged


@pytest.fixture(scope="module")
def traces() -> list:
    out = []
    for seed in (1, 2, 3):
        sim = generate(Scenario(seed=seed, prompts=300, honest_users=300, honest_votes=4000, bots=3, contrarians=3))
        out += voter_traces(sim, RULES).values()
    return out


@pytest.mark.parametrize("kind", [VoterKind.BOT, VoterKind.CONTRARIAN])
def test_bots_and_contrarians_on_simulated_traffic_are_flagged_within_twenty_votes(traces: list, kind) -> None:
    latencies = [t.flagged_after(RULES) for t in traces if t.kind == kind]
    assert len(latencies) == 9 and None not in latencies
    assert statistics.median(latencies) <= 15
    assert sum(latency <= 20 for latency in latencies) >= 8, latencies


def test_fewer_than_one_percent_of_simulated_honest_voters_are_flagged(traces: list) -> None:
    honest = [t for t in traces if t.kind == VoterKind.HONEST]
    tested = [t for t in honest if len(t.tested) >= RULES.min_votes]
    assert len(tested) > 200  # enough voters reach the minimum for the share to mean something
    assert sum(t.flagged_after(RULES) is not None for t in honest) < 0.01 * len(honest)
