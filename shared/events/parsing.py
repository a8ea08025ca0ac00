"""Parsing input events: JSON or dicts to contracts, with every bad field named and no user content echoed."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from shared.errors import ContractError, ForbiddenSourceError
from shared.events.inputs import (
    END_USER_VOTE_ADAPTER,
    EXPERT_ONLY_FIELDS,
    VOTE_ADAPTER,
    EndUserVote,
    Interaction,
    Vote,
)
from shared.events.json_items import JsonItems
from shared.settings import Limits, default_limits

# The HTTP edges' fast path (shared.events.json_items): whole bodies from bytes; metadata is free-form JSON.
INTERACTION_ITEMS: JsonItems[Interaction] = JsonItems(Interaction, free_form=lambda item: item.metadata)
END_USER_VOTE_ITEMS: JsonItems[EndUserVote] = JsonItems(EndUserVote)

_VOTE_KINDS = frozenset(("thumb", "rating", "comparison", "edit", "comment", "verdict"))


def _field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors without the input values (they may hold user content).

    A vote's location starts with its `kind` tag (pydantic's union branch); it is dropped so
    that `loc` names the field as the client wrote it.
    """
    errors = []
    for e in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = list(e["loc"])
        if loc and loc[0] in _VOTE_KINDS:
            loc = loc[1:]
        elif e["type"] in ("union_tag_not_found", "union_tag_invalid"):
            loc = ["kind"]
        errors.append({"loc": loc, "msg": e["msg"], "type": e["type"]})
    return errors


def _validate(adapter_or_model: Any, name: str, data: bytes | str | dict[str, Any], limits: Limits | None) -> Any:
    context = {"limits": limits or default_limits()}
    validate_json = isinstance(data, (bytes, str))
    try:
        if isinstance(adapter_or_model, TypeAdapter):
            return (adapter_or_model.validate_json if validate_json else adapter_or_model.validate_python)(
                data, context=context
            )
        method = adapter_or_model.model_validate_json if validate_json else adapter_or_model.model_validate
        return method(data, context=context)
    except ValidationError as exc:
        errors = _field_errors(exc)
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "(body)" for e in errors)
        raise ContractError(f"invalid {name}: {fields}", errors=errors) from exc


def parse_interaction(data: bytes | str | dict[str, Any], limits: Limits | None = None) -> Interaction:
    """Validate one interaction (JSON or a decoded dict). Raises ContractError naming every bad field."""
    return _validate(Interaction, "interaction", data, limits)


def parse_vote(data: bytes | str | dict[str, Any], limits: Limits | None = None) -> Vote:
    """Validate one vote of any kind. Raises ContractError naming every bad field."""
    return _validate(VOTE_ADAPTER, "vote", data, limits)


def parse_end_user_vote(data: bytes | str | dict[str, Any], limits: Limits | None = None) -> EndUserVote:
    """Validate one vote as an app may send it (end-user evidence only).

    Raises ForbiddenSourceError when the body claims expert evidence (`source: expert`, `kind: verdict`
    or a field only the expert shape has), each such field named with type `forbidden_source`; else
    ContractError naming every bad field.
    """
    try:
        return _validate(END_USER_VOTE_ADAPTER, "vote", data, limits)
    except ContractError as exc:
        forbidden = _expert_claims(data)
        if not forbidden:
            raise
        named = {e["loc"][0] for e in forbidden}
        rest = [e for e in exc.errors if not (e["loc"] and e["loc"][0] in named)]
        fields = ", ".join(str(e["loc"][0]) for e in forbidden)
        message = f"end-user votes cannot carry expert evidence: {fields}"
        raise ForbiddenSourceError(message, [*forbidden, *rest]) from exc


_EXPERT_WAY_IN = "expert evidence comes only from an annotator's verdict (POST /v1/tasks/{task_id}/verdict)"


def _claim(name: str, msg: str) -> dict[str, Any]:
    return {"loc": [name], "msg": f"{msg}: {_EXPERT_WAY_IN}", "type": "forbidden_source"}


def _expert_claims(data: bytes | str | dict[str, Any]) -> list[dict[str, Any]]:
    """The fields of a refused vote that claim expert evidence (only looked for once validation failed)."""
    if isinstance(data, (bytes, str)):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError:
            return []
    if not isinstance(data, dict):
        return []
    claims = []
    if data.get("source") == "expert":
        claims.append(_claim("source", "source expert is not accepted here"))
    if data.get("kind") == "verdict":
        claims.append(_claim("kind", "kind verdict is not accepted here"))
    claims += [_claim(name, f"{name} belongs to expert verdicts") for name in EXPERT_ONLY_FIELDS if name in data]
    return claims
