"""What comes in: interactions (what the model said) and votes of every kind (what people thought of it)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BeforeValidator,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, PydanticKnownError

from shared.events.base import Contract, Domain, Event, Id, Tag, check_text, has_nul, limits_of


class Message(Contract):
    role: Literal["system", "user", "assistant", "tool"]
    content: str

    _content_size = field_validator("content")(check_text)


class Response(Contract):
    content: str
    model: Id
    model_version: Id

    _content_size = field_validator("content")(check_text)


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
        limit = limits_of(info).max_messages
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
        limit = limits_of(info).max_tags
        if len(value) > limit:
            raise PydanticCustomError(
                "too_many_tags", "{count} tags, more than the limit of {limit}", {"count": len(value), "limit": limit}
            )
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_bounded(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        limit = limits_of(info).max_metadata_bytes
        try:
            text = orjson.dumps(value, default=str)
            # orjson writes NUL as the escape \u0000: without that text (the common case) there is none; with it,
            # the text may be a string's own backslash followed by u0000, so the values are looked at.
            nul = b"\\u0000" in text and has_nul(value)
        except orjson.JSONEncodeError:
            text = json.dumps(value, separators=(",", ":"), default=str).encode("utf-8", "surrogatepass")
            nul = has_nul(value)
        size = len(text)
        if nul:
            raise PydanticCustomError("nul_character", "metadata must not contain the NUL character (\\u0000)")
        if size > limit:
            raise PydanticCustomError(
                "metadata_too_large",
                "metadata is {size} bytes as JSON, more than the limit of {limit}",
                {"size": size, "limit": limit},
            )
        return value


def _exact_int(value: Any) -> Any:
    """Refuse booleans and floats where the contract says an integer: `true` is not +1, `4.0` is not 4."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticKnownError("int_type")
    return value


# ±1 and 1..5, as integers only (pydantic's lax mode would take true as 1 and 1.0 as 1).
Sign = Annotated[Literal[1, -1], BeforeValidator(_exact_int)]
Stars = Annotated[int, Field(ge=1, le=5), BeforeValidator(_exact_int)]


class _ThumbFields(Contract):
    kind: Literal["thumb"]
    value: Sign


class _RatingFields(Contract):
    kind: Literal["rating"]
    value: Stars


class _ComparisonFields(Contract):
    kind: Literal["comparison"]
    preferred_interaction_id: Id
    other_interaction_id: Id

    @model_validator(mode="after")
    def _two_different(self) -> _ComparisonFields:
        if self.preferred_interaction_id == self.other_interaction_id:
            raise PydanticCustomError("same_interaction", "preferred and other interaction ids must differ")
        return self


class _EditFields(Contract):
    kind: Literal["edit"]
    edited_content: str = Field(min_length=1)

    _content_size = field_validator("edited_content")(check_text)


class _CommentFields(Contract):
    kind: Literal["comment"]
    text: str = Field(min_length=1)

    _content_size = field_validator("text")(check_text)


# Why a vote was quarantined (accepted and kept, moving nothing): a reason code, e.g. voter_hourly_budget.
QuarantineReason = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class _VoteBase(Event):
    interaction_id: Id
    source: Literal["end_user", "expert"] = "end_user"
    user_ref: Id | None = None
    annotator_id: Id | None = None
    quarantine_reason: QuarantineReason | None = Field(
        None,
        description="Stamped by feedback on an end user's vote past a budget (voter_hourly_budget): the vote is "
        "kept and counted in the stats as quarantined, and moves no pair. Apps cannot set it.",
    )

    @model_validator(mode="after")
    def _voter_named(self) -> _VoteBase:
        if self.source == "end_user" and self.user_ref is None:
            raise PydanticCustomError("missing_voter", "user_ref is required when source is end_user")
        if self.source == "expert" and self.annotator_id is None:
            raise PydanticCustomError("missing_voter", "annotator_id is required when source is expert")
        if self.source == "expert" and self.quarantine_reason is not None:
            raise PydanticCustomError("expert_quarantined", "only end users' votes are quarantined")
        return self

    @property
    def voter(self) -> str:
        """Who voted, unique across sources: latest vote per (voter, interaction) wins."""
        return f"user:{self.user_ref}" if self.source == "end_user" else f"expert:{self.annotator_id}"


# The kind's own fields come first among the bases, so a vote's JSON lists the common fields first.
class ThumbVote(_ThumbFields, _VoteBase):
    """A thumb up (+1) or down (-1) on one answer."""


class RatingVote(_RatingFields, _VoteBase):
    """A 1-5 rating of one answer."""


class ComparisonVote(_ComparisonFields, _VoteBase):
    """Which of two answers to one prompt is better."""


class EditVote(_EditFields, _VoteBase):
    """The answer as it should have been."""


class CommentVote(_CommentFields, _VoteBase):
    """Free text about one answer."""


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

    _content_size = field_validator("rewrite", "comment")(check_text)

    @model_validator(mode="after")
    def _expert_only(self) -> VerdictVote:
        if self.source != "expert":
            raise PydanticCustomError("verdict_not_expert", "a verdict must have source expert")
        return self


# What the `votes` topic carries: end users' votes (as feedback validated them) and experts' verdicts.
Vote = Annotated[
    ThumbVote | RatingVote | ComparisonVote | EditVote | CommentVote | VerdictVote,
    Field(discriminator="kind"),
]
VOTE_ADAPTER: TypeAdapter[Vote] = TypeAdapter(Vote)


class _EndUserVoteBase(Event):
    interaction_id: Id
    source: Literal["end_user"] = Field("end_user", description="Always end_user: experts answer through tasks.")
    user_ref: Id = Field(description="The app's pseudonymous reference of the voter.")


class EndUserThumbVote(_ThumbFields, _EndUserVoteBase):
    """A thumb up (+1) or down (-1) on one answer."""


class EndUserRatingVote(_RatingFields, _EndUserVoteBase):
    """A 1-5 rating of one answer."""


class EndUserComparisonVote(_ComparisonFields, _EndUserVoteBase):
    """Which of two answers to one prompt is better (both answers of the same prompt group)."""


class EndUserEditVote(_EditFields, _EndUserVoteBase):
    """The answer as it should have been."""


class EndUserCommentVote(_CommentFields, _EndUserVoteBase):
    """Free text about one answer."""


# What apps may send (POST /v1/votes*, feedback.raw): end-user evidence only. Expert verdicts have one
# way in, an annotator's lease and POST /v1/tasks/{task_id}/verdict (see ARCHITECTURE.md, Trust boundaries).
EndUserVote = Annotated[
    EndUserThumbVote | EndUserRatingVote | EndUserComparisonVote | EndUserEditVote | EndUserCommentVote,
    Field(discriminator="kind"),
]
END_USER_VOTE_ADAPTER: TypeAdapter[EndUserVote] = TypeAdapter(EndUserVote)
# Fields only the expert shape has: an app's vote naming one of them is refused as `forbidden_source`.
EXPERT_ONLY_FIELDS = (
    "annotator_id",
    "task_id",
    "verdict",
    "rewrite",
    "a_interaction_id",
    "b_interaction_id",
    "reviewers",
    "agreement",
    "shown_left",
)
