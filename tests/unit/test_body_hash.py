"""One event_id, one body: the body hash made from the published JSON equals the one made from model_dump."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.edge_items import body_hash, serialized
from shared.errors import ContractError
from shared.events import parse_end_user_vote, parse_interaction
from shared.events.base import has_nul

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()  # past 64 bits too: orjson reads those back as floats, so the hash is made from model_dump
    | st.integers(min_value=2**63 - 5, max_value=2**64 + 5)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
TEXT = st.text(min_size=1, max_size=40).filter(lambda t: "\x00" not in t)
ID = st.text(min_size=1, max_size=20).filter(lambda t: not any(ord(c) < 32 or ord(c) == 127 for c in t))


@st.composite
def interactions(draw: st.DrawFn) -> dict[str, Any]:
    occurred = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=draw(st.integers(0, 10**12)))
    offset = timedelta(minutes=draw(st.sampled_from([0, 60, -330, 845])))
    return {
        "event_id": str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1)))),
        "app_id": draw(ID),
        "occurred_at": occurred.astimezone(timezone(offset)).isoformat(),
        "interaction_id": draw(ID),
        "conversation_id": draw(ID),
        "user_ref": draw(ID),
        "messages": [{"role": "user", "content": draw(TEXT)}],
        "response": {"content": draw(TEXT), "model": draw(ID), "model_version": draw(ID)},
        "regenerated_from": draw(st.none() | ID),
        "tags": draw(st.lists(st.text(min_size=1, max_size=5).filter(str.isalnum), max_size=3)),
        "metadata": draw(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4)),
        "received_at": draw(st.none() | st.just("2026-01-01T00:00:00Z")),
        "prompt_key": draw(st.none() | st.just("pk")),
    }


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(interactions())
def test_an_interactions_hash_from_its_json_equals_the_hash_from_model_dump(item: dict[str, Any]) -> None:
    try:
        event = parse_interaction(item)
    except ContractError:
        return  # metadata past its size bound, NUL in it: refused, never hashed
    assert body_hash(event, serialized(event)) == body_hash(event)


@pytest.mark.parametrize(
    "vote",
    [
        {"kind": "thumb", "value": -1},
        {"kind": "rating", "value": 5},
        {"kind": "comparison", "preferred_interaction_id": "a", "other_interaction_id": "b"},
        {"kind": "edit", "edited_content": "Better: ünïcode \u2028 and \\u0000 text"},
        {"kind": "comment", "text": "ok"},
    ],
)
def test_a_votes_hash_from_its_json_equals_the_hash_from_model_dump(vote: dict[str, Any]) -> None:
    base = {"event_id": str(uuid.uuid4()), "app_id": "a", "occurred_at": "2026-11-26T10:00:00.123456+01:00",
            "interaction_id": "i", "user_ref": "u"}  # fmt: skip
    event = parse_end_user_vote({**base, **vote})
    assert body_hash(event, serialized(event)) == body_hash(event)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=6), JSON_VALUES | st.text(alphabet="a\x00\\u0", max_size=8), max_size=4))
def test_metadata_with_nul_is_refused_exactly_when_it_holds_one(metadata: dict[str, Any]) -> None:
    item = {"event_id": str(uuid.uuid4()), "app_id": "a", "occurred_at": "2026-11-26T10:00:00Z",
            "interaction_id": "i", "conversation_id": "c", "user_ref": "u",
            "messages": [{"role": "user", "content": "q"}],
            "response": {"content": "r", "model": "m", "model_version": "v"}, "metadata": metadata}  # fmt: skip
    try:
        parse_interaction(item)
        refused_for_nul = False
    except ContractError as exc:
        refused_for_nul = any(e["type"] == "nul_character" for e in exc.errors)
    assert refused_for_nul == has_nul(metadata)
