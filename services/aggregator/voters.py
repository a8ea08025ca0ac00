"""Outlier voters, pure: does a voter disagree with the settled consensus more than chance allows?

After Arena's anomalous-user test (Chiang et al. 2024, arXiv 2403.04132, §5.1, eq. 10): one p-value per
vote against what the crowd says, combined over the voter's votes. FastChat's public clean_battle_data
only drops a list of banned IPs; the test itself is the paper's.

1. Observation. A vote is tested only once its question is *settled without it*. For a thumb or rating
   on answer x, the other voters' effective approvals give theta_x ~ Beta(1 + up, 1 + down) (the pair
   math's posterior) and the consensus is 👍 when P(theta_x > 1/2) >= `settle_confidence`, 👎 when it is
   at most 1 - `settle_confidence`. For a comparison of a and b, the same on the others' comparisons.
   Neutral votes (rating 3) and unsettled questions are not tested.
2. Per-vote p-value (eq. 10, with the posterior predictive as the "historical distribution"): a voter
   drawn from the consensus disagrees with probability d = (1 + others against) / (2 + others), so a
   disagreeing vote has p = d and an agreeing one p = 1.
3. Combination. Not Fisher's chi-squared (scipy.stats.combine_pvalues): it assumes continuous p-values,
   and one vote's p-value takes two values. An always-👍 bot on a mix of answers sums -2 log p ~ 29 over
   20 votes (9 disagreements at d ~ 0.2) against chi2 with 40 degrees of freedom (mean 40): never
   flagged. Instead each vote's p-value becomes a likelihood-ratio e-value against a bad voter who
   disagrees with probability rho: rho / d if it disagreed, (1 - rho) / (1 - d) if not, mean 1 under
   the null. Their running product is a test martingale, and by Ville's inequality an honest voter's
   ever reaches 1/alpha with probability at most alpha, however often the shell looks (Arena checks at 5
   points with alpha / 5 for the same reason). Three bets run at once: on disagreement either way
   (contrarians; rho = `alternative`), on 👍 against a 👎 consensus only (always-👍 bots, whose agreement
   on good answers would otherwise dilute it; rho = `one_sided_alternative`), and on 👎 against a 👍
   consensus only. Their average is again a test martingale; p_value = min(1, 1 / its largest value
   from the `min_votes`-th tested vote on), so it never rises, and an honest voter's early streak that
   evens out by then does not count.
4. Flag: at least `min_votes` tested votes and p_value < `significance`.
5. Multiple testing. The requirement is a share (fewer than 1% of honest voters flagged), which a fixed
   per-voter alpha controls directly: the expected share of honest voters ever flagged is at most
   `significance` (default 0.2%), at any number of voters and looks. Bonferroni over N voters (alpha / N)
   would bound the chance of any false flag instead, at the price of log(N) / log(rho / d) more
   disagreements before a bot is caught (~6 more at N = 10,000 and d = 0.2, ~13 more votes of an
   always-👍 bot on a mix). The real risk is honest voters whose taste differs from the crowd (the null
   is the crowd's own rate): where the crowd disagrees 20% of the time, the two-sided bet grows only for
   voters who disagree more than half the time, the one-sided ones above 64%; a voter disagreeing 1.5x
   as often as the crowd on 150 tested votes is flagged about 1% of the time.

`VoterTally` is the incremental form the shell keeps per voter (six numbers): add a vote's observation
when its question first settles without it; `decide` reads the flag from it in O(1). When an admin
clears a flag the tally starts again from `VoterTally()`: its peak would otherwise flag the voter at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from services.aggregator.beta import prob_above_half
from services.aggregator.evidence import Tally

Direction = Literal["up", "down"]


@dataclass(frozen=True)
class VoterRules:
    """The outlier test's settings (from the aggregator's settings)."""

    significance: float = 2e-3
    min_votes: int = 10
    settle_confidence: float = 0.75
    alternative: float = 0.8
    one_sided_alternative: float = 0.95

    def __post_init__(self) -> None:
        if not 0.0 < self.significance < 1.0:
            raise ValueError("significance must be in (0, 1)")
        if self.min_votes < 1:
            raise ValueError("min_votes must be at least 1")
        if not 0.5 < self.settle_confidence < 1.0:
            raise ValueError("settle_confidence must be in (0.5, 1)")
        if not (0.5 < self.alternative < 1.0 and 0.5 < self.one_sided_alternative < 1.0):
            raise ValueError("alternative and one_sided_alternative must be in (0.5, 1)")


@dataclass(frozen=True)
class Observation:
    """One tested vote: did it disagree with the settled consensus, and how likely was that by chance."""

    disagreed: bool
    null_disagreement: float  # d: the chance a voter drawn from the consensus disagrees, in (0, 1/2]
    direction: Direction | None = None  # "up": disagreeing means approving what the crowd rejects

    def __post_init__(self) -> None:
        if not 0.0 < self.null_disagreement <= 0.5:
            raise ValueError("null_disagreement must be in (0, 1/2]: the consensus is the majority side")

    @property
    def p_value(self) -> float:
        """Arena's per-vote p-value: the chance of a vote at least this far from the consensus."""
        return self.null_disagreement if self.disagreed else 1.0

    def log_likelihood_ratio(self, rho: float) -> float:
        """log of this vote's e-value: a voter disagreeing with probability rho against one drawn from the crowd."""
        d = self.null_disagreement
        return math.log(rho / d) if self.disagreed else math.log((1.0 - rho) / (1.0 - d))


