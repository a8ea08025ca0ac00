"""Versioned v1 contracts of every event on the pipeline's topics (pydantic models).

Size bounds are settings (`shared.settings.Limits`): pass them as validation context with
`parse_interaction(..., limits=...)` / `parse_vote(...)`; without a context the settings' defaults apply.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, PydanticKnownError, core_schema

from shared.errors import ContractError
from shared.settings import Limits, default_limits

SCHEMA_VERSION = 1


def _limits(info: ValidationInfo) -> Limits:
    context = info.context or {}
    return context.get("limits") or default_limits()


class _IdLength:
    """At most `Limits.max_id_chars` characters; the JSON Schema shows the default bound."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.with_info_after_validator_function(_check_id_length, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {**handler(schema), "maxLength": default_limits().max_id_chars}


def _check_id_length(value: str, info: ValidationInfo) -> str:
    limit = _limits(info).max_id_chars
    if len(value) > limit:
        # pydantic's own error for a max_length constraint: clients see the same type and message.
        raise PydanticKnownError("string_too_long", {"max_length": limit})
    return value


# Identifiers: 1 to `max_id_chars` characters, no control characters.
Id = Annotated[str, StringConstraints(min_length=1, pattern=r"^[^\x00-\x1f\x7f]+$"), _IdLength()]
Domain = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]


def _check_text(value: str | None, info: ValidationInfo) -> str | None:
    if value is None:
        return value
    if len(value) > _limits(info).max_content_chars:
        raise PydanticCustomError(
            "too_long",
            "text has {length} characters, more than the limit of {limit}",
            {"length": len(value), "limit": _limits(info).max_content_chars},
        )
    if "\x00" in value:
        # PostgreSQL cannot store NUL in text or jsonb: refused here, it would poison every consumer.
        raise PydanticCustomError("nul_character", "text must not contain the NUL character (\\u0000)")
    return value


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
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
        skew_s = _limits(info).max_clock_skew_s
        if value > datetime.now(UTC) + timedelta(seconds=skew_s):
            raise PydanticCustomError(
                "in_the_future", "occurred_at is more than {skew_s} s in the future", {"skew_s": skew_s}
            )
        return value


class Message(Contract):
    role: Literal["system", "user", "assistant", "tool"]
    content: str

    _content_size = field_validator("content")(_check_text)


class Response(Contract):
    content: str
    model: Id
    model_version: Id

    _content_size = field_validator("content")(_check_text)


