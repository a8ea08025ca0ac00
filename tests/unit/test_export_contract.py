"""The export contract: request validation, the split, column names against TRL's, features as datasets reads them."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import ContractError
from shared.export_files import ParquetEncoder, rows_to_batch
from shared.export_schema import COLUMNS, TRL_COLUMN_NAMES, TRL_COLUMNS_BY_KIND, hf_features, schema_of
from shared.exports import KINDS, parse_request, split_of


def test_a_good_request_gets_its_defaults_and_utc_times() -> None:
    params = {"app_id": "helpdesk", "since": "2026-11-26", "until": "2026-11-27T02:00+02:00"}
    request = parse_request("kto.jsonl", params)
    assert (request.kind, request.format, request.split, request.test_size) == ("kto", "jsonl", "all", 0.1)
    assert request.filters.since == datetime(2026, 11, 26, tzinfo=UTC)
    assert request.filters.until == datetime(2026, 11, 27, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "params", "bad"),
    [
        ("x.parquet", {}, ["path", "kind"]),
        ("dpo.xml", {}, ["path", "format"]),
        ("openai-dpo.parquet", {}, ["path", "format"]),
        ("dpo.parquet", {"min_confidence": "1.01"}, ["query", "min_confidence"]),
        ("dpo.parquet", {"min_confidence": "nan"}, ["query", "min_confidence"]),
        ("dpo.parquet", {"test_size": "-0.1"}, ["query", "test_size"]),
        ("dpo.parquet", {"since": "yesterday"}, ["query", "since"]),
        ("dpo.parquet", {"until": "2026-11-26T00:00:00"}, ["query", "until"]),
        ("dpo.parquet", {"method": "approval"}, ["query", "method"]),
        ("kto.parquet", {"method": "magic"}, ["query", "method"]),
        ("dpo.parquet", {"domain": "a b"}, ["query", "domain"]),
        ("dpo.parquet", {"app_id": "a\nb"}, ["query", "app_id"]),
        ("dpo.parquet", {"split": "dev"}, ["query", "split"]),
        ("dpo.parquet", {"colour": "red"}, ["query", "colour"]),
    ],
)
def test_a_bad_request_names_what_is_bad(name: str, params: dict[str, str], bad: list[str]) -> None:
    with pytest.raises(ContractError) as raised:
        parse_request(name, params)
    assert bad in [error["loc"] for error in raised.value.errors]


def test_every_bad_part_is_named_at_once() -> None:
    with pytest.raises(ContractError) as raised:
        parse_request("dpo.parquet", {"min_confidence": "2", "test_size": "x"}, repeated=("app_id",))
    assert {error["loc"][1] for error in raised.value.errors} == {"min_confidence", "test_size", "app_id"}


@given(st.text(max_size=30), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_the_split_is_deterministic_and_growing_test_size_only_moves_groups_to_test(key, first, second) -> None:
    small, large = sorted((first, second))
    assert split_of(key, small) == split_of(key, small)
    if split_of(key, small) == "test":
        assert split_of(key, large) == "test"
    assert split_of(key, 0.0) == "train" and split_of(key, 1.0) == "test"


def test_the_split_is_close_to_the_test_size_over_many_groups() -> None:
    share = sum(split_of(f"group-{n}", 0.2) == "test" for n in range(5000)) / 5000
    assert 0.18 < share < 0.22


@pytest.mark.parametrize("kind", KINDS)
def test_provenance_never_uses_a_column_name_trl_gives_a_meaning_to(kind: str) -> None:
    names = [column.name for column in COLUMNS[kind]]
    trl = set(TRL_COLUMNS_BY_KIND[kind])
    assert trl <= TRL_COLUMN_NAMES and set(names[: len(trl)]) == trl
    assert not (set(names) - trl) & TRL_COLUMN_NAMES, set(names) & TRL_COLUMN_NAMES
    assert len(names) == len(set(names))


def test_trl_names_include_those_the_issue_warns_about() -> None:
    warned = {"margin", "images", "tools", "text", "input_ids", "labels", "chat_template_kwargs"}
    assert warned | {"ref_chosen_logps", "ref_rejected_logps"} <= TRL_COLUMN_NAMES


def test_reward_has_no_prompt_column_and_kto_labels_are_booleans() -> None:
    assert "prompt" not in schema_of("reward").names
    assert schema_of("kto").field("label").type == pa.bool_()
    assert schema_of("dpo").field("updated_at").type == pa.timestamp("us", tz="UTC")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("with_split", [False, True])
def test_card_features_are_what_datasets_makes_of_the_schema(kind: str, with_split: bool) -> None:
    schema = schema_of(kind, with_split)
    expected = datasets.Features.from_arrow_schema(schema)
    assert hf_features(schema) == expected._to_yaml_list()
    assert datasets.Features._from_yaml_list(hf_features(schema)) == expected


def test_rows_missing_a_column_are_refused_and_a_parquet_stream_reads_back() -> None:
    schema = pa.schema([("label", pa.bool_()), ("confidence", pa.float64())])
    with pytest.raises(KeyError):
        rows_to_batch([{"label": True}], schema)
    encoder = ParquetEncoder(schema)
    data = encoder.write(rows_to_batch([{"label": True, "confidence": 1}], schema))
    data += encoder.write(rows_to_batch([{"label": False, "confidence": 0.5}], schema)) + encoder.finish()
    table = pq.read_table(io.BytesIO(data))
    assert table.to_pylist() == [{"label": True, "confidence": 1.0}, {"label": False, "confidence": 0.5}]
    assert pq.ParquetFile(io.BytesIO(data)).num_row_groups == 2
