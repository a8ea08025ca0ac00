"""The leaderboard's statistics: the fit against an independent MLE, intervals, rank, listing, approval, JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import beta

from services.aggregator import bradley_terry as bt
from services.aggregator.leaderboard import (
    NOT_CONNECTED,
    TOO_FEW_BATTLES,
    ApprovalCounts,
    VersionKey,
    approval,
    arena_ranks,
    build_leaderboard,
    leaderboard_body,
    order_fragility,
)
from tests.support.battle_counts import as_counts, keys, mm_strengths, separated_strengths, simulate_wins, to_ratings

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def board_of(wins: np.ndarray, *, seed: int = 0, rounds: int = 100, min_battles: int = 1, approvals=None):
    versions = keys(len(wins))
    return build_leaderboard(
        as_counts(wins, versions),
        approvals or {},
        min_battles=min_battles,
        rounds=rounds,
        rng=np.random.default_rng(seed),
    )


def ratings_by_version(board) -> dict[VersionKey, float]:
    return {s.version: s.rating for s in board.ranked}


@pytest.mark.parametrize("seed", range(5))
def test_fit_matches_hunters_mm_on_generated_battles(seed: int) -> None:
    rng = np.random.default_rng(seed)
    strengths = rng.normal(0.0, 1.0, size=8)
    wins = simulate_wins(strengths, battles_per_pair=rng.integers(20, 400), rng=rng)
    counts = bt.pair_counts(wins)
    assert bt.has_mle(counts)
    ours = bt.to_ratings(bt.fit(counts).logits)
    reference = to_ratings(mm_strengths(wins))
    assert np.max(np.abs(ours - reference)) < 0.01  # the contract is 1 rating point


def test_fit_is_the_mle_on_a_sparse_schedule() -> None:
    # A chain with a few shortcuts: connected but far from complete, as production schedules are.
    rng = np.random.default_rng(7)
    n = 12
    strengths = np.linspace(2.0, -2.0, n)
    full = simulate_wins(strengths, battles_per_pair=300, rng=rng)
    met = np.zeros((n, n), dtype=bool)
    for i in range(n - 1):
        met[i, i + 1] = met[i + 1, i] = True
    for i, j in [(0, 5), (3, 9), (2, 11)]:
        met[i, j] = met[j, i] = True
    wins = np.where(met, full, 0)
    ours = bt.to_ratings(bt.fit(bt.pair_counts(wins)).logits)
    assert np.max(np.abs(ours - to_ratings(mm_strengths(wins)))) < 0.01


@settings(derandomize=True, max_examples=40, deadline=None)
@given(strengths=separated_strengths(min_gap=0.3), seed=st.integers(0, 2**32 - 1))
def test_fit_recovers_the_order_and_matches_the_reference(strengths: np.ndarray, seed: int) -> None:
    wins = simulate_wins(strengths, battles_per_pair=2000, rng=np.random.default_rng(seed))
    board = board_of(wins, rounds=1)
    versions = keys(len(strengths))
    expected_order = [versions[i] for i in np.argsort(-strengths)]
    assert [s.version for s in board.ranked] == expected_order
    reference = to_ratings(mm_strengths(wins))
    ours = ratings_by_version(board)
    assert max(abs(ours[v] - reference[i]) for i, v in enumerate(versions)) < 1.0


def test_newton_refit_agrees_with_the_lbfgs_fit() -> None:
    rng = np.random.default_rng(3)
    wins = simulate_wins(rng.normal(0.0, 1.0, 10), battles_per_pair=50, rng=rng)
    counts = bt.pair_counts(wins)
    point = bt.fit(counts)
    changed = counts.with_wins(np.maximum(counts.first_wins - 5, 0), counts.second_wins)
    assert np.allclose(bt.refit(changed, point.logits).logits, bt.fit(changed).logits, atol=1e-5)


def _rounds_one_by_one(counts: bt.PairCounts, point: bt.Strengths, rounds: int, seed: int) -> np.ndarray:
    """The bootstrap's rounds fitted one at a time, as it did before fitting them together: the reference."""
    cells = np.concatenate([counts.first_wins, counts.second_wins])
    draws = np.random.default_rng(seed).multinomial(counts.total, cells / cells.sum(), size=rounds).astype(float)
    m = counts.first.size
    return np.array([bt.fit(counts.with_wins(d[:m], d[m:]), start=point.logits).logits for d in draws])


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(2, 7),
    battles=st.integers(3, 300),
    spread=st.floats(0.0, 3.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_bootstrap_rounds_fitted_together_equal_each_round_fitted_alone(
    size: int, battles: int, spread: float, seed: int
) -> None:
    """Few battles give rounds whose MLE does not exist (a version never lost): those take the prior's MAP."""
    rng = np.random.default_rng(seed)
    wins = np.zeros((size, size))
    strengths = rng.normal(0.0, spread, size)
    for _ in range(battles):
        i, j = rng.choice(size, 2, replace=False)
        winner, loser = (i, j) if rng.random() < 1.0 / (1.0 + np.exp(strengths[j] - strengths[i])) else (j, i)
        wins[winner, loser] += 1
    counts = bt.pair_counts(wins)
    point = bt.fit(counts)
    together = bt.bootstrap(counts, point, rounds=30, rng=np.random.default_rng(seed))
    assert np.allclose(together, _rounds_one_by_one(counts, point, 30, seed), atol=1e-5)


@pytest.mark.parametrize(
    "limit", [("_NEWTON_ITERATIONS", 1), ("_BATCHED_MAX_VERSIONS", 3)], ids=["newton_unsettled", "board_too_large"]
)
def test_bootstrap_rounds_not_fitted_together_are_fitted_alone(
    monkeypatch: pytest.MonkeyPatch, limit: tuple[str, int]
) -> None:
    wins = simulate_wins(np.array([0.8, 0.1, -0.4, -0.9]), 20, np.random.default_rng(4))
    counts = bt.pair_counts(wins)
    point = bt.fit(counts)
    monkeypatch.setattr(bt, *limit)  # one Newton step from the point estimate settles no round; 4 versions > 3
    together = bt.bootstrap(counts, point, rounds=20, rng=np.random.default_rng(8))
    assert np.allclose(together, _rounds_one_by_one(counts, point, 20, 8), atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 9), seed=st.integers(0, 2**32 - 1))
