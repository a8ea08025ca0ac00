"""The annotation queue's pure rules: lease checks, verdict validation, combining, the expert vote, the task view."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.feedback import queue_rules as rules
from services.feedback.queue_rules import TaskState, Verdict
from shared.errors import ConflictError, ContractError, ForbiddenError
from shared.events import AnnotationRequest

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def request(**overrides: Any) -> AnnotationRequest:
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "app_id": "helpdesk",
        "task_id": "task-1",
        "pair_id": "pair-1",
        "prompt_key": "pk-1",
        "kind": "compare",
        "domain": "medical",
        "priority": 1.5,
        "prompt": [{"role": "user", "content": "Mail me at jane.doe@example.com about insulin"}],
        "candidates": {
            "A": {"interaction_id": "int-a", "content": "Answer A", "model": "m", "model_version": "1"},
            "B": {"interaction_id": "int-b", "content": "Call +1 415 555 2671", "model": "m", "model_version": "2"},
        },
        "reason": "split_votes",
        "occurred_at": NOW.isoformat(),
        "updated_at": NOW.isoformat(),
    }
    body.update(overrides)
    return AnnotationRequest.model_validate(body)


def state(**overrides: Any) -> TaskState:
    values: dict[str, Any] = {
        "task_id": "task-1",
        "domain": "medical",
        "kind": "compare",
        "status": "open",
        "leases": {"alice": NOW + timedelta(minutes=5)},
        "reviewed_by": (),
        "now": NOW,
    }
    values.update(overrides)
    return TaskState(**values)


# --- lease checks ---------------------------------------------------------------------------------


def test_live_lease_of_the_caller_passes() -> None:
    assert rules.check_lease(state(), "alice", ["medical"]) == NOW + timedelta(minutes=5)


@pytest.mark.parametrize(
    ("overrides", "annotator", "domains", "error"),
    [
        ({}, "alice", ["legal"], ForbiddenError),
        ({}, "bob", ["medical"], ForbiddenError),
        ({"leases": {"alice": NOW - timedelta(seconds=1)}}, "alice", ["medical"], ConflictError),
        ({"leases": {}}, "alice", ["medical"], ConflictError),
        ({"reviewed_by": ("alice",), "leases": {}}, "alice", ["medical"], ConflictError),
        ({"status": "completed"}, "alice", ["medical"], ConflictError),
    ],
    ids=["other-domain", "foreign-lease", "expired", "no-lease", "already-judged", "closed"],
)
def test_lease_check_refuses(overrides: dict, annotator: str, domains: list[str], error: type[Exception]) -> None:
    with pytest.raises(error):
        rules.check_lease(state(**overrides), annotator, domains)


def test_expired_lease_says_expired() -> None:
    with pytest.raises(ConflictError, match="expired"):
        rules.check_lease(state(leases={"alice": NOW}), "alice", ["medical"])


# --- verdict validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "verdict", "rewrite"),
    [
        ("compare", "A", None),
        ("compare", "B", None),
        ("compare", "tie", None),
        ("compare", "both_bad", None),
        ("compare", "both_bad", "better"),
        ("rewrite", "A", None),
        ("rewrite", "both_bad", "better"),
    ],
)
def test_verdicts_that_fit(kind: str, verdict: str, rewrite: str | None) -> None:
    rules.validate_verdict(kind, verdict, rewrite)


@pytest.mark.parametrize(
    ("kind", "verdict", "rewrite", "field"),
    [
        ("rewrite", "B", None, "verdict"),
        ("rewrite", "tie", None, "verdict"),
        ("rewrite", "both_bad", None, "rewrite"),
        ("rewrite", "A", "better", "rewrite"),
        ("compare", "A", "better", "rewrite"),
    ],
)
def test_verdicts_that_do_not_fit(kind: str, verdict: str, rewrite: str | None, field: str) -> None:
    with pytest.raises(ContractError) as exc:
        rules.validate_verdict(kind, verdict, rewrite)
    assert exc.value.errors[0]["loc"] == ["body", field]


# --- combining ------------------------------------------------------------------------------------


def verdicts(*given: str) -> list[Verdict]:
    return [Verdict(annotator_id=f"r{i}", verdict=v) for i, v in enumerate(given)]


def test_one_reviewer_decides_alone() -> None:
    outcome = rules.combine_verdicts(verdicts("B"), 1, 3)
    assert (outcome.status, outcome.verdict, outcome.agreement, outcome.decided_by) == ("completed", "B", 1.0, "r0")


def test_task_waits_for_enough_verdicts() -> None:
    assert rules.combine_verdicts(verdicts("A"), 2, 3).status == "open"


def test_agreeing_pair_completes() -> None:
    outcome = rules.combine_verdicts(verdicts("A", "A"), 2, 3)
    assert (outcome.status, outcome.verdict, outcome.reviewers) == ("completed", "A", ("r0", "r1"))


def test_split_pair_asks_one_more_reviewer() -> None:
    outcome = rules.combine_verdicts(verdicts("A", "B"), 2, 3)
    assert (outcome.status, outcome.reviewers_needed, outcome.is_escalated) == ("open", 3, True)


def test_third_reviewer_breaks_the_tie() -> None:
    outcome = rules.combine_verdicts(verdicts("A", "B", "B"), 3, 3)
    assert (outcome.status, outcome.verdict, outcome.decided_by) == ("completed", "B", "r1")
    assert outcome.agreement == pytest.approx(2 / 3)


def test_no_majority_at_the_cap_is_contested() -> None:
    outcome = rules.combine_verdicts(verdicts("A", "B", "tie"), 3, 3)
    assert (outcome.status, outcome.verdict) == ("contested", None)
    assert outcome.to_result() == {
        "verdict": None,
        "agreement": None,
        "decided_by": None,
        "reviewers": ["r0", "r1", "r2"],
    }


def test_cap_never_below_the_domain_count() -> None:
    assert rules.combine_verdicts(verdicts("A", "B", "A", "B"), 4, 2).status == "contested"
    assert rules.combine_verdicts(verdicts("A", "B"), 2, 1).status == "contested"


def test_rewrite_and_comment_come_from_the_majority_side() -> None:
    given = [
        Verdict(annotator_id="r0", verdict="A", rewrite=None, comment="minority"),
        Verdict(annotator_id="r1", verdict="both_bad", rewrite="first rewrite", comment=None),
        Verdict(annotator_id="r2", verdict="both_bad", rewrite="second rewrite", comment="majority comment"),
    ]
    outcome = rules.combine_verdicts(given, 3, 3)
    assert (outcome.rewrite, outcome.comment) == ("first rewrite", "majority comment")


# --- the expert vote ------------------------------------------------------------------------------


@st.composite
def panels(draw: st.DrawFn) -> tuple[list[Verdict], int, int]:
    """Verdicts of distinct annotators (oldest first), the domain's reviewer count and the cap."""
    verdicts = draw(
        st.lists(
            st.builds(
                Verdict,
                annotator_id=st.sampled_from([f"a{i}" for i in range(8)]),
                verdict=st.sampled_from(rules.VERDICTS),
                rewrite=st.none() | st.just("Better."),
                comment=st.none() | st.just("Why."),
            ),
            max_size=8,
            unique_by=lambda v: v.annotator_id,
        )
    )
    return verdicts, draw(st.integers(1, 4)), draw(st.integers(1, 5))