def _settled(for_: int, against: int, settle_confidence: float) -> tuple[bool, float] | None:
    """(consensus is `for_`'s side, d) when the others' votes settle the question, else None."""
    p_for = prob_above_half(for_, against)
    n = for_ + against
    if p_for >= settle_confidence:
        return True, (1 + against) / (2 + n)
    if p_for <= 1.0 - settle_confidence:
        return False, (1 + for_) / (2 + n)
    return None


def thumb_observation(approval: int, others: Tally, rules: VoterRules) -> Observation | None:
    """A thumb or rating (approval +1 / -1 / 0) against the other voters' tally on the same answer."""
    settled = _settled(others.up, others.down, rules.settle_confidence) if approval else None
    if settled is None:
        return None
    consensus_up, d = settled
    if consensus_up:
        return Observation(disagreed=approval < 0, null_disagreement=d, direction="down")
    return Observation(disagreed=approval > 0, null_disagreement=d, direction="up")


def comparison_observation(
    prefers_first: bool, first_wins: int, second_wins: int, rules: VoterRules
) -> Observation | None:
    """An explicit comparison against the other voters' comparisons of the same two answers."""
    settled = _settled(first_wins, second_wins, rules.settle_confidence)
    if settled is None:
        return None
    consensus_first, d = settled
    return Observation(disagreed=prefers_first != consensus_first, null_disagreement=d)


def _log_mean_exp(values: tuple[float, ...]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values) / len(values))


@dataclass(frozen=True)
class VoterTally:
    """A voter's sufficient statistics: tested votes, disagreements, and the log of each bet's wealth."""

    votes: int = 0
    disagreements: int = 0
    log_e_any: float = 0.0
    log_e_up: float = 0.0
    log_e_down: float = 0.0
    peak_log_e: float = 0.0  # log of the largest average wealth so far: p_value = exp(-peak)

    def add(self, observation: Observation, rules: VoterRules) -> VoterTally:
        """The tally after one more tested vote."""
        step = observation.log_likelihood_ratio(rules.alternative)
        one_sided = observation.log_likelihood_ratio(rules.one_sided_alternative)
        log_e_any = self.log_e_any + step
        log_e_up = self.log_e_up + (one_sided if observation.direction == "up" else 0.0)
        log_e_down = self.log_e_down + (one_sided if observation.direction == "down" else 0.0)
        votes = self.votes + 1
        # Only wealth from the min_votes-th vote on counts: an early streak of an honest voter that later
        # evens out must not flag them at min_votes.
        mixture = _log_mean_exp((log_e_any, log_e_up, log_e_down)) if votes >= rules.min_votes else 0.0
        return VoterTally(
            votes=votes,
            disagreements=self.disagreements + observation.disagreed,
            log_e_any=log_e_any,
            log_e_up=log_e_up,
            log_e_down=log_e_down,
            peak_log_e=max(self.peak_log_e, mixture),
        )

    @property
    def p_value(self) -> float:
        """Anytime-valid: under the null, P(p_value ever <= alpha) <= alpha."""
        return min(1.0, math.exp(-self.peak_log_e))


@dataclass(frozen=True)
class VoterDecision:
    """What the test says about one voter now."""

    voter: str
    votes: int
    disagreements: int
    p_value: float
    flagged: bool


def decide(voter: str, tally: VoterTally, rules: VoterRules) -> VoterDecision:
    """Flag a voter with at least `min_votes` tested votes and p_value below `significance`."""
    p_value = tally.p_value
    flagged = tally.votes >= rules.min_votes and p_value < rules.significance
    return VoterDecision(voter, tally.votes, tally.disagreements, p_value, flagged)


def tally_of(observations: Iterable[Observation], rules: VoterRules) -> VoterTally:
    """The tally of a voter's tested votes, in the order they were tested."""
    tally = VoterTally()
    for observation in observations:
        tally = tally.add(observation, rules)
    return tally


def assess(voter: str, observations: Iterable[Observation], rules: VoterRules) -> VoterDecision:
    """The decision on a voter from all their tested votes at once (what the incremental form reaches)."""
    return decide(voter, tally_of(observations, rules), rules)


def first_flag(observations: Iterable[Observation], rules: VoterRules) -> int | None:
    """How many tested votes it took to flag the voter (1-based), or None if never."""
    tally = VoterTally()
    for count, observation in enumerate(observations, start=1):
        tally = tally.add(observation, rules)
        if decide("", tally, rules).flagged:
            return count
    return None
