"""The export queries' columns (PostgreSQL takes the pair JSON apart) give the table parsing the JSON gives.

Pairs are stored in the real database as the aggregator stores them (jsonb), with the awkward parts:
quotes, backslashes, newlines, emoji and escapes in any text, several turns, evidence partial or
absent or null, a confidence written as an integer or with every digit, offsets other than Z, a
retracted pair. `select_export_pairs` / `select_export_rewrites` are read as the export reads them
(a cursor in a read-only transaction) and compared with `parse_pairs` of the same rows' JSON text.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pyarrow as pa
import pytest

from services.aggregator import export_columns, export_store
from services.aggregator.exports import Selection
from services.aggregator.pairs import EXPERT_MODEL
from shared.export_schema import EVIDENCE_FIELDS
from shared.exports import KINDS, ExportFilters

pytestmark = pytest.mark.timeout(60)
AWKWARD = 'a "quoted" \\ back\\slash\nnew line\ttab \u00e9\u4e2d \U0001f600 \\u0041 </script>'


def _pair(n: int, **changes: Any) -> dict[str, Any]:
    pair = {
        "event_id": str(uuid.UUID(int=n)),
        "schema_version": 1,
        "app_id": "app-a",
        "pair_id": f"pair-{n}",
        "prompt_key": f"key-{n}",
        "prompt": [{"role": "user", "content": f"question {n}"}],
        "chosen": {"interaction_id": f"{n}-a", "content": f"yes {n}", "model": "acme", "model_version": "v2"},
        "rejected": {"interaction_id": f"{n}-b", "content": f"no {n}", "model": "acme", "model_version": "v1"},
        "confidence": 0.95,
        "method": "votes",
        "evidence": {"chosen_up": 3, "rejected_down": 2},
        "domain": "general",
        "occurred_at": "2026-11-26T10:00:00Z",
        "updated_at": "2026-11-26T10:00:01+00:00",
    }
    return pair | changes


PAIRS = [
    _pair(1),
    _pair(
        2,
        prompt_key=AWKWARD,
        prompt=[
            {"role": "system", "content": AWKWARD},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "x" * 5_000},
        ],
        chosen={"interaction_id": AWKWARD, "content": AWKWARD * 50, "model": "m\u00e9", "model_version": "v\n2"},
    ),
    _pair(3, evidence={}, confidence=1, occurred_at="2026-11-26T12:00:00+02:00", updated_at="2026-11-26T05:30-05:30"),
    _pair(4, evidence=None, confidence=0.30000000000000004),
    _pair(5, evidence=dict.fromkeys(EVIDENCE_FIELDS, 7) | {"chosen_up": None, "unknown": 9}, confidence=1e-7),
    _pair(
        6,
        method="expert",
        chosen={"interaction_id": "rewrite-6", "content": "better", "model": EXPERT_MODEL, "model_version": "x"},
    ),
]


async def _store(conn: asyncpg.Connection) -> None:
    for pair in PAIRS:
        group = json.dumps({"messages": pair["prompt"]})
        await conn.execute(
            "INSERT INTO agg_groups (prompt_key, app_id, prompt) VALUES ($1, $2, $3::jsonb)",
            pair["prompt_key"],
            pair["app_id"],
            group,
        )
        await conn.execute(
            "INSERT INTO agg_pairs (pair_id, prompt_key, state_hash, pair) VALUES ($1, $2, 'h', $3::jsonb)",
            pair["pair_id"],
            pair["prompt_key"],
            json.dumps(pair, ensure_ascii=pair["pair_id"] == "pair-2"),
        )
    await conn.execute("INSERT INTO agg_groups (prompt_key, app_id, prompt) VALUES ('gone', 'app-a', '{}')")
    retracted = "INSERT INTO agg_pairs (pair_id, prompt_key, state_hash, pair) VALUES ('gone', 'gone', 'h', NULL)"
    await conn.execute(retracted)


async def _read(conn: asyncpg.Connection, source: str) -> list[Any]:
    records: list[Any] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if source == "pairs":
            chunks = export_store.select_export_pairs(conn, ExportFilters(), 2)
        else:
            chunks = export_store.select_export_rewrites(conn, ExportFilters(), 2, EXPERT_MODEL)
        async for chunk in chunks:
            records += chunk
    return records


async def _texts(conn: asyncpg.Connection, pair_ids: list[str]) -> list[str]:
    rows = await conn.fetch("SELECT pair_id, pair::text AS pair FROM agg_pairs WHERE pair_id = ANY($1)", pair_ids)
    by_id = {row["pair_id"]: row["pair"] for row in rows}
    return [by_id[pair_id] for pair_id in pair_ids]


@pytest.mark.parametrize(("source", "expected"), [("pairs", 6), ("rewrites", 1)])
async def test_the_queries_columns_give_the_table_of_the_parsed_json(database_url: str, source: str, expected: int):
    conn = await asyncpg.connect(database_url)
    try:
        await _store(conn)
        records = await _read(conn, source)
        assert tuple(records[0].keys()) == export_columns.PAIR_COLUMNS
        got = export_columns.pairs_from_records(records)
        pair_ids = got.column("pair_id").to_pylist()
        reference = export_columns.parse_pairs(await _texts(conn, pair_ids))
    finally:
        await conn.close()
    assert got.num_rows == expected
    assert got.schema == reference.schema == export_columns.PAIR_JSON_SCHEMA
    # A count given as JSON null is None in the parsed table and 0 from SQL: every kind's rows make it 0.
    plain = ["evidence"]
    assert got.drop_columns(plain).to_pylist() == reference.drop_columns(plain).to_pylist()
    for kind in KINDS:
        selection = Selection(ExportFilters(), 0.5)
        batch = export_columns.table_batch(kind, got, selection)
        assert batch.to_pylist() == export_columns.table_batch(kind, reference, selection).to_pylist()
        assert batch.num_rows == (2 * expected if kind == "kto" else 1 if kind == "sft" else expected)


def test_no_records_give_an_empty_table() -> None:
    table = export_columns.pairs_from_records([])
    assert table.num_rows == 0 and table.schema == export_columns.PAIR_JSON_SCHEMA
    assert isinstance(table.column("prompt").type, pa.ListType)