def test_rounds_strongly_connected_is_has_mle_of_each_round(size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    wins = rng.integers(0, 3, (size, size)) * (rng.random((size, size)) < 0.4)
    np.fill_diagonal(wins, 0)
    counts = bt.pair_counts(wins + wins.T + np.eye(size))  # every pair that met in some round, both ways
    rounds = rng.integers(0, 2, (12, 2 * counts.first.size)).astype(float)
    m = counts.first.size
    together = bt._strongly_connected(counts, rounds[:, :m], rounds[:, m:])
    alone = [bt.has_mle(counts.with_wins(r[:m], r[m:])) for r in rounds]
    assert together.tolist() == alone


def test_bootstrap_intervals_cover_the_true_strength_in_most_runs() -> None:
    strengths = np.array([1.2, 0.7, 0.3, 0.0, -0.6, -1.1])
    truth = to_ratings(strengths)
    versions = keys(len(strengths))
    covered, widths_vs_theory = [], []
    # 15 seeded boards x 6 versions: 90 intervals; at the nominal 95% fewer than 85% covered is a 1-in-1000 event.
    for seed in range(15):
        wins = simulate_wins(strengths, battles_per_pair=60, rng=np.random.default_rng(1000 + seed))
        board = board_of(wins, seed=seed, rounds=100)
        by_version = {s.version: s for s in board.ranked}
        # The asymptotic standard error of each centred rating, from the Fisher information.
        info = bt.information(board.rated.counts, board.rated.strengths.logits)
        centring = np.eye(len(versions)) - 1.0 / len(versions)
        se = bt.LOGIT_TO_RATING * np.sqrt(np.diag(centring @ np.linalg.inv(info) @ centring))
        for i, v in enumerate(versions):
            s = by_version[v]
            covered.append(s.ci_low <= truth[i] <= s.ci_high)
            widths_vs_theory.append((s.ci_high - s.ci_low) / (2 * 1.96 * se[board.rated.versions.index(v)]))
    coverage = np.mean(covered)
    assert coverage >= 0.85, coverage
    # Not trivially wide: the percentile intervals are about as wide as the asymptotic ones.
    assert 0.75 < np.median(widths_vs_theory) < 1.25, np.median(widths_vs_theory)


def test_same_counts_and_seed_give_the_same_intervals() -> None:
    wins = simulate_wins(np.array([0.5, 0.0, -0.5]), 40, np.random.default_rng(1))
    first, second, other = board_of(wins, seed=9), board_of(wins, seed=9), board_of(wins, seed=10)
    assert first.standings == second.standings
    assert first.standings != other.standings


def test_arena_rank_counts_versions_whose_lower_bound_is_above_the_upper_bound() -> None:
    low = np.array([1100.0, 1050.0, 900.0, 800.0])
    high = np.array([1200.0, 1150.0, 1000.0, 950.0])
    assert arena_ranks(low, high).tolist() == [1, 1, 3, 3]


def test_board_ranks_follow_its_own_intervals_and_centre_on_1000() -> None:
    rng = np.random.default_rng(11)
    wins = simulate_wins(np.array([1.5, 1.4, 0.2, 0.0, -1.5]), 80, rng)
    ranked = board_of(wins).ranked
    for s in ranked:
        assert s.ci_low <= s.rating <= s.ci_high
        assert s.rank == 1 + sum(o.ci_low > s.ci_high for o in ranked)
    assert ranked[0].rank == 1 and ranked[-1].rank > 1
    assert np.mean([s.rating for s in ranked]) == pytest.approx(1000.0)
    assert [s.rating for s in ranked] == sorted((s.rating for s in ranked), reverse=True)


def test_versions_with_too_few_battles_or_off_the_graph_are_listed_without_rating() -> None:
    a, b, c, rare, x, y, voted = (VersionKey("m", v) for v in ("a", "b", "c", "rare", "x", "y", "voted"))
    counts = {(a, b): 30, (b, a): 20, (b, c): 25, (c, b): 25, (c, a): 10, (a, c): 15, (rare, a): 2, (a, rare): 1}
    counts |= {(x, y): 12, (y, x): 8}  # a second group that never met the first: not on the same scale
    approvals = {voted: ApprovalCounts(up=4, down=1), a: ApprovalCounts(up=10, down=2)}
    board = build_leaderboard(counts, approvals, min_battles=10, rounds=50, rng=np.random.default_rng(0))
    by_version = {s.version: s for s in board.standings}
    assert {s.version for s in board.ranked} == {a, b, c}
    assert board.battles == sum(counts.values())
    unrated = {v: by_version[v] for v in (rare, x, y, voted)}
    assert {v: s.unrated_reason for v, s in unrated.items()} == {
        rare: TOO_FEW_BATTLES,
        x: NOT_CONNECTED,
        y: NOT_CONNECTED,
        voted: TOO_FEW_BATTLES,
    }
    assert (unrated[rare].wins, unrated[rare].losses, unrated[rare].battles) == (2, 1, 3)
    assert all(s.rating is None and s.rank is None and s.ci_low is None for s in unrated.values())
    assert unrated[voted].battles == 0 and unrated[voted].approval.rate == pytest.approx(0.8)
    # a's listed counts include its battles with the unrated version; the fit does not use them.
    assert (by_version[a].wins, by_version[a].losses) == (30 + 15 + 1, 20 + 10 + 2)
    assert board.standings[: len(board.ranked)] == board.ranked


def test_a_version_that_never_lost_gets_the_prior_not_infinity() -> None:
    a, b, c = keys(3)
    well_posed = {(a, b): 8, (b, a): 2, (b, c): 6, (c, b): 4, (c, a): 3, (a, c): 7}
    board = build_leaderboard(well_posed, {}, min_battles=1, rounds=50, rng=np.random.default_rng(0))
    assert board.is_mle
    never_lost = {(a, b): 10, (b, c): 6, (c, b): 4, (a, c): 5}
    board = build_leaderboard(never_lost, {}, min_battles=1, rounds=50, rng=np.random.default_rng(0))
    assert not board.is_mle
    top = board.ranked[0]
    assert top.version == a and np.isfinite(top.ci_high) and top.rating < 1000 + 3 * 400


def test_approval_interval_is_the_equal_tailed_beta_interval() -> None:
    for up, down in [(0, 0), (1, 0), (7, 3), (120, 380), (999, 1)]:
        result = approval(up, down)
        low, high = beta(1 + up, 1 + down).interval(0.95)
        assert result.ci_low == pytest.approx(low, abs=1e-12)
        assert result.ci_high == pytest.approx(high, abs=1e-12)
        assert result.rate == (up / (up + down) if up + down else None)
    narrow = approval(300, 100, level=0.5)
    assert narrow.ci_low == pytest.approx(beta.ppf(0.25, 301, 101))


def test_json_body_has_the_contract_shape() -> None:
    wins = simulate_wins(np.array([1.0, 0.0, -1.0]), 30, np.random.default_rng(2))
    versions = keys(3)
    approvals = {versions[0]: ApprovalCounts(9, 1)}
    board = build_leaderboard(
        as_counts(wins, versions), approvals, min_battles=5, rounds=100, rng=np.random.default_rng(0)
    )
    body = leaderboard_body(board, order_fragility(board), app_id="helpdesk", domain=None, computed_at=NOW)
    json.dumps(body)
    assert {"app_id", "domain", "computed_at", "battles", "bootstrap_rounds", "models", "fragility"} <= body.keys()
    assert (body["app_id"], body["domain"], body["battles"], body["bootstrap_rounds"]) == ("helpdesk", None, 90, 100)
    assert body["computed_at"] == "2026-11-29T12:00:00+00:00"
    assert "reason" not in body
    model_fields = {"model", "model_version", "rating", "ci_low", "ci_high", "rank", "wins", "losses", "battles",
                    "approval_rate", "approval_ci_low", "approval_ci_high"}  # fmt: skip
    assert all(model_fields <= row.keys() for row in body["models"])
    top = body["models"][0]
    assert top["model_version"] == "v00" and top["approval_rate"] == 0.9 and top["rank"] == 1
    assert body["models"][1]["approval_rate"] is None and body["models"][1]["approval_ci_low"] is None
    assert len(body["fragility"]) == 2
    row = body["fragility"][0]
    assert {"upper", "lower", "battles_to_swap"} <= row.keys()
    assert row["upper"] == {"model": "m", "model_version": "v00"} and row["battles_to_swap"] >= 1


def test_json_body_says_why_the_list_is_empty() -> None:
    empty = build_leaderboard({}, {}, min_battles=10, rounds=100, rng=np.random.default_rng(0))
    body = leaderboard_body(empty, (), app_id="helpdesk", domain="billing", computed_at=NOW)
    assert body["models"] == [] and body["fragility"] == [] and body["battles"] == 0
    assert "billing" in body["reason"]
    a, b = keys(2)
    sparse = build_leaderboard({(a, b): 3}, {}, min_battles=10, rounds=100, rng=np.random.default_rng(0))
    body = leaderboard_body(sparse, (), app_id="helpdesk", domain=None, computed_at=NOW)
    assert len(body["models"]) == 2 and "10 battles" in body["reason"]
