"""Ingest throughput: batch and single posts through services.ingest, each against its own baseline.

`python -m bench.ingest` starts its own Tansu broker and PostgreSQL (deploy/local_*.py, fsync off),
runs `python -m services.ingest` as a real process, and measures on that one broker, with the same
~1 KB interactions (distinct event_ids), every baseline in the same run:

1. raw producer, tuned: a raw aiokafka producer sends N events to a topic of its own, timed until
   the broker acknowledged all; first a sweep of linger and batch size on N/2 events each, then the
   fastest setting on N events (a baseline must be the fastest its tool goes);
2. batch: concurrent clients post `POST /v1/interactions/batch`: events/s from the first request until
   a reader of `interactions` has seen every event of the phase; its ratio is to (1);
3. bare endpoint: `python -m bench.bare_endpoint` (uvicorn, one worker as the service; the handler
   only parses the body and awaits the acknowledged send) gets the single posts of (4) from the same
   load generator, timed until a reader of its topic has seen every event;
4. single: many concurrent clients post `POST /v1/interactions`, one event each, timed as (3); its
   ratio is to (3).

HTTP goes over a minimal keep-alive HTTP/1.1 client on raw asyncio streams (one connection per
client): httpx costs more CPU per request than the service on this 2-core box, which would measure
the client. Results: bench/results/ingest.json and ingest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from bench.ingest_load import HttpConnection, TopicReader, make_interactions, module_process, percentile
from bench.ingest_report import NOTES_MARKER, RESULTS_DIR, PhaseResult, markdown, write_results
from bench.provenance import kept_notes
from deploy.init import migrate_all
from deploy.local_broker import LOCAL_BROKER_SECURITY, LOCAL_CLIENT_SECURITY, start_broker
from deploy.local_database import start_database
from deploy.localstack import free_port, read_tail
from shared import topics
from shared.kafka import ensure_topics
from shared.prompt_key import prompt_key
from shared.settings import PipelineSettings

BASELINE_PREFIX = "baseline."
BARE_PREFIX = "bare."
# The raw producer's sweep: linger (ms) x batch size (bytes per partition); the fastest is the baseline.
SWEEP_LINGER_MS = (2, 10, 50)
SWEEP_BATCH_BYTES = (64 * 1024, 512 * 1024)
READY_TIMEOUT_S = 60.0
READY_POLL_S = 0.1


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


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events in the baseline and the batch phase")
    parser.add_argument("--single-events", type=int, default=5_000, help="events in the single-post phase")
    parser.add_argument("--batch-size", type=int, default=250, help="items per batch request (the limit is 500)")
    parser.add_argument("--batch-clients", type=int, default=4, help="concurrent batch clients")
    parser.add_argument("--single-clients", type=int, default=32, help="concurrent single-post clients")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of every topic")
    parser.add_argument("--linger-ms", type=int, default=2, help="producer linger of the service and the bare endpoint")
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


async def _produce(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], *, linger_ms: int, batch_bytes: int
) -> float:
    """Raw aiokafka: send every record without awaiting each, then wait for every ack; seconds taken."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        **LOCAL_CLIENT_SECURITY,  # the bench's own Tansu (deploy.local_broker): PLAINTEXT
        acks="all",
        enable_idempotence=False,
        linger_ms=linger_ms,
        max_batch_size=batch_bytes,
        max_request_size=max(2 * 1024 * 1024, batch_bytes),
    )
    await producer.start()
    try:
        # Warm-up (metadata, connections), not counted, as for the service.
        await asyncio.gather(*[await producer.send(topic, value, key=key) for key, value in records[:64]])
        started = time.perf_counter()
        await asyncio.gather(*[await producer.send(topic, value, key=key) for key, value in records[64:]])
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def run_baseline(
    bootstrap: str, config: BenchConfig, warmup: list[dict[str, Any]], items: list[dict[str, Any]]
) -> PhaseResult:
    """The raw producer tuned for throughput: a sweep of linger x batch size, then the fastest on every item.

    Timed to the last ack with no reader running: a reader in this process would take CPU from the
    producer (it halves the rate on 2 cores). That every event arrived is checked afterwards.
    """
    topic = topics.topic(BASELINE_PREFIX, topics.INTERACTIONS)
    head = [canonical_value(item) for item in warmup[:64]]
    records = [canonical_value(item) for item in items]
    probe = records[: max(1, len(records) // 2)]
    rates = {}
    for linger_ms in SWEEP_LINGER_MS:
        for batch_bytes in SWEEP_BATCH_BYTES:
            seconds = await _produce(bootstrap, topic, head + probe, linger_ms=linger_ms, batch_bytes=batch_bytes)
            rates[(linger_ms, batch_bytes)] = len(probe) / seconds
    linger_ms, batch_bytes = max(rates, key=rates.__getitem__)
    acked = await _produce(bootstrap, topic, head + records, linger_ms=linger_ms, batch_bytes=batch_bytes)
    async with TopicReader(bootstrap, topic) as reader:
        await reader.wait_for({item["event_id"] for item in items}, config.drain_timeout_s)
    sweep = ", ".join(f"{lg} ms/{bb // 1024} KB {rate:,.0f}/s" for (lg, bb), rate in rates.items())
    return PhaseResult(
        f"raw aiokafka producer, tuned (linger {linger_ms} ms, batch {batch_bytes // 1024} KB)",
        "broker ack",
        len(items),
        acked,
        len(items) / acked,
        note=f"sweep on {len(probe):,} events: {sweep}",
    )


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
    mode: str,
    base: tuple[str, int],
    reader: TopicReader,
    items: list[dict[str, Any]],
    config: BenchConfig,
    *,
    label: str | None = None,
    baseline: str | None = None,
    server_pid: int | None = None,
) -> PhaseResult:
    """Post `items` in batches (mode "batch") or one by one, timed until the reader saw every event."""
    if mode == "batch":
        chunks = [items[i : i + config.batch_size] for i in range(0, len(items), config.batch_size)]
        path, clients, bodies = "/v1/interactions/batch", config.batch_clients, [orjson.dumps(c) for c in chunks]
        expected = [len(c) for c in chunks]
    else:
        path, clients, bodies = "/v1/interactions", config.single_clients, [orjson.dumps(i) for i in items]
        expected = [1] * len(items)
    cpu_before = process_cpu_s(server_pid)
    started = time.perf_counter()
    latencies, acked_at = await _post_all(base, path, bodies, clients, expected)
    seen = await reader.wait_for({item["event_id"] for item in items}, config.drain_timeout_s) - started
    acked = acked_at - started
    cpu_after = process_cpu_s(server_pid)
    cpu_ms = None if cpu_before is None or cpu_after is None else (cpu_after - cpu_before) * 1000 / len(items)
    label = label or f"ingest {mode} ({clients} clients" + (
        f", {config.batch_size}/request)" if mode == "batch" else ")"
    )
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
        baseline=baseline,
        server_cpu_ms_per_event=cpu_ms,
    )


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of process `pid` so far (Linux /proc); None without a pid or /proc."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    # Fields 14 and 15 of proc(5) (utime, stime), counted after the command name's closing parenthesis.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingest_process(bootstrap: str, database_url: str, port: int, config: BenchConfig, log_path: Path) -> Any:
    """`python -m services.ingest` on `port` (a context manager yielding its pid)."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": database_url,
        "INGEST_HTTP_PORT": str(port),
        "INGEST_HTTP_HOST": "127.0.0.1",
        "TOPIC_PREFIX": "",
        "TOPIC_PARTITIONS": str(config.partitions),
        "KAFKA_LINGER_MS": str(config.linger_ms),
        "LOG_LEVEL": "WARNING",
    }
    return module_process("services.ingest", env, log_path)


def bare_process(bootstrap: str, port: int, config: BenchConfig, log_path: Path) -> Any:
    """`python -m bench.bare_endpoint` on `port`, with the service's producer settings."""
    env = {
        "BARE_BOOTSTRAP": bootstrap,
        "BARE_PORT": str(port),
        "BARE_TOPIC": topics.topic(BARE_PREFIX, topics.INTERACTIONS),
        "BARE_LINGER_MS": str(config.linger_ms),
        "BARE_MAX_BATCH_BYTES": str(PipelineSettings.model_fields["kafka_max_batch_bytes"].default),
    }
    return module_process("bench.bare_endpoint", env, log_path)


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
    raise RuntimeError(f"{log_path.stem} not ready within {READY_TIMEOUT_S} s; log:\n{read_tail(log_path)}")