@given(panels())
def test_combining_verdicts_follows_the_majority_rule(panel: tuple[list[Verdict], int, int]) -> None:
    """Open until N verdicts; then a strict majority completes, otherwise one more reviewer up to the cap, then
    contested. A completed task names the majority verdict, its share, every reviewer and the first of its side."""
    verdicts, needed, cap = panel
    outcome = rules.combine_verdicts(verdicts, needed, cap)
    counts = Counter(v.verdict for v in verdicts)
    top, top_count = counts.most_common(1)[0] if verdicts else (None, 0)
    if len(verdicts) < needed:
        assert (outcome.status, outcome.reviewers_needed, outcome.is_escalated) == ("open", needed, False)
    elif top_count * 2 > len(verdicts):
        side = [v for v in verdicts if v.verdict == top]
        assert (outcome.status, outcome.verdict) == ("completed", top)
        assert outcome.agreement == pytest.approx(top_count / len(verdicts)) and outcome.agreement > 0.5
        assert outcome.reviewers == tuple(v.annotator_id for v in verdicts)
        assert outcome.decided_by == side[0].annotator_id
        assert outcome.rewrite in {v.rewrite for v in side} and outcome.comment in {v.comment for v in side}
    elif len(verdicts) < max(cap, needed):
        assert (outcome.status, outcome.reviewers_needed, outcome.is_escalated) == ("open", len(verdicts) + 1, True)
    else:
        assert (outcome.status, outcome.verdict) == ("contested", None)
    assert outcome.status != "completed" or outcome.to_result() is not None


