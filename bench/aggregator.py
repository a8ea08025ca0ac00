"""Aggregator throughput and event->pair latency, against a raw aiokafka consume + asyncpg write baseline.

`python -m bench.aggregator` starts its own Tansu broker and PostgreSQL (deploy/local_*.py, fsync
off), runs `python -m services.aggregator` as a real process, and measures on that one broker:

1. baseline: a raw aiokafka consumer reads the same canonical events (interactions keyed by
   prompt_key, votes by interaction_id) from topics of its own and writes each batch to PostgreSQL
   with one INSERT in one transaction, then commits offsets: events/s from the first send until
   every event is in its table;
2. aggregator: the same events through the service (state in PostgreSQL, decisions, outbox):
   events/s from the first send until every interaction and vote is taken in (counted in its tables),
   after a warm-up: the group join, a few pairs, and the first leaderboard refit (it imports scipy's
   submodules: seconds of CPU, once per process, which fell in this phase before);
3. latency: at each offered load (groups/s; 100 groups/s = 1,000 events/s, the issue's rate, then
   20 groups/s), each group's two answers and eight votes are sent at once; the latency is from that
   send until a reader of `preference-pairs` sees the group's pair.

For every aggregator phase, the service process's user + system CPU per event (ms, /proc) is reported
beside the rate: the 2 cores are shared, so CPU per event is the figure that compares runs.
`--py-spy PATH --profile-out PREFIX` records the aggregator with py-spy (raw, 200 Hz) during each
phase, into PREFIX.throughput.txt and PREFIX.latency-<groups/s>.txt.

Every group is a clear split (four thumbs-up on one answer, four thumbs-down on the other), so each
gives one pair. The bench process (producer, readers) shares the 2 CPUs with the service.
Results: bench/results/aggregator.json and aggregator.md (bench/aggregator_report.py; the notes after
the marker in aggregator.md, the profiles and before/after tables, are kept across runs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.aggregator_probes import AggregatorProcess, aggregator_process, leaderboard_refits, profiled
from bench.aggregator_report import write_results
from deploy.init import migrate_all
from deploy.local_broker import LOCAL_BROKER_SECURITY, LOCAL_CLIENT_SECURITY, start_broker
from deploy.local_database import start_database
from deploy.localstack import read_tail
from shared import topics
from shared.events import Message
from shared.kafka import ensure_topics
from shared.prompt_key import prompt_key
from shared.settings import PipelineSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
BASELINE_PREFIX = "baseline."
READY_TIMEOUT_S = 60.0
POLL_S = 0.05
STOP_TIMEOUT_S = 15.0
VOTES_PER_ANSWER = 4
EVENTS_PER_GROUP = 2 + 2 * VOTES_PER_ANSWER


@dataclass(frozen=True)
class BenchConfig:
    groups: int
    latency_rates: tuple[float, ...]
    latency_seconds: float
    partitions: int
    answer_chars: int
    drain_timeout_s: float
    py_spy: str | None = None
    profile_out: str | None = None


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    parser = argparse.ArgumentParser(prog="python -m bench.aggregator", description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=4_000, help="prompt groups in the throughput phases")
    parser.add_argument(
        "--latency-rates",
        type=float,
        nargs="+",
        default=[100.0, 20.0],
        help="groups/s offered in the latency phases (10 events each: 100 = 1,000 events/s)",
    )
    parser.add_argument("--latency-seconds", type=float, default=10.0, help="length of the latency phase")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of every topic")
    parser.add_argument("--answer-chars", type=int, default=600, help="characters of each answer")
    parser.add_argument("--drain-timeout", type=float, default=90.0, help="deadline for a phase to finish")
    parser.add_argument("--py-spy", help="py-spy executable: profile the aggregator during each phase")
    parser.add_argument("--profile-out", help="path prefix of the raw profiles (with --py-spy)")
    a = parser.parse_args(argv)
    return BenchConfig(
        a.groups,
        tuple(a.latency_rates),
        a.latency_seconds,
        a.partitions,
        a.answer_chars,
        a.drain_timeout,
        a.py_spy,
        a.profile_out,
    )


def group_records(run: str, g: int, answer_chars: int) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """(prompt_key, [(topic constant, key, value)]) of one clear-split group, as ingest/feedback publish them."""
    now = datetime.now(UTC).isoformat()
    messages = [{"role": "user", "content": f"Question {g} of run {run}: which plan fits a team of {g % 50}?"}]
    key = prompt_key("bench", [Message.model_validate(m) for m in messages])
    records = []
    for label in ("a", "b"):
        body = {
            "event_id": str(uuid.uuid4()),
            "app_id": "bench",
            "occurred_at": now,
            "received_at": now,
            "interaction_id": f"{run}-{g}-{label}",
            "conversation_id": f"c-{g}",
            "user_ref": "u",
            "messages": messages,
            "prompt_key": key,
            "response": {"content": f"Answer {label}: " + "x" * answer_chars, "model": "m", "model_version": "v1"},
        }
        records.append((topics.INTERACTIONS, key.encode(), json.dumps(body).encode()))
    for label, value in (("a", 1), ("b", -1)):
        for i in range(VOTES_PER_ANSWER):
            iid = f"{run}-{g}-{label}"
            body = {
                "event_id": str(uuid.uuid4()),
                "app_id": "bench",
                "occurred_at": now,
                "received_at": now,
                "interaction_id": iid,
                "user_ref": f"v{i}",
                "source": "end_user",
                "kind": "thumb",
                "value": value,
            }
            records.append((topics.VOTES, iid.encode(), json.dumps(body).encode()))
    return key, records


async def send_all(producer: AIOKafkaProducer, prefix: str, records: list[tuple[str, bytes, bytes]]) -> None:
    futures = [await producer.send(topics.topic(prefix, t), value, key=key) for t, key, value in records]
    await asyncio.gather(*futures)


async def wait_until(check: Any, timeout_s: float, what: str) -> float:
    """Poll `check` until true; return the monotonic time it became true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return time.perf_counter()
        await asyncio.sleep(POLL_S)
    raise RuntimeError(f"{what}: not done within {timeout_s} s")


