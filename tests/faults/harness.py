"""One run of the pipeline as separate OS processes (deploy.stack.Stack, what `make up` runs) for a fault test.

A run has its own topic prefix, its own database and its own consumer groups; the same
aggregator settings every time. It sends the workload phase by phase, waits until the pipeline
is quiescent (see `Run.settle`), reads the final state from the topics and writes one line of
figures per test to the fault report.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from deploy.stack import Stack
from shared import topics
from tests.faults.sender import Sender
from tests.faults.state import CANONICAL_TOPICS, OUTPUT_TOPICS, Comparison, FinalState, final_state
from tests.faults.workload import Workload
from tests.support.isolation import consumer_groups_env
from tests.support.kafka import TopicReader, client_security, stack_security
from tests.support.waiting import eventually

# Every run uses these settings. 6 s sessions (Kafka's usual group minimum) let a killed member's
# partitions move in seconds rather than the default 10 s.
RUN_ENV = {
    "KAFKA_SESSION_TIMEOUT_MS": "6000",
    "KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
    "AGGREGATOR_STATS_PUBLISH_INTERVAL_S": "0.2",
    "AGGREGATOR_OUTBOX_POLL_INTERVAL_S": "0.1",
    "RETRY_MAX_BACKOFF_S": "1.0",
    "DB_CONNECT_TIMEOUT_S": "2.0",
    "DB_ACQUIRE_TIMEOUT_S": "2.0",
    "SHUTDOWN_GRACE_S": "10",
}
SETTLE_TIMEOUT_S = 90.0
STATE_QUERY = """
SELECT (SELECT count(*) FROM agg_interactions) AS interactions,
       (SELECT count(*) FROM agg_seen_votes) AS votes,
       (SELECT count(*) FROM agg_parked_votes) AS parked,
       (SELECT count(*) FROM outbox) AS outbox,
       (SELECT count(*) FROM agg_stats WHERE is_dirty) AS dirty_stats
"""


@dataclass
class Run:
    stack: Stack
    workload: Workload
    sender: Sender
    readers: dict[str, TopicReader] = field(default_factory=dict)
    started_at: float = field(default_factory=time.monotonic)
    settle_s: float = 0.0

    @property
    def database_url(self) -> str:
        assert self.stack.database_url is not None
        return self.stack.database_url

    @property
    def bootstrap(self) -> str:
        assert self.stack.kafka_bootstrap is not None
        return self.stack.kafka_bootstrap

    @property
    def security(self) -> dict[str, Any] | None:
        """Kafka client security for this run's broker: PLAINTEXT for a local one, else the environment's."""
        return stack_security(self.stack)

    def group_id(self, service: str) -> str:
        """The consumer group a service of this run uses (unique per run, see `pipeline`)."""
        return f"{service}-{self.stack.topic_prefix}"

    async def start_readers(self) -> None:
        for name in (*OUTPUT_TOPICS, *CANONICAL_TOPICS):
            reader = TopicReader(self.bootstrap, topics.topic(self.stack.topic_prefix, name), security=self.security)
            self.readers[name] = await reader.start()

    async def stop_readers(self) -> None:
        for reader in self.readers.values():
            await reader.stop()
        self.readers.clear()

    async def send_phase(self, phase: int) -> None:
        await self.sender.send(self.workload.phases[phase])

    async def counts(self) -> dict[str, int]:
        connection = await asyncpg.connect(self.database_url, timeout=5)
        try:
            return dict(await connection.fetchrow(STATE_QUERY))
        finally:
            await connection.close()

    async def drain(self) -> int:
        """Read the topics until a round brings nothing new; how many records arrived."""
        total = 0
        while True:
            before = sum(len(r.records) for r in self.readers.values())
            for reader in self.readers.values():
                await reader.poll()
            new = sum(len(r.records) for r in self.readers.values()) - before
            if not new:
                return total
            total += new

    async def settle(self, through_phase: int, timeout: float = SETTLE_TIMEOUT_S) -> FinalState:
        """Quiescent: the aggregator took in every event of the phases, nothing is parked or waits in an
        outbox, every stats window is published, and the final state read twice in a row is the same."""
        wanted = {
            "interactions": len(self.workload.interaction_keys(through_phase)),
            "votes": len(self.workload.vote_ids(through_phase)),
            "parked": 0,
            "outbox": 0,
            "dirty_stats": 0,
        }
        previous: list[FinalState] = []
        started = time.monotonic()

        async def check() -> FinalState:
            counts = await self.counts()
            assert counts == wanted, f"not quiescent: {counts} != {wanted}"
            new = await self.drain()
            state = final_state(self.readers)
            is_stable = bool(previous) and previous[-1].key() == state.key() and new == 0
            previous.append(state)
            assert is_stable, "outputs still changing"
            return state

        try:
            state = await eventually(check, timeout=timeout, interval=0.25)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; not taken in, by channel: {await self.lost_by_channel()}") from exc
        self.settle_s = time.monotonic() - started
        return state

    async def lost_by_channel(self) -> dict[str, int]:
        """How many acknowledged events the aggregator has not taken in, by the way they were sent (a diagnosis)."""
        lost = await self.lost_events()
        channels = Counter(
            str(send.channel) for phase in self.workload.phases for send in phase if send.event_id in lost
        )
        return dict(channels)

    async def lost_events(self) -> set[str]:
        """Events a client got a 2xx (or a broker ack) for that the aggregator never took in."""
        connection = await asyncpg.connect(self.database_url, timeout=5)
        try:
            votes = {str(r["event_id"]) for r in await connection.fetch("SELECT event_id FROM agg_seen_votes")}
            keys = {(r["app_id"], r["interaction_id"]) for r in await connection.fetch(
                "SELECT app_id, interaction_id FROM agg_interactions")}  # fmt: skip
        finally:
            await connection.close()
        lost = set()
        for phase in self.workload.phases:
            for send in phase:
                if send.event_id not in self.sender.acked:
                    continue
                taken = (send.body["app_id"], send.body["interaction_id"]) in keys if send.is_interaction else (
                    send.event_id in votes)  # fmt: skip
                if not taken:
                    lost.add(send.event_id)
        return lost

    async def ready_status(self, name: str) -> int | None:
        """The HTTP status of a service's /readyz, None when it does not answer."""
        async with httpx.AsyncClient(timeout=3.0, trust_env=False) as client:
            try:
                return (await client.get(f"{self.stack.services[name].url}/readyz")).status_code
            except httpx.HTTPError:
                return None

    async def restart(self, name: str) -> float:
        """Start a killed or stopped service again (same port and env); seconds until it is ready."""
        started = time.monotonic()
        service, _, instance = name.partition("-")
        await self.stack.start_service(service, int(instance or 1))
        return time.monotonic() - started