class Interaction(Event):
    """What the model said: a context, the response, and which model answered."""

    interaction_id: Id = Field(description="Unique per app.")
    conversation_id: Id
    user_ref: Id = Field(description="Pseudonymous user reference.")
    messages: list[Message] = Field(min_length=1, description="The context, ending with the user's turn.")
    response: Response
    regenerated_from: Id | None = None
    domain: Domain | None = None
    language: Annotated[str, StringConstraints(min_length=2, max_length=35, pattern=r"^[A-Za-z0-9-]+$")] | None = None
    tags: list[Tag] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    prompt_key: str | None = Field(None, description="Stamped by ingest: hash of app_id and the messages.")

    @field_validator("messages")
    @classmethod
    def _messages_bounded(cls, value: list[Message], info: ValidationInfo) -> list[Message]:
        limit = _limits(info).max_messages
        if len(value) > limit:
            raise PydanticCustomError(
                "too_many_messages",
                "{count} messages, more than the limit of {limit}",
                {"count": len(value), "limit": limit},
            )
        if value[-1].role != "user":
            raise PydanticCustomError("last_message_not_user", "the context must end with the user's turn")
        return value

    @field_validator("tags")
    @classmethod
    def _tags_bounded(cls, value: list[str], info: ValidationInfo) -> list[str]:
        limit = _limits(info).max_tags
        if len(value) > limit:
            raise PydanticCustomError(
                "too_many_tags", "{count} tags, more than the limit of {limit}", {"count": len(value), "limit": limit}
            )
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_bounded(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        limit = _limits(info).max_metadata_bytes
        try:
            size = len(orjson.dumps(value, default=str))
        except orjson.JSONEncodeError:
            size = len(json.dumps(value, separators=(",", ":"), default=str).encode("utf-8", "surrogatepass"))
        if _has_nul(value):
            raise PydanticCustomError("nul_character", "metadata must not contain the NUL character (\\u0000)")
        if size > limit:
            raise PydanticCustomError(
                "metadata_too_large",
                "metadata is {size} bytes as JSON, more than the limit of {limit}",
                {"size": size, "limit": limit},
            )
        return value


class _VoteBase(Event):
    interaction_id: Id
    source: Literal["end_user", "expert"] = "end_user"
    user_ref: Id | None = None
    annotator_id: Id | None = None

    @model_validator(mode="after")
    def _voter_named(self) -> _VoteBase:
        if self.source == "end_user" and self.user_ref is None:
            raise PydanticCustomError("missing_voter", "user_ref is required when source is end_user")
        if self.source == "expert" and self.annotator_id is None:
            raise PydanticCustomError("missing_voter", "annotator_id is required when source is expert")
        return self

    @property
    def voter(self) -> str:
        """Who voted, unique across sources: latest vote per (voter, interaction) wins."""
        return f"user:{self.user_ref}" if self.source == "end_user" else f"expert:{self.annotator_id}"


class ThumbVote(_VoteBase):
    kind: Literal["thumb"]
    value: Literal[1, -1]


class RatingVote(_VoteBase):
    kind: Literal["rating"]
    value: int = Field(ge=1, le=5)


class ComparisonVote(_VoteBase):
    kind: Literal["comparison"]
    preferred_interaction_id: Id
    other_interaction_id: Id

    @model_validator(mode="after")
    def _two_different(self) -> ComparisonVote:
        if self.preferred_interaction_id == self.other_interaction_id:
            raise PydanticCustomError("same_interaction", "preferred and other interaction ids must differ")
        return self


class EditVote(_VoteBase):
    kind: Literal["edit"]
    edited_content: str = Field(min_length=1)

    _content_size = field_validator("edited_content")(_check_text)


class CommentVote(_VoteBase):
    kind: Literal["comment"]
    text: str = Field(min_length=1)

    _content_size = field_validator("text")(_check_text)


class VerdictVote(_VoteBase):
    """An expert's verdict on an annotation task: A or B better, a tie, or both bad."""

    kind: Literal["verdict"]
    task_id: Id
    verdict: Literal["A", "B", "tie", "both_bad"]
    rewrite: str | None = None
    comment: str | None = None
    a_interaction_id: Id | None = Field(None, description="The candidate shown as A (set by the feedback service).")
    b_interaction_id: Id | None = Field(None, description="The candidate shown as B, if any.")
    reviewers: list[Id] = Field(
        default_factory=list, description="Every annotator whose verdict went into this one (N-reviewer tasks)."
    )
    agreement: float | None = Field(None, ge=0.0, le=1.0, description="Share of reviewers who gave this verdict.")

    _content_size = field_validator("rewrite", "comment")(_check_text)

    @model_validator(mode="after")
    def _expert_only(self) -> VerdictVote:
        if self.source != "expert":
            raise PydanticCustomError("verdict_not_expert", "a verdict must have source expert")
        return self


Vote = Annotated[
    ThumbVote | RatingVote | ComparisonVote | EditVote | CommentVote | VerdictVote,
    Field(discriminator="kind"),
]
VOTE_ADAPTER: TypeAdapter[Vote] = TypeAdapter(Vote)


class Candidate(Contract):
    """One answer as it appears in a pair or a task."""

    interaction_id: Id
    content: str
    model: Id
    model_version: Id


class PreferencePair(Contract):
    """A chosen / rejected pair for DPO and reward models, keyed by the deterministic pair_id."""

    event_id: UUID = Field(description="Deterministic per pair state, so a replay repeats it.")
    schema_version: Literal[1] = SCHEMA_VERSION
    app_id: Id
    pair_id: str = Field(description="Hash of prompt_key and the two interaction ids, order-free.")
    prompt_key: str
    prompt: list[Message]
    chosen: Candidate
    rejected: Candidate
    confidence: float = Field(ge=0.0, le=1.0)
    method: Literal["votes", "comparison", "edit", "expert"]
    evidence: dict[str, int] = Field(default_factory=dict, description="Counts of each kind of evidence.")
    domain: Domain
    occurred_at: AwareDatetime = Field(description="Event time of the newest evidence.")
    updated_at: AwareDatetime

    @model_validator(mode="after")
    def _two_answers(self) -> PreferencePair:
        if self.chosen.interaction_id == self.rejected.interaction_id and self.method != "edit":
            raise PydanticCustomError("same_candidate", "chosen and rejected must be different answers")
        if self.chosen.content == self.rejected.content:
            raise PydanticCustomError("same_content", "chosen and rejected must differ in content")
        return self


class AnnotationRequest(Contract):
    """An ambiguous pair (compare) or a lone bad answer (rewrite), queued for experts. Text is redacted."""

    event_id: UUID
    schema_version: Literal[1] = SCHEMA_VERSION
    app_id: Id
    task_id: str = Field(description="Deterministic: the same question gives the same task.")
    pair_id: str | None = None
    prompt_key: str
    kind: Literal["compare", "rewrite"]
    domain: Domain
    priority: float = Field(ge=0.0)
    prompt: list[Message] = Field(description="PII-redacted.")
    candidates: dict[Literal["A", "B"], Candidate] = Field(description="A and B, or A alone for a rewrite.")
    reason: str = Field(description="Why it was ambiguous.")
    evidence: dict[str, int] = Field(default_factory=dict)
    occurred_at: AwareDatetime
    updated_at: AwareDatetime


class FeedbackStats(Contract):
    """Counts per app, model version and tumbling event-time window."""

    event_id: UUID
    schema_version: Literal[1] = SCHEMA_VERSION
    stats_id: str = Field(description="Hash of app_id, model_version and window_start: the topic key.")
    app_id: Id
    model_version: Id
    window_start: AwareDatetime
    window_end: AwareDatetime
    interactions: int = Field(ge=0)
    thumbs_up: int = Field(ge=0)
    thumbs_down: int = Field(ge=0)
    ratings: int = Field(0, ge=0)
    rating_mean: float | None = None
    thumbs_up_rate: float | None = Field(None, ge=0.0, le=1.0)
    thumbs_down_rate: float | None = Field(None, ge=0.0, le=1.0)
    pairs_emitted: int = Field(ge=0)
    tasks_queued: int = Field(ge=0)
    is_final: bool = Field(description="False while the window may still change (allowed lateness).")
    updated_at: AwareDatetime


class DeadLetter(Contract):
    """A message that could not be processed, with its origin and the reason."""

    event_id: UUID
    schema_version: Literal[1] = SCHEMA_VERSION
    failed_at: AwareDatetime
    service: str
    source_topic: str
    source_partition: int | None = None
    source_offset: int | None = None
    source_key: str | None = None
    raw_value: str | None = Field(description="The original bytes, as text or base64 (see raw_encoding).")
    raw_encoding: Literal["utf-8", "base64"] = "utf-8"
    error_code: str
    reason: str
    errors: list[dict[str, Any]] = Field(default_factory=list)

    @staticmethod
    def encode_raw(raw: bytes | None) -> tuple[str | None, Literal["utf-8", "base64"]]:
        if raw is None:
            return None, "utf-8"
        try:
            return raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii"), "base64"

    def raw_bytes(self) -> bytes | None:
        if self.raw_value is None:
            return None
        return base64.b64decode(self.raw_value) if self.raw_encoding == "base64" else self.raw_value.encode()


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


def utcnow() -> datetime:
    return datetime.now(UTC)
