"""Export shaping of live pairs, columnar: the rows `exports.rows_from_pair` gives, built with Arrow at once.

A chunk of live pairs becomes one Arrow table of their fields (`PAIR_JSON_SCHEMA`), and each kind's
columns are assembled from it with no Python object per row: an export of a million pairs spends
its time here, and per-row Python would cost it most of a minute. The export reads the fields as
columns PostgreSQL took out of the JSON (`pairs_from_records`, the columns of `select_export_pairs`:
no JSON is parsed in Python); `parse_pairs` builds the same table from PreferencePair JSON texts
(tests/integration/aggregator/test_export_columns_sql.py checks that both agree on stored pairs).
`exports.rows_from_pair` is the reference: tests/unit/aggregator/test_export_columns.py checks with
Hypothesis that both give the same batch for any pairs, filters, test size and split. Pure: no I/O,
no settings.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from services.aggregator.exports import Selection
from services.aggregator.pairs import EXPERT_MODEL
from shared.export_schema import EVIDENCE, EVIDENCE_FIELDS, MESSAGE, MESSAGES, TIMESTAMP, schema_of
from shared.exports import split_of

_CANDIDATE = pa.struct([(name, pa.string()) for name in ("interaction_id", "content", "model", "model_version")])
PAIR_JSON_SCHEMA = pa.schema(
    [
        ("pair_id", pa.string()),
        ("prompt_key", pa.string()),
        ("app_id", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("chosen", _CANDIDATE),
        ("rejected", _CANDIDATE),
        ("confidence", pa.float64()),
        ("method", pa.string()),
        ("evidence", pa.struct([(name, pa.int64()) for name in EVIDENCE_FIELDS])),
        ("domain", pa.string()),
        ("occurred_at", pa.string()),
        ("updated_at", pa.string()),
    ]
)
_SIDES = ("chosen", "rejected")


def _strings(values: list[Any]) -> pa.Array:
    return pa.array(values, pa.string())


def parse_pairs(texts: Sequence[str]) -> pa.Table:
    """PreferencePair JSON texts -> one column per field this module reads (orjson, then one list per column:
    measured faster than Arrow's JSON reader on these rows)."""
    pairs = [orjson.loads(text) for text in texts]
    offsets, roles, contents = [0], [], []
    for pair in pairs:
        for message in pair["prompt"]:
            roles.append(message["role"])
            contents.append(message["content"])
        offsets.append(len(roles))
    prompt_values = pa.StructArray.from_arrays([_strings(roles), _strings(contents)], names=["role", "content"])
    columns: dict[str, pa.Array] = {
        name: _strings([pair[name] for pair in pairs])
        for name in ("pair_id", "prompt_key", "app_id", "method", "domain", "occurred_at", "updated_at")
    }
    columns["prompt"] = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), prompt_values)
    for side in _SIDES:
        answers = [pair[side] for pair in pairs]
        columns[side] = pa.StructArray.from_arrays(
            [_strings([answer[field] for answer in answers]) for field in _CANDIDATE.names], names=_CANDIDATE.names
        )
    columns["confidence"] = pa.array([float(pair["confidence"]) for pair in pairs], pa.float64())
    evidence = [pair.get("evidence") or {} for pair in pairs]
    columns["evidence"] = pa.StructArray.from_arrays(
        [pa.array([counts.get(name, 0) for counts in evidence], pa.int64()) for name in EVIDENCE_FIELDS],
        names=list(EVIDENCE_FIELDS),
    )
    return pa.Table.from_arrays([columns[field.name] for field in PAIR_JSON_SCHEMA], schema=PAIR_JSON_SCHEMA)


_TEXT_FIELDS = ("pair_id", "prompt_key", "app_id", "method", "domain", "occurred_at", "updated_at")
# The columns of the queries select_export_pairs and select_export_rewrites, in their order.
PAIR_COLUMNS = (
    *_TEXT_FIELDS,
    "confidence",
    "prompt_roles",
    "prompt_contents",
    *(f"{side}_{field}" for side in _SIDES for field in _CANDIDATE.names),
    *EVIDENCE_FIELDS,
)


