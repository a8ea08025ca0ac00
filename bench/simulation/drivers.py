"""Sending a simulation to a running stack: over HTTP (ingest and feedback) or to the raw topics.

Both drivers send the events tick by tick in send order, at `time_scale` real seconds per simulated
second (1: real time, 0: as fast as the stack takes them). Within a tick interactions go before votes,
so a vote arrives before its interaction only when the simulation sent that interaction late. Events
should be rebased first (`Simulation.rebased`) so their occurred_at is never ahead of the wall clock
when they are sent.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaProducer

from bench.simulation.scenario import SimEvent
from shared.topics import FEEDBACK_RAW, INTERACTIONS_RAW, topic

TICK_S = 0.1
_PATHS = {"interaction": "/v1/interactions", "vote": "/v1/votes"}
_RAW_TOPICS = {"interaction": INTERACTIONS_RAW, "vote": FEEDBACK_RAW}


@dataclass(frozen=True)
class StackInfo:
    """Where a running stack is (`make up` writes it to .run/stack.json)."""

    kafka: str
    ingest: str
    feedback: str
    aggregator: str
    topic_prefix: str = ""
    admin_token: str | None = None

    @classmethod
    def load(cls, path: Path = Path(".run/stack.json")) -> StackInfo:
        data = json.loads(path.read_text())
        return cls(
            kafka=data["kafka"],
            ingest=data["ingest"],
            feedback=data["feedback"],
            aggregator=data["aggregator"],
            topic_prefix=data.get("topic_prefix", ""),
            admin_token=data.get("admin_token"),
        )


@dataclass
class DriveReport:
    """What a driver sent: counts per "kind:status" (accepted, duplicate, conflict, rejected, produced)."""

    statuses: Counter[str] = field(default_factory=Counter)
    http_errors: int = 0
    elapsed_s: float = 0.0
    behind_s: float = 0.0  # the most the sender lagged behind its schedule

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    def as_dict(self) -> dict[str, Any]:
        rate = self.sent / self.elapsed_s if self.elapsed_s else None
        return {
            "statuses": dict(sorted(self.statuses.items())),
            "http_errors": self.http_errors,
            "elapsed_s": round(self.elapsed_s, 3),
            "rate": rate,
            "behind_s": round(self.behind_s, 3),
        }


def ticks(events: Sequence[SimEvent], tick_s: float = TICK_S) -> list[tuple[float, list[SimEvent], list[SimEvent]]]:
    """(due time, interactions, votes) per tick, in send order."""
    out: list[tuple[float, list[SimEvent], list[SimEvent]]] = []
    for event in events:
        due = (int(event.send_s / tick_s) + 1) * tick_s  # sent at the end of its tick: never early
        if not out or out[-1][0] != due:
            out.append((due, [], []))
        out[-1][1 if event.kind == "interaction" else 2].append(event)
    return out


async def _paced(
    events: Sequence[SimEvent], time_scale: float, report: DriveReport
) -> AsyncIterator[tuple[list[SimEvent], list[SimEvent]]]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    for due, interactions, votes in ticks(events):
        wait = started + due * time_scale - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)  # pacing an open schedule, not synchronisation
        elif time_scale > 0:
            report.behind_s = max(report.behind_s, -wait)
        yield interactions, votes
    report.elapsed_s = loop.time() - started


def _chunks(items: list[SimEvent], size: int) -> list[list[SimEvent]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def _post(client: httpx.AsyncClient, kind: str, events: list[SimEvent], report: DriveReport) -> None:
    if len(events) == 1:
        response = await client.post(_PATHS[kind], json=events[0].body)
        if response.status_code == 202:
            report.statuses[f"{kind}:{response.json()['status']}"] += 1
        elif response.status_code in (409, 422):
            report.statuses[f"{kind}:{'conflict' if response.status_code == 409 else 'rejected'}"] += 1
        else:
            report.http_errors += 1
        return
    response = await client.post(_PATHS[kind] + "/batch", json=[e.body for e in events])
    if response.status_code not in (202, 422):
        report.http_errors += 1
        return
    for result in response.json()["results"]:
        report.statuses[f"{kind}:{result['status']}"] += 1


async def drive_http(
    events: Sequence[SimEvent],
    ingest: httpx.AsyncClient,
    feedback: httpx.AsyncClient,
    *,
    time_scale: float = 1.0,
    batch_size: int = 200,
    single_every: int = 10,
) -> DriveReport:
    """POST interactions to ingest, then votes to feedback, per tick: batches, and every `single_every`-th
    event alone; the posts of one kind in a tick go concurrently."""
    report = DriveReport()
    index = 0
    async for interactions, votes in _paced(events, time_scale, report):
        for kind, client, items in (("interaction", ingest, interactions), ("vote", feedback, votes)):
            singles: list[list[SimEvent]] = []
            batch: list[SimEvent] = []
            for event in items:
                index += 1
                if single_every and index % single_every == 0:
                    singles.append([event])
                else:
                    batch.append(event)
            posts = [*singles, *_chunks(batch, batch_size)]
            await asyncio.gather(*(_post(client, kind, chunk, report) for chunk in posts))
    return report


async def drive_raw(events: Sequence[SimEvent], bootstrap: str, prefix: str, *, time_scale: float = 1.0) -> DriveReport:
    """Publish the bodies to `interactions.raw` / `feedback.raw` (keyed by interaction_id), as an app would."""
    report = DriveReport()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    try:
        async for interactions, votes in _paced(events, time_scale, report):
            futures = []
            for event in interactions + votes:
                name = topic(prefix, _RAW_TOPICS[event.kind])
                key = event.body["interaction_id"].encode()
                futures.append(await producer.send(name, orjson.dumps(event.body), key=key))
                report.statuses[f"{event.kind}:produced"] += 1
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return report
