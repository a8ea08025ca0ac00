"""What a board's refit publishes: a deterministic body (same counts, same body and event id) and alarm transitions."""

from __future__ import annotations

from datetime import timedelta

from services.aggregator.leaderboard import ApprovalCounts, VersionKey
from services.aggregator.leaderboard_counts import BoardKey
from services.aggregator.leaderboard_outputs import (
    AlertState,
    BoardRules,
    alert_transitions,
    compute_board,
    empty_body,
)
from services.aggregator.regression_alarm import APPROVAL, RATING
from shared.events import ModelAlert, ModelLeaderboard
from tests.strategies import T0

RULES = BoardRules(
    bootstrap_rounds=100, min_battles=10, alarm_min_votes=20, fragility_refit_budget=50, fragility_max_pairs=5
)
OLD, NEW, MINI = VersionKey("chat", "v1"), VersionKey("chat", "v2"), VersionKey("mini", "m1")
BOARD = BoardKey("helpdesk")
BATTLES = {(OLD, MINI): 40, (MINI, OLD): 10, (NEW, MINI): 25, (MINI, NEW): 25, (OLD, NEW): 30, (NEW, OLD): 12}
ORDER = {"chat": ["v1", "v2"], "mini": ["m1"]}


def board(battles=BATTLES, approvals=None, order=ORDER, key=BOARD, now=T0):
    return compute_board(key, battles, approvals or {}, order, RULES, now)


def test_the_same_counts_give_the_same_body_and_event_id_whatever_the_time() -> None:
    first, later = board(), board(now=T0 + timedelta(minutes=5))
    assert first.content_hash == later.content_hash
    assert {k: v for k, v in first.body.items() if k != "computed_at"} == {
        k: v for k, v in later.body.items() if k != "computed_at"
    }
    assert first.body["computed_at"] != later.body["computed_at"]
    ModelLeaderboard.model_validate(first.body)
    assert [m["model_version"] for m in first.body["models"]] == ["v1", "v2", "m1"]
    assert first.body["battles"] == sum(BATTLES.values()) and first.body["bootstrap_rounds"] == 100


def test_another_count_or_another_board_gives_another_body() -> None:
    more = dict(BATTLES)
    more[(OLD, MINI)] += 1
    assert board(more).content_hash != board().content_hash
    domain = board(key=BoardKey("helpdesk", "medical"))
    assert domain.body["domain"] == "medical" and domain.body["event_id"] != board().body["event_id"]


def test_an_empty_board_says_why_and_keeps_the_contract_shape() -> None:
    body = empty_body(BoardKey("helpdesk", "legal"), RULES, T0)
    assert body["models"] == [] and body["fragility"] == [] and "domain 'legal'" in body["reason"]
    ModelLeaderboard.model_validate(body)
    assert empty_body(BOARD, RULES, T0, reason="being computed")["reason"] == "being computed"


WORSE = {OLD: ApprovalCounts(80, 20), NEW: ApprovalCounts(20, 80)}
SAME = {OLD: ApprovalCounts(50, 50), NEW: ApprovalCounts(50, 50)}


def test_a_worse_new_version_raises_once_and_clears_when_the_evidence_no_longer_says_so() -> None:
    raised, states = alert_transitions(BOARD, board(approvals=WORSE), {}, RULES.alarm_min_votes, T0)
    (alert,) = [a for a in raised if a.metric == APPROVAL]
    assert (alert.status, alert.model, alert.previous_version, alert.new_version) == ("raised", "chat", "v1", "v2")
    assert alert.new.ci_high < alert.previous.ci_low and alert.previous.evidence == 100
    ModelAlert.model_validate_json(alert.model_dump_json())
    held = {k: v for k, v in states.items()}
    again, _ = alert_transitions(BOARD, board(approvals=WORSE), held, RULES.alarm_min_votes, T0)
    assert again == []  # only transitions are published
    cleared, states = alert_transitions(BOARD, board(approvals=SAME), held, RULES.alarm_min_votes, T0)
    (clear,) = [a for a in cleared if a.metric == APPROVAL]
    assert clear.status == "cleared" and clear.previous.estimate == clear.new.estimate == 0.5
    assert states[("chat", "v1", "v2", APPROVAL)] == AlertState(False, 2)
    assert clear.event_id != alert.event_id


def test_the_same_refit_repeats_the_same_event_ids() -> None:
    first, _ = alert_transitions(BOARD, board(approvals=WORSE), {}, RULES.alarm_min_votes, T0)
    second, _ = alert_transitions(BOARD, board(approvals=WORSE), {}, RULES.alarm_min_votes, T0)
    assert [a.event_id for a in first] == [a.event_id for a in second] and first


def test_a_better_new_version_raises_nothing_and_a_newer_version_clears_the_old_comparison() -> None:
    better = {OLD: WORSE[NEW], NEW: WORSE[OLD]}
    assert alert_transitions(BOARD, board({}, approvals=better), {}, RULES.alarm_min_votes, T0)[0] == []
    held = {("chat", "v1", "v2", APPROVAL): AlertState(True, 1)}
    v3 = VersionKey("chat", "v3")
    approvals = {**WORSE, v3: ApprovalCounts(90, 10)}
    events, states = alert_transitions(
        BOARD, board({}, approvals, order={"chat": ["v1", "v2", "v3"]}), held, RULES.alarm_min_votes, T0
    )
    assert [(e.status, e.previous_version, e.new_version) for e in events] == [("cleared", "v1", "v2")]
    assert states == {("chat", "v1", "v2", APPROVAL): AlertState(False, 2)}


def test_a_rating_alert_carries_both_intervals_in_rating_points() -> None:
    battles = {(OLD, NEW): 120, (NEW, OLD): 20, (OLD, MINI): 60, (MINI, OLD): 40, (NEW, MINI): 20, (MINI, NEW): 80}
    events, _ = alert_transitions(BOARD, board(battles), {}, RULES.alarm_min_votes, T0)
    (alert,) = [a for a in events if a.metric == RATING]
    assert alert.previous.ci_low > alert.new.ci_high and alert.previous.estimate > 1000 > alert.new.estimate
    assert alert.new.evidence == 120 + 20 + 20 + 80
