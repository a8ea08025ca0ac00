"""The model leaderboard, pure: Bradley-Terry ratings with bootstrap intervals, Arena's rank, approval.

Input is counts, never battle lists: battles per (winner, loser) version, as the live path keeps
them in PostgreSQL, and thumbs up/down per version (effective votes). Rules:

- A version is listed when it has a battle or a vote. It is rated when it has at least
  `min_battles` battles (with anyone) and belongs to the rated group: the largest (by battles)
  weakly connected group of such versions in the graph "played each other". Versions of another
  group cannot be put on the same scale (their relative strength is not identified by any battle),
  so they are listed unrated (`unrated_reason` "not_connected"), like versions with too few
  battles ("too_few_battles"). Battles against unrated versions do not enter the fit; the listed
  wins/losses/battles count them all.
- Ratings: the Bradley-Terry fit of `bradley_terry.py` over the rated group (the MLE, or the MAP
  under a weak prior when the MLE does not exist; `Leaderboard.is_mle` says which), on the
  Elo-like scale: 400/ln 10 per logit, the mean of the rated versions at 1000.
- Intervals: percentiles (2.5/97.5 for level 0.95) of `rounds` bootstrap fits, each round centred
  like the point fit. Arena's rank: 1 + the number of versions whose lower bound is above this
  one's upper bound.
- Approval: up / (up + down), with the equal-tailed interval of Beta(1 + up, 1 + down).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import scipy  # its submodules load on first use (a refit), not when the aggregator starts

from services.aggregator import bradley_terry as bt
from services.aggregator.fragility import adjacent_swap_costs

TOO_FEW_BATTLES = "too_few_battles"
NOT_CONNECTED = "not_connected"


@dataclass(frozen=True, order=True)
class VersionKey:
    """One contender: a model and one of its versions."""

    model: str
    model_version: str


@dataclass(frozen=True)
class ApprovalCounts:
    """Effective thumbs on the answers of one version."""

    up: int = 0
    down: int = 0


@dataclass(frozen=True)
class Approval:
    """Approval rate (None without votes) and its Beta(1 + up, 1 + down) equal-tailed interval."""

    up: int
    down: int
    rate: float | None
    ci_low: float
    ci_high: float

    @property
    def votes(self) -> int:
        return self.up + self.down


@dataclass(frozen=True)
class Standing:
    """One listed version: its counts, and its rating, interval and rank when it is rated."""

    version: VersionKey
    wins: int
    losses: int
    approval: Approval
    rating: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    rank: int | None = None
    unrated_reason: str | None = None

    @property
    def battles(self) -> int:
        return self.wins + self.losses

    @property
    def is_rated(self) -> bool:
        return self.rating is not None


@dataclass(frozen=True, eq=False)
class RatedGroup:
    """The rated versions (index order of `counts`), their battle counts, the point fit and its prior."""

    versions: tuple[VersionKey, ...]
    counts: bt.PairCounts
    strengths: bt.Strengths
    prior_sd_logit: float


@dataclass(frozen=True)
class Fragility:
    """Fewest battles whose removal would put `lower` at or above `upper` (None: no swap found).

    `removed`: one such removal, as (winner, loser, battles) per cell.
    """

    upper: VersionKey
    lower: VersionKey
    battles_to_swap: int | None
    is_exact: bool
    removed: tuple[tuple[VersionKey, VersionKey, int], ...] = ()


@dataclass(frozen=True)
class Leaderboard:
    """Rated versions by rating (highest first), then the unrated by battles; the total battles."""

    standings: tuple[Standing, ...]
    battles: int
    bootstrap_rounds: int
    min_battles: int
    is_mle: bool
    rated: RatedGroup | None

    @property
    def ranked(self) -> tuple[Standing, ...]:
        return tuple(s for s in self.standings if s.is_rated)


def approval(up: int, down: int, *, level: float = 0.95) -> Approval:
    """The approval rate and the equal-tailed `level` interval of Beta(1 + up, 1 + down)."""
    tail = (1.0 - level) / 2.0
    low, high = scipy.stats.beta.ppf([tail, 1.0 - tail], 1 + up, 1 + down)
    rate = up / (up + down) if up + down else None
    return Approval(up=up, down=down, rate=rate, ci_low=float(low), ci_high=float(high))


def arena_ranks(ci_low: np.ndarray, ci_high: np.ndarray) -> np.ndarray:
    """1 + the number of versions whose lower bound is strictly above this one's upper bound."""
    return 1 + (ci_low[None, :] > ci_high[:, None]).sum(axis=1)


