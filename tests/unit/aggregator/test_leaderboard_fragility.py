"""Fragility of the leaderboard's order: hand-made cases, a brute-force check, and the upper bound's removal."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from services.aggregator import bradley_terry as bt
from services.aggregator.fragility import adjacent_swap_costs
from services.aggregator.leaderboard import VersionKey, build_leaderboard, order_fragility
from tests.support.battle_counts import as_counts, keys, simulate_wins

A, B, C = (VersionKey("m", v) for v in ("a", "b", "c"))


def board_of(counts: dict, *, rounds: int = 20):
    return build_leaderboard(counts, {}, min_battles=1, rounds=rounds, rng=np.random.default_rng(0))


def gap_after(wins: np.ndarray, removed: dict[tuple[int, int], int], upper: int, lower: int) -> float:
    """theta_upper - theta_lower refitted from scratch with some battles taken away."""
    left = wins.astype(np.float64).copy()
    for (w, lo), k in removed.items():
        left[w, lo] -= k
    logits = bt.fit(bt.pair_counts(left)).logits
    return float(logits[upper] - logits[lower])


def brute_force_cost(wins: np.ndarray, upper: int, lower: int, up_to: int) -> int | None:
    """The fewest battles (at most `up_to`) whose removal swaps the two, by refitting every removal."""
    cells = [(w, lo) for w, lo in zip(*np.nonzero(wins), strict=True)]
    for size in range(1, up_to + 1):
        for chosen in itertools.combinations_with_replacement(range(len(cells)), size):
            removed: dict[tuple[int, int], int] = {}
            for k in chosen:
                removed[cells[k]] = removed.get(cells[k], 0) + 1
            if all(wins[c] >= k for c, k in removed.items()) and gap_after(wins, removed, upper, lower) <= 1e-6:
                return size
    return None


def test_two_versions_swap_when_the_head_to_head_is_level() -> None:
    board = board_of({(A, B): 7, (B, A): 3})
    (f,) = order_fragility(board)
    assert (f.upper, f.lower, f.battles_to_swap, f.is_exact) == (A, B, 4, True)
    assert f.removed == ((A, B, 4),)


def test_three_versions_hand_made_case_is_exact() -> None:
    # a leads b 3-1 head to head; both beat c 3-1. Taking two of a's wins over b makes a and b
    # perfectly symmetric (a tie, which counts as swapped). No single battle is enough: a's win
    # over b leaves 2-1, and any other removal changes one record against c by one battle, less
    # than the two-battle lead a holds over b (the brute force below refits every single removal).
    counts = {(A, B): 3, (B, A): 1, (A, C): 3, (C, A): 1, (B, C): 3, (C, B): 1}
    board = board_of(counts)
    assert [s.version for s in board.ranked] == [A, B, C]
    pair = next(f for f in order_fragility(board) if f.upper == A)
    assert (pair.lower, pair.battles_to_swap, pair.is_exact) == (B, 2, True)
    assert pair.removed == ((A, B, 2),)
    wins = np.array([[0, 3, 3], [1, 0, 3], [1, 1, 0]])
    assert brute_force_cost(wins, 0, 1, up_to=2) == 2


@pytest.mark.parametrize("seed", range(4))
def test_exact_answers_agree_with_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    wins = simulate_wins(np.array([0.6, 0.3, 0.0, -0.3]), battles_per_pair=4, rng=rng)
    counts = bt.pair_counts(wins)
    assert bt.has_mle(counts)
    point = bt.fit(counts)
    order = [int(i) for i in np.argsort(-point.logits)]
    exact = adjacent_swap_costs(counts, point, order, exact_refit_budget=5_000)
    bounds = adjacent_swap_costs(counts, point, order, exact_refit_budget=0)
    checked = 0
    for cost, bound in zip(exact, bounds, strict=True):
        assert cost.is_exact and bound.battles >= cost.battles
        if cost.battles <= 3:
            assert brute_force_cost(wins, cost.upper, cost.lower, up_to=cost.battles) == cost.battles
            checked += 1
    assert checked


def test_an_upper_bound_is_flagged_and_its_removal_does_swap() -> None:
    rng = np.random.default_rng(5)
    strengths = np.array([0.9, 0.5, 0.4, 0.0, -0.5])
    wins = simulate_wins(strengths, battles_per_pair=300, rng=rng)
    versions = keys(len(strengths))
    board = build_leaderboard(as_counts(wins, versions), {}, min_battles=1, rounds=20, rng=np.random.default_rng(0))
    fragility = order_fragility(board, exact_refit_budget=0)
    assert len(fragility) == len(versions) - 1
    index = {v: i for i, v in enumerate(versions)}
    for f in fragility:
        assert f.battles_to_swap is not None and f.battles_to_swap > 1
        assert not f.is_exact
        removed = {(index[w], index[lo]): k for w, lo, k in f.removed}
        assert sum(removed.values()) == f.battles_to_swap
        upper, lower = index[f.upper], index[f.lower]
        assert gap_after(wins, removed, upper, lower) <= 1e-6
        # The search stops at the first count that swaps along its order: putting back the last
        # battle it took (one battle of some cell) leaves the order as it was.
        assert any(gap_after(wins, removed | {cell: k - 1}, upper, lower) > 1e-6 for cell, k in removed.items())


def test_a_robust_order_rests_on_many_battles_a_close_one_on_few() -> None:
    robust = board_of({(A, B): 400, (B, A): 100, (A, C): 420, (C, A): 80, (B, C): 260, (C, B): 240})
    close = board_of({(A, B): 51, (B, A): 49, (A, C): 60, (C, A): 40, (B, C): 60, (C, B): 40})
    robust_ab = next(f for f in order_fragility(robust) if f.upper == A)
    close_ab = next(f for f in order_fragility(close) if f.upper == A)
    assert robust_ab.battles_to_swap > 100
    assert close_ab.battles_to_swap <= 2 and close_ab.is_exact


def test_fewer_pairs_on_request_and_none_without_a_ranking() -> None:
    wins = simulate_wins(np.array([1.0, 0.5, 0.0, -0.5]), 50, np.random.default_rng(1))
    board = board_of(as_counts(wins, keys(4)))
    assert len(order_fragility(board, max_pairs=1)) == 1
    unrated = build_leaderboard({(A, B): 2}, {}, min_battles=10, rounds=5, rng=np.random.default_rng(0))
    assert order_fragility(unrated) == ()
