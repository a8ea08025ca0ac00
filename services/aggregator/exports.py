"""Export row shaping, pure: live pairs, answers' approval and SFT examples -> rows of each export kind.

- `dpo`: a live pair as TRL's conversational preference: `prompt` = the pair's messages (every turn,
  in order), `chosen` / `rejected` = one assistant message each.
- `reward`: the same pair with an implicit prompt: `chosen` / `rejected` = prompt + the answer.
- `openai-dpo`: the same pair as an OpenAI preference line (no provenance: that upload checks keys).
- `kto`: TRL's unpaired preference. Every live pair gives two rows (chosen: label True, rejected:
  False), as TRL's `unpair_preference_dataset` would. An answer that is a side of no live pair
  gives a row when its effective votes alone are confident: approval ~ Beta(1 + up, 1 + down),
  P = P(approval > 1/2), label True at P >= threshold, False at P <= 1 - threshold.
- `sft`: the prompt + the better, human-written answer: each end user's latest edit of an answer,
  and each expert rewrite (the chosen side of a live expert pair written by an annotator, once per
  rewrite even when it was paired with both candidates of a task).

Provenance columns sit beside the TRL ones (shared/export_schema.py). Rows are dicts keyed by column
name; `shared.export_files.rows_to_batch` types them. Nothing here does I/O or reads settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.aggregator.beta import prob_above_half
from services.aggregator.outputs import SYNTHETIC_MODELS
from services.aggregator.pairs import EXPERT_MODEL
from shared.export_schema import EVIDENCE_FIELDS
from shared.exports import ExportFilters, split_of

Row = dict[str, Any]
Messages = list[dict[str, str]]


@dataclass(frozen=True)
class ApprovalRecord:
    """An answer with its effective approval votes (latest vote per voter and answer)."""

    app_id: str
    prompt_key: str
    prompt: Messages
    interaction_id: str
    content: str
    model: str
    model_version: str
    domain: str
    up: int
    down: int
    newest_vote_at: datetime


@dataclass(frozen=True)
class EditRecord:
    """An end user's latest edit of an answer (an SFT example), with the live edit pair when there is one."""

    app_id: str
    prompt_key: str
    prompt: Messages
    event_id: str
    content: str
    interaction_id: str
    model: str
    model_version: str
    domain: str
    updated_at: datetime
    pair_id: str | None = None
    confidence: float | None = None
    occurred_at: datetime | None = None


def _messages(messages: Sequence[Mapping[str, Any]]) -> Messages:
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]


def _assistant(content: str) -> Messages:
    return [{"role": "assistant", "content": content}]


def _time(value: str | datetime) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(UTC)


def evidence_counts(evidence: Mapping[str, Any]) -> dict[str, int]:
    """The fixed evidence struct: every known count, 0 where the pair has none."""
    return {name: int(evidence.get(name, 0)) for name in EVIDENCE_FIELDS}


def _pair_provenance(pair: Mapping[str, Any]) -> Row:
    chosen, rejected = pair["chosen"], pair["rejected"]
    return {
        "pair_id": pair["pair_id"],
        "method": pair["method"],
        "confidence": float(pair["confidence"]),
        "chosen_interaction_id": chosen["interaction_id"],
        "chosen_model": chosen["model"],
        "chosen_model_version": chosen["model_version"],
        "rejected_interaction_id": rejected["interaction_id"],
        "rejected_model": rejected["model"],
        "rejected_model_version": rejected["model_version"],
        "evidence": evidence_counts(pair.get("evidence") or {}),
        **_group(pair),
    }


def _group(pair: Mapping[str, Any]) -> Row:
    return {
        "prompt_key": pair["prompt_key"],
        "app_id": pair["app_id"],
        "domain": pair["domain"],
        "occurred_at": _time(pair["occurred_at"]),
        "updated_at": _time(pair["updated_at"]),
    }


