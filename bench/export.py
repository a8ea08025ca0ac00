"""Export throughput and memory: rows/s and peak RSS exporting N live pairs to Parquet, by file and by HTTP.

`python -m bench.export [--sizes 100000,1000000] [--answer-chars 1000]` writes synthetic state straight
into PostgreSQL with COPY (agg_groups, counted for the leaderboard in agg_counted_groups as a
pipeline-built state is, and agg_pairs: N live pairs, each with two ~1 KB answers),
then for each size runs the aggregator (`python -m services.aggregator`, a fresh process per
measurement, so its peak RSS is the export's) and measures:

- file: `python -m services.exporter dpo --out DIR` (one request, Parquet files per split written
  by the CLI): wall time, the aggregator's and the CLI's peak RSS (VmHWM / wait4's ru_maxrss);
- http: `GET /v1/exports/dpo.parquet` streamed into a file by a plain client: wall time, the
  aggregator's peak RSS, bytes.

Goal (issue 12): 1M pairs in under 60 s, RSS under 300 MB at both sizes. Without DATABASE_URL /
KAFKA_BOOTSTRAP_SERVERS it starts a throwaway local PostgreSQL (fsync off) and Tansu. Results:
bench/results/export.json and export.md. Broker, database, server and client share the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
import pyarrow.parquet as pq
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from bench.provenance import REPO_ROOT, run_header
from deploy.init import migrate_all
from deploy.local_broker import start_broker
from deploy.local_database import start_database
from deploy.localstack import free_port
from shared.kafka import ensure_topics
from shared.settings import PipelineSettings

RESULTS_DIR = Path(__file__).parent / "results"
COPY_BATCH = 5_000
READY_TIMEOUT_S = 60.0
GOAL_SECONDS_AT_1M = 60.0
GOAL_RSS_MB = 300.0


class ExternalServers(BaseSettings):
    """External servers to use instead of local ones (the usual variables)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str | None = Field(None, validation_alias=AliasChoices("DATABASE_URL"))
    kafka_bootstrap_servers: str | None = Field(None, validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS"))


@dataclass(frozen=True)
class BenchConfig:
    sizes: tuple[int, ...] = (100_000, 1_000_000)
    answer_chars: int = 1_000
    test_size: float = 0.1


def parse_args(argv: list[str] | None) -> BenchConfig:
    parser = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="live pairs per measurement, ascending")
    parser.add_argument("--answer-chars", type=int, default=1_000, help="characters per answer")
    args = parser.parse_args(argv)
    sizes = tuple(sorted(int(s) for s in args.sizes.split(",")))
    return BenchConfig(sizes=sizes, answer_chars=args.answer_chars)