def pairs_from_records(records: Sequence[Sequence[Any]]) -> pa.Table:
    """Rows of `PAIR_COLUMNS` (PostgreSQL took the pair JSON apart) -> the table `parse_pairs` gives.

    One transpose (zip, in C) and one Arrow array per column: no Python code runs per row.
    """
    if records and hasattr(records[0], "keys") and tuple(records[0].keys()) != PAIR_COLUMNS:
        raise ValueError(f"pair columns {tuple(records[0].keys())} are not {PAIR_COLUMNS}")
    values = dict(zip(PAIR_COLUMNS, zip(*records, strict=True), strict=True)) if records else {}

    def column(name: str) -> Sequence[Any]:
        return values.get(name, ())

    columns: dict[str, pa.Array] = {name: _strings(column(name)) for name in _TEXT_FIELDS}
    roles = column("prompt_roles")
    offsets = list(itertools.accumulate((len(turns) for turns in roles), initial=0))
    prompt_values = pa.StructArray.from_arrays(
        [_strings(list(itertools.chain.from_iterable(column(f"prompt_{part}s")))) for part in ("role", "content")],
        names=["role", "content"],
    )
    columns["prompt"] = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), prompt_values)
    for side in _SIDES:
        children = [_strings(column(f"{side}_{field}")) for field in _CANDIDATE.names]
        columns[side] = pa.StructArray.from_arrays(children, names=_CANDIDATE.names)
    columns["confidence"] = pa.array(column("confidence"), pa.float64())
    # A count the pair does not have is NULL in SQL: 0, as parse_pairs makes it.
    columns["evidence"] = pa.StructArray.from_arrays(
        [pc.fill_null(pa.array(column(name), pa.int64()), 0) for name in EVIDENCE_FIELDS], names=list(EVIDENCE_FIELDS)
    )
    return pa.Table.from_arrays([columns[field.name] for field in PAIR_JSON_SCHEMA], schema=PAIR_JSON_SCHEMA)


def _column(table: pa.Table, name: str) -> pa.Array:
    column = table.column(name)
    return column.chunk(0) if column.num_chunks else pa.array([], column.type)


def _messages(offsets: np.ndarray, roles: pa.Array, contents: pa.Array) -> pa.Array:
    values = pa.StructArray.from_arrays([roles, contents], fields=list(MESSAGE))
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values, type=MESSAGES)


def _answers(contents: pa.Array) -> pa.Array:
    """One assistant message per row."""
    count = len(contents)
    return _messages(np.arange(count + 1, dtype=np.int32), pa.repeat(pa.scalar("assistant"), count), contents)


def _prompt_parts(pairs: pa.Table) -> tuple[np.ndarray, pa.Array, pa.Array]:
    prompt = _column(pairs, "prompt")
    offsets = prompt.offsets.to_numpy().astype(np.int32)
    values = prompt.values
    return offsets, values.field("role"), values.field("content")


def _prompt(pairs: pa.Table) -> pa.Array:
    return _messages(*_prompt_parts(pairs))


def _conversation(pairs: pa.Table, answer: pa.Array) -> pa.Array:
    """Each row's prompt followed by its answer as one assistant message (an implicit-prompt conversation)."""
    offsets, roles, contents = _prompt_parts(pairs)
    lengths = np.diff(offsets)
    count, flat = len(lengths), int(offsets[-1])
    new_offsets = np.concatenate([[0], np.cumsum(lengths + 1)]).astype(np.int32)
    take = np.empty(flat + count, dtype=np.int64)
    is_answer = np.zeros(flat + count, dtype=bool)
    is_answer[new_offsets[1:] - 1] = True
    take[is_answer] = flat + np.arange(count)
    take[~is_answer] = np.arange(flat)
    all_roles = pa.concat_arrays([roles.slice(0, flat), pa.repeat(pa.scalar("assistant"), count)])
    all_contents = pa.concat_arrays([contents.slice(0, flat), answer])
    return _messages(new_offsets, all_roles.take(take), all_contents.take(take))


