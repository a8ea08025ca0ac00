"""`python -m bench.load --find-max --floor`: the highest rate a pipeline of the same shape WITHOUT our logic holds.

The floor stack is the least any design must do per event, on the same box and the same servers: a
Tansu broker and PostgreSQL started as the real stack starts them (deploy.stack.Stack, no services),
two bare HTTP endpoints (bench/bare_endpoint.py: uvicorn, one worker each as ingest and feedback have,
one process per edge as the pipeline has: the handler parses the JSON batch and awaits the acknowledged
send of each item, keyed by its event_id, to the interactions or votes topic), and one bare consumer
(bench/floor_consumer.py: one consumer group on both topics, one COPY of each batch into `floor_events`,
offsets committed after the write). No validation, dedupe, pairs or outbox.

The load generator, workload, pacing, seed, hold rules, search and per-process CPU/RSS sampling are
bench/load_max.py's, unchanged: only the probe's Target differs. "Taken in" is the rows of
`floor_events` (sampled once a second, as the pipeline's intake is), and "lost" is an accepted event_id
with no row there, so lag and loss are judged as for the real pipeline. In the CPU/RSS tables the
edges keep the pipeline's role names (ingest: the interactions endpoint, feedback: the votes endpoint,
aggregator: the bare consumer) so the two stacks compare row by row.

`--compare` runs the floor's search and then the pipeline's, back to back in one run: load_max.* is
written as usual and load_floor.* gets the pipeline's highest held rate as a ratio of the floor's.
Results: bench/results/load_floor.json and load_floor.md (bench/load_floor_report.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench import load_max
from bench.floor_consumer import CREATE_TABLE
from bench.ingest_load import HttpConnection, module_process
from bench.load import LoadConfig, config_from
from bench.load_floor_report import floor_report, write_floor_results
from bench.load_sampling import Counters, Sampler
from bench.load_search import plan_from
from deploy.local_broker import BrokerProcess
from deploy.local_database import DatabaseProcess
from deploy.localstack import free_port, read_tail
from deploy.service_process import SERVICE_HOST
from deploy.stack import Stack
from shared import topics
from shared.settings import PipelineSettings

READY_TIMEOUT_S = 60.0
READY_POLL_S = 0.1
# Each edge as the pipeline has it: the role the load generator posts to, and the topic its events go to.
EDGES = {"ingest": topics.INTERACTIONS, "feedback": topics.VOTES}
CONSUMER_ROLE = "aggregator"
COUNT_TAKEN_IN = "SELECT count(*) FROM floor_events"
COUNT_MISSING = (
    "SELECT count(*) FROM unnest($1::uuid[]) AS accepted(event_id)"
    " WHERE NOT EXISTS (SELECT 1 FROM floor_events f WHERE f.event_id = accepted.event_id)"
)


@dataclass(frozen=True)
class Part:
    """One process of the floor stack as bench.load reads a service: its address (if it serves) and pid."""

    url: str
    pid: int | None


@dataclass
class FloorStack:
    """The floor's servers and processes, with the attributes bench.load and bench/load_processes.py read."""

    broker: BrokerProcess | None
    database: DatabaseProcess | None
    database_url: str
    services: dict[str, Part] = field(default_factory=dict)


async def _wait_serving(url: str, log_path: Path) -> None:
    """Until GET / answers 200 (uvicorn serves once the endpoint's producer has started)."""
    host, port = url.removeprefix("http://").split(":")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            async with HttpConnection(host, int(port)) as connection:
                if (await connection.request("GET", "/"))[0] == 200:
                    return
        await asyncio.sleep(READY_POLL_S)
    raise RuntimeError(f"{log_path.stem} not serving within {READY_TIMEOUT_S} s; log:\n{read_tail(log_path)}")


