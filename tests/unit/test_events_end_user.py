"""The end-user vote contract: what apps may send (no expert evidence), strict ±1 and 1..5, the same kinds."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import ContractError, ForbiddenSourceError
from shared.events import EXPERT_ONLY_FIELDS, VOTE_ADAPTER, parse_end_user_vote, parse_vote
from tests.support.builders import vote_body

FORGED_VERDICT = {
    "source": "expert",
    "annotator_id": "mallory",
    "kind": "verdict",
    "task_id": "anything",
    "verdict": "B",
    "a_interaction_id": "int-x",
    "b_interaction_id": "int-y",
    "user_ref": None,
    "value": None,
}


def refusal(body: dict[str, Any], *, as_json: bool) -> ContractError:
    data: Any = json.dumps(body).encode() if as_json else body
    with pytest.raises(ContractError) as raised:
        parse_end_user_vote(data)
    return raised.value


def types_by_field(error: ContractError) -> dict[str, str]:
    return {".".join(str(p) for p in e["loc"]): e["type"] for e in error.errors}


@pytest.mark.parametrize("as_json", [False, True])
def test_the_issues_forged_verdict_is_refused_naming_every_expert_field(as_json: bool) -> None:
    body = {k: v for k, v in vote_body(**FORGED_VERDICT).items() if v is not None}
    error = refusal(body, as_json=as_json)
    assert isinstance(error, ForbiddenSourceError) and error.code == "forbidden_source"
    named = {k for k, t in types_by_field(error).items() if t == "forbidden_source"}
    assert named == {"source", "kind", "annotator_id", "task_id", "verdict", "a_interaction_id", "b_interaction_id"}


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("field", EXPERT_ONLY_FIELDS)
def test_any_expert_only_field_on_an_end_user_thumb_is_forbidden(field: str, as_json: bool) -> None:
    error = refusal(vote_body(**{field: "x"}), as_json=as_json)
    assert isinstance(error, ForbiddenSourceError)
    assert types_by_field(error) == {field: "forbidden_source"}


def test_an_anonymous_expert_thumb_is_forbidden() -> None:
    error = refusal(vote_body(source="expert"), as_json=False)
    assert types_by_field(error) == {"source": "forbidden_source"}


def test_other_errors_are_still_named_beside_the_forbidden_fields() -> None:
    error = refusal(vote_body(source="expert", value=7, interaction_id=""), as_json=True)
    assert types_by_field(error) == {
        "source": "forbidden_source",
        "value": "literal_error",
        "interaction_id": "string_too_short",
    }


def test_an_unknown_source_is_an_ordinary_contract_error() -> None:
    error = refusal(vote_body(source="admin"), as_json=False)
    assert not isinstance(error, ForbiddenSourceError)
    assert types_by_field(error) == {"source": "literal_error"}


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"value": -1},
        {"kind": "rating", "value": 1},
        {"kind": "rating", "value": 5},
        {"kind": "comparison", "value": None, "preferred_interaction_id": "a", "other_interaction_id": "b"},
        {"kind": "edit", "value": None, "edited_content": "better"},
        {"kind": "comment", "value": None, "text": "meh"},
    ],
)
def test_every_end_user_kind_is_accepted_and_reads_back_as_a_vote_of_the_votes_topic(
    overrides: dict[str, Any],
) -> None:
    event = parse_end_user_vote(json.dumps(vote_body(**overrides)).encode())
    assert event.source == "end_user"
    on_votes = parse_vote(event.model_dump_json())
    assert on_votes.model_dump(exclude={"annotator_id", "quarantine_reason"}) == event.model_dump()
    assert on_votes.quarantine_reason is None  # only feedback stamps it, past the per-voter budget
    assert on_votes.voter == f"user:{event.user_ref}"


@pytest.mark.parametrize(
    ("kind", "value"),
    [("thumb", True), ("thumb", False), ("thumb", 1.0), ("thumb", "1"), ("rating", True), ("rating", 4.0)],
)
def test_booleans_floats_and_strings_are_not_integers(kind: str, value: Any) -> None:
    body = vote_body(kind=kind, value=value)
    for parse in (parse_end_user_vote, parse_vote):
        for data in (body, json.dumps(body)):
            with pytest.raises(ContractError) as raised:
                parse(data)
            assert [e["loc"] for e in raised.value.errors] == [["value"]]


@given(st.integers(min_value=-10, max_value=10))
def test_a_thumb_is_exactly_plus_or_minus_one_and_a_rating_one_to_five(value: int) -> None:
    for kind, allowed in (("thumb", {1, -1}), ("rating", set(range(1, 6)))):
        body = vote_body(kind=kind, value=value)
        try:
            parsed = parse_end_user_vote(body)
        except ContractError:
            assert value not in allowed
        else:
            assert value in allowed and parsed.value == value


def test_the_votes_topic_still_carries_expert_verdicts() -> None:
    body = {k: v for k, v in vote_body(**FORGED_VERDICT).items() if v is not None}
    verdict = VOTE_ADAPTER.validate_python(body)
    assert (verdict.kind, verdict.source, verdict.voter) == ("verdict", "expert", "expert:mallory")


@pytest.mark.parametrize("as_json", [False, True])
def test_an_app_cannot_mark_its_own_vote_quarantined(as_json: bool) -> None:
    error = refusal(vote_body(quarantine_reason="voter_hourly_budget"), as_json=as_json)
    assert types_by_field(error) == {"quarantine_reason": "extra_forbidden"}


def test_the_votes_topic_carries_the_quarantine_mark_of_end_users_only() -> None:
    marked = parse_vote(vote_body(quarantine_reason="voter_hourly_budget"))
    assert marked.quarantine_reason == "voter_hourly_budget"
    with pytest.raises(ContractError) as raised:
        parse_vote({**{k: v for k, v in vote_body(**FORGED_VERDICT).items() if v is not None},
                    "quarantine_reason": "voter_hourly_budget"})  # fmt: skip
    assert [e["type"] for e in raised.value.errors] == ["expert_quarantined"]
    with pytest.raises(ContractError):
        parse_vote(vote_body(quarantine_reason="Not A Code"))
