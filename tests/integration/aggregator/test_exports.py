"""Exports against the real broker and database: votes in, TRL-shaped datasets out, by file and by URL.

One aggregator runs for the module, in-process and also served on a real loopback port (datasets
and the exporter CLI fetch over HTTP); each test uses its own app_id and filters on it.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
import pytest
import yaml

from tests.integration.aggregator.aggregator_flow import later, vote
from tests.integration.aggregator.export_flow import (
    CONVERSATION,
    Scenario,
    Served,
    assert_trl_format,
    assert_utc,
    export_folder,
    play,
    served,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)
__all__ = ["served"]  # the module-scoped fixture, imported
KIND_FORMATS = [("dpo", "parquet"), ("reward", "parquet"), ("kto", "parquet"), ("sft", "parquet")]
KIND_FORMATS += [("dpo", "jsonl"), ("kto", "jsonl"), ("sft", "jsonl"), ("openai-dpo", "jsonl")]


def card_header(folder: Path) -> dict[str, Any]:
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def load_folder(folder: Path, cache: Path) -> datasets.DatasetDict:
    return datasets.load_dataset(str(folder), cache_dir=str(cache))


@pytest.mark.parametrize(("kind", "fmt"), KIND_FORMATS)
async def test_each_kind_loads_with_datasets_in_trl_format(served: Served, tmp_path: Path, kind: str, fmt: str) -> None:
    app = served.scenario.app_id
    out = tmp_path / f"{kind}-{fmt}"
    info = await export_folder(served, out, kind, "--format", fmt, "--app-id", app, "--test-size", "0")
    loaded = await asyncio.to_thread(load_folder, out, tmp_path / "cache")
    train = loaded["train"]
    expected = {"dpo": 5, "reward": 5, "kto": 12, "sft": 2, "openai-dpo": 5}[kind]
    assert train.num_rows == expected == info["counts"][kind]["train"]
    assert list(loaded) == ["train"] and info["counts"][kind]["test"] == 0
    header = card_header(out)
    assert header["configs"][0]["data_files"] == [{"split": "train", "path": "data/train-*"}]
    assert datasets.Features._from_yaml_list(header["dataset_info"]["features"]) == train.features
    assert info["snapshot"]["taken_at"] and info["snapshot"]["pg_snapshot"]
    rows = train.to_list()
    if kind == "openai-dpo":
        for row in rows:
            assert set(row) == {"input", "preferred_output", "non_preferred_output"}
            assert [m["role"] for m in row["preferred_output"] + row["non_preferred_output"]] == ["assistant"] * 2
        return
    for row in rows:
        assert_trl_format(kind, row)
        assert row["app_id"] == app
        assert_utc(row["updated_at"])
    _check_kind(kind, rows, served.scenario)


def _check_kind(kind: str, rows: list[dict[str, Any]], scenario: Scenario) -> None:
    conversation = [m.model_dump() for m in CONVERSATION]
    if kind in ("dpo", "reward"):
        assert len({r["pair_id"] for r in rows}) == len(rows), "a pair twice"
        trip = next(r for r in rows if r["chosen_interaction_id"] == "trip-a")
        prompt = trip["prompt"] if kind == "dpo" else trip["chosen"][:-1]
        assert prompt == conversation, "every turn, in order"
        assert trip["rejected_model_version"] == "v1" and trip["evidence"]["chosen_up"] == 5
        methods = sorted(r["method"] for r in rows)
        assert methods == ["comparison", "edit", "expert", "votes", "votes"]
    if kind == "kto":
        keys = [(r["pair_id"], r["side"], r["interaction_id"]) for r in rows]
        assert len(set(keys)) == len(keys)
        lone = {
            r["interaction_id"]: (r["label"], r["votes_up"], r["votes_down"]) for r in rows if r["origin"] == "approval"
        }
        assert lone == {"sky-a": (True, 4, 0), "two-a": (False, 0, 4)}
        assert sum(r["label"] for r in rows) == 6
    if kind == "sft":
        by_origin = {r["origin"]: r for r in rows}
        assert by_origin["edit"]["messages"][-1]["content"] == "Bonjour."
        assert by_origin["edit"]["pair_id"] is not None and by_origin["edit"]["interaction_id"] == "fr-a"
        assert by_origin["rewrite"]["messages"][-1]["content"].startswith("Prince Hamlet")
        assert by_origin["rewrite"]["example_id"] == f"rewrite:{scenario.rewrite_task_id}"


async def test_the_http_url_loads_with_datasets(served: Served, tmp_path: Path) -> None:
    app = served.scenario.app_id
    parquet_url = f"{served.url}/v1/exports/dpo.parquet?app_id={app}&split=all"
    jsonl_url = f"{served.url}/v1/exports/kto.jsonl?app_id={app}&split=all"

    def load() -> tuple[datasets.Dataset, datasets.Dataset]:
        cache = str(tmp_path / "cache")
        dpo = datasets.load_dataset("parquet", data_files=parquet_url, split="train", cache_dir=cache)
        kto = datasets.load_dataset("json", data_files=jsonl_url, split="train", cache_dir=cache)
        return dpo, kto

    dpo, kto = await asyncio.to_thread(load)
    assert dpo.num_rows == 5 and kto.num_rows == 12
    assert dpo.features["updated_at"].dtype == "timestamp[us, tz=UTC]"
    assert set(dpo["split"]) <= {"train", "test"}
    for row in dpo.to_list():
        assert_trl_format("dpo", {k: v for k, v in row.items()})
    assert {type(label) for label in kto["label"]} == {bool}
    assert all(s.endswith("+00:00") for s in kto["updated_at"]), "JSONL keeps the UTC offset"


async def test_response_headers_name_the_snapshot_and_the_body_streams(served: Served) -> None:
    app = served.scenario.app_id
    async with served.client.stream("GET", f"/v1/exports/sft.parquet?app_id={app}&split=train&test_size=0") as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["transfer-encoding"] == "chunked" and "content-length" not in r.headers
        assert r.headers["content-type"] == "application/vnd.apache.parquet"
        assert r.headers["x-export-snapshot-at"] and ":" in r.headers["x-export-snapshot"]
        assert r.headers["etag"].startswith('"')
        assert json.loads(r.headers["x-export-request"])["filters"]["app_id"] == app
        body = await r.aread()
    table = pq.read_table(io.BytesIO(body))
    assert table.num_rows == 2 and "split" not in table.column_names
    head = await served.client.head(f"/v1/exports/sft.parquet?app_id={app}&split=train&test_size=0")
    assert head.status_code == 200 and head.headers["etag"] and head.content == b""
    assert (await served.client.head("/v1/exports/sft.csv")).status_code == 422


async def test_a_flip_and_a_retraction_between_two_snapshots(served: Served, tmp_path: Path) -> None:
    scenario = Scenario(app_id=f"{served.scenario.app_id}-flip", live_pairs=5)
    await play(served.producer, served.database_url, scenario)
    app = scenario.app_id
    url = f"{served.url}/v1/exports/dpo.parquet?app_id={app}&test_size=0"

    def load_url(mode: str | None = None) -> list[dict[str, Any]]:
        # datasets never revalidates a downloaded data file (no ETag check for data files): loading the same
        # URL again with the same cache needs force_redownload to see the new snapshot.
        cache = str(tmp_path / "hf-cache")
        loaded = datasets.load_dataset("parquet", data_files=url, split="train", cache_dir=cache, download_mode=mode)
        return loaded.to_list()

    by_url_before = await asyncio.to_thread(load_url)
    before = await export_folder(served, tmp_path / "before", "dpo", "--app-id", app, "--test-size", "0")
    rows_before = pq.read_table(tmp_path / "before" / "data" / "train-00000-of-00001.parquet").to_pylist()
    prime = next(r for r in rows_before if r["chosen_interaction_id"] == "prime-a")
    # Every voter on the prime prompt changes their mind, and a second user prefers the other haiku: split
    # comparisons are ambiguous, so the comparison pair is retracted (and goes to the experts instead).
    flips = [vote(app, "prime-a", f"prime-a-up{i}", later(60), kind="thumb", value=-1) for i in range(4)]
    flips += [vote(app, "prime-b", f"prime-b-down{i}", later(60), kind="thumb", value=1) for i in range(4)]
    tie = vote(
        app,
        "haiku-a",
        "u-h2",
        later(60),
        kind="comparison",
        preferred_interaction_id="haiku-a",
        other_interaction_id="haiku-b",
    )
    await served.producer.send([*flips, tie])

    async def changed() -> list[dict[str, Any]]:
        response = await served.client.get(f"/v1/exports/dpo.jsonl?app_id={app}&test_size=0")
        rows = [json.loads(line) for line in response.text.splitlines()]
        flipped = [r for r in rows if r["pair_id"] == prime["pair_id"]]
        assert len(rows) == 4 and flipped and flipped[0]["chosen_interaction_id"] == "prime-b", rows
        return rows

    await eventually(changed, timeout=30)
    after = await export_folder(served, tmp_path / "after", "dpo", "--app-id", app, "--test-size", "0")
    rows_after = pq.read_table(tmp_path / "after" / "data" / "train-00000-of-00001.parquet").to_pylist()
    by_id = {r["pair_id"]: r for r in rows_after}
    assert by_id[prime["pair_id"]]["chosen_interaction_id"] == "prime-b", "the flip is the same pair, reversed"
    assert "comparison" not in {r["method"] for r in rows_after}, "the retracted pair is gone"
    assert before["counts"]["dpo"]["total"] == 5 and after["counts"]["dpo"]["total"] == 4
    assert after["snapshot"]["taken_at"] > before["snapshot"]["taken_at"]
    by_url_after = await asyncio.to_thread(load_url, "force_redownload")
    assert len(by_url_before) == 5 and len(by_url_after) == 4
    assert {r["pair_id"]: r["chosen_interaction_id"] for r in by_url_after}[prime["pair_id"]] == "prime-b"
