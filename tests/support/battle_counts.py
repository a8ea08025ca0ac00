"""Battle counts for the leaderboard tests: simulated battles, Hunter's MM reference fit, strategies."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from services.aggregator.leaderboard import VersionKey

LOGIT_TO_RATING = 400.0 / np.log(10.0)


def keys(n: int, model: str = "m") -> list[VersionKey]:
    return [VersionKey(model, f"v{i:02d}") for i in range(n)]


def simulate_wins(strengths: np.ndarray, battles_per_pair: int, rng: np.random.Generator) -> np.ndarray:
    """Every two versions play `battles_per_pair` Bradley-Terry battles: wins[i, j] = i's wins over j."""
    n = len(strengths)
    wins = np.zeros((n, n), dtype=np.int64)
    for i in range(n):
        for j in range(i + 1, n):
            p = 1.0 / (1.0 + np.exp(strengths[j] - strengths[i]))
            won = rng.binomial(battles_per_pair, p)
            wins[i, j], wins[j, i] = won, battles_per_pair - won
    return wins


def as_counts(wins: np.ndarray, versions: list[VersionKey]) -> dict[tuple[VersionKey, VersionKey], int]:
    """The (winner, loser) -> battles mapping the leaderboard takes."""
    return {(versions[i], versions[j]): int(wins[i, j]) for i, j in zip(*np.nonzero(wins), strict=True)}


def mm_strengths(wins: np.ndarray, tol: float = 1e-13, max_iter: int = 200_000) -> np.ndarray:
    """Hunter's (2004) minorization-maximization for the Bradley-Terry MLE: logits, mean zero.

    pi_i <- W_i / sum_j n_ij / (pi_i + pi_j). Independent of the scipy fit under test; needs a
    strongly connected graph (as the MLE does).
    """
    wins = np.asarray(wins, dtype=np.float64)
    played = wins + wins.T
    won = wins.sum(axis=1)
    pi = np.ones(len(wins))
    for _ in range(max_iter):
        new = won / (played / (pi[:, None] + pi[None, :])).sum(axis=1)
        new /= np.exp(np.log(new).mean())
        done = np.max(np.abs(np.log(new) - np.log(pi))) < tol
        pi = new
        if done:
            break
    logits = np.log(pi)
    return logits - logits.mean()


def to_ratings(logits: np.ndarray) -> np.ndarray:
    return 1000.0 + LOGIT_TO_RATING * (logits - np.mean(logits))


@st.composite
def separated_strengths(draw: st.DrawFn, min_gap: float = 0.3, max_versions: int = 7) -> np.ndarray:
    """Strengths (logits) of 3..max_versions versions, each two at least `min_gap` apart, spread <= 3."""
    n = draw(st.integers(min_value=3, max_value=max_versions))
    gaps = draw(st.lists(st.floats(min_value=min_gap, max_value=3.0 / (n - 1)), min_size=n - 1, max_size=n - 1))
    strengths = np.concatenate([[0.0], np.cumsum(gaps)])
    order = draw(st.permutations(range(n)))
    return strengths[list(order)]
