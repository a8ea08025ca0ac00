"""The export folder, all or nothing: files per split, manifest, card; an interrupted export leaves nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import datasets
import pyarrow as pa
import pytest
import yaml

from services.exporter.card import to_yaml
from services.exporter.cli import build_parser, checked_params
from services.exporter.client import EXIT_BAD_INPUT, ExporterError
from services.exporter.folder import FolderSpec, write_folder
from shared.export_files import rows_to_batch
from shared.export_schema import schema_of
from shared.exports import split_of
from tests.strategies import T0

SCHEMA = schema_of("sft", with_split=True)


def _row(n: int) -> dict:
    key = f"pk-{n}"
    return {
        "messages": [{"role": "user", "content": f"q{n}"}, {"role": "assistant", "content": f"a{n}"}],
        "example_id": f"edit:{n}",
        "origin": "edit",
        "method": "edit",
        "pair_id": None,
        "confidence": 1.0,
        "interaction_id": f"int-{n}",
        "model": "acme-chat",
        "model_version": "v1",
        "prompt_key": key,
        "app_id": "helpdesk",
        "domain": "general",
        "occurred_at": T0,
        "updated_at": T0,
        "split": split_of(key, 0.3),
    }


def _batches(count: int, fail_after: int | None = None, error: BaseException | None = None) -> Iterator[pa.RecordBatch]:
    for start in range(0, count, 10):
        if fail_after is not None and start >= fail_after:
            raise error or RuntimeError("connection lost")
        yield rows_to_batch([_row(n) for n in range(start, min(start + 10, count))], SCHEMA)


def _spec(fmt: str = "parquet") -> FolderSpec:
    return FolderSpec(
        kind="sft",
        fmt=fmt,
        schema=SCHEMA,
        created_at=T0.isoformat(),
        snapshot={"taken_at": T0.isoformat(), "pg_snapshot": "100:105:", "aggregator": "http://x"},
        request={"filters": {"app_id": "helpdesk"}, "test_size": 0.3, "split": "all"},
    )


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_a_folder_has_data_per_split_a_manifest_and_a_card_that_datasets_loads(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "export"
    info = write_folder(out, _spec(fmt), _batches(45))
    counts = info["counts"]["sft"]
    assert counts["train"] + counts["test"] == counts["total"] == 45 and counts["test"] > 0
    assert json.loads((out / "manifest.json").read_text()) == info
    assert info["snapshot"]["pg_snapshot"] == "100:105:" and info["filters"] == {"app_id": "helpdesk"}
    assert sorted(p.name for p in (out / "data").iterdir()) == sorted(
        f"{split}-00000-of-00001.{fmt}" for split in ("train", "test")
    )
    header = yaml.safe_load((out / "README.md").read_text().split("---\n")[1])
    assert [s["num_examples"] for s in header["dataset_info"]["splits"]] == [counts["train"], counts["test"]]
    loaded = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert {split: loaded[split].num_rows for split in loaded} == {"train": counts["train"], "test": counts["test"]}
    card_splits = datasets.splits.SplitDict._from_yaml_list(header["dataset_info"]["splits"])  # raises if malformed
    assert card_splits["train"].num_examples == counts["train"] and card_splits["test"].num_bytes > 0
    assert "split" not in loaded["train"].column_names
    train_keys, test_keys = set(loaded["train"]["prompt_key"]), set(loaded["test"]["prompt_key"])
    assert train_keys and test_keys and not train_keys & test_keys
    assert loaded["train"].features["updated_at"] == datasets.Value("timestamp[us, tz=UTC]")


@pytest.mark.parametrize("error", [RuntimeError("connection lost"), KeyboardInterrupt()])
def test_an_interrupted_export_leaves_no_folder_at_all(tmp_path: Path, error: BaseException) -> None:
    out = tmp_path / "export"
    with pytest.raises(type(error)):
        write_folder(out, _spec(), _batches(45, fail_after=20, error=error))
    assert list(tmp_path.iterdir()) == []


def test_an_export_of_nothing_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ExporterError, match="no rows"):
        write_folder(tmp_path / "export", _spec(), iter(()))
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_a_folder_only_once_the_new_one_is_complete(tmp_path: Path) -> None:
    out = tmp_path / "export"
    write_folder(out, _spec(), _batches(5))
    with pytest.raises(ExporterError) as refused:
        write_folder(out, _spec(), _batches(5))
    assert refused.value.exit_code == EXIT_BAD_INPUT and "--out" in refused.value.message
    with pytest.raises(RuntimeError):
        write_folder(out, _spec(), _batches(30, fail_after=10), overwrite=True)
    assert json.loads((out / "manifest.json").read_text())["counts"]["sft"]["total"] == 5, "the old one is intact"
    write_folder(out, _spec(), _batches(30), overwrite=True)
    assert json.loads((out / "manifest.json").read_text())["counts"]["sft"]["total"] == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["dpo", "--out", "x", "--min-confidence", "7"], "--min-confidence"),
        (["dpo", "--out", "x", "--until", "2026-01-01T00:00"], "--until"),
        (["sft", "--out", "x", "--method", "votes"], "--method"),
        (["openai-dpo", "--out", "x", "--format", "parquet"], "--format"),
    ],
)
def test_the_cli_checks_its_arguments_before_asking_anything(argv: list[str], named: str) -> None:
    with pytest.raises(ExporterError) as raised:
        checked_params(build_parser().parse_args(argv))
    assert raised.value.exit_code == EXIT_BAD_INPUT and raised.value.message.startswith(named)


def test_the_cli_default_format_is_parquet_except_for_openai() -> None:
    assert checked_params(build_parser().parse_args(["dpo", "--out", "x"]))[0] == "parquet"
    assert checked_params(build_parser().parse_args(["openai-dpo", "--out", "x"]))[0] == "jsonl"


@pytest.mark.parametrize("text", ["yes", "a: b", "#hash", "-1", "null", "trailing ", "ünïcode", "x\ny", "1.5", ""])
def test_yaml_strings_read_back_as_the_same_strings(text: str) -> None:
    document = {"k": text, "items": [{"name": text, "list": [{"dtype": "string"}]}], "n": 3, "ok": True}
    assert yaml.safe_load(to_yaml(document)) == document
