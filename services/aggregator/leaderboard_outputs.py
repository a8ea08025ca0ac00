"""What a board's refit publishes, pure: its `model-leaderboard` body and the alarm's transitions.

- The body is the core's `leaderboard_body` (ratings, intervals, rank, approval, fragility) of the
  board's counts, with a generator seeded per board, so the same counts always give the same body.
  Its content hash leaves `computed_at` out: the worker publishes a body only when the hash changed,
  and its event_id is uuid5(board, hash), so a replay repeats it.
- The alarm: `check_regressions` on each refit, per model its newest two versions in release
  order. Each (model, previous version, new version, metric) is raised or not; only transitions are
  published: raised (it was not), and cleared (it was raised, and the evidence no longer says so,
  or a newer version took the comparison's place). Event ids are uuid5 of the alert and its
  transition count, so a replay of the same refit repeats them.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from services.aggregator.leaderboard import (
    ApprovalCounts,
    Leaderboard,
    VersionKey,
    build_leaderboard,
    leaderboard_body,
    order_fragility,
)
from services.aggregator.leaderboard_counts import BoardKey
from services.aggregator.regression_alarm import (
    CLEARED,
    RAISED,
    MetricReading,
    RegressionAlert,
    RegressionCheck,
    check_regressions,
    reading,
)
from shared.events import AlertReading, ModelAlert, ModelLeaderboard

_NAMESPACE = uuid.UUID("9d3c51e2-5f7a-4d0b-8a13-0c4b2a6e7f13")
AlertId = tuple[str, str, str, str]  # model, previous_version, new_version, metric


@dataclass(frozen=True, kw_only=True)
class BoardRules:
    """How a board is computed (from the settings)."""

    bootstrap_rounds: int
    min_battles: int
    alarm_min_votes: int
    fragility_refit_budget: int
    fragility_max_pairs: int


@dataclass(frozen=True)
class AlertState:
    is_raised: bool
    transitions: int


@dataclass(frozen=True, eq=False)
class BoardResult:
    """A refit: the body to store and publish, its content hash, the board, and the alarm's checks."""

    body: dict[str, Any]
    content_hash: str
    board: Leaderboard
    checks: tuple[RegressionCheck, ...]


def board_seed(board: BoardKey) -> int:
    """The bootstrap's seed of one board: the same board and counts give the same intervals."""
    return int.from_bytes(hashlib.blake2b(board.topic_key.encode(), digest_size=8).digest(), "big")


def _content_hash(body: Mapping[str, Any]) -> str:
    content = {k: v for k, v in body.items() if k != "computed_at"}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _message(board: BoardKey, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    content_hash = _content_hash(body)
    event_id = uuid.uuid5(_NAMESPACE, f"{board.topic_key}:{content_hash}")
    return {"event_id": str(event_id), "schema_version": 1, **body}, content_hash


def compute_board(
    board: BoardKey,
    battles: Mapping[tuple[VersionKey, VersionKey], int],
    approvals: Mapping[VersionKey, ApprovalCounts],
    release_order: Mapping[str, list[str]],
    rules: BoardRules,
    now: datetime,
) -> BoardResult:
    """Fit, intervals, fragility and the alarm's checks of one board (CPU: run it off the event loop)."""
    fitted = build_leaderboard(
        battles,
        approvals,
        min_battles=rules.min_battles,
        rounds=rules.bootstrap_rounds,
        rng=np.random.default_rng(board_seed(board)),
    )
    fragility = order_fragility(
        fitted, exact_refit_budget=rules.fragility_refit_budget, max_pairs=rules.fragility_max_pairs
    )
    body, content_hash = _message(
        board, leaderboard_body(fitted, fragility, app_id=board.app_id, domain=board.domain_or_none, computed_at=now)
    )
    # The contract checks the shape; what is stored, served and published is its JSON form.
    body = ModelLeaderboard.model_validate(body).model_dump(mode="json")
    checks = check_regressions(
        fitted, release_order, app_id=board.app_id, domain=board.domain_or_none, min_votes=rules.alarm_min_votes
    )
    return BoardResult(body, content_hash, fitted, checks)


def empty_body(board: BoardKey, rules: BoardRules, now: datetime, reason: str | None = None) -> dict[str, Any]:
    """The body of a board with nothing counted yet (the route's answer before any refit); `reason` overrides."""
    fitted = build_leaderboard(
        {}, {}, min_battles=rules.min_battles, rounds=rules.bootstrap_rounds, rng=np.random.default_rng(0)
    )
    body = leaderboard_body(fitted, (), app_id=board.app_id, domain=board.domain_or_none, computed_at=now)
    if reason is not None:
        body["reason"] = reason
    return _message(board, body)[0]


def _reading(value: MetricReading | None) -> AlertReading | None:
    if value is None:
        return None
    return AlertReading(
        estimate=round(value.estimate, 4),
        ci_low=round(value.ci_low, 4),
        ci_high=round(value.ci_high, 4),
        evidence=value.evidence,
    )


def _alert(
    board: BoardKey, alert_id: AlertId, status: str, readings: tuple, transitions: int, now: datetime
) -> ModelAlert:
    model, previous_version, new_version, metric = alert_id
    name = json.dumps([board.app_id, board.domain, *alert_id, transitions])
    return ModelAlert(
        event_id=uuid.uuid5(_NAMESPACE, name),
        app_id=board.app_id,
        domain=board.domain_or_none,
        model=model,
        previous_version=previous_version,
        new_version=new_version,
        metric=metric,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        previous=_reading(readings[0]),
        new=_reading(readings[1]),
        detected_at=now,
    )


def _current(result: BoardResult, alert_id: AlertId, min_votes: int) -> tuple:
    """Both versions' readings on the alert's metric now (None where a version has too little evidence)."""
    model, previous_version, new_version, metric = alert_id
    by_version = {s.version: s for s in result.board.standings}
    found = (by_version.get(VersionKey(model, previous_version)), by_version.get(VersionKey(model, new_version)))
    return tuple(reading(s, metric, min_votes) if s is not None else None for s in found)


def alert_transitions(
    board: BoardKey, result: BoardResult, stored: Mapping[AlertId, AlertState], min_votes: int, now: datetime
) -> tuple[list[ModelAlert], dict[AlertId, AlertState]]:
    """The alarm's events of this refit (raised, cleared) and the states to store for them."""
    raised: dict[AlertId, RegressionAlert] = {
        (c.model, c.previous_version, c.new_version, a.metric): a for c in result.checks for a in c.alerts
    }
    events: list[ModelAlert] = []
    states: dict[AlertId, AlertState] = {}
    for alert_id, alert in sorted(raised.items()):
        held = stored.get(alert_id)
        if held is None or not held.is_raised:
            count = (held.transitions if held else 0) + 1
            states[alert_id] = AlertState(True, count)
            events.append(_alert(board, alert_id, RAISED, (alert.previous, alert.new), count, now))
    for alert_id, held in sorted(stored.items()):
        if held.is_raised and alert_id not in raised:
            states[alert_id] = AlertState(False, held.transitions + 1)
            readings = _current(result, alert_id, min_votes)
            events.append(_alert(board, alert_id, CLEARED, readings, held.transitions + 1, now))
    return events, states
