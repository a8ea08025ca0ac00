"""The regression alarm: a worse new version raises it (approval or rating), a better or unproven one does not."""

from __future__ import annotations

import json

import numpy as np

from services.aggregator.leaderboard import ApprovalCounts, VersionKey, build_leaderboard
from services.aggregator.regression_alarm import APPROVAL, CLEARED, RAISED, RATING, check_regressions, regression_body

OLD, NEW = VersionKey("chat", "v1"), VersionKey("chat", "v2")
OTHER = VersionKey("other", "x1")


def checks(battles: dict, approvals: dict, release_order: dict | None = None, *, min_votes: int = 10):
    board = build_leaderboard(battles, approvals, min_battles=20, rounds=100, rng=np.random.default_rng(0))
    order = release_order or {"chat": ["v1", "v2"]}
    return check_regressions(board, order, app_id="helpdesk", domain=None, min_votes=min_votes)


def test_worse_approval_with_separate_intervals_raises_an_alert() -> None:
    (check,) = checks({}, {OLD: ApprovalCounts(160, 40), NEW: ApprovalCounts(90, 110)})
    assert check.is_alert and (check.previous_version, check.new_version) == ("v1", "v2")
    (alert,) = check.alerts
    assert alert.metric == APPROVAL
    assert alert.new.ci_high < alert.previous.ci_low
    assert (alert.previous.evidence, alert.new.evidence) == (200, 200)
    assert alert.previous.estimate == 0.8 and alert.new.estimate == 0.45


def test_overlapping_or_better_approval_is_clear() -> None:
    (slightly_worse,) = checks({}, {OLD: ApprovalCounts(62, 38), NEW: ApprovalCounts(58, 42)})
    (better,) = checks({}, {OLD: ApprovalCounts(90, 110), NEW: ApprovalCounts(160, 40)})
    (few_votes,) = checks({}, {OLD: ApprovalCounts(9, 0), NEW: ApprovalCounts(0, 9)})
    assert not slightly_worse.is_alert and not better.is_alert and not few_votes.is_alert


def test_worse_rating_with_separate_intervals_raises_an_alert() -> None:
    battles = {(OLD, NEW): 300, (NEW, OLD): 100, (OTHER, NEW): 150, (NEW, OTHER): 150, (OLD, OTHER): 200}
    battles[(OTHER, OLD)] = 100
    (check,) = checks(battles, {})
    (alert,) = check.alerts
    assert alert.metric == RATING
    assert alert.new.ci_high < alert.previous.ci_low and alert.new.estimate < alert.previous.estimate
    assert alert.previous.evidence == 300 + 100 + 200 + 100 and alert.new.evidence == 300 + 100 + 150 + 150


def test_better_new_version_and_too_few_battles_are_clear() -> None:
    better = {(NEW, OLD): 300, (OLD, NEW): 100}
    (check,) = checks(better, {})
    assert not check.is_alert
    few = {(OLD, NEW): 15, (NEW, OLD): 0}  # 15 battles each: below min_battles, so unrated
    (check,) = checks(few, {})
    assert not check.is_alert


def test_only_the_newest_two_in_release_order_are_compared() -> None:
    v0 = VersionKey("chat", "v0")
    approvals = {v0: ApprovalCounts(190, 10), OLD: ApprovalCounts(100, 100), NEW: ApprovalCounts(100, 100)}
    (check,) = checks({}, approvals, {"chat": ["v0", "v1", "v2"]})
    assert (check.previous_version, check.new_version) == ("v1", "v2") and not check.is_alert
    (reordered,) = checks({}, approvals, {"chat": ["v1", "v2", "v0"]})
    assert reordered.new_version == "v0" and not reordered.is_alert
    (regressed,) = checks({}, approvals, {"chat": ["v0", "v1"]})
    assert regressed.is_alert


def test_a_new_version_without_evidence_and_single_version_models_are_clear() -> None:
    result = checks({}, {OLD: ApprovalCounts(100, 0)}, {"chat": ["v1", "v2"], "other": ["x1"]})
    assert [(c.model, c.is_alert) for c in result] == [("chat", False)]


def test_the_alert_body_carries_both_intervals_and_the_evidence() -> None:
    (raised,) = checks({}, {OLD: ApprovalCounts(160, 40), NEW: ApprovalCounts(90, 110)})
    body = regression_body(raised)
    json.dumps(body)
    assert body["status"] == RAISED and (body["model"], body["new_version"]) == ("chat", "v2")
    (alert,) = body["alerts"]
    assert alert["metric"] == APPROVAL
    assert set(alert["previous"]) == {"estimate", "ci_low", "ci_high", "evidence"}
    assert alert["new"]["ci_high"] < alert["previous"]["ci_low"]
    (clear,) = checks({}, {OLD: ApprovalCounts(60, 40), NEW: ApprovalCounts(61, 39)})
    assert regression_body(clear)["status"] == CLEARED and regression_body(clear)["alerts"] == []
