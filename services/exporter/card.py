"""What an export folder says about itself, pure: manifest.json and the dataset card (README.md).

The card opens with the YAML header the Hugging Face Hub and `datasets.load_dataset(DIR)` read:
`configs` (one `default` config whose `data_files` map each split to its files) and `dataset_info`
(`features` as `datasets` writes them, the splits and their sizes), then says what the export holds
and what each column means.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from shared.export_schema import COLUMNS, TRL_COLUMNS_BY_KIND, hf_dtype, hf_features
from shared.exports import SCHEMA_VERSION

DATA_DIR = "data"
EXTENSIONS = {"parquet": "parquet", "jsonl": "jsonl"}
_TRAINERS = {
    "dpo": "DPOTrainer (conversational preference)",
    "reward": "RewardTrainer (preference with an implicit prompt)",
    "kto": "KTOTrainer (unpaired preference)",
    "sft": "SFTTrainer (conversational language modeling)",
    "openai-dpo": "OpenAI preference fine-tuning (method dpo)",
}
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./*\[\], =-]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def data_file(split: str, fmt: str) -> str:
    """The one data file of a split, named as `push_to_hub` names shards (data/train-00000-of-00001.parquet)."""
    return f"{DATA_DIR}/{split}-00000-of-00001.{EXTENSIONS[fmt]}"


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS and not text.endswith(" ") and ": " not in text:
        return text
    return json.dumps(text)


def _empty_or_scalar(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{}"
    return "[]" if isinstance(value, list) else _scalar(value)


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML of dicts, lists and scalars (strings quoted as JSON where YAML would misread them)."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, (Mapping, list)) and item:
                lines.append(f"{pad}{_scalar(key)}:")
                lines.append(to_yaml(item, indent + 2))
            else:
                lines.append(f"{pad}{_scalar(key)}: {_empty_or_scalar(item)}")
    else:
        for item in value:
            if isinstance(item, (Mapping, list)) and item:
                nested = to_yaml(item, indent + 2)
                lines.append(f"{pad}- {nested[indent + 2 :]}")
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    return "\n".join(lines)


def manifest(
    *,
    kind: str,
    fmt: str,
    created_at: str,
    snapshot: Mapping[str, Any],
    request: Mapping[str, Any],
    counts: Mapping[str, int],
    columns: list[str],
) -> dict[str, Any]:
    """manifest.json: what was exported, from which snapshot, with which filters, how many rows where."""
    per_split = {split: counts.get(split, 0) for split in ("train", "test")}
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "format": fmt,
        "created_at": created_at,
        "snapshot": dict(snapshot),
        "filters": dict(request.get("filters", {})),
        "test_size": request.get("test_size"),
        "counts": {kind: {**per_split, "total": sum(per_split.values())}},
        "files": {split: [data_file(split, fmt)] for split in ("train", "test") if counts.get(split)},
        "columns": columns,
    }


def _header(
    kind: str, schema: pa.Schema, counts: Mapping[str, int], fmt: str, sizes: Mapping[str, int]
) -> dict[str, Any]:
    splits = [split for split in ("train", "test") if counts.get(split)]
    return {
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"{DATA_DIR}/{split}-*"} for split in splits],
            }
        ],
        "dataset_info": {
            "features": hf_features(schema),
            "splits": [
                {"name": split, "num_bytes": sizes.get(split, 0), "num_examples": counts[split]} for split in splits
            ],
        },
        "tags": ["llm-feedback", "human-feedback", kind, fmt],
    }


def _short_type(type_: pa.DataType) -> str:
    """A type as a reader of the card wants it: list<struct<role, content>>, not Arrow's nullability notes."""
    if pa.types.is_list(type_):
        return f"list<{_short_type(type_.value_type)}>"
    if pa.types.is_struct(type_):
        return "struct<" + ", ".join(f"{field.name}: {_short_type(field.type)}" for field in type_) + ">"
    return hf_dtype(type_)


def _column_table(kind: str, schema: pa.Schema) -> list[str]:
    meanings = {column.name: column.meaning for column in COLUMNS[kind]}
    lines = ["| column | type | meaning |", "|---|---|---|"]
    for field in schema:
        meaning = meanings.get(field.name, "").replace("|", "\\|")
        lines.append(f"| `{field.name}` | `{_short_type(field.type)}` | {meaning} |")
    return lines


def dataset_card(
    kind: str, fmt: str, schema: pa.Schema, info: Mapping[str, Any], sizes: Mapping[str, int] | None = None
) -> str:
    """README.md: the YAML header, then what the export is, how to load it, and every column's meaning.

    `sizes`: each split's Arrow size in bytes (the card's num_bytes).
    """
    counts = info["counts"][kind]
    trl = ", ".join(f"`{c}`" for c in TRL_COLUMNS_BY_KIND[kind]) or "none"
    filters = {k: v for k, v in info["filters"].items() if v is not None}
    body = [
        "---",
        to_yaml(_header(kind, schema, counts, fmt, sizes or {})),
        "---",
        "",
        f"# `{kind}` export of the LLM feedback pipeline",
        "",
        f"Training data for {_TRAINERS[kind]}, from one consistent snapshot of the aggregator's live state",
        f"(taken at {info['snapshot'].get('taken_at')}, PostgreSQL snapshot `{info['snapshot'].get('pg_snapshot')}`).",
        f"Filters: {json.dumps(filters) if filters else 'none'}; test share of prompt groups: {info['test_size']}.",
        "The split is by prompt group: no prompt is in both train and test.",
        "",
        "| split | rows |",
        "|---|---:|",
        *(f"| {split} | {counts[split]} |" for split in ("train", "test")),
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        'dataset = load_dataset("path/to/this/folder")',
        "```",
        "",
        f"TRL columns: {trl}. Every other column is provenance; none uses a name TRL gives a meaning to.",
        "",
        *_column_table(kind, schema),
        "",
    ]
    return "\n".join(body)
