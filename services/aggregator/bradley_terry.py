"""Bradley-Terry strengths from battle counts, pure: the maximum-likelihood fit and its bootstrap.

The model: P(i beats j) = 1 / (1 + exp(theta_j - theta_i)), strengths in logits. The fit minimises
the negative log-likelihood of the battle counts with scipy's L-BFGS-B and an analytic gradient (the
method of FastChat's `rating_systems.py`), on counts folded per unordered pair of versions, so its
cost grows with the number of pairs that met, never with the number of battles.

When the maximum-likelihood estimate does not exist: it is finite and unique (up to a common shift)
exactly when the directed graph "i beat j at least once" is strongly connected (Zermelo 1929; Ford
1957). Otherwise a version that never lost (or a group that never lost to the rest) would run off
to infinity. Then, and only then, the fit is the maximum a posteriori estimate under a Gaussian
prior theta_i ~ N(0, prior_sd_logit^2) (an L2 penalty; it also fixes the common shift; by default
sd = 400 rating points, i.e. a version is a priori within +-800 points of the mean), and the
result says so (`is_mle` False). An unbeaten version then gets a large finite rating that the
prior bounds rather than the data, and its bootstrap interval is as narrow as the data allow:
read it with `is_mle`. On well-posed data no prior is applied at all, so the fit is the
MLE to the optimiser's tolerance. The bootstrap applies the same rule to each resample.

The bootstrap resamples battles: a multinomial draw of the battle counts over the (winner, loser)
cells with the total unchanged is exactly a resample of the battle list with replacement. Each
round is fitted from the point estimate (warm start), all rounds together by damped Newton steps on
arrays (the objective is smooth and convex: Newton from a nearby start lands on the same estimate the
minimiser finds, to its tolerance); a round that does not settle is fitted alone. A weakly
disconnected graph is not handled here: the caller fits one connected group of versions (see
`leaderboard.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy  # its submodules load on first use (a refit), not when the aggregator starts

LOGIT_TO_RATING = 400.0 / math.log(10.0)
RATING_MEAN = 1000.0
DEFAULT_PRIOR_SD_LOGIT = 400.0 / LOGIT_TO_RATING
# Gradient tolerance of the objective scaled per version: at 1e-8 the point fit is within 1e-4
# rating points of Hunter's MM (tests); bootstrap rounds, whose spread is tens of points, need less.
POINT_GTOL = 1e-8
BOOTSTRAP_GTOL = 1e-6
_MAX_ITERATIONS = 5000
_NEWTON_ITERATIONS = 30
_NEWTON_STEP_TOL = 1e-9
# The bootstrap fits its rounds together up to this many versions: the rounds' information matrices
# (rounds x size^2 floats) and their solves; larger boards fit each round alone (L-BFGS-B).
_BATCHED_MAX_VERSIONS = 64
_LOSS_ROUNDING = 1e-12


@dataclass(frozen=True, eq=False)
class PairCounts:
    """Battle counts per unordered pair of versions (indices 0..size-1), as parallel arrays.

    `first[k] < second[k]`; `first_wins[k]` battles went to `first[k]`, `second_wins[k]` to
    `second[k]`. Pairs that never met are absent.
    """

    size: int
    first: np.ndarray
    second: np.ndarray
    first_wins: np.ndarray
    second_wins: np.ndarray

    @property
    def total(self) -> int:
        return int(self.first_wins.sum() + self.second_wins.sum())

    def with_wins(self, first_wins: np.ndarray, second_wins: np.ndarray) -> PairCounts:
        """The same pairs with other counts (a bootstrap round, or battles removed)."""
        return PairCounts(self.size, self.first, self.second, first_wins, second_wins)


@dataclass(frozen=True, eq=False)
class Strengths:
    """A fit: strengths in logits (mean zero) and whether they are the MLE or the prior's MAP."""

    logits: np.ndarray
    is_mle: bool