async def run_baseline(
    bootstrap: str, dsn: str, producer: AIOKafkaProducer, records: list, config: BenchConfig
) -> dict:
    """Raw aiokafka consume (batches) + one asyncpg INSERT per batch + offset commit."""
    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE TABLE IF NOT EXISTS bench_baseline (topic text, key bytea, value bytea)")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id="bench-baseline",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        max_poll_records=500,
        **LOCAL_CLIENT_SECURITY,
    )
    await consumer.start()
    names = [topics.topic(BASELINE_PREFIX, t) for t in (topics.INTERACTIONS, topics.VOTES)]
    consumer.assign([TopicPartition(n, p) for n in names for p in range(config.partitions)])
    await consumer.seek_to_beginning()
    written = 0

    async def consume() -> None:
        nonlocal written
        while written < len(records):
            batches = await consumer.getmany(timeout_ms=50, max_records=500)
            rows = [r for batch in batches.values() for r in batch]
            if rows:
                async with conn.transaction():
                    await conn.execute(
                        "INSERT INTO bench_baseline SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[])",
                        [r.topic for r in rows],
                        [r.key for r in rows],
                        [r.value for r in rows],
                    )
                await consumer.commit()
                written += len(rows)

    try:
        started = time.perf_counter()
        task = asyncio.create_task(consume())
        await send_all(producer, BASELINE_PREFIX, records)
        await asyncio.wait_for(task, config.drain_timeout_s)
        seconds = time.perf_counter() - started
    finally:
        await consumer.stop()
        await conn.close()
    return {"mode": "baseline (raw aiokafka consume + asyncpg write)", "events": len(records), "seconds": seconds}


async def run_aggregator(
    dsn: str, producer: AIOKafkaProducer, records: list, service: AggregatorProcess, config: BenchConfig
) -> dict:
    conn = await asyncpg.connect(dsn)

    async def done() -> bool:
        got = await conn.fetchval(
            "SELECT (SELECT count(*) FROM agg_interactions WHERE app_id = 'bench')"
            " + (SELECT count(*) FROM agg_seen_votes)"
        )
        return got >= len(records)

    try:
        with profiled(service.pid, config.py_spy, _profile_path(config, "throughput")):
            before, started = await service.reading(), time.perf_counter()
            await send_all(producer, "", records)
            finished = await wait_until(done, config.drain_timeout_s, "aggregator throughput")
            after = await service.reading()
        pairs = await conn.fetchval("SELECT count(*) FROM agg_pairs")
    finally:
        await conn.close()
    return {
        "mode": "aggregator (state in PostgreSQL, outbox)",
        "events": len(records),
        "seconds": finished - started,
        "pairs_in_state": pairs,
        **service.spent(before, after, len(records)),
    }


