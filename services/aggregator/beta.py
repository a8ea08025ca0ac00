"""Win probabilities under Beta posteriors, exact and pure: what pairs, tasks, budgets and the outlier test weigh.

An answer's approval after `up` 👍 and `down` 👎 is theta ~ Beta(1 + up, 1 + down) (a uniform prior).
`prob_better` is P(theta_a > theta_b) as a closed-form finite sum (no integration, no sampling);
`prob_above_half` is P(theta > 1/2), which for integer counts is a binomial tail.
"""

from __future__ import annotations

import functools
import math

from services.aggregator.evidence import Tally


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _prob_second_beats_first(a1: int, b1: int, a2: int, b2: int) -> float:
    """P(X2 > X1) for X1 ~ Beta(a1, b1), X2 ~ Beta(a2, b2), integer a2: a closed-form sum of a2 terms."""
    base = _log_beta(a1, b1)
    total = 0.0
    for i in range(a2):
        total += math.exp(_log_beta(a1 + i, b1 + b2) - math.log(b2 + i) - _log_beta(1 + i, b2) - base)
    return total


def prob_better(a: Tally, b: Tally) -> float:
    """P(theta_a > theta_b), theta_x ~ Beta(1 + up_x, 1 + down_x): exact, in [0, 1]."""
    return _prob_better(a.up, a.down, b.up, b.down)


@functools.lru_cache(maxsize=1 << 16)
def _prob_better(a_up: int, a_down: int, b_up: int, b_down: int) -> float:
    """Cached on the four counts: a hot group's pairs are judged again after every vote on the group, and
    their tasks' priorities ask it again (budget.py), mostly of counts seen before."""
    probability = _prob_second_beats_first(1 + b_up, 1 + b_down, 1 + a_up, 1 + a_down)
    return min(1.0, max(0.0, probability))


@functools.lru_cache(maxsize=1 << 16)
def prob_above_half(wins: int, losses: int) -> float:
    """P(theta > 1/2) for theta ~ Beta(1 + wins, 1 + losses) = P(Binomial(wins + losses + 1, 1/2) <= wins).

    Cached: every outlier test and pair decision asks it of small vote counts, again and again.
    """
    n = wins + losses + 1
    return sum(math.comb(n, k) for k in range(wins + 1)) / 2**n


def uncertainty(p: float) -> float:
    """1 when a coin flip (p = 1/2), 0 when sure either way."""
    return 1.0 - abs(2.0 * p - 1.0)
