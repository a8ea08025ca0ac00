"""How fragile the leaderboard's order is, pure: the fewest battles whose removal swaps two versions.

For two versions `upper` above `lower` (point ratings of one Bradley-Terry fit), the cost is the
fewest battles to remove from the fitted counts so that the refitted `lower` is at or above
`upper` (a tie counts as swapped). The rated set stays as it is (a version is not dropped from
the fit when removals take it below the leaderboard's minimum). Every candidate is checked by a
full refit to the same estimate as the leaderboard's (`bradley_terry.refit`: the MLE, or the MAP
where the MLE does not exist), so a reported number is always achieved:

1. The fit has two versions only: removing one of `upper`'s wins over `lower` is the only move
   that narrows the gap, and the fit ties exactly when both have won as often, so the cost is
   wins(upper over lower) - wins(lower over upper). Exact.
2. Otherwise, the influence of removing one battle on the gap theta_upper - theta_lower, from
   the linearised fit (one Newton step; the approximate-maximum-influence idea of Broderick et al.
   and arXiv 2508.11847): removing a battle that w won against l changes the gap by about
   -(1 - p_wl) (v_w - v_l), with v = J^-1 (e_upper - e_lower) and J the Fisher information.
   Battles are removed in order of that influence (whole (winner, loser) cells, most influential
   first), and a search over the number removed finds the fewest along that order that swap the
   two: an upper bound. The search starts at the linear prediction, extrapolates until a refit
   swaps, then narrows the bracket by regula falsi with bisection (typically 2-4 refits).
3. Exactness: a bound of 1 is exact. Otherwise, when every set of fewer battles (all multisets of
   removals over all cells, up to the bound minus one) fits within `exact_refit_budget` refits,
   they are all refitted; the smallest size that swaps (or the bound, if none does) is exact.
   Beyond the budget the bound stands, with `is_exact` False.

When not even removing every battle with a narrowing influence swaps the two, the cost is None
(no bound found; not expected in practice, since `upper`'s wins and `lower`'s losses are among
those battles).

Cost: one Cholesky factorisation of J per call, one solve per pair, a few Newton refits per pair
(dense n x n: fine for tens to a few hundred versions; at 1,000 use `max_pairs`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy  # its submodules load on first use (a refit), not when the aggregator starts

from services.aggregator import bradley_terry as bt

# Refitted gaps at or below this (in logits, ~2e-4 rating points) count as a tie, i.e. swapped.
_TIE_LOGITS = 1e-6


@dataclass(frozen=True)
class SwapCost:
    """Fewest battles to remove so that `lower` (index) reaches `upper` (None if none found).

    `removed` is one removal that does it: (winner index, loser index, battles) per cell.
    """

    upper: int
    lower: int
    battles: int | None
    is_exact: bool
    removed: tuple[tuple[int, int, int], ...] = ()


@dataclass(frozen=True, eq=False)
class _Cells:
    """The directed (winner, loser) cells with battles: index k < m is pair k's first-wins."""

    winner: np.ndarray
    loser: np.ndarray
    count: np.ndarray


def _cells(counts: bt.PairCounts) -> _Cells:
    return _Cells(
        winner=np.concatenate([counts.first, counts.second]),
        loser=np.concatenate([counts.second, counts.first]),
        count=np.concatenate([counts.first_wins, counts.second_wins]),
    )


class _Refitter:
    """Refits with some battles removed, warm-started from the point fit."""

    def __init__(self, counts: bt.PairCounts, point: bt.Strengths, prior_sd_logit: float) -> None:
        self.counts, self.point, self.prior_sd_logit = counts, point, prior_sd_logit
        self.cells = _cells(counts)

    def gap_after(self, removed: np.ndarray, upper: int, lower: int) -> float:
        """theta_upper - theta_lower refitted with `removed[k]` battles taken from cell k."""
        left = self.cells.count - removed
        m = self.counts.first.size
        strengths = bt.refit(
            self.counts.with_wins(left[:m], left[m:]), self.point.logits, prior_sd_logit=self.prior_sd_logit
        )
        return float(strengths.logits[upper] - strengths.logits[lower])

    def swaps(self, removed: np.ndarray, upper: int, lower: int) -> bool:
        return self.gap_after(removed, upper, lower) <= _TIE_LOGITS


def _influence_order(refitter: _Refitter, factor: tuple, upper: int, lower: int) -> tuple[np.ndarray, np.ndarray]:
    """Cells whose removal narrows the gap, most influential per battle first, and their predicted effect."""
    n = refitter.counts.size
    target = np.zeros(n)
    target[upper], target[lower] = 1.0, -1.0
    v = scipy.linalg.cho_solve(factor, target)
    cells, logits = refitter.cells, refitter.point.logits
    p = scipy.special.expit(logits[cells.winner] - logits[cells.loser])
    effect = -(1.0 - p) * (v[cells.winner] - v[cells.loser])
    useful = np.flatnonzero((effect < 0) & (cells.count > 0))
    order = useful[np.argsort(effect[useful], kind="stable")]
    return order, effect[order]


def _removal(cells: _Cells, order: np.ndarray, k: int) -> np.ndarray:
    """The first k battles along `order` (whole cells first), as removal counts per cell."""
    before = np.concatenate([[0.0], np.cumsum(cells.count[order])[:-1]])
    taken = np.clip(k - before, 0.0, cells.count[order])
    removed = np.zeros_like(cells.count)
    removed[order] = taken
    return removed


