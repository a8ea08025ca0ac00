"""The edge's fast path (shared.events.json_items) gives exactly what the per-item path gives, or nothing."""

from __future__ import annotations

import json
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.errors import ContractError
from shared.events import parse_end_user_vote, parse_interaction
from shared.events.json_items import orjson_exact
from shared.events.parsing import END_USER_VOTE_ITEMS, INTERACTION_ITEMS
from tests.support.builders import interaction_body


def interaction(**changes: Any) -> dict[str, Any]:
    """A valid interaction with a system message and metadata; a change to `...` drops that key."""
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    body = interaction_body(**{"messages": messages, "metadata": {"latency_ms": 12, "client": "bench"}, **changes})
    return {k: v for k, v in body.items() if v is not ...}


def per_item(items: list[Any], parse: Any) -> list[Any] | None:
    """The per-item path's events, or None when it refuses anything (the fast path must then give None)."""
    try:
        return [parse(item) for item in items]
    except ContractError:
        return None


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
FIELDS = st.sampled_from(
    ["event_id", "app_id", "occurred_at", "interaction_id", "user_ref", "messages", "response", "language",
     "domain", "tags", "metadata", "received_at", "prompt_key", "schema_version", "regenerated_from", "extra"]
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(FIELDS, JSON_VALUES | st.just(...), max_size=3), min_size=1, max_size=4))
@example([{"metadata": {"": -(2**63) - 1}}])  # found by a clean-clone run: an integer just past 64 bits
def test_a_body_the_fast_path_takes_is_judged_as_the_per_item_path_judges_it(changes: list[dict[str, Any]]) -> None:
    items = [interaction(**{"event_id": str(uuid.UUID(int=i + 1)), **c}) for i, c in enumerate(changes)]
    try:
        body = orjson.dumps(items)
    except orjson.JSONEncodeError:
        body = json.dumps(items).encode()
    fast = INTERACTION_ITEMS.many(body)
    slow = per_item(orjson.loads(body), parse_interaction) if _orjson_reads(body) else None
    if fast is not None:
        assert slow == fast
    # Whether its metadata holds what orjson reads otherwise, judged on the body as written (an integer past
    # 64 bits, which json.dumps wrote, is a float once orjson has read it: exact in `slow`, not in the body).
    if slow is not None and all(orjson_exact(item.get("metadata")) for item in json.loads(body)):
        assert fast == slow  # a body with nothing refused takes the fast path


def test_an_integer_just_past_64_bits_goes_the_per_item_way() -> None:
    """The body hypothesis found: json.dumps writes -2**63 - 1, orjson reads it as a float, the fast path declines."""
    body = json.dumps([interaction(metadata={"": -(2**63) - 1})]).encode()
    assert INTERACTION_ITEMS.many(body) is None
    assert per_item(orjson.loads(body), parse_interaction)[0].metadata == {"": float(-(2**63) - 1)}  # type: ignore[index]


def _orjson_reads(body: bytes) -> bool:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True


@pytest.mark.parametrize(
    "metadata", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"123456789012345678901234567890", b'[1, {"x": NaN}]']
)
def test_numbers_orjson_reads_otherwise_go_the_per_item_way(metadata: bytes) -> None:
    item = orjson.dumps(interaction(metadata={"x": 0})).replace(b'{"x":0}', b'{"x":' + metadata + b"}")
    assert INTERACTION_ITEMS.one(item) is None
    assert INTERACTION_ITEMS.many(b"[" + item + b"]") is None


def test_a_single_body_and_a_list_are_validated_as_the_per_item_path_does() -> None:
    items = [interaction(), interaction(tags=["a"], domain="legal", metadata={"n": 2**63, "f": 1.5e300})]
    body = orjson.dumps(items)
    assert INTERACTION_ITEMS.many(body) == [parse_interaction(i) for i in items]
    assert INTERACTION_ITEMS.one(orjson.dumps(items[1])) == parse_interaction(items[1])
    assert INTERACTION_ITEMS.many(b"[]") == []


@pytest.mark.parametrize("body", [b"{}", b"[{}]", b"not json", b'{"a": 1}', b"[1, 2]", b"", b"[{}, 1]"])
def test_what_the_route_does_not_take_gives_nothing(body: bytes) -> None:
    assert INTERACTION_ITEMS.one(body) is None
    assert INTERACTION_ITEMS.many(body) is None


def test_an_object_is_not_a_list_nor_a_list_an_object() -> None:
    one, two = orjson.dumps(interaction()), orjson.dumps([interaction()] * 2)
    assert INTERACTION_ITEMS.many(one) is None
    assert INTERACTION_ITEMS.one(two) is None
    assert INTERACTION_ITEMS.one(one) is not None
    assert INTERACTION_ITEMS.many(two) is not None


def test_end_user_votes_fast_path_equals_per_item_and_leaves_expert_claims_to_it() -> None:
    thumb = {"event_id": str(uuid.uuid4()), "app_id": "a", "occurred_at": "2026-11-26T10:00:00Z",
             "interaction_id": "i", "user_ref": "u", "kind": "thumb", "value": -1}  # fmt: skip
    rating = {**thumb, "event_id": str(uuid.uuid4()), "kind": "rating", "value": 4}
    assert END_USER_VOTE_ITEMS.many(orjson.dumps([thumb, rating])) == [parse_end_user_vote(v) for v in (thumb, rating)]
    for refused in ({**thumb, "source": "expert"}, {**thumb, "value": True}, {**thumb, "value": 1.0}):
        assert END_USER_VOTE_ITEMS.one(orjson.dumps(refused)) is None
        assert per_item([refused], parse_end_user_vote) is None


def test_orjson_exact() -> None:
    assert orjson_exact({"a": [1, 2.5, "x", None, True, {"b": -(2**63), "c": 2**64 - 1}]})
    assert not orjson_exact({"a": [float("nan")]})
    assert not orjson_exact([{"b": 2**64}])
    assert not orjson_exact(-(2**63) - 1)


def test_duplicate_keys_keep_the_last_value_as_orjson_does() -> None:
    item = orjson.dumps(interaction(app_id="first", metadata={"x": 1}))
    item = item[:-1] + b',"app_id":"second","metadata":{"x":1,"x":2}}'
    assert INTERACTION_ITEMS.one(item) == parse_interaction(orjson.loads(item))
    assert INTERACTION_ITEMS.one(item).app_id == "second"  # type: ignore[union-attr]