async def measure(bootstrap: str, database_url: str, config: BenchConfig, workdir: Path) -> list[PhaseResult]:
    await migrate_all(database_url)
    for prefix in ("", BASELINE_PREFIX, BARE_PREFIX):
        await ensure_topics(
            PipelineSettings(
                kafka_bootstrap_servers=bootstrap,
                topic_prefix=prefix,
                topic_partitions=config.partitions,
                **LOCAL_BROKER_SECURITY,
            )
        )
    sizes = [64 + 2 * config.batch_size, config.events, config.events, config.single_events, config.single_events]
    warmup, baseline, batch, single, bare = _split(make_interactions(sum(sizes), config.seed), sizes)
    raw = await run_baseline(bootstrap, config, warmup, baseline)
    bare_result = await run_bare(bootstrap, config, workdir, warmup[:64], bare)
    base = ("127.0.0.1", free_port())
    log_path = workdir / "ingest.log"
    with ingest_process(bootstrap, database_url, base[1], config, log_path) as pid:
        await wait_ready(base, log_path)
        async with TopicReader(bootstrap, topics.topic("", topics.INTERACTIONS)) as reader:
            # Warm-up: connections, the database pool and code paths, not counted.
            await run_http_phase("batch", base, reader, warmup[64:], config)
            await run_http_phase("single", base, reader, warmup[:64], config)
            batch_result = await run_http_phase("batch", base, reader, batch, config, baseline=raw.mode, server_pid=pid)
            single_result = await run_http_phase(
                "single", base, reader, single, config, baseline=bare_result.mode, server_pid=pid
            )
    return [raw, batch_result, bare_result, single_result]