@given(panels(), st.randoms(use_true_random=False))
def test_the_order_of_verdicts_changes_who_decided_never_what(
    panel: tuple[list[Verdict], int, int], rnd: random.Random
) -> None:
    verdicts, needed, cap = panel
    shuffled = list(verdicts)
    rnd.shuffle(shuffled)
    first, second = rules.combine_verdicts(verdicts, needed, cap), rules.combine_verdicts(shuffled, needed, cap)
    assert (first.status, first.verdict, first.reviewers_needed) == (
        second.status,
        second.verdict,
        second.reviewers_needed,
    )
    assert first.agreement == second.agreement


def test_expert_vote_is_deterministic_and_complete() -> None:
    outcome = rules.combine_verdicts(
        [Verdict(annotator_id="ann", verdict="B"), Verdict(annotator_id="bea", verdict="B")], 2, 3
    )
    vote = rules.expert_vote(request(), outcome, NOW)
    again = rules.expert_vote(request(), outcome, NOW + timedelta(hours=1))
    assert vote.event_id == again.event_id == uuid.uuid5(rules.VERDICT_EVENT_NAMESPACE, "task-1verdict")
    assert (vote.source, vote.kind, vote.verdict, vote.annotator_id) == ("expert", "verdict", "B", "ann")
    assert (vote.interaction_id, vote.a_interaction_id, vote.b_interaction_id) == ("int-a", "int-a", "int-b")
    assert (vote.reviewers, vote.agreement, vote.app_id, vote.occurred_at) == (["ann", "bea"], 1.0, "helpdesk", NOW)


def test_rewrite_task_vote_has_no_b() -> None:
    lone = request(kind="rewrite", candidates={"A": request().candidates["A"].model_dump()})
    outcome = rules.combine_verdicts([Verdict(annotator_id="ann", verdict="both_bad", rewrite="better answer")], 1, 3)
    vote = rules.expert_vote(lone, outcome, NOW)
    assert (vote.b_interaction_id, vote.rewrite) == (None, "better answer")


def test_task_view_redacts_prompt_and_candidates() -> None:
    view = rules.task_view(request(), NOW, 1.5)
    assert "jane.doe@example.com" not in view["prompt"][0]["content"]
    assert "[EMAIL]" in view["prompt"][0]["content"]
    assert "555" not in view["candidates"]["B"]["content"]
    assert set(view) >= {"task_id", "kind", "domain", "prompt", "candidates", "lease_expires_at"}
    assert view["candidates"]["A"] == {
        "content": "Answer A",
        "interaction_id": "int-a",
        "model": "m",
        "model_version": "1",
    }


@pytest.mark.parametrize(
    ("kind", "shown_left"), [("compare", "A"), ("compare", "B"), ("rewrite", "A"), ("rewrite", None)]
)
def test_shown_left_that_fits(kind: str, shown_left: str | None) -> None:
    rules.validate_verdict(kind, "A", None, shown_left)


def test_a_rewrite_task_was_never_shown_with_b_on_the_left() -> None:
    with pytest.raises(ContractError) as caught:
        rules.validate_verdict("rewrite", "A", None, "B")
    assert caught.value.errors[0]["loc"] == ["body", "shown_left"]
