"""The outlier-voter test: calibration on honest voters, power on bad ones, monotonicity, the incremental form."""

from __future__ import annotations

import itertools
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
    rho = RULES.one_sided_alternative
    two_sided = math.log(RULES.alternative / d)
    # The bet leaning the voter's way gains rho / d a vote; the one leaning the other way loses (1 - a) / d,
    # a = max(rho, 1 - d): the voter never votes its way, which the crowd does with probability 1 - d.
    leaning, against = (math.log(rho / d), math.log((1 - max(rho, 1 - d)) / d)) if direction else (0.0, 0.0)
    # The average of the three bets must reach 1 / significance.
    needed = next(
        n
        for n in range(1, 200)
        if (math.exp(n * two_sided) + math.exp(n * leaning) + math.exp(n * against)) / 3 >= 1 / RULES.significance
    )
    assert first_flag(votes, RULES) == max(RULES.min_votes, needed)
    assert max(RULES.min_votes, needed) <= 20


def flip(votes: list[Observation], i: int) -> list[Observation]:
    """The same votes with the i-th one cast the other way."""
    vote = votes[i]
    return [*votes[:i], Observation(not vote.disagreed, vote.null_disagreement, vote.direction), *votes[i + 1 :]]


@given(st.lists(observations, min_size=1, max_size=40), st.data())
def test_more_disagreement_never_lowers_the_two_sided_bet(votes: list[Observation], data: st.DataObject) -> None:
    agreeing = [i for i, o in enumerate(votes) if not o.disagreed]
    if not agreeing:
        return
    i = data.draw(st.sampled_from(agreeing))
    before, after = tally_of(votes, RULES), tally_of(flip(votes, i), RULES)
    assert after.log_e_any > before.log_e_any
    assert after.disagreements == before.disagreements + 1
    if votes[i].direction is None:  # a comparison: only the two-sided bet sees it, so suspicion as a whole rises
        assert after.p_value <= before.p_value


@given(st.lists(observations, min_size=1, max_size=40), st.data())
def test_leaning_more_one_way_never_lowers_that_way_s_bet(votes: list[Observation], data: st.DataObject) -> None:
    """A thumb turned into a 👍 raises the approval bet and lowers the rejection bet (whatever the consensus).

    Disagreeing more does not always raise suspicion as a whole any more: a voter who approves everything
    is suspect, and one 👎 on an answer the crowd approves makes them less so.
    """
    rejecting = [i for i, o in enumerate(votes) if o.direction is not None and o.disagreed != (o.direction == "up")]
    if not rejecting:
        return
    i = data.draw(st.sampled_from(rejecting))
    before, after = tally_of(votes, RULES), tally_of(flip(votes, i), RULES)
    assert after.log_e_up >= before.log_e_up
    assert after.log_e_down <= before.log_e_down


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


crowd_approvals = st.floats(min_value=0.05, max_value=0.8)


def approval(approved: bool, q: float) -> Observation:
    """A thumb where the others' posterior predictive approves with probability q (q != 1/2)."""
    if q > 0.5:
        return Observation(disagreed=not approved, null_disagreement=1 - q, direction="down")
    return Observation(disagreed=approved, null_disagreement=q, direction="up")


@given(st.lists(crowd_approvals.filter(lambda q: q != 0.5), min_size=60, max_size=60))
def test_an_always_up_voter_is_flagged_whatever_the_mix_of_answers(approvals: list[float]) -> None:
    """Every 👍 is evidence, on answers the crowd approves too: the approval bet alone reaches 3 / significance."""
    votes = [approval(True, q) for q in approvals]
    rho = RULES.one_sided_alternative
    wealth = itertools.accumulate(math.log(max(rho, q) / q) for q in approvals)
    bound = next(
        n
        for n, log_e in enumerate(wealth, start=1)
        if n >= RULES.min_votes and log_e >= math.log(3 / RULES.significance)
    )
    flagged_at = first_flag(votes, RULES)
    assert flagged_at is not None and flagged_at <= bound <= 43  # 43 * log(0.95 / 0.8) > log(1500)


@given(st.integers(1, 60), st.data(), st.floats(0.05, 0.95).filter(lambda q: q != 0.5))
def test_the_approval_bet_is_the_binomial_likelihood_ratio(n: int, data: st.DataObject, q: float) -> None:
    ups = data.draw(st.integers(0, n))
    tally = tally_of([approval(True, q)] * ups + [approval(False, q)] * (n - ups), RULES)
    a_up, a_down = max(RULES.one_sided_alternative, q), min(1 - RULES.one_sided_alternative, q)
    up_reference = binom.logpmf(ups, n, a_up) - binom.logpmf(ups, n, q)  # scipy, independently
    down_reference = binom.logpmf(ups, n, a_down) - binom.logpmf(ups, n, q)
    assert tally.log_e_up == pytest.approx(up_reference, abs=1e-9)
    assert tally.log_e_down == pytest.approx(down_reference, abs=1e-9)


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
    assert max(latencies) <= 20, latencies


def test_fewer_than_one_percent_of_simulated_honest_voters_are_flagged(traces: list) -> None:
    honest = [t for t in traces if t.kind == VoterKind.HONEST]
    tested = [t for t in honest if len(t.tested) >= RULES.min_votes]
    assert len(tested) > 200  # enough voters reach the minimum for the share to mean something
    assert sum(t.flagged_after(RULES) is not None for t in honest) < 0.01 * len(honest)