def _side(pairs: pa.Table, side: str, field: str) -> pa.Array:
    return _column(pairs, side).field(field)


def _evidence(pairs: pa.Table) -> pa.Array:
    evidence = _column(pairs, "evidence")
    children = [pc.fill_null(evidence.field(name), 0) for name in EVIDENCE_FIELDS]
    return pa.StructArray.from_arrays(children, fields=list(EVIDENCE))


def _group(pairs: pa.Table) -> dict[str, pa.Array]:
    return {
        "prompt_key": _column(pairs, "prompt_key"),
        "app_id": _column(pairs, "app_id"),
        "domain": _column(pairs, "domain"),
        "occurred_at": _column(pairs, "occurred_at").cast(TIMESTAMP),
        "updated_at": _column(pairs, "updated_at").cast(TIMESTAMP),
    }


def _provenance(pairs: pa.Table) -> dict[str, pa.Array]:
    columns = {
        "pair_id": _column(pairs, "pair_id"),
        "method": _column(pairs, "method"),
        "confidence": _column(pairs, "confidence"),
    }
    for side in _SIDES:
        for field, name in (
            ("interaction_id", "interaction_id"),
            ("model", "model"),
            ("model_version", "model_version"),
        ):
            columns[f"{side}_{name}"] = _side(pairs, side, field)
    return {**columns, "evidence": _evidence(pairs), **_group(pairs)}


def _kto(pairs: pa.Table) -> dict[str, pa.Array]:
    """Each pair's chosen row then its rejected row."""
    count = pairs.num_rows
    evidence = _evidence(pairs)
    halves = []
    for side, label in (("chosen", True), ("rejected", False)):
        halves.append(
            {
                "prompt": _prompt(pairs),
                "completion": _answers(_side(pairs, side, "content")),
                "label": pa.repeat(pa.scalar(label), count),
                "origin": pa.repeat(pa.scalar("pair"), count),
                "side": pa.repeat(pa.scalar(side), count),
                "pair_id": _column(pairs, "pair_id"),
                "method": _column(pairs, "method"),
                "confidence": _column(pairs, "confidence"),
                "interaction_id": _side(pairs, side, "interaction_id"),
                "model": _side(pairs, side, "model"),
                "model_version": _side(pairs, side, "model_version"),
                "votes_up": evidence.field(f"{side}_up"),
                "votes_down": evidence.field(f"{side}_down"),
                **_group(pairs),
            }
        )
    interleave = np.column_stack([np.arange(count), np.arange(count) + count]).ravel()
    return {name: pa.concat_arrays([halves[0][name], halves[1][name]]).take(interleave) for name in halves[0]}


def _sft(pairs: pa.Table) -> dict[str, pa.Array]:
    return {
        "messages": _conversation(pairs, _side(pairs, "chosen", "content")),
        "example_id": _side(pairs, "chosen", "interaction_id"),
        "origin": pa.repeat(pa.scalar("rewrite"), pairs.num_rows),
        "method": pa.repeat(pa.scalar("expert"), pairs.num_rows),
        "pair_id": _column(pairs, "pair_id"),
        "confidence": _column(pairs, "confidence"),
        "interaction_id": _side(pairs, "rejected", "interaction_id"),
        "model": _side(pairs, "rejected", "model"),
        "model_version": _side(pairs, "rejected", "model_version"),
        **_group(pairs),
    }