def _text_pool(chars: int) -> str:
    words = ["".join(random.choices("abcdefghijklmnopqrstuvwxyz", k=random.randint(2, 9))) for _ in range(5_000)]
    return " ".join(random.choices(words, k=chars // 3))


def synthetic_pair(n: int, pool: str, answer_chars: int) -> tuple[str, str, str]:
    """(pair_id, prompt_key, PreferencePair JSON) of the n-th synthetic live pair."""
    key, pair_id = f"bench-pk-{n:08d}", f"bench-pair-{n:08d}"
    start = (n * 7919) % (len(pool) - 2 * answer_chars)
    pair = {
        "event_id": str(uuid.UUID(int=n)),
        "schema_version": 1,
        "app_id": "bench",
        "pair_id": pair_id,
        "prompt_key": key,
        "prompt": [{"role": "user", "content": f"Question {n}: {pool[start : start + 120]}?"}],
        "chosen": {"interaction_id": f"{n}-a", "content": pool[start : start + answer_chars], "model": "acme-chat",
                   "model_version": "v2"},
        "rejected": {"interaction_id": f"{n}-b", "content": pool[start + answer_chars : start + 2 * answer_chars],
                     "model": "acme-chat", "model_version": "v1"},
        "confidence": 0.95,
        "method": "votes",
        "evidence": {"chosen_up": 5, "rejected_down": 4},
        "domain": "general",
        "occurred_at": "2026-11-26T10:00:00+00:00",
        "updated_at": "2026-11-26T10:00:01+00:00",
    }  # fmt: skip
    return pair_id, key, orjson.dumps(pair).decode()


async def fill(dsn: str, start: int, stop: int, answer_chars: int) -> float:
    """COPY pairs start..stop-1 (and their groups) into the aggregator's tables; seconds taken."""
    conn = await asyncpg.connect(dsn)
    # Binary COPY sends jsonb as a version byte and the JSON text.
    await conn.set_type_codec(
        "jsonb", encoder=lambda text: b"\x01" + text.encode(), decoder=bytes, schema="pg_catalog", format="binary"
    )
    pool, started = _text_pool(4 * answer_chars + 50_000), time.perf_counter()
    try:
        for first in range(start, stop, COPY_BATCH):
            rows = [synthetic_pair(n, pool, answer_chars) for n in range(first, min(first + COPY_BATCH, stop))]
            groups = [(key, "bench", json.dumps({"messages": orjson.loads(p)["prompt"]})) for _, key, p in rows]
            await conn.copy_records_to_table("agg_groups", records=groups, columns=["prompt_key", "app_id", "prompt"])
            # Counted for the leaderboard, as a pipeline-built state is: else every fresh aggregator's
            # leaderboard backfill would route all N groups while the export is being measured.
            counted = [(key, "bench", "general") for _, key, _ in rows]
            await conn.copy_records_to_table(
                "agg_counted_groups", records=counted, columns=["prompt_key", "app_id", "domain"]
            )
            pairs = [(pid, key, "bench", pair) for pid, key, pair in rows]
            await conn.copy_records_to_table(
                "agg_pairs", records=pairs, columns=["pair_id", "prompt_key", "state_hash", "pair"]
            )
        await conn.execute("VACUUM ANALYZE agg_pairs")
    finally:
        await conn.close()
    return time.perf_counter() - started


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (a figure other load on the machine does not inflate)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def aggregator(env: dict[str, str], workdir: Path):
    """A fresh `python -m services.aggregator` process (its own peak RSS); yields (base URL, pid)."""
    port = free_port()
    log = (workdir / f"aggregator-{port}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.aggregator"],
        cwd=REPO_ROOT,
        env={**os.environ, **env, "AGGREGATOR_HTTP_PORT": str(port), "LOG_LEVEL": "WARNING"},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the aggregator did not start; see {log.name}") from None
                time.sleep(0.2)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def measure_file(url: str, pid: int, pairs: int, workdir: Path) -> dict[str, Any]:
    out = workdir / f"export-{pairs}"
    shutil.rmtree(out, ignore_errors=True)
    start_rss, start_cpu = _rss_mb(pid, "VmRSS"), _cpu_s(pid)
    started = time.perf_counter()
    client = subprocess.Popen(
        [sys.executable, "-m", "services.exporter", "dpo", "--out", str(out), "--aggregator", url, "--app-id", "bench"],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(client.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the exporter failed with {status}")
    manifest = json.loads((out / "manifest.json").read_text())
    size = sum(p.stat().st_size for p in (out / "data").iterdir())
    shutil.rmtree(out)
    return {
        "path": "file (python -m services.exporter -> Parquet per split)",
        "pairs": pairs,
        "rows": manifest["counts"]["dpo"]["total"],
        "seconds": round(seconds, 2),
        "aggregator_cpu_s": round(_cpu_s(pid) - start_cpu, 2),
        "client_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "aggregator_rss_start_mb": round(start_rss, 1),
        "aggregator_rss_peak_mb": round(_rss_mb(pid, "VmHWM"), 1),
        "client_rss_peak_mb": round(usage.ru_maxrss / 1024, 1),
        "output_mb": round(size / 2**20, 1),
    }


def measure_http(url: str, pid: int, pairs: int, workdir: Path) -> dict[str, Any]:
    target = workdir / f"http-{pairs}.parquet"
    start_rss, start_cpu = _rss_mb(pid, "VmRSS"), _cpu_s(pid)
    started = time.perf_counter()
    with urllib.request.urlopen(f"{url}/v1/exports/dpo.parquet?app_id=bench", timeout=600) as response:
        with target.open("wb") as file:
            shutil.copyfileobj(response, file, 1 << 20)
    seconds = time.perf_counter() - started
    rows = pq.ParquetFile(target).metadata.num_rows
    size = target.stat().st_size
    target.unlink()
    return {
        "path": "http (GET /v1/exports/dpo.parquet -> one file)",
        "pairs": pairs,
        "rows": rows,
        "seconds": round(seconds, 2),
        "aggregator_cpu_s": round(_cpu_s(pid) - start_cpu, 2),
        "client_cpu_s": None,
        "aggregator_rss_start_mb": round(start_rss, 1),
        "aggregator_rss_peak_mb": round(_rss_mb(pid, "VmHWM"), 1),
        "client_rss_peak_mb": None,
        "output_mb": round(size / 2**20, 1),
    }


def run(config: BenchConfig, kafka: str, server_url: str, workdir: Path) -> list[dict[str, Any]]:
    name = f"bench_export_{uuid.uuid4().hex[:8]}"
    dsn = urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))  # generated name: not a bind parameter
    results: list[dict[str, Any]] = []
    try:
        asyncio.run(migrate_all(dsn))
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        asyncio.run(ensure_topics(PipelineSettings(kafka_bootstrap_servers=kafka, topic_prefix=prefix)))
        env = {"KAFKA_BOOTSTRAP_SERVERS": kafka, "DATABASE_URL": dsn, "TOPIC_PREFIX": prefix}
        filled = 0
        for pairs in config.sizes:
            copy_s = asyncio.run(fill(dsn, filled, pairs, config.answer_chars))
            print(json.dumps({"filled": pairs, "copy_seconds": round(copy_s, 1)}), flush=True)
            filled = pairs
            for measure in (measure_file, measure_http):
                with aggregator(env, workdir) as (url, pid):
                    result = measure(url, pid, pairs, workdir)
                result["rows_per_s"] = round(result["rows"] / result["seconds"])
                results.append(result)
                print(json.dumps(result), flush=True)
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return results


async def _admin(server_url: str, statement: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def write_results(results: list[dict[str, Any]], config: BenchConfig) -> dict[str, Any]:
    report = {**run_header("export"), "settings": asdict(config), "results": results}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "export.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Export throughput and memory (`python -m bench.export`)",
        "",
        f"{report['date']}, commit `{report['git_commit']}`, Python {report['python']}, {report['platform']}, "
        f"{report['cpus']} CPUs, load average after the run {report['load_average_1m_after']}. "
        f"Settings: `{json.dumps(report['settings'])}`. Synthetic live pairs written with COPY (two answers of "
        f"{config.answer_chars} characters each), exported as `dpo` Parquet. Seconds are wall time from the "
        "request to the last byte (file: until the CLI exits). RSS: the aggregator process's peak (VmHWM; it is "
        "started fresh for each line) and the exporter CLI's (ru_maxrss); CPU: each process's user + system "
        "seconds during the export (PostgreSQL's own CPU is not counted). "
        f"Goal: 1M pairs under {GOAL_SECONDS_AT_1M:.0f} s, RSS under {GOAL_RSS_MB:.0f} MB.",
        "",
        "| path | pairs | rows | seconds | rows/s | aggregator CPU s | CLI CPU s | aggregator RSS start / peak MB "
        "| CLI RSS peak MB | output MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['path']} | {r['pairs']:,} | {r['rows']:,} | {r['seconds']} | {r['rows_per_s']:,} | "
            f"{r['aggregator_cpu_s']} | {r['client_cpu_s'] or '-'} | "
            f"{r['aggregator_rss_start_mb']} / {r['aggregator_rss_peak_mb']} | {r['client_rss_peak_mb'] or '-'} | "
            f"{r['output_mb']} |"
        )
    (RESULTS_DIR / "export.md").write_text("\n".join(lines) + "\n")
    return report


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        external = ExternalServers()
        kafka = external.kafka_bootstrap_servers or stack.enter_context(start_broker(log_dir=workdir)).bootstrap
        server = external.database_url or stack.enter_context(start_database(workdir / "pg", fast_unsafe=True)).url
        results = run(config, kafka, server, workdir)
    write_results(results, config)
    print((RESULTS_DIR / "export.md").read_text())


if __name__ == "__main__":
    main()
