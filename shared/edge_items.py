"""What the edge says of each item: its status and refusal (naming its fields), and the body hash that tells
a duplicate of an event_id from a conflict."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

import orjson

from shared.errors import ConflictError, ContractError, PipelineError
from shared.events import Event
from shared.events.json_items import orjson_writes

# `forbidden`: over HTTP, an item whose app_id the caller's app key does not cover (shared.app_keys).
ItemStatus = Literal["accepted", "duplicate", "conflict", "rejected", "forbidden"]

# What the pipeline stamps on an event: not part of the body a client sent.
_STAMPED = frozenset({"received_at", "prompt_key", "quarantine_reason"})


@dataclass(kw_only=True, frozen=True, slots=True)
class ItemResult:
    index: int
    status: ItemStatus
    event_id: str | None = None
    errors: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"index": self.index, "status": self.status, "event_id": self.event_id}
        if self.errors:
            body["errors"] = list(self.errors)
        return body


def serialized(event: Event) -> bytes:
    """The event's JSON as published (what `model_dump_json()` gives, as bytes)."""
    return event.__pydantic_serializer__.to_json(event)


def body_hash(event: Event, value: bytes | None = None) -> bytes:
    """sha256 of the event as validated (defaults filled, keys sorted), without what the pipeline stamps.

    `value`: the event's `serialized` JSON when the caller has it: the same text is then made from it
    (decoded, stamped fields dropped, keys sorted) instead of from `model_dump`, unless its free-form
    `metadata` holds what orjson cannot write (an integer past 64 bits, which it would read back as a float).
    """
    if value is not None and orjson_writes(getattr(event, "metadata", None)):
        body = orjson.loads(value)
        for name in _STAMPED:
            body.pop(name, None)
    else:
        body = event.model_dump(mode="json", exclude=_STAMPED)
    try:
        text = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        # Integers past 64 bits in metadata: the standard library writes them.
        text = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(text).digest()


def conflict_with(event_id: UUID) -> ConflictError:
    return ConflictError(
        f"event_id {event_id} was accepted before with another body",
        event_id=str(event_id),
    )


def item_result(index: int, event_id: str | None, status: ItemStatus, error: PipelineError | None) -> ItemResult:
    """An item's result; a refusal names its fields (a contract error's own, else event_id)."""
    if error is None:
        errors: tuple[dict[str, Any], ...] = ()
    elif isinstance(error, ContractError) and error.errors:
        errors = tuple(error.errors)
    else:
        errors = ({"loc": ["event_id"], "msg": error.message, "type": error.code},)
    return ItemResult(index=index, status=status, event_id=event_id, errors=errors)