def dpo_row(pair: Mapping[str, Any]) -> Row:
    """A live pair (PreferencePair JSON) as a conversational preference row."""
    return {
        "prompt": _messages(pair["prompt"]),
        "chosen": _assistant(pair["chosen"]["content"]),
        "rejected": _assistant(pair["rejected"]["content"]),
        **_pair_provenance(pair),
    }


def reward_row(pair: Mapping[str, Any]) -> Row:
    """A live pair as an implicit-prompt preference row (the prompt is inside chosen and rejected)."""
    prompt = _messages(pair["prompt"])
    return {
        "chosen": prompt + _assistant(pair["chosen"]["content"]),
        "rejected": prompt + _assistant(pair["rejected"]["content"]),
        **_pair_provenance(pair),
    }


def openai_dpo_row(pair: Mapping[str, Any]) -> Row:
    """A live pair as one line of OpenAI's preference fine-tuning file."""
    return {
        "input": {"messages": _messages(pair["prompt"])},
        "preferred_output": _assistant(pair["chosen"]["content"]),
        "non_preferred_output": _assistant(pair["rejected"]["content"]),
    }


def kto_rows_from_pair(pair: Mapping[str, Any]) -> list[Row]:
    """Both sides of a live pair: the chosen answer desirable, the rejected one undesirable."""
    prompt = _messages(pair["prompt"])
    evidence = evidence_counts(pair.get("evidence") or {})
    rows = []
    for side, label in (("chosen", True), ("rejected", False)):
        answer = pair[side]
        rows.append(
            {
                "prompt": prompt,
                "completion": _assistant(answer["content"]),
                "label": label,
                "origin": "pair",
                "side": side,
                "pair_id": pair["pair_id"],
                "method": pair["method"],
                "confidence": float(pair["confidence"]),
                "interaction_id": answer["interaction_id"],
                "model": answer["model"],
                "model_version": answer["model_version"],
                "votes_up": evidence[f"{side}_up"],
                "votes_down": evidence[f"{side}_down"],
                **_group(pair),
            }
        )
    return rows


def approval_label(up: int, down: int, threshold: float) -> tuple[bool, float] | None:
    """(label, confidence) when an answer's approval alone is confident, else None.

    P = P(theta > 1/2) for theta ~ Beta(1 + up, 1 + down); True at P >= threshold, False at
    P <= 1 - threshold; the confidence is max(P, 1 - P).
    """
    p = prob_above_half(up, down)
    if p >= threshold:
        return True, p
    if 1.0 - p >= threshold:
        return False, 1.0 - p
    return None


def kto_row_from_approval(record: ApprovalRecord, threshold: float) -> Row | None:
    """An answer judged on its own effective votes, or None when they are not confident either way."""
    judged = approval_label(record.up, record.down, threshold)
    if judged is None:
        return None
    label, confidence = judged
    when = _time(record.newest_vote_at)
    return {
        "prompt": _messages(record.prompt),
        "completion": _assistant(record.content),
        "label": label,
        "origin": "approval",
        "side": None,
        "pair_id": None,
        "method": "approval",
        "confidence": round(confidence, 6),
        "interaction_id": record.interaction_id,
        "model": record.model,
        "model_version": record.model_version,
        "votes_up": record.up,
        "votes_down": record.down,
        "prompt_key": record.prompt_key,
        "app_id": record.app_id,
        "domain": record.domain,
        "occurred_at": when,
        "updated_at": when,
    }


def sft_row_from_edit(record: EditRecord) -> Row:
    """An end user's edit: the prompt and the answer as the user wrote it."""
    updated = _time(record.updated_at)
    return {
        "messages": _messages(record.prompt) + _assistant(record.content),
        "example_id": f"edit:{record.event_id}",
        "origin": "edit",
        "method": "edit",
        "pair_id": record.pair_id,
        "confidence": float(record.confidence if record.confidence is not None else 1.0),
        "interaction_id": record.interaction_id,
        "model": record.model,
        "model_version": record.model_version,
        "prompt_key": record.prompt_key,
        "app_id": record.app_id,
        "domain": record.domain,
        "occurred_at": _time(record.occurred_at) if record.occurred_at else updated,
        "updated_at": updated,
    }