async def _wait_file(path: Path, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not await asyncio.to_thread(path.exists):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{log_path.stem} not ready within {READY_TIMEOUT_S} s; log:\n{read_tail(log_path)}")
        await asyncio.sleep(READY_POLL_S)


def _edge_env(bootstrap: str, port: int, topic_name: str) -> dict[str, str]:
    """A bare endpoint with the services' producer settings (linger, batch size)."""
    defaults = PipelineSettings.model_fields
    return {
        "BARE_BOOTSTRAP": bootstrap,
        "BARE_PORT": str(port),
        "BARE_TOPIC": topics.topic("", topic_name),
        "BARE_LINGER_MS": str(defaults["kafka_linger_ms"].default),
        "BARE_MAX_BATCH_BYTES": str(defaults["kafka_max_batch_bytes"].default),
    }


async def _create_table(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(CREATE_TABLE)
    finally:
        await connection.close()


async def _start_edges(exits: contextlib.ExitStack, stack: Stack, floor: FloorStack) -> None:
    """One bare endpoint in each edge's place, serving."""
    assert stack.kafka_bootstrap is not None
    waits = []
    for role, topic_name in EDGES.items():
        port, log_path = free_port(SERVICE_HOST), stack.log_dir / f"{role}-bare-endpoint.log"
        pid = exits.enter_context(
            module_process("bench.bare_endpoint", _edge_env(stack.kafka_bootstrap, port, topic_name), log_path)
        )
        floor.services[role] = Part(f"http://{SERVICE_HOST}:{port}", pid)
        waits.append(_wait_serving(floor.services[role].url, log_path))
    await asyncio.gather(*waits)


async def _start_consumer(exits: contextlib.ExitStack, stack: Stack, floor: FloorStack) -> None:
    """The bare consumer in the aggregator's place, its partitions assigned."""
    assert stack.kafka_bootstrap is not None
    ready_file, log_path = stack.run_dir / "floor-consumer.ready", stack.log_dir / "floor-consumer.log"
    env = {
        "FLOOR_BOOTSTRAP": stack.kafka_bootstrap,
        "FLOOR_DATABASE_URL": floor.database_url,
        "FLOOR_TOPICS": ",".join(topics.topic("", name) for name in EDGES.values()),
        "FLOOR_READY_FILE": str(ready_file),
    }
    floor.services[CONSUMER_ROLE] = Part("", exits.enter_context(module_process("bench.floor_consumer", env, log_path)))
    await _wait_file(ready_file, log_path)


@contextlib.asynccontextmanager
async def floor_stack(config: LoadConfig, run_dir: Path) -> AsyncIterator[FloorStack]:
    """Broker and database as the real stack starts them, the two bare edges and the bare consumer, all ready."""
    async with contextlib.AsyncExitStack() as servers:
        stack = Stack(run_dir, fast_unsafe_database=True, ready_timeout_s=120, services=())
        await servers.enter_async_context(stack)
        assert stack.database_url is not None
        await _create_table(stack.database_url)
        floor = FloorStack(stack.broker, stack.database, stack.database_url)
        # Stopped before the broker and database (SIGTERM, then SIGKILL after a timeout), the consumer first.
        with contextlib.ExitStack() as processes:
            await _start_edges(processes, stack, floor)
            await _start_consumer(processes, stack, floor)
            yield floor


class FloorSampler(Sampler):
    """bench.load's sampler, with the intake read from `floor_events` (its rows so far)."""

    async def sample(self) -> dict[str, Any]:
        taken = await (await self._db()).fetchval(COUNT_TAKEN_IN)
        return self.record(taken, {})


async def taken_in(stack: FloorStack) -> dict[str, float]:
    connection = await asyncpg.connect(stack.database_url)
    try:
        return {"events": float(await connection.fetchval(COUNT_TAKEN_IN))}
    finally:
        await connection.close()


async def missing_events(database_url: str, counters: Counters) -> dict[str, int]:
    """Accepted event_ids with no row in `floor_events`: the loss."""
    connection = await asyncpg.connect(database_url)
    try:
        found = {}
        for kind, ids in (("interactions", counters.accepted_interactions), ("votes", counters.accepted_votes)):
            found[kind] = await connection.fetchval(COUNT_MISSING, sorted(set(ids)))
        return found
    finally:
        await connection.close()


async def _missing(stack: FloorStack, counters: Counters) -> dict[str, int]:
    return await missing_events(stack.database_url, counters)


FLOOR = load_max.Target(floor_stack, FloorSampler, _missing, taken_in)


async def searches(
    config: LoadConfig, args: argparse.Namespace, work_dir: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The floor's search, then (with --compare) the pipeline's: each one's probe records."""
    plan, limits = plan_from(args)
    print("floor: bare endpoints + bare consumer", flush=True)
    floor = await load_max.find_max(config, plan, limits, work_dir / "floor", load_max.progress, FLOOR)
    if not args.compare:
        return floor, None
    print("pipeline: ingest, feedback, aggregator", flush=True)
    pipeline = await load_max.find_max(config, plan, limits, work_dir / "pipeline", load_max.progress)
    return floor, pipeline


def main(args: argparse.Namespace) -> None:
    """`--find-max --floor` or `--find-max --compare` with bench.load's parsed arguments."""
    config = config_from(args)
    plan, limits = plan_from(args)
    with tempfile.TemporaryDirectory(prefix="bench-load-floor-") as tmp:
        floor, pipeline = asyncio.run(searches(config, args, Path(tmp)))
    pipeline_report = None if pipeline is None else load_max.build_report(config, plan, limits, pipeline)
    if pipeline_report is not None:
        load_max.write_results(pipeline_report)
    report = floor_report(load_max.build_report(config, plan, limits, floor), pipeline_report)
    print(write_floor_results(report))