def _linear_guess(cells: _Cells, order: np.ndarray, effect: np.ndarray, gap: float) -> int:
    """Battles along `order` after which the linearised gap reaches zero."""
    per_cell = cells.count[order]
    predicted = np.cumsum(per_cell * effect)
    reach = int(np.searchsorted(-predicted, gap))
    if reach >= per_cell.size:
        return int(per_cell.sum())
    before = float(predicted[reach - 1]) if reach else 0.0
    return int(per_cell[:reach].sum()) + math.ceil((gap + before) / -effect[reach])


def _first_swap(gap_at: Callable[[int], float], guess: int, available: int, gap: float) -> tuple | None:
    """A bracket (low, gap at low, high, gap at high): low battles do not swap the two, high do.

    Starts at the linear guess and extrapolates along the refitted gap (at least one more battle
    each step); None when even all `available` battles do not swap them.
    """
    low, gap_low = 0, gap
    k = min(max(guess, 1), available)
    while True:
        value = gap_at(k)
        if value <= 0:
            return low, gap_low, k, value
        if k == available:
            return None
        slope = (gap_low - value) / (k - low)
        ahead = k + math.ceil(1.25 * value / slope) if slope > 0 else 2 * k
        low, gap_low, k = k, value, min(available, max(ahead, k + 1))


def _shrink(gap_at: Callable[[int], float], low: int, gap_low: float, high: int, gap_high: float) -> int:
    """The fewest battles that swap, within the bracket: regula falsi (Illinois), every third step a bisection."""
    kept, step = 0, 0
    while high - low > 1:
        step += 1
        probe = low + math.ceil((high - low) * gap_low / (gap_low - gap_high))
        k = (low + high) // 2 if step % 3 == 0 else min(max(probe, low + 1), high - 1)
        value = gap_at(k)
        if value <= 0:
            high, gap_high = k, value
            gap_low, kept = (gap_low / 2 if kept == -1 else gap_low), -1
        else:
            low, gap_low = k, value
            gap_high, kept = (gap_high / 2 if kept == 1 else gap_high), 1
    return high


def _search_bound(
    refitter: _Refitter, order: np.ndarray, effect: np.ndarray, gap: float, upper: int, lower: int
) -> int | None:
    """Fewest battles along `order` that swap the two (each probe a refit): O(log k) refits."""
    cells = refitter.cells

    def gap_at(k: int) -> float:
        return refitter.gap_after(_removal(cells, order, k), upper, lower) - _TIE_LOGITS

    available = int(cells.count[order].sum())
    if available == 0:
        return None
    bracket = _first_swap(gap_at, _linear_guess(cells, order, effect, gap), available, gap - _TIE_LOGITS)
    return None if bracket is None else _shrink(gap_at, *bracket)


def _exhaustive(refitter: _Refitter, bound: int, upper: int, lower: int) -> np.ndarray | None:
    """The smallest removal below `bound` battles that swaps the two, None if there is none.

    Every multiset of removals over every cell is refitted, smallest first; the caller checks
    that their number fits the budget.
    """
    cells = refitter.cells
    present = np.flatnonzero(cells.count > 0)
    for size in range(1, bound):
        for chosen in itertools.combinations_with_replacement(present, size):
            removed = np.bincount(np.asarray(chosen), minlength=cells.count.size).astype(np.float64)
            if np.all(removed <= cells.count) and refitter.swaps(removed, upper, lower):
                return removed
    return None


def _cost(upper: int, lower: int, cells: _Cells, removed: np.ndarray, is_exact: bool) -> SwapCost:
    taken = np.flatnonzero(removed)
    return SwapCost(
        upper,
        lower,
        int(removed.sum()),
        is_exact,
        tuple((int(cells.winner[k]), int(cells.loser[k]), int(removed[k])) for k in taken),
    )


def _swap_cost(refitter: _Refitter, factor: tuple, upper: int, lower: int, exact_refit_budget: int) -> SwapCost:
    counts, point, cells = refitter.counts, refitter.point, refitter.cells
    gap = float(point.logits[upper] - point.logits[lower])
    if gap <= _TIE_LOGITS:
        return SwapCost(upper, lower, 0, True)
    if counts.size == 2:
        ahead = np.flatnonzero(cells.winner == upper)
        removed = np.zeros_like(cells.count)
        removed[ahead] = cells.count[ahead] - cells.count[1 - ahead]
        return _cost(upper, lower, cells, removed, True)
    order, effect = _influence_order(refitter, factor, upper, lower)
    bound = _search_bound(refitter, order, effect, gap, upper, lower)
    if bound is None:
        return SwapCost(upper, lower, None, False)
    found = _removal(cells, order, bound)
    present = int(np.count_nonzero(cells.count))
    if bound == 1 or math.comb(present + bound - 1, bound - 1) - 1 > exact_refit_budget:
        return _cost(upper, lower, cells, found, bound == 1)
    smaller = _exhaustive(refitter, bound, upper, lower)
    return _cost(upper, lower, cells, found if smaller is None else smaller, True)


def adjacent_swap_costs(
    counts: bt.PairCounts,
    point: bt.Strengths,
    order: list[int],
    *,
    prior_sd_logit: float = bt.DEFAULT_PRIOR_SD_LOGIT,
    exact_refit_budget: int = 200,
) -> tuple[SwapCost, ...]:
    """The fewest battles whose removal puts the lower of each two neighbours in `order` at or above the upper.

    `order` holds indices into `counts`, highest rating first; `point` is the fit the order comes
    from (fitted with the same `prior_sd_logit`).
    """
    if len(order) < 2:
        return ()
    refitter = _Refitter(counts, point, prior_sd_logit)
    l2 = 0.0 if point.is_mle else 1.0 / prior_sd_logit**2
    factor = scipy.linalg.cho_factor(bt.information(counts, point.logits, l2))
    return tuple(
        _swap_cost(refitter, factor, upper, lower, exact_refit_budget) for upper, lower in itertools.pairwise(order)
    )
