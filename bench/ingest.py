"""Ingest throughput: HTTP batch and single posts through services.ingest against a raw aiokafka producer.

`python -m bench.ingest` starts its own Tansu broker and PostgreSQL (deploy/local_*.py, fsync off),
runs `python -m services.ingest` as a real process, and measures on that one broker, with the same
~1 KB interactions (distinct event_ids):

1. baseline: a raw aiokafka producer (the service's producer settings) sends N events to a topic of
   its own: events/s until all are acknowledged, and until a reader of that topic has seen them all;
2. batch: concurrent clients post `POST /v1/interactions/batch`: events/s from the first request until
   a reader of `interactions` has seen every event of the phase;
3. single: many concurrent clients post `POST /v1/interactions`, one event each, timed the same way.

HTTP goes over a minimal keep-alive HTTP/1.1 client on raw asyncio streams (one connection per
client): httpx costs more CPU per request than the service on this 2-core box, which would measure
the client. Results: bench/results/ingest.json and ingest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from bench.ingest_load import HttpConnection, TopicReader, make_interactions, percentile
from bench.provenance import run_header
from deploy.init import migrate_all
from deploy.local_broker import start_broker
from deploy.local_database import start_database
from deploy.localstack import free_port, read_tail
from shared import topics
from shared.kafka import ensure_topics
from shared.prompt_key import prompt_key
from shared.settings import PipelineSettings

RESULTS_DIR = Path(__file__).parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent
BASELINE_PREFIX = "baseline."
READY_TIMEOUT_S = 60.0
READY_POLL_S = 0.1
SERVICE_STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class BenchConfig:
    events: int
    single_events: int
    batch_size: int
    batch_clients: int
    single_clients: int
    partitions: int
    linger_ms: int
    drain_timeout_s: float
    seed: int


@dataclass(frozen=True)
class PhaseResult:
    mode: str
    timed_until: str
    events: int
    seconds: float
    events_per_s: float
    acked_seconds: float | None = None
    acked_events_per_s: float | None = None
    requests: int | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events in the baseline and the batch phase")
    parser.add_argument("--single-events", type=int, default=5_000, help="events in the single-post phase")
    parser.add_argument("--batch-size", type=int, default=250, help="items per batch request (the limit is 500)")
    parser.add_argument("--batch-clients", type=int, default=4, help="concurrent batch clients")
    parser.add_argument("--single-clients", type=int, default=32, help="concurrent single-post clients")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of every topic")
    parser.add_argument("--linger-ms", type=int, default=2, help="producer linger, baseline and service alike")
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="deadline for a phase to reach the topic")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated interactions")
    args = parser.parse_args(argv)
    return BenchConfig(
        events=args.events,
        single_events=args.single_events,
        batch_size=args.batch_size,
        batch_clients=args.batch_clients,
        single_clients=args.single_clients,
        partitions=args.partitions,
        linger_ms=args.linger_ms,
        drain_timeout_s=args.drain_timeout,
        seed=args.seed,
    )


def canonical_value(item: dict[str, Any]) -> tuple[bytes, bytes]:
    """What ingest would publish for `item` (received_at and prompt_key stamped) and its key."""
    key = prompt_key(item["app_id"], [_MessageView(m["role"], m["content"]) for m in item["messages"]])
    value = orjson.dumps({**item, "received_at": datetime.now(UTC).isoformat(), "prompt_key": key})
    return key.encode(), value


@dataclass(frozen=True, slots=True)
class _MessageView:
    role: str
    content: str


async def run_baseline(
    bootstrap: str, config: BenchConfig, warmup: list[dict[str, Any]], items: list[dict[str, Any]]
) -> PhaseResult:
    """Raw aiokafka: send every record without awaiting each, then wait until the broker acknowledged all.

    Timed to the last ack with no reader running: a reader in this process would take CPU from the
    producer (it halves the rate on 2 cores). That every event arrived is checked afterwards.
    """
    topic = topics.topic(BASELINE_PREFIX, topics.INTERACTIONS)
    warmup_records = [canonical_value(item) for item in warmup]
    records = [canonical_value(item) for item in items]
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=config.linger_ms,
        max_request_size=2 * 1024 * 1024,
    )
    await producer.start()
    try:
        # Warm-up (metadata, connections), not counted, as for the service.
        await asyncio.gather(*[await producer.send(topic, value, key=key) for key, value in warmup_records])
        started = time.perf_counter()
        await asyncio.gather(*[await producer.send(topic, value, key=key) for key, value in records])
        acked = time.perf_counter() - started
    finally:
        await producer.stop()
    async with TopicReader(bootstrap, topic) as reader:
        await reader.wait_for({item["event_id"] for item in items}, config.drain_timeout_s)
    return PhaseResult("baseline (raw aiokafka)", "broker ack", len(items), acked, len(items) / acked)


async def _post_all(
    base: tuple[str, int], path: str, bodies: list[bytes], clients: int, expected: list[int]
) -> tuple[list[float], float]:
    """Post every body over `clients` keep-alive connections; the latencies and when the last 202 came."""
    latencies: list[float] = []
    work = iter(zip(bodies, expected, strict=True))

    async def client() -> None:
        async with HttpConnection(*base) as connection:
            for body, count in work:
                sent = time.perf_counter()
                status, reply = await connection.request("POST", path, body)
                latencies.append(time.perf_counter() - sent)
                accepted = len(orjson.loads(reply).get("accepted", [])) if status == 202 else 0
                if accepted != count:
                    raise RuntimeError(f"{path}: HTTP {status}, {accepted} of {count} accepted: {reply[:300]!r}")

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, time.perf_counter()


async def run_http_phase(
    mode: str, base: tuple[str, int], reader: TopicReader, items: list[dict[str, Any]], config: BenchConfig
) -> PhaseResult:
    """Post `items` in batches (mode "batch") or one by one, timed until the reader saw every event."""
    if mode == "batch":
        chunks = [items[i : i + config.batch_size] for i in range(0, len(items), config.batch_size)]
        path, clients, bodies = "/v1/interactions/batch", config.batch_clients, [orjson.dumps(c) for c in chunks]
        expected = [len(c) for c in chunks]
    else:
        path, clients, bodies = "/v1/interactions", config.single_clients, [orjson.dumps(i) for i in items]
        expected = [1] * len(items)
    started = time.perf_counter()
    latencies, acked_at = await _post_all(base, path, bodies, clients, expected)
    seen = await reader.wait_for({item["event_id"] for item in items}, config.drain_timeout_s) - started
    acked = acked_at - started
    label = f"ingest {mode} ({clients} clients" + (f", {config.batch_size}/request)" if mode == "batch" else ")")
    return PhaseResult(
        label,
        "seen on topic",
        len(items),
        seen,
        len(items) / seen,
        acked,
        len(items) / acked,
        len(bodies),
        percentile(latencies, 50) * 1000,
        percentile(latencies, 99) * 1000,
    )


@contextlib.contextmanager
def ingest_process(bootstrap: str, database_url: str, port: int, config: BenchConfig, log_path: Path) -> Iterator[int]:
    """`python -m services.ingest` on `port`; yields its pid; SIGTERM (graceful shutdown) on exit."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": database_url,
        "INGEST_HTTP_PORT": str(port),
        "INGEST_HTTP_HOST": "127.0.0.1",
        "TOPIC_PREFIX": "",
        "TOPIC_PARTITIONS": str(config.partitions),
        "KAFKA_LINGER_MS": str(config.linger_ms),
        "LOG_LEVEL": "WARNING",
    }
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.ingest"], cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        yield process.pid
    finally:
        process.terminate()
        try:
            process.wait(SERVICE_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def wait_ready(base: tuple[str, int], log_path: Path) -> None:
    """Poll GET /readyz until 200 (the service migrated, created topics and reached the broker)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            async with HttpConnection(*base) as connection:
                status, _ = await connection.request("GET", "/readyz")
                if status == 200:
                    return
        await asyncio.sleep(READY_POLL_S)
    raise RuntimeError(f"ingest not ready within {READY_TIMEOUT_S} s; log:\n{read_tail(log_path)}")


async def measure(bootstrap: str, database_url: str, config: BenchConfig, workdir: Path) -> list[PhaseResult]:
    await migrate_all(database_url)
    for prefix in ("", BASELINE_PREFIX):
        await ensure_topics(
            PipelineSettings(kafka_bootstrap_servers=bootstrap, topic_prefix=prefix, topic_partitions=config.partitions)
        )
    warmup, baseline, batch, single = _split(
        make_interactions(64 + 2 * config.batch_size + 2 * config.events + config.single_events, config.seed),
        [64 + 2 * config.batch_size, config.events, config.events, config.single_events],
    )
    results = [await run_baseline(bootstrap, config, warmup, baseline)]
    base = ("127.0.0.1", free_port())
    log_path = workdir / "ingest.log"
    with ingest_process(bootstrap, database_url, base[1], config, log_path):
        await wait_ready(base, log_path)
        async with TopicReader(bootstrap, topics.topic("", topics.INTERACTIONS)) as reader:
            # Warm-up: connections, the database pool and code paths, not counted.
            await run_http_phase("batch", base, reader, warmup[64:], config)
            await run_http_phase("single", base, reader, warmup[:64], config)
            results.append(await run_http_phase("batch", base, reader, batch, config))
            results.append(await run_http_phase("single", base, reader, single, config))
    return results


def _split(items: list[dict[str, Any]], sizes: list[int]) -> list[list[dict[str, Any]]]:
    parts, start = [], 0
    for size in sizes:
        parts.append(items[start : start + size])
        start += size
    return parts


def write_results(results: list[PhaseResult], config: BenchConfig, payload_bytes: float) -> dict[str, Any]:
    baseline = results[0].events_per_s
    report = {
        **run_header("ingest"),
        "settings": {**asdict(config), "mean_payload_bytes": round(payload_bytes)},
        "results": [{**asdict(r), "ratio_to_baseline": round(r.events_per_s / baseline, 4)} for r in results],
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "ingest.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS_DIR / "ingest.md").write_text(_markdown(report))
    return report


def _markdown(report: dict[str, Any]) -> str:
    def fmt(value: float | None, digits: int = 1) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    lines = [
        "# Ingest throughput",
        "",
        f"{report['date']}, commit `{report['git_commit']}`, Python {report['python']}, {report['platform']}, "
        f"{report['cpus']} CPUs (load average {report['load_average_1m_after']}).",
        "",
        f"Settings: `{json.dumps(report['settings'])}`.",
        "",
        "events/s runs from the first send/request until the baseline's last broker ack, or until a reader "
        'of `interactions` has seen every event of the phase (ingest); "acked" stops at the last HTTP 202.',
        "",
        "| mode | timed until | events | events/s | × baseline | events/s (acked) | requests | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['mode']} | {r['timed_until']} | {r['events']:,} | {fmt(r['events_per_s'], 0)} | "
            f"{r['ratio_to_baseline']:.3f} | {fmt(r['acked_events_per_s'], 0)} | {r['requests'] or '-'} | "
            f"{fmt(r['latency_p50_ms'])} | {fmt(r['latency_p99_ms'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        workdir = Path(tmp)
        with start_broker(log_dir=workdir) as broker, start_database(workdir / "pg", fast_unsafe=True) as database:
            results = asyncio.run(measure(broker.bootstrap, database.url, config, workdir))
    sample = make_interactions(200, config.seed)
    report = write_results(results, config, sum(len(orjson.dumps(i)) for i in sample) / len(sample))
    print(_markdown(report))


if __name__ == "__main__":
    main()