def pair_counts(wins: np.ndarray) -> PairCounts:
    """Fold a square matrix `wins[i, j]` (battles i won against j) into per-pair counts."""
    wins = np.asarray(wins, dtype=np.float64)
    played = np.triu(wins + wins.T, k=1)
    first, second = np.nonzero(played)
    return PairCounts(
        size=wins.shape[0],
        first=first.astype(np.intp),
        second=second.astype(np.intp),
        first_wins=wins[first, second].copy(),
        second_wins=wins[second, first].copy(),
    )


def has_mle(counts: PairCounts) -> bool:
    """True when the directed graph "i beat j" is strongly connected: the MLE exists and is unique."""
    if counts.size <= 1:
        return True
    won_first, won_second = counts.first_wins > 0, counts.second_wins > 0
    rows = np.concatenate([counts.first[won_first], counts.second[won_second]])
    cols = np.concatenate([counts.second[won_first], counts.first[won_second]])
    graph = scipy.sparse.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(counts.size, counts.size)).tocsr()
    n_components, _ = scipy.sparse.csgraph.connected_components(graph, directed=True, connection="strong")
    return n_components == 1


def _objective(
    theta: np.ndarray, counts: PairCounts, played: np.ndarray, scale: float, l2: float
) -> tuple[float, np.ndarray]:
    """Negative log-likelihood (plus the L2 penalty) and its gradient, both divided by `scale`."""
    diff = theta[counts.first] - theta[counts.second]
    # first_wins * softplus(-d) + second_wins * softplus(d), with softplus(d) = softplus(-d) + d.
    loss = played @ np.logaddexp(0.0, -diff) + counts.second_wins @ diff
    slope = played * scipy.special.expit(diff) - counts.first_wins
    grad = np.bincount(counts.first, slope, counts.size) - np.bincount(counts.second, slope, counts.size)
    if l2:
        loss += 0.5 * l2 * (theta @ theta)
        grad += l2 * theta
    return loss / scale, grad / scale


def fit(
    counts: PairCounts,
    *,
    prior_sd_logit: float = DEFAULT_PRIOR_SD_LOGIT,
    start: np.ndarray | None = None,
    gtol: float = POINT_GTOL,
) -> Strengths:
    """Bradley-Terry strengths (logits, mean zero): the MLE if it exists, else the MAP under the prior."""
    is_mle = has_mle(counts)
    if counts.size <= 1 or counts.total == 0:
        return Strengths(np.zeros(counts.size), is_mle)
    played = counts.first_wins + counts.second_wins
    # Scaling by the mean battles per version makes the gradient tolerance mean the same thing at
    # ten battles and at a million.
    scale = max(1.0, 2.0 * float(played.sum()) / counts.size)
    l2 = 0.0 if is_mle else 1.0 / prior_sd_logit**2
    x0 = np.zeros(counts.size) if start is None else np.asarray(start, dtype=np.float64) - np.mean(start)
    result = scipy.optimize.minimize(
        _objective,
        x0,
        args=(counts, played, scale, l2),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": _MAX_ITERATIONS, "gtol": gtol, "ftol": 1e-15},
    )
    theta = result.x - result.x.mean()
    return Strengths(theta, is_mle)


def information(counts: PairCounts, logits: np.ndarray, l2: float = 0.0) -> np.ndarray:
    """The Hessian of the negative log-posterior (Fisher information plus the L2 term), plus 11^T/n.

    11^T/n fixes the common shift, so the matrix is positive definite for a connected graph and
    solving it with a right-hand side that sums to zero gives the mean-zero solution.
    """
    n = counts.size
    p = scipy.special.expit(logits[counts.first] - logits[counts.second])
    conductance = (counts.first_wins + counts.second_wins) * p * (1.0 - p)
    diagonal = np.bincount(counts.first, conductance, n) + np.bincount(counts.second, conductance, n)
    off = np.bincount(counts.first * n + counts.second, conductance, n * n).reshape(n, n)
    return np.diag(diagonal + l2) - off - off.T + 1.0 / n