def _shaped(kind: str, pairs: pa.Table) -> dict[str, pa.Array]:
    if kind == "dpo":
        answers = {side: _answers(_side(pairs, side, "content")) for side in _SIDES}
        return {"prompt": _prompt(pairs), **answers, **_provenance(pairs)}
    if kind == "reward":
        answers = {side: _conversation(pairs, _side(pairs, side, "content")) for side in _SIDES}
        return {**answers, **_provenance(pairs)}
    if kind == "openai-dpo":
        messages = pa.StructArray.from_arrays([_prompt(pairs)], fields=[pa.field("messages", MESSAGES, nullable=False)])
        return {
            "input": messages,
            "preferred_output": _answers(_side(pairs, "chosen", "content")),
            "non_preferred_output": _answers(_side(pairs, "rejected", "content")),
        }
    return _kto(pairs) if kind == "kto" else _sft(pairs)


def _kept(kind: str, pairs: pa.Table, selection: Selection) -> np.ndarray:
    """Per pair: does the export keep it (the same tests as `exports.matches` on the pair's rows)."""
    filters, keep = selection.filters, np.ones(pairs.num_rows, dtype=bool)

    def where(mask: pa.Array) -> None:
        nonlocal keep
        keep &= pc.fill_null(mask, False).to_numpy(zero_copy_only=False)

    for name, value in (("app_id", filters.app_id), ("domain", filters.domain), ("method", filters.method)):
        if value is not None:
            where(pc.equal(_column(pairs, name), value))
    if kind == "sft":
        where(pc.equal(_column(pairs, "method"), "expert"))
        where(pc.equal(_side(pairs, "chosen", "model"), EXPERT_MODEL))
    if filters.model_version is not None:
        sides = ("rejected",) if kind == "sft" else _SIDES
        matched = [pc.equal(_side(pairs, side, "model_version"), filters.model_version) for side in sides]
        where(matched[0] if len(matched) == 1 else pc.or_(*matched))
    if filters.min_confidence is not None:
        where(pc.greater_equal(_column(pairs, "confidence"), filters.min_confidence))
    updated = _column(pairs, "updated_at").cast(TIMESTAMP)
    if filters.since is not None:
        where(pc.greater_equal(updated, pa.scalar(filters.since, TIMESTAMP)))
    if filters.until is not None:
        where(pc.less(updated, pa.scalar(filters.until, TIMESTAMP)))
    return keep


def pairs_batch(kind: str, texts: Sequence[str], selection: Selection) -> pa.RecordBatch:
    """The rows of `kind` that these live pairs (PreferencePair JSON texts) give, with a `split` column."""
    return table_batch(kind, parse_pairs(texts), selection)


def records_batch(kind: str, records: Sequence[Sequence[Any]], selection: Selection) -> pa.RecordBatch:
    """The same from rows of `PAIR_COLUMNS` (the export queries' columns)."""
    return table_batch(kind, pairs_from_records(records), selection)


def table_batch(kind: str, pairs: pa.Table, selection: Selection) -> pa.RecordBatch:
    """The rows of `kind` that these live pairs (a `PAIR_JSON_SCHEMA` table) give, with a `split` column."""
    schema = schema_of(kind, with_split=True)
    if not pairs.num_rows:
        return pa.RecordBatch.from_pylist([], schema=schema)
    splits = np.array([split_of(key, selection.test_size) for key in _column(pairs, "prompt_key").to_pylist()])
    keep = _kept(kind, pairs, selection)
    if selection.split != "all":
        keep &= splits == selection.split
    rows_per_pair = 2 if kind == "kto" else 1
    columns = _shaped(kind, pairs)
    columns["split"] = pa.array(np.repeat(splits, rows_per_pair), pa.string())
    batch = pa.RecordBatch.from_arrays([columns[field.name] for field in schema], schema=schema)
    # Most chunks keep every row: filtering them would only copy the batch.
    return batch if keep.all() else batch.filter(pa.array(np.repeat(keep, rows_per_pair)))
