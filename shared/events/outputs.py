"""What the pipeline publishes: preference pairs, annotation requests, feedback stats, dead letters."""

from __future__ import annotations

import base64
from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, Field, model_validator
from pydantic_core import PydanticCustomError

from shared.events.base import SCHEMA_VERSION, Contract, Domain, Id
from shared.events.inputs import Message


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
    thumbs_up: int = Field(ge=0, description="Every 👍 vote event of the window (raw: a voter's repeats included).")
    thumbs_down: int = Field(ge=0, description="Every 👎 vote event of the window (raw).")
    ratings: int = Field(0, ge=0, description="Every rating event of the window (raw).")
    rating_mean: float | None = None
    thumbs_up_rate: float | None = Field(None, ge=0.0, le=1.0)
    thumbs_down_rate: float | None = Field(None, ge=0.0, le=1.0)
    effective_thumbs_up: int = Field(
        0,
        ge=0,
        description="👍 counted as the pair math counts them: the latest per voter and answer, "
        "quarantined votes and flagged voters' votes left out (thumbs_up counts every vote event).",
    )
    effective_thumbs_down: int = Field(0, ge=0, description="👎 counted as effective_thumbs_up.")
    effective_ratings: int = Field(0, ge=0, description="Ratings counted as effective_thumbs_up.")
    effective_rating_mean: float | None = None
    quarantined_votes: int = Field(
        0,
        ge=0,
        description="Vote events of this window marked quarantined (e.g. past the per-voter hourly budget): "
        "in the raw counts, never in the effective ones.",
    )
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