def refit(counts: PairCounts, start: np.ndarray, *, prior_sd_logit: float = DEFAULT_PRIOR_SD_LOGIT) -> Strengths:
    """`fit` by damped Newton steps from a nearby `start` (a few battles changed): same estimate, faster.

    Falls back to `fit` when Newton does not converge (or the information matrix is singular).
    """
    is_mle = has_mle(counts)
    if counts.size <= 1 or counts.total == 0:
        return Strengths(np.zeros(counts.size), is_mle)
    played = counts.first_wins + counts.second_wins
    l2 = 0.0 if is_mle else 1.0 / prior_sd_logit**2
    theta = np.asarray(start, dtype=np.float64) - np.mean(start)
    loss, grad = _objective(theta, counts, played, 1.0, l2)
    for _ in range(_NEWTON_ITERATIONS):
        try:
            factor = scipy.linalg.cho_factor(information(counts, theta, l2), check_finite=False)
            step = -scipy.linalg.cho_solve(factor, grad, check_finite=False)
        except scipy.linalg.LinAlgError:
            break
        t = 1.0
        while t > 1e-6:
            new_loss, new_grad = _objective(theta + t * step, counts, played, 1.0, l2)
            if new_loss <= loss + 1e-4 * t * (grad @ step):
                break
            t /= 2.0
        theta, loss, grad = theta + t * step, new_loss, new_grad
        if t * np.max(np.abs(step)) < _NEWTON_STEP_TOL:
            return Strengths(theta - theta.mean(), is_mle)
    return fit(counts, prior_sd_logit=prior_sd_logit, start=theta)


def bootstrap(
    counts: PairCounts,
    point: Strengths,
    *,
    rounds: int,
    rng: np.random.Generator,
    prior_sd_logit: float = DEFAULT_PRIOR_SD_LOGIT,
) -> np.ndarray:
    """Strengths (logits, mean zero) of `rounds` resamples of the battles: an array (rounds, size).

    Up to `_BATCHED_MAX_VERSIONS` versions every round is fitted at once (`_newton_rounds`: damped
    Newton steps from the point estimate, array operations over all rounds, ~50x faster than a
    scipy minimise per round at ten versions); a round Newton does not settle, and every round of a
    larger board, is fitted alone by `fit`.
    """
    total = counts.total
    if rounds <= 0:
        return np.zeros((0, counts.size))
    if total == 0:
        return np.zeros((rounds, counts.size))
    cells = np.concatenate([counts.first_wins, counts.second_wins])
    draws = rng.multinomial(total, cells / cells.sum(), size=rounds).astype(np.float64)
    m = counts.first.size
    first_wins, second_wins = draws[:, :m], draws[:, m:]
    samples, settled = np.empty((rounds, counts.size)), np.zeros(rounds, dtype=bool)
    if counts.size <= _BATCHED_MAX_VERSIONS:
        l2 = np.where(_strongly_connected(counts, first_wins, second_wins), 0.0, 1.0 / prior_sd_logit**2)
        samples, settled = _newton_rounds(counts, first_wins, second_wins, l2, point.logits)
    for r in np.flatnonzero(~settled):
        resample = counts.with_wins(first_wins[r], second_wins[r])
        samples[r] = fit(resample, prior_sd_logit=prior_sd_logit, start=point.logits, gtol=BOOTSTRAP_GTOL).logits
    return samples


