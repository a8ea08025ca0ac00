"""What every contract is built from: bounded ids and texts, the base classes, the clock.

Bounds come from the validation context (`{"limits": Limits}`), else from the settings' defaults.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, PydanticKnownError, core_schema

from shared.settings import Limits, default_limits

SCHEMA_VERSION = 1


def limits_of(info: ValidationInfo) -> Limits:
    context = info.context or {}
    return context.get("limits") or default_limits()


class _IdLength:
    """At most `Limits.max_id_chars` characters; the JSON Schema shows the default bound."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.with_info_after_validator_function(_check_id_length, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {**handler(schema), "maxLength": default_limits().max_id_chars}


def _check_id_length(value: str, info: ValidationInfo) -> str:
    limit = limits_of(info).max_id_chars
    if len(value) > limit:
        # pydantic's own error for a max_length constraint: clients see the same type and message.
        raise PydanticKnownError("string_too_long", {"max_length": limit})
    return value


# Identifiers: 1 to `max_id_chars` characters, no control characters.
Id = Annotated[str, StringConstraints(min_length=1, pattern=r"^[^\x00-\x1f\x7f]+$"), _IdLength()]
Domain = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]


def check_text(value: str | None, info: ValidationInfo) -> str | None:
    if value is None:
        return value
    if len(value) > limits_of(info).max_content_chars:
        raise PydanticCustomError(
            "too_long",
            "text has {length} characters, more than the limit of {limit}",
            {"length": len(value), "limit": limits_of(info).max_content_chars},
        )
    if "\x00" in value:
        # PostgreSQL cannot store NUL in text or jsonb: refused here, it would poison every consumer.
        raise PydanticCustomError("nul_character", "text must not contain the NUL character (\\u0000)")
    return value


def has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


class Contract(BaseModel):
    """Base of every contract: unknown fields are refused, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Event(Contract):
    """Fields every event carries."""

    event_id: UUID = Field(description="Chosen by the producer: the idempotency key.")
    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Contract version; omitted means current.")
    occurred_at: AwareDatetime = Field(description="Producer clock, with a timezone.")
    received_at: AwareDatetime | None = Field(None, description="Stamped by the pipeline; never the client's.")
    app_id: Id

    @field_validator("occurred_at")
    @classmethod
    def _not_in_the_future(cls, value: datetime, info: ValidationInfo) -> datetime:
        skew_s = limits_of(info).max_clock_skew_s
        if value > datetime.now(UTC) + timedelta(seconds=skew_s):
            raise PydanticCustomError(
                "in_the_future", "occurred_at is more than {skew_s} s in the future", {"skew_s": skew_s}
            )
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)
