"""Exports' edges against the real broker and database: bad input, nothing reachable or matching, the split,
finding the stack, and an export that breaks off midway.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from deploy.localstack import free_port
from shared.exports import split_of
from shared.runtime import runtime_of
from tests.integration.aggregator.aggregator_flow import interaction, thumbs
from tests.integration.aggregator.export_flow import Served, export_folder, live_pairs, run_exporter, served
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)
__all__ = ["served"]  # the module-scoped fixture, imported


def _entries(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


BAD_REQUESTS = [
    ("/v1/exports/foo.parquet", ["path", "kind"]),
    ("/v1/exports/dpo.csv", ["path", "format"]),
    ("/v1/exports/dpo", ["path", "name"]),
    ("/v1/exports/openai-dpo.parquet", ["path", "format"]),
    ("/v1/exports/dpo.parquet?min_confidence=2", ["query", "min_confidence"]),
    ("/v1/exports/dpo.parquet?min_confidence=high", ["query", "min_confidence"]),
    ("/v1/exports/dpo.parquet?since=2026-01-01T00:00:00", ["query", "since"]),
    ("/v1/exports/dpo.parquet?since=2026-02-01&until=2026-01-01", ["query", "until"]),
    ("/v1/exports/dpo.parquet?method=approval", ["query", "method"]),
    ("/v1/exports/sft.parquet?method=votes", ["query", "method"]),
    ("/v1/exports/dpo.parquet?domain=Medical", ["query", "domain"]),
    ("/v1/exports/dpo.parquet?test_size=1.5", ["query", "test_size"]),
    ("/v1/exports/dpo.parquet?split=validation", ["query", "split"]),
    ("/v1/exports/dpo.parquet?limit=3", ["query", "limit"]),
    ("/v1/exports/dpo.parquet?app_id=a&app_id=b", ["query", "app_id"]),
]


@pytest.mark.parametrize(("path", "loc"), BAD_REQUESTS)
async def test_bad_requests_get_422_naming_the_bad_part(served: Served, path: str, loc: list[str]) -> None:
    response = await served.client.get(path)
    assert response.status_code == 422, response.text
    assert loc in [error["loc"] for error in response.json()["detail"]], response.json()


async def test_nothing_matching_is_404_not_an_empty_file(served: Served) -> None:
    response = await served.client.get("/v1/exports/dpo.parquet?app_id=nobody-here")
    assert response.status_code == 404
    assert "no dpo rows match the filters (app_id=nobody-here" in response.json()["detail"]


CLI_BAD_INPUT = [
    (["foo"], "KIND"),
    (["dpo", "--min-confidence", "2"], "--min-confidence: must be between 0 and 1"),
    (["dpo", "--since", "2026-01-01T00:00:00"], "--since: needs a UTC offset"),
    (["dpo", "--test-size", "many"], "--test-size: not a number"),
    (["openai-dpo", "--format", "parquet"], "--format: openai-dpo is exported as jsonl"),
    (["dpo", "--format", "csv"], "--format"),
    (["kto", "--domain", "Medical Stuff"], "--domain"),
]


@pytest.mark.parametrize(("args", "named"), CLI_BAD_INPUT)
async def test_the_cli_exits_2_naming_the_bad_argument(served: Served, tmp_path: Path, args: list[str], named: str):
    out = tmp_path / "out"
    result = await run_exporter([*args, "--out", str(out), "--aggregator", served.url])
    assert result.code == 2, result
    assert named in result.stderr
    assert not out.exists()


async def test_the_cli_refuses_a_folder_in_the_way_unless_told(served: Served, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    app = ["--app-id", served.scenario.app_id]
    result = await run_exporter(["dpo", "--out", str(out), "--aggregator", served.url, *app])
    assert result.code == 2 and "--out" in result.stderr and (out / "notes.txt").exists()
    info = await export_folder(served, out, "dpo", *app, "--overwrite")
    assert info["counts"]["dpo"]["total"] == 5 and not (out / "notes.txt").exists()


async def test_the_cli_says_when_nothing_is_reachable_or_nothing_matches(served: Served, tmp_path: Path) -> None:
    out = tmp_path / "out"
    closed = f"http://127.0.0.1:{free_port()}"
    unreachable = await run_exporter(["dpo", "--out", str(out), "--aggregator", closed])
    assert unreachable.code == 1 and f"cannot reach the aggregator at {closed}" in unreachable.stderr
    no_stack = await run_exporter(["dpo", "--out", str(out)], env={"EXPORTER_STACK_FILE": str(tmp_path / "none.json")})
    assert no_stack.code == 1 and "no aggregator to ask" in no_stack.stderr
    nothing = await run_exporter(["dpo", "--out", str(out), "--aggregator", served.url, "--app-id", "nobody"])
    assert nothing.code == 1 and "no dpo rows match" in nothing.stderr
    assert not out.exists() and _entries(tmp_path) == []


async def test_the_cli_finds_the_aggregator_in_the_stack_file(served: Served, tmp_path: Path) -> None:
    stack = tmp_path / "stack.json"
    stack.write_text(json.dumps({"aggregator": served.url, "kafka": "unused"}))
    out = tmp_path / "out"
    args = ["sft", "--out", str(out), "--stack", str(stack), "--app-id", served.scenario.app_id]
    result = await run_exporter(args)
    assert result.code == 0, result.stderr
    assert "wrote" in result.stdout and (out / "manifest.json").exists()


async def test_an_export_beyond_the_process_slots_is_told_to_retry(served: Served) -> None:
    """The slots are built once, in the aggregator's context: with every one taken, the route answers 503."""
    exports = (await runtime_of(served.app).context()).exports
    url = f"/v1/exports/dpo.jsonl?app_id={served.scenario.app_id}"
    for _ in range(exports.rules.max_concurrent):
        await exports.slots.acquire()
    try:
        busy = await served.client.get(url)
    finally:
        for _ in range(exports.rules.max_concurrent):
            exports.slots.release()
    assert busy.status_code == 503 and "too many exports" in busy.text, busy.text
    freed = await served.client.get(url)
    assert freed.status_code == 200 and len(freed.text.splitlines()) == 5