def _strongly_connected(counts: PairCounts, first_wins: np.ndarray, second_wins: np.ndarray) -> np.ndarray:
    """`has_mle` of each round (rows of the win arrays): its "i beat j" graph reaches every version from each."""
    n, rounds = counts.size, first_wins.shape[0]
    reach = np.zeros((rounds, n, n), dtype=bool)
    reach[:, counts.first, counts.second] = first_wins > 0
    reach[:, counts.second, counts.first] = second_wins > 0
    reach |= np.eye(n, dtype=bool)
    for _ in range(max(1, math.ceil(math.log2(n)))):  # paths of length 2^k after k squarings
        paths = reach.astype(np.float64)
        reach = np.matmul(paths, paths) > 0
    return reach.all(axis=(1, 2))


def _newton_rounds(
    counts: PairCounts, first_wins: np.ndarray, second_wins: np.ndarray, l2: np.ndarray, start: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`refit` of every round at once: the strengths (rounds, size) and which rounds settled."""
    n, m = counts.size, counts.first.size
    incidence = np.zeros((m, n))
    incidence[np.arange(m), counts.first] = 1.0
    incidence[np.arange(m), counts.second] = -1.0
    # A pair's conductance adds to both diagonal cells and subtracts from both off-diagonal ones.
    cells = np.concatenate([counts.first * (n + 1), counts.second * (n + 1), counts.first * n + counts.second])
    cells = np.concatenate([cells, counts.second * n + counts.first])
    signs = np.repeat([1.0, 1.0, -1.0, -1.0], m)
    scatter = scipy.sparse.csr_matrix((signs, (cells, np.tile(np.arange(m), 4))), shape=(n * n, m))
    played = first_wins + second_wins

    def objective(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        diff = theta @ incidence.T
        loss = (played * np.logaddexp(0.0, -diff)).sum(axis=1) + (second_wins * diff).sum(axis=1)
        p = scipy.special.expit(diff)
        grad = (played * p - first_wins) @ incidence + l2[:, None] * theta
        return loss + 0.5 * l2 * (theta * theta).sum(axis=1), grad, played * p * (1.0 - p)

    theta = np.tile(np.asarray(start, dtype=np.float64) - np.mean(start), (first_wins.shape[0], 1))
    loss, grad, conductance = objective(theta)
    settled = np.zeros(theta.shape[0], dtype=bool)
    for _ in range(_NEWTON_ITERATIONS):
        # The information matrix (as `information`), with 11^T/n fixing the common shift.
        hessian = (scatter @ conductance.T).T.reshape(-1, n, n) + 1.0 / n
        hessian[:, np.arange(n), np.arange(n)] += l2[:, None]
        try:
            step = -np.linalg.solve(hessian, grad[..., None])[..., 0]
        except np.linalg.LinAlgError:  # a singular round: every round unsettled is fitted alone
            break
        settled |= np.abs(step).max(axis=1) < _NEWTON_STEP_TOL  # at the optimum: the full step is nil
        if settled.all():
            break
        t = np.where(settled, 0.0, 1.0)
        slope = (grad * step).sum(axis=1)
        # Near the optimum of a loss summed over many battles, its change is below its rounding.
        noise = _LOSS_ROUNDING * np.abs(loss)
        new = objective(theta + t[:, None] * step)
        for _ in range(20):  # backtracking, each round on its own
            short = new[0] > loss + 1e-4 * t * slope + noise
            if not short.any():
                break
            t = np.where(short, t / 2.0, t)
            new = objective(theta + t[:, None] * step)
        theta = theta + t[:, None] * step
        loss, grad, conductance = new
    finite = np.isfinite(theta).all(axis=1)
    return theta - theta.mean(axis=1, keepdims=True), settled & finite


def to_ratings(logits: np.ndarray) -> np.ndarray:
    """Logits on the Elo-like scale: 400/ln 10 per logit, their mean at 1000.

    Works on one fit (1-D) or on bootstrap rounds (2-D, one row per round, each centred on its own).
    """
    logits = np.asarray(logits, dtype=np.float64)
    centre = logits.mean(axis=-1, keepdims=True) if logits.shape[-1] else 0.0
    return RATING_MEAN + LOGIT_TO_RATING * (logits - centre)