@asynccontextmanager
async def pipeline(
    run_dir: Path,
    workload: Workload,
    *,
    kafka_bootstrap: str | None = None,
    database_url: str | None = None,
    env: dict[str, str] | None = None,
    rate: float = 1000.0,
) -> AsyncIterator[Run]:
    """Start the stack (servers not given are started under run_dir), yield a Run, stop everything."""
    prefix = f"f{uuid.uuid4().hex[:8]}."
    stack = Stack(
        run_dir,
        kafka_bootstrap=kafka_bootstrap,
        database_url=database_url,
        topic_prefix=prefix,
        extra_env={**RUN_ENV, **consumer_groups_env(prefix), **(env or {})},
        fast_unsafe_database=True,
        ready_timeout_s=60,
    )
    async with stack:
        assert stack.kafka_bootstrap is not None
        sender = Sender(
            lambda s: stack.services[s].url, stack.kafka_bootstrap, prefix, rate=rate, security=stack_security(stack)
        )
        run = Run(stack, workload, sender)
        try:
            await run.start_readers()
            yield run
        finally:
            await run.stop_readers()
            await sender.aclose()


class FaultReport:
    """Figures per fault test as JSON lines (the table of bench/results/faults.md is made from them)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, figures: dict[str, Any]) -> None:
        with self.path.open("a") as out:
            out.write(json.dumps(figures, sort_keys=False) + "\n")
        print(
            f"\nFAULT {figures['fault']}: {figures['test']} sent={figures['events_sent']} lost={figures['lost']} "
            f"duplicated={figures['duplicated']} recover_s={figures['recover_s']} settle_s={figures['settle_s']} "
            f"retries={figures['client_retries']} redelivered={figures['redelivered']}"
        )


def figures(
    fault: str, test: str, run: Run, state: FinalState, comparison: Comparison, recover_s: float | None
) -> dict[str, Any]:
    return {
        "fault": fault,
        "test": test,
        "seed": run.workload.seed,
        "groups": run.workload.groups,
        "events_sent": run.workload.size,
        "client_retries": run.sender.retries,
        "lost": comparison.lost,
        "duplicated": comparison.duplicated,
        "transient_tombstones": len(comparison.transient_tombstones),
        "redelivered": state.redelivered,
        "recover_s": None if recover_s is None else round(recover_s, 1),
        "settle_s": round(run.settle_s, 1),
        "duration_s": round(time.monotonic() - run.started_at, 1),
        **state.summary(),
    }


def report_path(default_dir: Path) -> Path:
    return Path(os.environ.get("FAULT_REPORT") or default_dir / "faults.jsonl")


async def wait_until(check: Any, timeout: float) -> Any:
    return await eventually(check, timeout=timeout, interval=0.2)


async def gather_sending(run: Run, phase: int) -> asyncio.Task[None]:
    """Start sending a phase in the background (the caller injects a fault meanwhile)."""
    return asyncio.create_task(run.send_phase(phase), name=f"send-phase-{phase}")


@dataclass(frozen=True)
class Reference:
    """The fault-free run of the workload: every faulted run must end in the same final state."""

    workload: Workload
    state: FinalState


async def finish(
    run: Run, reference: Reference, report: FaultReport, *, fault: str, test: str, recover_s: float | None
) -> Comparison:
    """Settle, compare with the reference, write the figures; fail on anything lost or duplicated."""
    from tests.faults.state import compare

    state = await run.settle(len(run.workload.phases))
    comparison = compare(reference.state, state, await run.lost_events())
    report.write(figures(fault, test, run, state, comparison, recover_s))
    assert comparison.is_equal, comparison.explain()
    return comparison


async def metric_total(url: str, name: str) -> float:
    """Sum of every sample of a Prometheus counter on a service's /metrics (0 when absent)."""
    async with httpx.AsyncClient(timeout=3.0, trust_env=False) as client:
        text = (await client.get(f"{url}/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


async def committed_through_end(run: Run, group_id: str) -> bool:
    """True when `group_id` committed past the last record read on `interactions` and `votes`."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    await run.drain()
    ends: dict[TopicPartition, int] = {}
    for name in CANONICAL_TOPICS:
        for record in run.readers[name].records:
            tp = TopicPartition(record.topic, record.partition)
            ends[tp] = max(ends.get(tp, 0), record.offset + 1)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=run.bootstrap, group_id=group_id, enable_auto_commit=False, **client_security(run.security)
    )
    await consumer.start()
    try:
        for tp, end in ends.items():
            committed = await consumer.committed(tp)
            assert committed is not None and committed >= end, f"{tp}: committed {committed} < {end}"
        return True
    finally:
        await consumer.stop()
