"""Contract round trips and validation errors of shared/events/."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from shared.errors import ContractError
from shared.events import (
    DeadLetter,
    EditVote,
    Interaction,
    ThumbVote,
    VerdictVote,
    parse_interaction,
    parse_vote,
)
from shared.settings import Limits, PipelineSettings, limits_from
from tests.support.builders import interaction_body, vote_body


def limits(**overrides: Any) -> Limits:
    """The bounds of the default settings with `overrides`, built as the services build theirs."""
    return limits_from(PipelineSettings(**overrides))


def bad_fields(exc: pytest.ExceptionInfo[ContractError]) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.value.errors}


def test_wire_example_interaction_round_trips_through_json() -> None:
    event = parse_interaction(json.dumps(interaction_body()).encode())
    assert event.schema_version == 1
    assert event.occurred_at.utcoffset() is not None
    again = parse_interaction(event.model_dump_json())
    assert again == event


@pytest.mark.parametrize(
    ("overrides", "kind"),
    [
        ({}, "thumb"),
        ({"kind": "rating", "value": 4}, "rating"),
        ({"kind": "comparison", "preferred_interaction_id": "a", "other_interaction_id": "b"}, "comparison"),
        ({"kind": "edit", "edited_content": "better"}, "edit"),
        ({"kind": "comment", "text": "meh"}, "comment"),
        (
            {
                "kind": "verdict",
                "source": "expert",
                "annotator_id": "dr-a",
                "user_ref": None,
                "task_id": "t1",
                "verdict": "tie",
                "rewrite": "x",
            },
            "verdict",
        ),
    ],
)
def test_every_vote_kind_round_trips(overrides: dict[str, Any], kind: str) -> None:
    body = vote_body(**overrides)
    if kind != "thumb" and "value" not in overrides:
        body.pop("value")
    vote = parse_vote(body)
    assert vote.kind == kind
    assert parse_vote(vote.model_dump_json()) == vote


def test_schema_version_may_be_omitted_but_not_wrong() -> None:
    body = interaction_body()
    body.pop("schema_version", None)
    assert parse_interaction(body).schema_version == 1
    with pytest.raises(ContractError) as exc:
        parse_interaction(interaction_body(schema_version=2))
    assert bad_fields(exc) == {"schema_version"}


def test_every_bad_field_is_named() -> None:
    body = interaction_body(event_id="not-a-uuid", occurred_at="2026-11-26T10:00:00", unknown=1)
    body["response"].pop("model")
    with pytest.raises(ContractError) as exc:
        parse_interaction(body)
    assert bad_fields(exc) == {"event_id", "occurred_at", "unknown", "response.model"}
    assert all("input" not in e for e in exc.value.errors), "errors must not echo user content"


def test_context_must_end_with_the_users_turn() -> None:
    with pytest.raises(ContractError) as exc:
        parse_interaction(interaction_body(messages=[{"role": "assistant", "content": "hi"}]))
    assert bad_fields(exc) == {"messages"}


@pytest.mark.parametrize(
    ("overrides", "limits", "field"),
    [
        ({"messages": [{"role": "user", "content": "x" * 11}]}, limits(max_content_chars=10), "messages.0.content"),
        ({"messages": [{"role": "user", "content": "q"}] * 3}, limits(max_messages=2), "messages"),
        ({"metadata": {"k": "v" * 100}}, limits(max_metadata_bytes=50), "metadata"),
        ({"tags": ["a", "b", "c"]}, limits(max_tags=2), "tags"),
        (
            {"response": {"content": "y" * 51, "model": "m", "model_version": "v"}},
            limits(max_content_chars=50),
            "response.content",
        ),
    ],
)
def test_size_limits_come_from_settings(overrides: dict[str, Any], limits: Limits, field: str) -> None:
    parse_interaction(interaction_body(**overrides))  # within the default limits
    with pytest.raises(ContractError) as exc:
        parse_interaction(interaction_body(**overrides), limits)
    assert bad_fields(exc) == {field}


def test_identifier_length_comes_from_settings() -> None:
    parse_interaction(interaction_body(app_id="a" * 256))
    with pytest.raises(ContractError) as exc:
        parse_interaction(interaction_body(app_id="a" * 257))
    assert exc.value.errors == [
        {"loc": ["app_id"], "msg": "String should have at most 256 characters", "type": "string_too_long"}
    ]
    short = limits(max_id_chars=8)
    small_response = {"content": "c", "model": "m" * 8, "model_version": "v"}
    parse_interaction(interaction_body(interaction_id="i" * 8, response=small_response), short)
    with pytest.raises(ContractError) as exc:
        parse_interaction(
            interaction_body(interaction_id="i" * 9, response={"content": "c", "model": "m" * 9, "model_version": "v"}),
            short,
        )
    assert bad_fields(exc) == {"interaction_id", "response.model"}
    with pytest.raises(ContractError) as exc:
        parse_vote(vote_body(user_ref="u" * 9), short)
    assert bad_fields(exc) == {"user_ref"}


def test_vote_errors_name_the_field_not_the_union_branch() -> None:
    with pytest.raises(ContractError) as exc:
        parse_vote(vote_body(value=3))
    assert bad_fields(exc) == {"value"}
    with pytest.raises(ContractError) as exc:
        parse_vote(vote_body(kind="like"))
    assert bad_fields(exc) == {"kind"}
    body = vote_body()
    body.pop("kind")
    with pytest.raises(ContractError) as exc:
        parse_vote(body)
    assert bad_fields(exc) == {"kind"}


def test_voter_must_be_named_for_its_source() -> None:
    with pytest.raises(ContractError):
        parse_vote(vote_body(user_ref=None))
    with pytest.raises(ContractError):
        parse_vote(vote_body(source="expert", user_ref=None))
    expert = parse_vote(vote_body(source="expert", user_ref=None, annotator_id="dr-a"))
    assert isinstance(expert, ThumbVote) and expert.voter == "expert:dr-a"


def test_only_experts_give_verdicts_and_comparisons_need_two_answers() -> None:
    with pytest.raises(ContractError):
        parse_vote(vote_body(kind="verdict", task_id="t", verdict="A", value=None))
    with pytest.raises(ContractError) as exc:
        parse_vote(vote_body(kind="comparison", preferred_interaction_id="a", other_interaction_id="a"))
    assert exc.value.errors


def test_bad_json_is_a_contract_error() -> None:
    with pytest.raises(ContractError) as exc:
        parse_vote(b'{"kind": "thumb", "value": 1')
    assert exc.value.errors[0]["type"] == "json_invalid"


def test_dead_letter_keeps_the_original_bytes() -> None:
    for raw in (b'{"half": ', b"\xff\xfe\x00binary", None):
        text, encoding = DeadLetter.encode_raw(raw)
        letter = DeadLetter(
            event_id=uuid.uuid4(),
            failed_at="2026-11-26T10:00:00Z",
            service="ingest",
            source_topic="t",
            raw_value=text,
            raw_encoding=encoding,
            error_code="contract_violation",
            reason="bad",
        )
        assert DeadLetter.model_validate_json(letter.model_dump_json()).raw_bytes() == raw


def test_events_are_immutable_and_edits_need_content() -> None:
    event = parse_interaction(interaction_body())
    assert isinstance(event, Interaction)
    with pytest.raises(ValidationError):
        event.app_id = "other"  # type: ignore[misc]
    with pytest.raises(ContractError) as exc:
        parse_vote(vote_body(kind="edit", edited_content="", value=None))
    assert bad_fields(exc) == {"edited_content"}
    assert isinstance(parse_vote(vote_body(kind="edit", edited_content="ok", value=None)), EditVote)


def test_verdict_carries_its_panel() -> None:
    vote = parse_vote(
        vote_body(
            kind="verdict",
            source="expert",
            user_ref=None,
            annotator_id="a1",
            task_id="t",
            verdict="A",
            reviewers=["a1", "a2"],
            agreement=1.0,
            value=None,
        )
    )
    assert isinstance(vote, VerdictVote) and vote.reviewers == ["a1", "a2"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"messages": [{"role": "user", "content": "a\x00b"}]}, "messages.0.content"),
        ({"response": {"content": "\x00", "model": "m", "model_version": "v"}}, "response.content"),
        ({"metadata": {"k": ["ok", {"deep": "x\x00"}]}}, "metadata"),
        ({"metadata": {"k\x00": 1}}, "metadata"),
        ({"tags": ["fine", "bad\x00"]}, "tags.1"),
        ({"language": "en\x00"}, "language"),
    ],
)
def test_nul_characters_are_refused_where_postgresql_could_not_store_them(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(ContractError) as exc:
        parse_interaction(json.dumps(interaction_body(**overrides)))
    assert bad_fields(exc) == {field}
    with pytest.raises(ContractError) as exc:
        parse_vote(json.dumps(vote_body(kind="comment", text="\x00", value=None)))
    assert bad_fields(exc) == {"text"}
    assert parse_interaction(json.dumps(interaction_body(metadata={"note": "a literal \\u0000 is fine"})))


def test_occurred_at_far_in_the_future_is_refused() -> None:
    with pytest.raises(ContractError) as exc:
        parse_interaction(interaction_body(occurred_at="9999-12-31T23:59:59Z"))
    assert bad_fields(exc) == {"occurred_at"}
    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert parse_vote(vote_body(occurred_at=soon)).occurred_at.year >= 2026
    with pytest.raises(ContractError):
        parse_vote(vote_body(occurred_at=soon), limits(max_clock_skew_s=60))
