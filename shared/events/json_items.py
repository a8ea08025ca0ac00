"""Items validated straight from the request's bytes: the fast path of the edge's HTTP posts.

The edge's per-item path decodes a body with orjson and validates each decoded item on its own
(`parse_interaction`, `parse_end_user_vote`), so one bad item refuses only itself and names its
fields. Most bodies have no bad item: pydantic validates them from the bytes in one call
(`validate_json`: its own JSON parser, no intermediate dicts), about half the work. `JsonItems`
tries that first and returns None whenever it cannot give exactly what the per-item path would;
the caller then takes the per-item path, whose answers (refusals, their fields) are unchanged:

- any item invalid, or the body not what the route takes (not JSON, not a list, not an object):
  the validation error is dropped, the per-item path judges and names the fields;
- pydantic's parser reads `NaN`, `Infinity` and numbers past a double's range (`1e400`) as floats,
  and integers past 64 bits as integers, where orjson refuses the first two and reads the last as a
  float: a free-form value (`metadata`) with a non-finite float or an integer outside orjson's
  range goes the per-item way too. Duplicate keys: both keep the last.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import orjson
from pydantic import TypeAdapter, ValidationError

from shared.settings import Limits, default_limits

T = TypeVar("T")
# orjson reads integers in this range as integers (past it, as floats).
_ORJSON_INT_MIN = -(2**63)
_ORJSON_INT_MAX = 2**64 - 1


def orjson_exact(value: Any) -> bool:
    """Whether orjson would read `value` (decoded by pydantic's parser) the same: no NaN/inf, no wide integer."""
    kind = type(value)  # exact types first: decoded JSON has no subclasses, and this runs per item
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return _ORJSON_INT_MIN <= value <= _ORJSON_INT_MAX
    if kind is float:
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(orjson_exact(v) for v in value.values())
    if isinstance(value, list):
        return all(orjson_exact(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return _ORJSON_INT_MIN <= value <= _ORJSON_INT_MAX
    return True


def orjson_writes(value: Any) -> bool:
    """Whether orjson can write `value`: among JSON's values, every integer in the range orjson reads back exactly."""
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return True


class JsonItems(Generic[T]):
    """One item or a list of items of `item_type`, validated from bytes, or None (see the module's docstring)."""

    def __init__(self, item_type: Any, *, free_form: Callable[[T], Any] | None = None) -> None:
        self._one: TypeAdapter[T] = TypeAdapter(item_type)
        self._many: TypeAdapter[list[T]] = TypeAdapter(list[item_type])  # type: ignore[valid-type]
        self._free_form = free_form
        """The part of an item that is free-form JSON (checked with `orjson_exact`); None: no such part."""

    def one(self, body: bytes, limits: Limits | None = None) -> T | None:
        try:
            item = self._one.validate_json(body, context={"limits": limits or default_limits()})
        except ValidationError:
            return None
        return item if self._exact(item) else None

    def many(self, body: bytes, limits: Limits | None = None) -> list[T] | None:
        try:
            items = self._many.validate_json(body, context={"limits": limits or default_limits()})
        except ValidationError:
            return None
        return items if all(self._exact(item) for item in items) else None

    def _exact(self, item: T) -> bool:
        return self._free_form is None or orjson_exact(self._free_form(item))
