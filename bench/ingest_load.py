"""The load side of bench.ingest: generated interactions, a keep-alive HTTP client, a topic reader, and the
service processes the benches run (`module_process`, also bench.aggregator's)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from deploy.local_broker import LOCAL_CLIENT_SECURITY, without_kafka_security

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICE_STOP_TIMEOUT_S = 15.0


@contextlib.contextmanager
def module_process(module: str, env: dict[str, str], log_path: Path) -> Iterator[int]:
    """`python -m <module>` with `env` over this process's (its Kafka security left out), output appended to
    `log_path`; yields its pid; SIGTERM (graceful shutdown) on exit, SIGKILL after SERVICE_STOP_TIMEOUT_S."""
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=REPO_ROOT,
            env={**without_kafka_security(os.environ), **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
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


_PROMPTS = [
    "Can {who} do intense exercise while managing {condition}?",
    "Write a {language} function that {task}, with tests.",
    "Summarize the attached {document} in five bullet points for a {who}.",
    "What is the difference between {a} and {b} in plain words?",
    "Draft a polite email to {who} explaining that {situation}.",
    "Is it legal for a landlord in {place} to {action} without notice?",
    "Translate this sentence into {human_language}: '{sentence}'",
    "Why does my {language} code raise {error} when I {task}?",
    "Give me a weekly meal plan for {who} with {condition}.",
    "Explain {a} to a ten-year-old, then to an engineer.",
]
_SLOTS = {
    "who": ["diabetic patients", "a new manager", "my landlord", "a beginner", "teenagers", "the support team"],
    "condition": ["type 2 diabetes", "asthma", "high blood pressure", "a knee injury", "celiac disease"],
    "language": ["Python", "Rust", "TypeScript", "Go", "SQL"],
    "task": ["parses ISO dates", "merges two sorted lists", "retries a flaky HTTP call", "reads a CSV lazily"],
    "document": ["contract", "incident report", "research paper", "meeting notes"],
    "a": ["TCP", "a mutex", "inflation", "photosynthesis", "a B-tree"],
    "b": ["UDP", "a semaphore", "deflation", "respiration", "a hash index"],
    "situation": ["the release slips a week", "the invoice was paid twice", "the office moves in March"],
    "place": ["Berlin", "California", "Ontario", "Lyon"],
    "action": ["raise the rent", "enter the flat", "keep the deposit"],
    "human_language": ["German", "French", "Japanese", "Spanish"],
    "sentence": ["the meeting is moved to Thursday", "please keep your receipt", "the parcel is delayed"],
    "error": ["a KeyError", "a borrow-checker error", "a timeout", "a deadlock"],
}
_SENTENCES = [
    "Start with the simplest version that works and measure before optimising anything.",
    "It depends on the context, so here are the main cases to consider.",
    "Most guidelines recommend talking to a qualified professional first.",
    "The short answer is yes, with a few precautions explained below.",
    "Here is a step-by-step approach that you can adapt to your situation.",
    "A common mistake is to skip the edge cases, such as empty input or missing values.",
    "Keep a record of what you tried, so you can tell what actually made the difference.",
    "In practice the second option is easier to maintain and to explain to others.",
    "If anything is unclear, ask a follow-up question and I will go into more detail.",
]
_MODELS = [("acme-chat", "2026-11-01"), ("acme-chat", "2026-10-15"), ("acme-mini", "2026-09-30")]


def _prompt(rng: random.Random) -> str:
    template = rng.choice(_PROMPTS)
    return template.format(**{name: rng.choice(values) for name, values in _SLOTS.items()})


@dataclass(frozen=True)
class PromptMix:
    """How the user messages of generated interactions repeat (what sizes the aggregator's prompt groups).

    Of the new interactions, `regenerate` re-ask a recent prompt (a regeneration, same prompt group),
    `popular` ask one of `popular_prompts` exact prompts (hot groups that keep growing), and the rest
    ask a prompt of their own (a template plus a per-conversation detail, so a group of one).
    """

    regenerate: float = 0.25
    popular: float = 0.05
    popular_prompts: int = 20


# The default: the bench.ingest workload (a few hundred distinct prompts, a quarter regenerations).
TEMPLATE_MIX = None


def _user_prompt(rng: random.Random, mix: PromptMix | None, popular: list[str], n: int) -> str:
    if mix is None:
        return _prompt(rng)
    if rng.random() < mix.popular / max(1e-9, 1.0 - mix.regenerate):
        return rng.choice(popular)
    detail = f"order {rng.randrange(10**6):06d}, {rng.choice(_SLOTS['place'])}, ticket {n}"
    return f"{_prompt(rng)} (My details: {detail}.)"


def make_interactions(count: int, seed: int, mix: PromptMix | None = TEMPLATE_MIX) -> list[dict[str, Any]]:
    """`count` valid v1 interactions of ~1 KB, distinct event_ids.

    Without `mix`: a quarter regenerate an earlier prompt, the others draw from the templates (a few
    hundred distinct prompts, so groups grow large). With a `mix`: see PromptMix.
    """
    rng = random.Random(seed)
    regenerate = mix.regenerate if mix is not None else 0.25
    # Its own generator: the default workload draws exactly what it always did.
    popular = [_prompt(random.Random(f"popular-{seed}-{k}")) for k in range(mix.popular_prompts if mix else 0)]
    started = datetime(2026, 11, 26, 10, tzinfo=UTC)
    items: list[dict[str, Any]] = []
    for n in range(count):
        regenerated = items and rng.random() < regenerate
        source = rng.choice(items[-200:]) if regenerated else None
        messages = (
            source["messages"]
            if source
            else [
                {"role": "system", "content": "You are a careful, concise assistant for a helpdesk."},
                {"role": "user", "content": _user_prompt(rng, mix, popular, n)},
            ]
        )
        items.append(_interaction(rng, seed, n, started, messages, source))
    return items


def _interaction(
    rng: random.Random,
    seed: int,
    n: int,
    started: datetime,
    messages: list[dict[str, str]],
    source: dict[str, Any] | None,
) -> dict[str, Any]:
    model, version = rng.choice(_MODELS)
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "app_id": rng.choice(["helpdesk", "coder", "health-coach"]),
        "occurred_at": (started + timedelta(milliseconds=n)).isoformat(),
        "interaction_id": f"int-{seed}-{n}",
        "conversation_id": source["conversation_id"] if source else f"conv-{seed}-{n}",
        "user_ref": f"u-{rng.randrange(5000):04x}",
        "messages": messages,
        "response": {
            "content": " ".join(rng.choices(_SENTENCES, k=8)),
            "model": model,
            "model_version": version,
        },
        "regenerated_from": source["interaction_id"] if source else None,
        "domain": None,
        "language": "en",
        "tags": rng.sample(["web", "mobile", "beta", "pro"], k=rng.randrange(3)),
        "metadata": {"latency_ms": rng.randrange(200, 4000), "client": "bench"},
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


class HttpConnection:
    """One keep-alive HTTP/1.1 connection: a request at a time, Content-Length bodies only."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    async def __aenter__(self) -> Self:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._writer.close()
        # The peer may already have gone (service stopping): closing is best effort.
        await asyncio.gather(self._writer.wait_closed(), return_exceptions=True)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """Send one request; its status and body."""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self._writer.writelines((head.encode(), body))
        await self._writer.drain()
        header = await self._reader.readuntil(b"\r\n\r\n")
        status = int(header.split(b" ", 2)[1])
        length = None
        for line in header.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError(f"{method} {path}: response without Content-Length: {header[:200]!r}")
        return status, await self._reader.readexactly(length)


class TopicReader:
    """Reads a whole topic from the beginning (no consumer group: no ~5 s join) and notes when each event_id
    was first seen."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.seen: dict[str, float] = {}
        self._waiting: set[str] = set()
        self._complete = asyncio.Event()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10, **LOCAL_CLIENT_SECURITY
        )

    async def __aenter__(self) -> Self:
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self.topic) or set()
        if not partitions:
            raise RuntimeError(f"topic {self.topic} has no partitions")
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(assigned)
        await self._consumer.seek_to_beginning(*assigned)
        self._task = asyncio.create_task(self._read(), name=f"read_{self.topic}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _read(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    event_id = orjson.loads(record.value)["event_id"]
                    self.seen.setdefault(event_id, now)
                    self._waiting.discard(event_id)
            if not self._waiting:
                self._complete.set()

    async def wait_for(self, event_ids: set[str], timeout_s: float) -> float:
        """perf_counter time at which the last of `event_ids` was first seen."""
        self._waiting = {event_id for event_id in event_ids if event_id not in self.seen}
        self._complete.clear()
        if self._waiting:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._complete.wait()
            except TimeoutError:
                raise RuntimeError(f"{len(self._waiting)} of {len(event_ids)} events not on {self.topic}") from None
        return max(self.seen[event_id] for event_id in event_ids)
