"""Which votes the aggregator takes in (admission.py): verdicts of its own tasks, comparisons within one group."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.aggregator.admission import IssuedTask, check_verdict, named_interactions, place_vote
from services.aggregator.pairs import task_candidates, task_id
from shared.events import VOTE_ADAPTER, VerdictVote, Vote

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
PK = "pk-1"


def vote(**body: Any) -> Vote:
    base = {"event_id": str(uuid.uuid4()), "app_id": "app", "occurred_at": T0.isoformat(), "user_ref": "u"}
    return VOTE_ADAPTER.validate_python({**base, **body})


def verdict(task: str, a: str | None, b: str | None, *, interaction_id: str | None = None) -> VerdictVote:
    body = {
        "kind": "verdict", "source": "expert", "annotator_id": "dr", "user_ref": None, "task_id": task,
        "verdict": "A", "interaction_id": interaction_id or a or "x", "a_interaction_id": a, "b_interaction_id": b,
    }  # fmt: skip
    result = vote(**body)
    assert isinstance(result, VerdictVote)
    return result


COMPARE = IssuedTask(prompt_key=PK, kind="compare")
REWRITE = IssuedTask(prompt_key=PK, kind="rewrite")


def test_a_verdict_on_its_own_task_with_its_candidates_is_taken() -> None:
    assert check_verdict(verdict(task_id(PK, "compare", ("a", "b")), "a", "b"), COMPARE) is None
    assert check_verdict(verdict(task_id(PK, "rewrite", ("a",)), "a", None), REWRITE) is None


def test_a_verdict_on_a_task_never_issued_is_unknown() -> None:
    refusal = check_verdict(verdict("anything", "a", "b"), None)
    assert refusal is not None and refusal.code == "unknown_task"


@pytest.mark.parametrize(
    ("a", "b", "interaction_id", "issued"),
    [
        ("b", "a", None, COMPARE),  # A and B swapped: "A" would name the other answer
        ("a", "c", None, COMPARE),  # another answer of the group
        ("a", None, None, COMPARE),  # a compare task judged as a rewrite
        ("a", "b", "b", COMPARE),  # located by B, not by A
        ("a", "b", None, REWRITE),  # the right ids under another kind
        (None, "b", "b", COMPARE),
        ("a", "b", None, IssuedTask(prompt_key="pk-other", kind="compare")),
    ],
)
def test_a_verdict_whose_candidates_are_not_its_tasks_is_refused(
    a: str | None, b: str | None, interaction_id: str | None, issued: IssuedTask
) -> None:
    refusal = check_verdict(verdict(task_id(PK, "compare", ("a", "b")), a, b, interaction_id=interaction_id), issued)
    assert refusal is not None and refusal.code == "candidates_mismatch"


@given(st.lists(st.text(alphabet="abAB01-_", min_size=1, max_size=5), min_size=2, max_size=2, unique=True))
def test_only_the_tasks_own_order_of_candidates_is_taken(ids: list[str]) -> None:
    task = task_id(PK, "compare", tuple(ids))
    a, b = ids
    taken = check_verdict(verdict(task, a, b), COMPARE) is None
    assert taken == ((a, b) == task_candidates((a, b)))


def comparison(preferred: str, other: str, interaction_id: str | None = None) -> Vote:
    return vote(
        kind="comparison", interaction_id=interaction_id or preferred,
        preferred_interaction_id=preferred, other_interaction_id=other,
    )  # fmt: skip


def test_a_vote_waits_for_every_answer_it_names() -> None:
    assert named_interactions(comparison("a", "b", "c")) == ("c", "a", "b")
    assert place_vote(vote(kind="thumb", value=1, interaction_id="a"), {}).waiting_for == "a"
    assert place_vote(comparison("a", "b"), {("app", "a"): PK}).waiting_for == "b"
    assert place_vote(comparison("a", "b"), {("app", "b"): PK}).waiting_for == "a"
    placed = place_vote(comparison("a", "b"), {("app", "a"): PK, ("app", "b"): PK})
    assert (placed.prompt_key, placed.waiting_for, placed.refusal) == (PK, None, None)


def test_a_comparison_across_two_groups_is_refused() -> None:
    placed = place_vote(comparison("a", "b"), {("app", "a"): PK, ("app", "b"): "pk-2"})
    assert placed.refusal is not None and placed.refusal.code == "cross_group_comparison"
    third = place_vote(comparison("a", "b", "c"), {("app", "a"): PK, ("app", "b"): PK, ("app", "c"): "pk-2"})
    assert third.refusal is not None, "the vote's own interaction is in another group"


def test_another_apps_answer_is_not_this_apps() -> None:
    assert place_vote(comparison("a", "b"), {("app", "a"): PK, ("other-app", "b"): PK}).waiting_for == "b"
