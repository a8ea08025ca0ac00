"""The export contract: kinds, formats, filters and the train/test split (aggregator route and exporter CLI).

A request names a kind (`dpo`, `reward`, `kto`, `sft`, `openai-dpo`), a format (`parquet`, `jsonl`,
or `arrow`: an Arrow IPC stream, what the exporter CLI reads, since it can be divided by split while
it arrives), filters (`app_id`, `domain`, `method`, `model_version`, `min_confidence`, `since`,
`until`) and the split (`test_size`, `split`). `parse_request` validates raw query parameters and
raises ContractError naming every bad one, so HTTP answers 422 and the CLI exits 2 with the name.

The split is by prompt group: `split_of(prompt_key, test_size)` compares a hash of the prompt_key
with `test_size`, so every row of a group lands on the same side, the same group always lands on the
same side, and a larger `test_size` only moves groups from train to test (never back).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from shared.errors import ContractError

SCHEMA_VERSION = 1
KINDS = ("dpo", "reward", "kto", "sft", "openai-dpo")
FORMATS = ("parquet", "jsonl", "arrow")
SPLITS = ("train", "test", "all")
PAIR_METHODS = ("votes", "comparison", "edit", "expert")
# What a row's `method` can be, per kind: kto adds answers judged on their own approval; sft rows
# are end-user edits or expert rewrites.
METHODS_BY_KIND: dict[str, tuple[str, ...]] = {
    "dpo": PAIR_METHODS,
    "reward": PAIR_METHODS,
    "openai-dpo": PAIR_METHODS,
    "kto": (*PAIR_METHODS, "approval"),
    "sft": ("edit", "expert"),
}
# openai-dpo is what OpenAI's fine-tuning upload takes: JSONL lines (and the Arrow stream the exporter
# CLI reads to write them), never Parquet.
FORMATS_BY_KIND: dict[str, tuple[str, ...]] = {kind: FORMATS for kind in KINDS} | {"openai-dpo": ("jsonl", "arrow")}
MEDIA_TYPES = {
    "parquet": "application/vnd.apache.parquet",
    "jsonl": "application/jsonl",
    "arrow": "application/vnd.apache.arrow.stream",
}
FILTER_NAMES = ("app_id", "domain", "method", "model_version", "min_confidence", "since", "until")
QUERY_NAMES = (*FILTER_NAMES, "test_size", "split")
DEFAULT_TEST_SIZE = 0.1
SPLIT_COLUMN = "split"
# Response headers of the export route (the exporter CLI reads them into manifest.json).
HEADER_SNAPSHOT_AT = "X-Export-Snapshot-At"
HEADER_SNAPSHOT = "X-Export-Snapshot"
HEADER_SCHEMA_VERSION = "X-Export-Schema-Version"
HEADER_REQUEST = "X-Export-Request"

_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,256}$")
_DOMAIN = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_SPLIT_BITS = 52


@dataclass(frozen=True)
class ExportFilters:
    """Which rows an export holds. None means "any"; `since` is inclusive, `until` exclusive (on updated_at)."""

    app_id: str | None = None
    domain: str | None = None
    method: str | None = None
    model_version: str | None = None
    min_confidence: float | None = None
    since: datetime | None = None
    until: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ExportRequest:
    """One validated export request."""

    kind: str
    format: str
    filters: ExportFilters
    test_size: float = DEFAULT_TEST_SIZE
    split: str = "all"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "format": self.format,
            "filters": self.filters.to_json(),
            "test_size": self.test_size,
            "split": self.split,
        }


def _error(name: str, message: str, kind: str = "value_error", where: str = "query") -> dict[str, Any]:
    return {"loc": [where, name], "msg": message, "type": kind}


def _timestamp(name: str, raw: str, errors: list[dict[str, Any]]) -> datetime | None:
    """An ISO 8601 time with a UTC offset, or a date (midnight UTC)."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            return datetime.combine(date.fromisoformat(raw), datetime.min.time(), UTC)
        moment = datetime.fromisoformat(raw)
    except ValueError:
        errors.append(_error(name, "not an ISO 8601 time, e.g. 2026-11-26T00:00:00Z or 2026-11-26"))
        return None
    if moment.tzinfo is None:
        errors.append(_error(name, "needs a UTC offset, e.g. 2026-11-26T00:00:00Z or +01:00"))
        return None
    return moment.astimezone(UTC)


def _fraction(name: str, raw: str, errors: list[dict[str, Any]]) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        errors.append(_error(name, "not a number"))
        return None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        errors.append(_error(name, "must be between 0 and 1"))
        return None
    return value