def is_expert_rewrite(pair: Mapping[str, Any]) -> bool:
    """A pair whose chosen side an annotator wrote (the rewrite of a task), not a model's answer."""
    return pair["method"] == "expert" and pair["chosen"]["model"] == EXPERT_MODEL


def sft_row_from_rewrite(pair: Mapping[str, Any]) -> Row | None:
    """An expert rewrite: the prompt and the rewrite; None for a pair that is not one."""
    if not is_expert_rewrite(pair):
        return None
    rejected = pair["rejected"]
    return {
        "messages": _messages(pair["prompt"]) + _assistant(pair["chosen"]["content"]),
        "example_id": pair["chosen"]["interaction_id"],
        "origin": "rewrite",
        "method": "expert",
        "pair_id": pair["pair_id"],
        "confidence": float(pair["confidence"]),
        "interaction_id": rejected["interaction_id"],
        "model": rejected["model"],
        "model_version": rejected["model_version"],
        **_group(pair),
    }


def model_versions(row: Mapping[str, Any]) -> tuple[str, ...]:
    """The model versions a row is about: both sides of a pair row, else the row's answer."""
    if "chosen_model_version" in row:
        return (row["chosen_model_version"], row["rejected_model_version"])
    return (row["model_version"],)


def is_human_side(model: str) -> bool:
    """True for text a person wrote (an edit or an expert rewrite) rather than a model."""
    return model in SYNTHETIC_MODELS


def matches(row: Mapping[str, Any], filters: ExportFilters) -> bool:
    """Whether a shaped row passes the filters (SQL applies them early where it can; this decides)."""
    if filters.app_id is not None and row["app_id"] != filters.app_id:
        return False
    if filters.domain is not None and row["domain"] != filters.domain:
        return False
    if filters.method is not None and row["method"] != filters.method:
        return False
    if filters.model_version is not None and filters.model_version not in model_versions(row):
        return False
    if filters.min_confidence is not None and row["confidence"] < filters.min_confidence:
        return False
    if filters.since is not None and row["updated_at"] < filters.since:
        return False
    return filters.until is None or row["updated_at"] < filters.until


@dataclass(frozen=True)
class Selection:
    """The filters and the split of one export: which shaped rows it keeps, and on which side."""

    filters: ExportFilters
    test_size: float
    split: str = "all"

    def place(self, row: Row) -> str | None:
        """ "train" / "test" for a row this export keeps (judged on its provenance), None for one it drops."""
        if not matches(row, self.filters):
            return None
        side = split_of(row["prompt_key"], self.test_size)
        return side if self.split in ("all", side) else None


def _placed(rows: list[Row], side: str | None) -> list[Row]:
    if side is None:
        return []
    for row in rows:
        row["split"] = side
    return rows


def rows_from_pair(kind: str, pair: Mapping[str, Any], selection: Selection) -> list[Row]:
    """The rows of `kind` a live pair gives, filtered and placed (each row gets its `split`)."""
    if kind == "sft":
        rewrite = sft_row_from_rewrite(pair)
        return [] if rewrite is None else _placed([rewrite], selection.place(rewrite))
    if kind in ("dpo", "reward"):
        row = dpo_row(pair) if kind == "dpo" else reward_row(pair)
        return _placed([row], selection.place(row))
    # kto and openai-dpo rows do not carry every pair column: the pair's own provenance decides.
    side = selection.place(_pair_provenance(pair))
    if side is None:
        return []
    return _placed(kto_rows_from_pair(pair) if kind == "kto" else [openai_dpo_row(pair)], side)


def row_from_approval(record: ApprovalRecord, threshold: float, selection: Selection) -> list[Row]:
    """The kto row of an answer judged on its own approval, when confident and selected."""
    row = kto_row_from_approval(record, threshold)
    return [] if row is None else _placed([row], selection.place(row))


def row_from_edit(record: EditRecord, selection: Selection) -> list[Row]:
    """The sft row of an end user's edit, when selected."""
    row = sft_row_from_edit(record)
    return _placed([row], selection.place(row))