async def test_the_split_keeps_every_prompt_group_on_one_side(served: Served, tmp_path: Path) -> None:
    app = f"split-{uuid.uuid4().hex[:8]}"
    answers, votes = [], []
    for n in range(40):
        prompt = f"Question number {n}?"
        answers.append(interaction(app, prompt, f"q{n}-a", f"Good answer {n}."))
        answers.append(interaction(app, prompt, f"q{n}-b", "No."))
        votes += thumbs(app, f"q{n}-a", 3, 0) + thumbs(app, f"q{n}-b", 0, 3)
    await served.producer.send(answers)
    await served.producer.send(votes)

    async def all_live() -> bool:
        assert await live_pairs(served.database_url, app) == 40
        return True

    await eventually(all_live, timeout=30)
    info = await export_folder(served, tmp_path / "kto", "kto", "--app-id", app, "--test-size", "0.5")
    sides = {}
    for split in ("train", "test"):
        table = pq.read_table(tmp_path / "kto" / "data" / f"{split}-00000-of-00001.parquet")
        keys = set(table.column("prompt_key").to_pylist())
        assert all(split_of(key, 0.5) == split for key in keys)
        sides[split] = keys
        assert info["counts"]["kto"][split] == table.num_rows == 2 * len(keys)
    assert sides["train"] and sides["test"] and not sides["train"] & sides["test"]
    again = await export_folder(served, tmp_path / "again", "kto", "--app-id", app, "--test-size", "0.5")
    assert again["counts"] == info["counts"], "the same groups land on the same sides"


async def _truncating_server(body: bytes, headers: dict[str, str]) -> tuple[asyncio.Server, str]:
    """An HTTP server that answers 200 with the headers, sends half the body (chunked), then hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"HTTP/1.1 200 OK\r\n{head}Transfer-Encoding: chunked\r\n\r\n".encode())
        half = body[: len(body) // 2]
        writer.write(b"%x\r\n%s\r\n" % (len(half), half))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def test_an_export_that_breaks_off_leaves_no_folder_that_looks_complete(served: Served, tmp_path: Path) -> None:
    real = await served.client.get(f"/v1/exports/dpo.arrow?app_id={served.scenario.app_id}&split=all")
    assert real.status_code == 200
    headers = {k: v for k, v in real.headers.items() if k.lower().startswith("x-export")}
    server, url = await _truncating_server(real.content, headers)
    async with server:
        out = tmp_path / "export"
        result = await run_exporter(["dpo", "--out", str(out), "--aggregator", url])
    assert result.code == 1, result
    assert "broke off" in result.stderr or "could not be read" in result.stderr
    assert not out.exists()
    assert _entries(tmp_path) == [], "no partial folder is left behind"