def _text(name: str, raw: str, pattern: re.Pattern[str], hint: str, errors: list[dict[str, Any]]) -> str | None:
    if not pattern.match(raw):
        errors.append(_error(name, hint))
        return None
    return raw


def _choice(name: str, raw: str, allowed: tuple[str, ...], errors: list[dict[str, Any]]) -> str | None:
    if raw not in allowed:
        errors.append(_error(name, f"must be one of {', '.join(allowed)}"))
        return None
    return raw


def _target(name: str, errors: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """`dpo.parquet` -> ("dpo", "parquet"), each checked against the known kinds and formats."""
    kind_name, dot, fmt_name = name.rpartition(".")
    if not dot:
        errors.append(_error("name", "must be KIND.FORMAT, e.g. dpo.parquet", where="path"))
        return None, None
    kind = fmt = None
    if kind_name in KINDS:
        kind = kind_name
    else:
        errors.append(_error("kind", f"unknown kind, one of {', '.join(KINDS)}", "enum", "path"))
    if fmt_name not in FORMATS:
        errors.append(_error("format", f"unknown format, one of {', '.join(FORMATS)}", "enum", "path"))
    elif kind is not None and fmt_name not in FORMATS_BY_KIND[kind]:
        allowed = ", ".join(FORMATS_BY_KIND[kind])
        errors.append(_error("format", f"{kind} is exported as {allowed} only", "enum", "path"))
    else:
        fmt = fmt_name
    return kind, fmt


def _filters(kind: str | None, params: Mapping[str, str], errors: list[dict[str, Any]]) -> ExportFilters:
    def get(name: str) -> str | None:
        return params.get(name)

    values: dict[str, Any] = {}
    if (raw := get("app_id")) is not None:
        values["app_id"] = _text("app_id", raw, _ID, "1-256 characters, no control characters", errors)
    if (raw := get("domain")) is not None:
        values["domain"] = _text("domain", raw, _DOMAIN, "lower case: a letter, then a-z 0-9 _ -", errors)
    if (raw := get("method")) is not None:
        values["method"] = _choice("method", raw, METHODS_BY_KIND.get(kind or "", PAIR_METHODS), errors)
    if (raw := get("model_version")) is not None:
        values["model_version"] = _text("model_version", raw, _ID, "1-256 characters, no control characters", errors)
    if (raw := get("min_confidence")) is not None:
        values["min_confidence"] = _fraction("min_confidence", raw, errors)
    for name in ("since", "until"):
        if (raw := get(name)) is not None:
            values[name] = _timestamp(name, raw, errors)
    since, until = values.get("since"), values.get("until")
    if since is not None and until is not None and until <= since:
        errors.append(_error("until", "must be later than since"))
    return ExportFilters(**values)


def parse_request(name: str, params: Mapping[str, str], repeated: tuple[str, ...] = ()) -> ExportRequest:
    """Validate `KIND.FORMAT` and the query parameters. Raises ContractError naming every bad one.

    `repeated` lists parameters given more than once (each is refused: one value per filter).
    """
    errors: list[dict[str, Any]] = []
    kind, fmt = _target(name, errors)
    for unknown in sorted(set(params) - set(QUERY_NAMES)):
        errors.append(_error(unknown, f"unknown parameter; known: {', '.join(QUERY_NAMES)}", "extra_forbidden"))
    for twice in sorted(set(repeated)):
        errors.append(_error(twice, "given more than once; give one value"))
    filters = _filters(kind, params, errors)
    test_size = DEFAULT_TEST_SIZE
    if (raw := params.get("test_size")) is not None:
        test_size = _fraction("test_size", raw, errors) or 0.0
    split = "all"
    if (raw := params.get("split")) is not None:
        split = _choice("split", raw, SPLITS, errors) or "all"
    if errors or kind is None or fmt is None:
        fields = ", ".join(".".join(str(p) for p in e["loc"][1:]) for e in errors)
        raise ContractError(f"invalid export request: {fields}", errors=errors)
    return ExportRequest(kind, fmt, filters, test_size, split)


def split_of(prompt_key: str, test_size: float) -> str:
    """ "test" or "train" for a prompt group: a hash of its prompt_key below `test_size`, in 2**-52 steps."""
    digest = hashlib.sha256(b"split\x1f" + prompt_key.encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") >> (64 - _SPLIT_BITS)
    return "test" if position < math.floor(test_size * (1 << _SPLIT_BITS)) else "train"