def _win_matrix(battle_counts: Mapping[tuple[VersionKey, VersionKey], int], versions: list[VersionKey]) -> np.ndarray:
    index = {v: i for i, v in enumerate(versions)}
    wins = np.zeros((len(versions), len(versions)))
    for (winner, loser), count in battle_counts.items():
        if count < 0:
            raise ValueError("battle counts must not be negative")
        if winner != loser:
            wins[index[winner], index[loser]] += count
    return wins


def _rated_indices(wins: np.ndarray, min_battles: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the rated group, and of the versions with enough battles outside it."""
    played = wins + wins.T
    eligible = np.flatnonzero(played.sum(axis=1) >= max(min_battles, 1))
    if eligible.size == 0:
        return eligible, eligible
    among = played[np.ix_(eligible, eligible)]
    n_groups, labels = scipy.sparse.csgraph.connected_components(scipy.sparse.coo_matrix(among > 0), directed=False)
    battles_in = np.bincount(labels, among.sum(axis=1), n_groups)
    # The largest group by battles; ties go to the group with more versions, then the first.
    sizes = np.bincount(labels, minlength=n_groups)
    best = max(range(n_groups), key=lambda g: (battles_in[g], sizes[g], -g))
    if sizes[best] < 2:
        # Enough battles, but none against another version with enough: nothing to rate against.
        return eligible[:0], eligible
    return eligible[labels == best], eligible[labels != best]


def _fit_group(
    wins: np.ndarray,
    rated: np.ndarray,
    versions: list[VersionKey],
    *,
    rounds: int,
    rng: np.random.Generator,
    level: float,
    prior_sd_logit: float,
) -> tuple[RatedGroup, np.ndarray, np.ndarray, np.ndarray]:
    """The point fit and bootstrap of the rated group: the group, ratings, lower and upper bounds."""
    counts = bt.pair_counts(wins[np.ix_(rated, rated)])
    point = bt.fit(counts, prior_sd_logit=prior_sd_logit)
    samples = bt.bootstrap(counts, point, rounds=rounds, rng=rng, prior_sd_logit=prior_sd_logit)
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(bt.to_ratings(samples), [tail, 100.0 - tail], axis=0)
    group = RatedGroup(tuple(versions[i] for i in rated), counts, point, prior_sd_logit)
    return group, bt.to_ratings(point.logits), low, high


def _placings(
    wins: np.ndarray,
    versions: list[VersionKey],
    min_battles: int,
    *,
    rounds: int,
    rng: np.random.Generator,
    level: float,
    prior_sd_logit: float,
) -> tuple[RatedGroup | None, dict[int, dict[str, Any]]]:
    """The rated group's fit, and per version index its rating fields or why it has none."""
    rated, disconnected = _rated_indices(wins, min_battles)
    placings: dict[int, dict[str, Any]] = {int(i): {"unrated_reason": NOT_CONNECTED} for i in disconnected}
    if rated.size == 0:
        return None, placings
    group, ratings, low, high = _fit_group(
        wins, rated, versions, rounds=rounds, rng=rng, level=level, prior_sd_logit=prior_sd_logit
    )
    ranks = arena_ranks(low, high)
    for k, i in enumerate(rated):
        placings[int(i)] = {
            "rating": float(ratings[k]),
            "ci_low": float(low[k]),
            "ci_high": float(high[k]),
            "rank": int(ranks[k]),
        }
    return group, placings


def _votes(approvals: Mapping[VersionKey, ApprovalCounts], version: VersionKey) -> tuple[int, int]:
    votes = approvals.get(version, ApprovalCounts())
    return votes.up, votes.down


def _listing_order(s: Standing) -> tuple:
    return (not s.is_rated, -s.rating if s.rating is not None else 0.0, -s.battles, s.version)


def build_leaderboard(
    battle_counts: Mapping[tuple[VersionKey, VersionKey], int],
    approvals: Mapping[VersionKey, ApprovalCounts],
    *,
    min_battles: int,
    rounds: int,
    rng: np.random.Generator,
    level: float = 0.95,
    prior_sd_logit: float = bt.DEFAULT_PRIOR_SD_LOGIT,
) -> Leaderboard:
    """The leaderboard of one app (or app and domain) from its battle and vote counts.

    `battle_counts[(winner, loser)]` is how many battles `winner` won against `loser`; `rng` is
    a seeded generator (the same counts and seed give the same intervals).
    """
    if rounds < 1:
        raise ValueError("at least one bootstrap round is needed for the intervals and the rank")
    versions = sorted({v for pair in battle_counts for v in pair} | set(approvals))
    wins = _win_matrix(battle_counts, versions)
    group, placings = _placings(
        wins, versions, min_battles, rounds=rounds, rng=rng, level=level, prior_sd_logit=prior_sd_logit
    )
    standings = [
        Standing(
            version=version,
            wins=int(wins[i].sum()),
            losses=int(wins[:, i].sum()),
            approval=approval(*_votes(approvals, version), level=level),
            **placings.get(i, {"unrated_reason": TOO_FEW_BATTLES}),
        )
        for i, version in enumerate(versions)
    ]
    return Leaderboard(
        standings=tuple(sorted(standings, key=_listing_order)),
        battles=int(wins.sum()),
        bootstrap_rounds=rounds,
        min_battles=min_battles,
        is_mle=group.strengths.is_mle if group else True,
        rated=group,
    )


def order_fragility(
    board: Leaderboard,
    *,
    exact_refit_budget: int = 200,
    max_pairs: int | None = None,
) -> tuple[Fragility, ...]:
    """Fragility of each two neighbours in the ranking, from the top (at most `max_pairs` of them).

    The method, and when the count is exact rather than an upper bound: `fragility.py`.
    """
    if board.rated is None:
        return ()
    index = {v: i for i, v in enumerate(board.rated.versions)}
    order = [index[s.version] for s in board.ranked]
    if max_pairs is not None:
        order = order[: max_pairs + 1]
    costs = adjacent_swap_costs(
        board.rated.counts,
        board.rated.strengths,
        order,
        prior_sd_logit=board.rated.prior_sd_logit,
        exact_refit_budget=exact_refit_budget,
    )
    v = board.rated.versions
    return tuple(
        Fragility(v[c.upper], v[c.lower], c.battles, c.is_exact, tuple((v[w], v[lo], k) for w, lo, k in c.removed))
        for c in costs
    )


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _model_row(s: Standing) -> dict[str, Any]:
    return {
        "model": s.version.model,
        "model_version": s.version.model_version,
        "rating": _rounded(s.rating, 2),
        "ci_low": _rounded(s.ci_low, 2),
        "ci_high": _rounded(s.ci_high, 2),
        "rank": s.rank,
        "wins": s.wins,
        "losses": s.losses,
        "battles": s.battles,
        "approval_rate": _rounded(s.approval.rate, 4),
        "approval_ci_low": _rounded(s.approval.ci_low, 4) if s.approval.votes else None,
        "approval_ci_high": _rounded(s.approval.ci_high, 4) if s.approval.votes else None,
        "votes": s.approval.votes,
        "unrated_reason": s.unrated_reason,
    }


def _version_ref(version: VersionKey) -> dict[str, str]:
    return {"model": version.model, "model_version": version.model_version}


def empty_reason(board: Leaderboard, *, domain: str | None) -> str | None:
    """Why nothing is ranked (None when something is)."""
    if board.ranked:
        return None
    where = f"domain {domain!r} of this app" if domain is not None else "this app"
    if not board.standings:
        return f"no battles or votes in {where} yet"
    if board.battles == 0:
        return f"no battles in {where} yet (a battle: a live pair of answers from two different model versions)"
    return f"no model version in {where} has {board.min_battles} battles yet"


def leaderboard_body(
    board: Leaderboard,
    fragility: tuple[Fragility, ...],
    *,
    app_id: str,
    domain: str | None,
    computed_at: datetime,
) -> dict[str, Any]:
    """The JSON body of GET /v1/leaderboard (and the `model-leaderboard` value), as ARCHITECTURE.md says.

    Beyond the contract: `votes` and `unrated_reason` per model; `is_exact` and `removed` (one
    removal that swaps the two) per fragility row; `is_mle`, `min_battles`; `reason` when no
    version is ranked. `upper` and `lower` are {"model", "model_version"} objects.
    """
    body: dict[str, Any] = {
        "app_id": app_id,
        "domain": domain,
        "computed_at": computed_at.isoformat(),
        "battles": board.battles,
        "bootstrap_rounds": board.bootstrap_rounds,
        "min_battles": board.min_battles,
        "is_mle": board.is_mle,
        "models": [_model_row(s) for s in board.standings],
        "fragility": [
            {
                "upper": _version_ref(f.upper),
                "lower": _version_ref(f.lower),
                "battles_to_swap": f.battles_to_swap,
                "is_exact": f.is_exact,
                "removed": [
                    {"winner": _version_ref(w), "loser": _version_ref(lo), "battles": k} for w, lo, k in f.removed
                ],
            }
            for f in fragility
        ],
    }
    reason = empty_reason(board, domain=domain)
    if reason is not None:
        body["reason"] = reason
    return body
