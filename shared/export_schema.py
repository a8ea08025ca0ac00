"""The columns of each export kind: Arrow types, what each means, and the Hugging Face features they make.

TRL reads a few columns by name (its "Dataset formats and types"): `dpo` is conversational
preference (`prompt`, `chosen`, `rejected`), `reward` the same with an implicit prompt (`chosen`,
`rejected` hold the whole conversation, and there must be no `prompt` column, or TRL would take it
as an explicit one), `kto` unpaired preference (`prompt`, `completion`, `label`), `sft`
conversational language modeling (`messages`). Every other column is provenance, named so that no
TRL trainer or data utility gives it a meaning (see `TRL_COLUMN_NAMES`). `openai-dpo` follows
OpenAI's preference fine-tuning lines exactly (`input.messages`, `preferred_output`,
`non_preferred_output`) and carries nothing else, since that upload validates its keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

# Column names TRL (1.x) reads or writes by name: the dataset types (prompt, chosen, rejected, completion,
# label, messages, text, conversations), the reward loss's margin, multimodal and tool columns, chat
# template arguments, and the tokenized / precomputed columns its trainers and collators produce.
# Read from trl/data_utils.py and trl/trainer/{dpo,kto,reward,sft}_trainer.py.
TRL_COLUMN_NAMES = frozenset(
    {
        "prompt",
        "chosen",
        "rejected",
        "completion",
        "label",
        "messages",
        "text",
        "conversations",
        "margin",
        "images",
        "image",
        "tools",
        "chat_template_kwargs",
        "input_ids",
        "attention_mask",
        "labels",
        "token_type_ids",
        "mm_token_type_ids",
        "position_ids",
        "seq_lengths",
        "completion_mask",
        "assistant_masks",
        "prompt_ids",
        "completion_ids",
        "chosen_ids",
        "rejected_ids",
        "chosen_input_ids",
        "rejected_input_ids",
        "KL_completion_ids",
        "ref_logps",
        "ref_KL_logps",
        "ref_chosen_logps",
        "ref_rejected_logps",
        "pixel_values",
        "image_grid_thw",
        "image_position_ids",
    }
)
# The TRL columns of each kind (the rest is provenance).
TRL_COLUMNS_BY_KIND: dict[str, tuple[str, ...]] = {
    "dpo": ("prompt", "chosen", "rejected"),
    "reward": ("chosen", "rejected"),
    "kto": ("prompt", "completion", "label"),
    "sft": ("messages",),
    "openai-dpo": (),
}
# Evidence counts a pair can carry (services/aggregator/pairs.py), as fixed struct fields.
EVIDENCE_FIELDS = (
    "chosen_up",
    "chosen_down",
    "rejected_up",
    "rejected_down",
    "comparisons_for",
    "comparisons_against",
    "edits",
    "experts",
)

MESSAGE = pa.struct([pa.field("role", pa.string(), nullable=False), pa.field("content", pa.string(), nullable=False)])
MESSAGES = pa.list_(pa.field("item", MESSAGE, nullable=False))
TIMESTAMP = pa.timestamp("us", tz="UTC")
EVIDENCE = pa.struct([pa.field(name, pa.int64(), nullable=False) for name in EVIDENCE_FIELDS])


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    meaning: str
    nullable: bool = False

    def field(self) -> pa.Field:
        return pa.field(self.name, self.type, nullable=self.nullable)


def _c(name: str, type_: pa.DataType, meaning: str, nullable: bool = False) -> Column:
    return Column(name, type_, meaning, nullable)


_GROUP = [
    _c("prompt_key", pa.string(), "The prompt group (hash of app_id and the normalized messages); the split is by it."),
    _c("app_id", pa.string(), "The app the interactions came from."),
    _c("domain", pa.string(), "The routed domain (the interaction's own, else the domain rules, else general)."),
]
_TIMES = [
    _c("occurred_at", TIMESTAMP, "Event time of the newest evidence behind the row (UTC)."),
    _c("updated_at", TIMESTAMP, "When the row's source last changed (UTC); `since` / `until` filter on it."),
]
_PAIR = [
    _c("pair_id", pa.string(), "Deterministic pair id (hash of prompt_key and both interaction ids)."),
    _c("method", pa.string(), "What decided the pair: votes, comparison, edit or expert."),
    _c("confidence", pa.float64(), "How sure the aggregator is that chosen is better (0-1)."),
    _c("chosen_interaction_id", pa.string(), "The chosen answer's interaction id (rewrite:TASK: an expert rewrite)."),
    _c("chosen_model", pa.string(), "Model of the chosen answer (human-edit / expert for human-written text)."),
    _c("chosen_model_version", pa.string(), "Model version of the chosen answer."),
    _c("rejected_interaction_id", pa.string(), "The rejected answer's interaction id."),
    _c("rejected_model", pa.string(), "Model of the rejected answer."),
    _c("rejected_model_version", pa.string(), "Model version of the rejected answer."),
    _c("evidence", EVIDENCE, "Evidence counts: effective 👍/👎 on each side, comparisons for/against, edits, experts."),
    *_GROUP,
    *_TIMES,
]
_KTO = [
    _c("origin", pa.string(), "pair (one side of a live pair) or approval (an answer judged on its own votes)."),
    _c("side", pa.string(), "chosen or rejected for a pair's side; null for an approval row.", nullable=True),
    _c("pair_id", pa.string(), "The pair a pair row comes from; null for an approval row.", nullable=True),
    _c("method", pa.string(), "The pair's method, or approval."),
    _c("confidence", pa.float64(), "The pair's confidence, or max(P, 1-P) with P = P(approval > 1/2)."),
    _c("interaction_id", pa.string(), "The completion's interaction id."),
    _c("model", pa.string(), "Model of the completion."),
    _c("model_version", pa.string(), "Model version of the completion."),
    _c("votes_up", pa.int64(), "Effective 👍 on the completion (latest vote per voter and answer)."),
    _c("votes_down", pa.int64(), "Effective 👎 on the completion."),
    *_GROUP,
    *_TIMES,
]
_SFT = [
    _c("example_id", pa.string(), "edit:EVENT_ID for an end user's edit, rewrite:TASK_ID for an expert rewrite."),
    _c("origin", pa.string(), "edit (an end user's edit) or rewrite (an expert's rewrite)."),
    _c("method", pa.string(), "edit or expert."),
    _c("pair_id", pa.string(), "The pair of the better answer over the original, when one is live.", nullable=True),
    _c("confidence", pa.float64(), "The pair's confidence (1.0 for an edit with no live pair)."),
    _c("interaction_id", pa.string(), "The original answer that was edited or rewritten."),
    _c("model", pa.string(), "Model of the original answer."),
    _c("model_version", pa.string(), "Model version of the original answer."),
    *_GROUP,
    *_TIMES,
]

COLUMNS: dict[str, tuple[Column, ...]] = {
    "dpo": (
        _c("prompt", MESSAGES, "The conversation before the answer, every turn in order (TRL: prompt)."),
        _c("chosen", MESSAGES, "The better answer: one assistant message (TRL: chosen)."),
        _c("rejected", MESSAGES, "The worse answer: one assistant message (TRL: rejected)."),
        *_PAIR,
    ),
    "reward": (
        _c("chosen", MESSAGES, "The conversation ending with the better answer (TRL: implicit-prompt chosen)."),
        _c("rejected", MESSAGES, "The conversation ending with the worse answer (TRL: implicit-prompt rejected)."),
        *_PAIR,
    ),
    "kto": (
        _c("prompt", MESSAGES, "The conversation before the answer, every turn in order (TRL: prompt)."),
        _c("completion", MESSAGES, "The answer: one assistant message (TRL: completion)."),
        _c("label", pa.bool_(), "True: a desirable answer; False: an undesirable one (TRL: label)."),
        *_KTO,
    ),
    "sft": (
        _c("messages", MESSAGES, "The conversation ending with the better, human-written answer (TRL: messages)."),
        *_SFT,
    ),
    "openai-dpo": (
        _c("input", pa.struct([pa.field("messages", MESSAGES, nullable=False)]), "input.messages: the prompt."),
        _c("preferred_output", MESSAGES, "The better answer: one assistant message."),
        _c("non_preferred_output", MESSAGES, "The worse answer: one assistant message."),
    ),
}
SPLIT = _c("split", pa.string(), "train or test (only when one stream holds both splits).")


def schema_of(kind: str, with_split: bool = False) -> pa.Schema:
    """The Arrow schema of a kind's rows (with the `split` column last when asked)."""
    columns = (*COLUMNS[kind], SPLIT) if with_split else COLUMNS[kind]
    return pa.schema([c.field() for c in columns])


