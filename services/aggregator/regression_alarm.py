"""The regression alarm, pure: is a model's newest version worse than the one it replaced?

Per model, the caller gives its versions in release order (oldest first, e.g. by first seen); the
newest is compared with its predecessor on the leaderboard of one app (or app and domain):

- approval: both versions have at least `min_votes` effective votes, and the new version's Beta
  interval lies wholly below the predecessor's (new ci_high < previous ci_low);
- rating: both versions are rated (enough battles, same rated group), and the new version's
  bootstrap interval lies wholly below the predecessor's.

Each metric that says so is an alert; a check without alerts is a clearance (the evidence does
not, or no longer, say the new version is worse). Overlapping intervals never alert, so a new
version with little evidence stays clear until the evidence is there. The check is a value: the
caller publishes a change of `regression_body` (raised, or cleared after being raised).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.aggregator.leaderboard import Leaderboard, Standing, VersionKey

APPROVAL = "approval"
RATING = "rating"
RAISED = "raised"
CLEARED = "cleared"


@dataclass(frozen=True)
class MetricReading:
    """One version on one metric: the estimate, its interval, and how much evidence it rests on."""

    estimate: float
    ci_low: float
    ci_high: float
    evidence: int


@dataclass(frozen=True)
class RegressionAlert:
    """The new version is below its predecessor on `metric`, with intervals that do not overlap."""

    metric: str
    previous: MetricReading
    new: MetricReading


@dataclass(frozen=True)
class RegressionCheck:
    """The newest version of a model against its predecessor; no alerts means clear."""

    app_id: str
    domain: str | None
    model: str
    previous_version: str
    new_version: str
    alerts: tuple[RegressionAlert, ...]

    @property
    def is_alert(self) -> bool:
        return bool(self.alerts)


def _approval_reading(s: Standing, min_votes: int) -> MetricReading | None:
    if s.approval.votes < max(min_votes, 1) or s.approval.rate is None:
        return None
    return MetricReading(s.approval.rate, s.approval.ci_low, s.approval.ci_high, s.approval.votes)


def _rating_reading(s: Standing) -> MetricReading | None:
    if s.rating is None or s.ci_low is None or s.ci_high is None:
        return None
    return MetricReading(s.rating, s.ci_low, s.ci_high, s.battles)


def _alerts(previous: Standing, new: Standing, min_votes: int) -> tuple[RegressionAlert, ...]:
    readings = {
        APPROVAL: (_approval_reading(previous, min_votes), _approval_reading(new, min_votes)),
        RATING: (_rating_reading(previous), _rating_reading(new)),
    }
    return tuple(
        RegressionAlert(metric, old, fresh)
        for metric, (old, fresh) in readings.items()
        if old is not None and fresh is not None and fresh.ci_high < old.ci_low
    )


def check_regressions(
    board: Leaderboard,
    release_order: Mapping[str, Sequence[str]],
    *,
    app_id: str,
    domain: str | None,
    min_votes: int,
) -> tuple[RegressionCheck, ...]:
    """One check per model with two versions or more in `release_order` (model -> versions, oldest first).

    A version missing from the board has no evidence: its model's check is clear.
    """
    by_version = {s.version: s for s in board.standings}
    checks = []
    for model, versions in sorted(release_order.items()):
        if len(versions) < 2:
            continue
        previous_version, new_version = versions[-2], versions[-1]
        previous = by_version.get(VersionKey(model, previous_version))
        new = by_version.get(VersionKey(model, new_version))
        alerts = _alerts(previous, new, min_votes) if previous is not None and new is not None else ()
        checks.append(RegressionCheck(app_id, domain, model, previous_version, new_version, alerts))
    return tuple(checks)


def _reading_body(reading: MetricReading) -> dict[str, Any]:
    return {
        "estimate": round(reading.estimate, 4),
        "ci_low": round(reading.ci_low, 4),
        "ci_high": round(reading.ci_high, 4),
        "evidence": reading.evidence,
    }


def regression_body(check: RegressionCheck) -> dict[str, Any]:
    """The `model-alerts` value of one check: status raised or cleared, and every alert's evidence.

    `evidence` counts effective votes for approval and battles for rating.
    """
    return {
        "app_id": check.app_id,
        "domain": check.domain,
        "model": check.model,
        "previous_version": check.previous_version,
        "new_version": check.new_version,
        "status": RAISED if check.is_alert else CLEARED,
        "alerts": [
            {"metric": a.metric, "previous": _reading_body(a.previous), "new": _reading_body(a.new)}
            for a in check.alerts
        ],
    }