async def pair_watcher(bootstrap: str, seen: dict[str, float], stop: asyncio.Event) -> None:
    """First time each prompt_key's pair appears on preference-pairs (from the topic's current end)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10, **LOCAL_CLIENT_SECURITY
    )
    await consumer.start()
    name = topics.topic("", topics.PREFERENCE_PAIRS)
    partitions = [TopicPartition(name, p) for p in consumer.partitions_for_topic(name) or range(6)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning()
    try:
        while not stop.is_set():
            for batch in (await consumer.getmany(timeout_ms=20)).values():
                for record in batch:
                    if record.value is not None:
                        seen.setdefault(json.loads(record.value)["prompt_key"], time.perf_counter())
    finally:
        await consumer.stop()


async def run_latency(
    bootstrap: str, producer: AIOKafkaProducer, rate: float, config: BenchConfig, service: AggregatorProcess
) -> dict:
    """`rate` groups/s for latency_seconds: each group's latency from its send until its pair is seen."""
    seen: dict[str, float] = {}
    stop = asyncio.Event()
    watcher = asyncio.create_task(pair_watcher(bootstrap, seen, stop))
    sent: dict[str, float] = {}
    interval, count = 1.0 / rate, int(rate * config.latency_seconds)
    run = uuid.uuid4().hex[:6]
    with profiled(service.pid, config.py_spy, _profile_path(config, f"latency-{rate:g}")):
        before, started = await service.reading(), time.perf_counter()
        for g in range(count):
            await asyncio.sleep(max(0.0, started + g * interval - time.perf_counter()))
            key, records = group_records(run, g, config.answer_chars)
            sent[key] = time.perf_counter()
            await send_all(producer, "", records)
        offered_s = time.perf_counter() - started

    async def all_seen() -> bool:
        return all(k in seen for k in sent)

    try:
        await wait_until(all_seen, config.drain_timeout_s, "latency phase")
        after = await service.reading()
    finally:
        stop.set()
        await watcher
    latencies = sorted((seen[k] - sent[k]) * 1000 for k in sent)
    return {
        "mode": f"event->pair latency at {rate:g} groups/s ({rate * EVENTS_PER_GROUP:g} events/s)",
        "events": count * EVENTS_PER_GROUP,
        "offered_events_per_s": round(count * EVENTS_PER_GROUP / offered_s),
        "latency_p50_ms": _pct(latencies, 50),
        "latency_p99_ms": _pct(latencies, 99),
        "latency_max_ms": round(latencies[-1], 1),
        **service.spent(before, after, count * EVENTS_PER_GROUP),
    }


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """This process's heap (the throughput phase's 40,000 records and more) out of its full collections
    while latencies are timed: a full collection of it stalled the bench's reader for up to 115 ms, which
    was counted as the pipeline's latency."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _profile_path(config: BenchConfig, phase: str) -> str | None:
    return f"{config.profile_out}.{phase}.txt" if config.profile_out else None


def _pct(values: list[float], p: float) -> float:
    return round(values[min(len(values) - 1, int(len(values) * p / 100))], 1)


async def warm_up(producer: AIOKafkaProducer, bootstrap: str, service: AggregatorProcess, config: BenchConfig) -> None:
    """Ready, joined and warm: one group's pair has come out (the group join takes ~5 s on Tansu)."""
    async with httpx.AsyncClient() as client:

        async def ready() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return (await client.get(f"http://127.0.0.1:{service.port}/readyz")).status_code == 200
            return False

        try:
            await wait_until(ready, READY_TIMEOUT_S, "aggregator ready")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; log:\n{read_tail(service.log)}") from exc
    warm = BenchConfig(0, (), 1.0, config.partitions, config.answer_chars, 60.0)
    await run_latency(bootstrap, producer, 5.0, warm, service)

    # The first board refit imports scipy's submodules (seconds of CPU, once per process): not in a phase.
    async def refitted() -> bool:
        return await leaderboard_refits(service.port) > 0

    await wait_until(refitted, READY_TIMEOUT_S, "first leaderboard refit")


async def measure(bootstrap: str, dsn: str, config: BenchConfig, workdir: Path, database_pid: int | None) -> list[dict]:
    await migrate_all(dsn)
    for prefix in ("", BASELINE_PREFIX):
        await ensure_topics(
            PipelineSettings(
                kafka_bootstrap_servers=bootstrap,
                topic_prefix=prefix,
                topic_partitions=config.partitions,
                **LOCAL_BROKER_SECURITY,
            )
        )
    run = uuid.uuid4().hex[:6]
    records = [r for g in range(config.groups) for r in group_records(run, g, config.answer_chars)[1]]
    # The bench's own Tansu (deploy.local_broker): PLAINTEXT.
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=2, **LOCAL_CLIENT_SECURITY
    )
    await producer.start()
    try:
        results = [await run_baseline(bootstrap, dsn, producer, records, config)]
        with aggregator_process(bootstrap, dsn, config.partitions, workdir / "aggregator.log", database_pid) as service:
            await warm_up(producer, bootstrap, service, config)
            results.append(await run_aggregator(dsn, producer, records, service, config))
            for rate in config.latency_rates:
                with frozen_heap():
                    results.append(await run_latency(bootstrap, producer, rate, config, service))
    finally:
        await producer.stop()
    baseline = results[0]["events"] / results[0]["seconds"]
    for r in results[:2]:
        r["events_per_s"] = round(r["events"] / r["seconds"])
        r["ratio_to_baseline"] = round(r["events"] / r["seconds"] / baseline, 4)
        r["seconds"] = round(r["seconds"], 3)
    return results


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-aggregator-") as tmp:
        workdir = Path(tmp)
        with start_broker(log_dir=workdir) as broker, start_database(workdir / "pg", fast_unsafe=True) as database:
            results = asyncio.run(measure(broker.bootstrap, database.url, config, workdir, database.pid))
    print(write_results(results, asdict(config)))


if __name__ == "__main__":
    main()