def _feature(name: str | None, type_: pa.DataType) -> dict[str, Any]:
    """One entry of the Hugging Face `dataset_info.features` YAML list for an Arrow type."""
    entry: dict[str, Any] = {} if name is None else {"name": name}
    if pa.types.is_list(type_):
        value = type_.value_type
        entry["list"] = [_feature(f.name, f.type) for f in value] if pa.types.is_struct(value) else hf_dtype(value)
    elif pa.types.is_struct(type_):
        entry["struct"] = [_feature(f.name, f.type) for f in type_]
    else:
        entry["dtype"] = hf_dtype(type_)
    return entry


# datasets names a few Arrow types its own way: Value("float64") is Arrow's double, Value("bool") its bool.
_DATASETS_DTYPES = {"double": "float64", "float": "float32", "halffloat": "float16"}


def hf_dtype(type_: pa.DataType) -> str:
    """The `dtype` datasets gives a primitive Arrow type (float64 for double, bool, timestamp[us, tz=UTC])."""
    if pa.types.is_timestamp(type_):
        return f"timestamp[{type_.unit}, tz={type_.tz}]" if type_.tz else f"timestamp[{type_.unit}]"
    if pa.types.is_boolean(type_):
        return "bool"
    return _DATASETS_DTYPES.get(str(type_), str(type_))


def hf_features(schema: pa.Schema) -> list[dict[str, Any]]:
    """The `dataset_info.features` list of a dataset card for this schema (what `datasets` writes)."""
    return [_feature(field.name, field.type) for field in schema]