async def run_bare(
    bootstrap: str, config: BenchConfig, workdir: Path, warmup: list[dict[str, Any]], items: list[dict[str, Any]]
) -> PhaseResult:
    """The bare endpoint's single posts: same load generator, clients and timing as ingest's."""
    base = ("127.0.0.1", free_port())
    log_path = workdir / "bare_endpoint.log"
    with bare_process(bootstrap, base[1], config, log_path) as pid:
        await wait_ready(base, log_path)
        async with TopicReader(bootstrap, topics.topic(BARE_PREFIX, topics.INTERACTIONS)) as reader:
            await run_http_phase("single", base, reader, warmup, config)
            label = f"bare endpoint: uvicorn, parse + acked send ({config.single_clients} clients)"
            return await run_http_phase("single", base, reader, items, config, label=label, server_pid=pid)


def _split(items: list[dict[str, Any]], sizes: list[int]) -> list[list[dict[str, Any]]]:
    parts, start = [], 0
    for size in sizes:
        parts.append(items[start : start + size])
        start += size
    return parts


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        workdir = Path(tmp)
        with start_broker(log_dir=workdir) as broker, start_database(workdir / "pg", fast_unsafe=True) as database:
            results = asyncio.run(measure(broker.bootstrap, database.url, config, workdir))
    sample = make_interactions(200, config.seed)
    mean_bytes = sum(len(orjson.dumps(i)) for i in sample) / len(sample)
    report = write_results(results, asdict(config), mean_bytes, kept_notes(RESULTS_DIR / "ingest.md", NOTES_MARKER))
    print(markdown(report))


if __name__ == "__main__":
    main()
