"""Pair change -> updated leaderboard on `model-leaderboard`: the live path's latency, against the aggregator process.

`measure_latency` runs `python -m services.aggregator` (its own consumer group, the leaderboard
settings given) on a broker and database, under a topic prefix whose topics have ONE partition, so
votes are taken in in the order they were sent and the board's battle count says which changes a
body includes. Then:

1. seed: one app whose board has `seed_battles` battles among `versions` versions (each a prompt
   group of two answers, three thumbs-up on one and a thumbs-down on the other: a pair), so every
   version is rated and each refit runs the full fit, bootstrap and fragility; and prepared groups,
   one per change to come, whose answer A has three thumbs-up and answer B none (no pair yet);
2. phases: the deciding vote of each prepared group (a thumbs-down on B: its pair appears, one more
   battle) at a fixed rate; a change's latency runs from its vote's send until a body whose battle
   count includes it is read from `model-leaderboard`. A sparse phase (changes further apart than
   the debounce) measures debounce + refit + relay; a constant one (changes closer than the debounce)
   shows the maximum delay at work.

The bench process (producer, reader) shares the machine with the aggregator process, broker and database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from deploy.localstack import free_port, read_tail
from shared import topics
from shared.events import Message
from shared.kafka import ensure_topics
from shared.prompt_key import prompt_key
from shared.settings import PipelineSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class LatencyConfig:
    versions: int = 5
    seed_battles: int = 300
    sparse_changes: int = 20
    sparse_rate: float = 0.5
    constant_changes: int = 100
    constant_rate: float = 10.0
    debounce_s: float = 1.0
    max_delay_s: float = 5.0
    drain_timeout_s: float = 120.0


def _event(app_id: str, at: str, **body: Any) -> bytes:
    head = {"event_id": str(uuid.uuid4()), "app_id": app_id, "occurred_at": at, "received_at": at}
    return json.dumps({**head, **body}).encode()


def group(app_id: str, name: str, winner: int, loser: int, *, up: int, down: int) -> tuple[list, list]:
    """A prompt group: answer A of version `winner` with `up` thumbs-up, B of `loser` with `down` thumbs-down."""
    at = datetime.now(UTC).isoformat()
    messages = [{"role": "user", "content": f"Question {name}: which plan fits us?"}]
    key = prompt_key(app_id, [Message.model_validate(m) for m in messages]).encode()
    answers = []
    for label, version in (("a", winner), ("b", loser)):
        response = {"content": f"Answer {label} of {name}.", "model": "bench-chat", "model_version": f"v{version}"}
        body = _event(
            app_id,
            at,
            interaction_id=f"{name}-{label}",
            conversation_id=name,
            user_ref="u",
            messages=messages,
            prompt_key=key.decode(),
            response=response,
        )
        answers.append((topics.INTERACTIONS, key, body))
    votes = [thumb(app_id, f"{name}-a", f"up{i}", 1, at) for i in range(up)]
    votes += [thumb(app_id, f"{name}-b", f"down{i}", -1, at) for i in range(down)]
    return answers, votes


def thumb(app_id: str, interaction_id: str, voter: str, value: int, at: str | None = None) -> tuple:
    at = at or datetime.now(UTC).isoformat()
    body = _event(
        app_id, at, interaction_id=interaction_id, user_ref=voter, source="end_user", kind="thumb", value=value
    )
    return topics.VOTES, interaction_id.encode(), body


async def send(producer: AIOKafkaProducer, prefix: str, records: list[tuple]) -> None:
    futures = [await producer.send(topics.topic(prefix, t), value, key=key) for t, key, value in records]
    await asyncio.gather(*futures)


@dataclass
class BoardWatch:
    """Bodies read from `model-leaderboard` under one key: (arrival time, battles)."""

    key: bytes
    seen: list[tuple[float, int]]

    def first_with(self, battles: int) -> float | None:
        return next((at for at, n in self.seen if n >= battles), None)


async def watch(bootstrap: str, prefix: str, board: BoardWatch, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10)
    await consumer.start()
    name = topics.topic(prefix, topics.MODEL_LEADERBOARD)
    consumer.assign([TopicPartition(name, 0)])
    await consumer.seek_to_beginning()
    try:
        while not stop.is_set():
            for batch in (await consumer.getmany(timeout_ms=20)).values():
                for record in batch:
                    if record.key == board.key and record.value is not None:
                        board.seen.append((time.perf_counter(), json.loads(record.value)["battles"]))
    finally:
        await consumer.stop()


async def wait_for(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not done within {timeout_s} s")
        await asyncio.sleep(0.02)


async def run_phase(
    producer: AIOKafkaProducer,
    prefix: str,
    board: BoardWatch,
    changes: list[tuple],
    *,
    done: int,
    rate: float,
    timeout_s: float,
) -> dict[str, Any]:
    """Send one deciding vote per change at `rate`; latency per change until a body includes it."""
    sent = []
    started = time.perf_counter()
    for k, record in enumerate(changes):
        await asyncio.sleep(max(0.0, started + k / rate - time.perf_counter()))
        sent.append(time.perf_counter())
        await send(producer, prefix, [record])
    await wait_for(lambda: board.first_with(done + len(changes)) is not None, timeout_s, "leaderboard latency")
    latencies = sorted((board.first_with(done + k + 1) - at) * 1000 for k, at in enumerate(sent))
    return {
        "changes": len(changes),
        "rate_per_s": rate,
        "p50_ms": _pct(latencies, 50),
        "p99_ms": _pct(latencies, 99),
        "max_ms": round(latencies[-1], 1),
    }


def _pct(values: list[float], p: float) -> float:
    return round(values[min(len(values) - 1, int(len(values) * p / 100))], 1)


@contextlib.contextmanager
def aggregator_process(bootstrap: str, dsn: str, prefix: str, config: LatencyConfig, log: Path) -> Iterator[int]:
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": dsn,
        "TOPIC_PREFIX": prefix,
        "TOPIC_PARTITIONS": "1",
        "LOG_LEVEL": "WARNING",
        "AGGREGATOR_HTTP_PORT": str(port),
        "AGGREGATOR_GROUP_ID": f"aggregator-{prefix}",
        "AGGREGATOR_LEADERBOARD_DEBOUNCE_S": str(config.debounce_s),
        "AGGREGATOR_LEADERBOARD_MAX_DELAY_S": str(config.max_delay_s),
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.aggregator"], cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield port
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def ready(port: int, log: Path) -> None:
    async with httpx.AsyncClient() as client:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"aggregator not ready within {READY_TIMEOUT_S} s; log:\n{read_tail(log)}")


def workload(app_id: str, config: LatencyConfig) -> tuple[list, list, list[tuple]]:
    """Seed answers, seed votes, and the deciding vote of each change to come (its group is in the seed)."""
    answers, votes = [], []
    n = config.versions
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    for b in range(config.seed_battles):
        i, j = pairs[b % len(pairs)]
        winner, loser = (i, j) if (b // len(pairs)) % 3 < 2 else (j, i)  # the lower index wins two of three
        group_answers, group_votes = group(app_id, f"seed{b}", winner, loser, up=3, down=1)
        answers += group_answers
        votes += group_votes
    changes = []
    for c in range(config.sparse_changes + config.constant_changes):
        group_answers, group_votes = group(app_id, f"change{c}", c % n, (c + 1) % n, up=3, down=0)
        answers += group_answers
        votes += group_votes
        changes.append(thumb(app_id, f"change{c}-b", "decider", -1))
    return answers, votes, changes


async def measure_latency(bootstrap: str, dsn: str, prefix: str, config: LatencyConfig, log: Path) -> dict[str, Any]:
    """Both phases against an aggregator process on this broker and database (topics under `prefix`)."""
    await ensure_topics(PipelineSettings(kafka_bootstrap_servers=bootstrap, topic_prefix=prefix, topic_partitions=1))
    app_id = f"lb-bench-{uuid.uuid4().hex[:6]}"
    answers, votes, changes = workload(app_id, config)
    board = BoardWatch(app_id.encode(), [])
    stop = asyncio.Event()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=2)
    await producer.start()
    watcher = asyncio.create_task(watch(bootstrap, prefix, board, stop))
    try:
        with aggregator_process(bootstrap, dsn, prefix, config, log) as port:
            await ready(port, log)
            await send(producer, prefix, answers)
            await send(producer, prefix, votes)
            await wait_for(lambda: board.first_with(config.seed_battles) is not None, config.drain_timeout_s, "seed")
            sparse, constant = await _phases(producer, prefix, board, changes, config)
    finally:
        stop.set()
        await watcher
        await producer.stop()
    return {
        "versions": config.versions,
        "seed_battles": config.seed_battles,
        "debounce_s": config.debounce_s,
        "max_delay_s": config.max_delay_s,
        "sparse": sparse,
        "constant": constant,
    }


async def _phases(
    producer: AIOKafkaProducer, prefix: str, board: BoardWatch, changes: list[tuple], config: LatencyConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sparse phase, then the constant one, each after the board had a quiet while."""
    results = []
    done = config.seed_battles
    phases = (
        (changes[: config.sparse_changes], config.sparse_rate),
        (changes[config.sparse_changes :], config.constant_rate),
    )
    for phase, rate in phases:
        await asyncio.sleep(config.max_delay_s)  # the board settles: the phase starts from a quiet board
        results.append(
            await run_phase(producer, prefix, board, phase, done=done, rate=rate, timeout_s=config.drain_timeout_s)
        )
        done += len(phase)
    return results[0], results[1]
