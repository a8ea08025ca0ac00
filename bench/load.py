"""Sustained load: interactions and votes over HTTP at a fixed offered rate, with lag, memory and loss measured.

`python -m bench.load [--seconds 60] [--rate 1000]` starts the whole pipeline as processes
(deploy.stack.Stack: its own Tansu broker and PostgreSQL under a temporary run directory), then offers
`rate` events/s for `seconds`: every tick, one batch of interactions to `POST /v1/interactions/batch`
and one batch of thumbs votes to `POST /v1/votes/batch` (votes only for interactions accepted at
least `--vote-delay` seconds before, so they do not wait for them). Pacing is open-loop: batches are
queued on schedule whatever the services answer, and a backlog shows as a lower achieved rate.

Every second it samples: events accepted (HTTP 202), events the aggregator has taken in (its
Prometheus counters on /metrics: interactions + votes applied, plus the votes parked right now in
its state), their difference (the
lag, end to end through both edges, the broker and the aggregator), and the resident memory of each
service process (psutil). After the load it keeps sampling until the lag is zero. Then every accepted
event_id is looked up in the aggregator's state (agg_interactions, agg_seen_votes): missing ones are
loss. Tansu's end_offsets() is wrong after multi-record batches, so no lag is computed from it.
Results: bench/results/load.json and load.md. `--find-max` searches the highest rate that holds
instead (bench/load_max.py; results in load_max.json and load_max.md); `--find-max --floor` searches the
same for a no-logic stack of the same shape, `--compare` both in one run (bench/load_floor.py; load_floor.*).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench import load_budget
from bench.ingest_load import HttpConnection, PromptMix, make_interactions, percentile
from bench.load_report import markdown
from bench.load_sampling import Counters, Sampler, missing_effects, processed_by_aggregator
from bench.load_search import add_search_options
from bench.provenance import run_header
from deploy.stack import Stack
from services.aggregator.settings import AggregatorSettings

RESULTS_DIR = Path(__file__).parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent
TICK_S = 0.1


@dataclass(frozen=True)
class LoadConfig:
    seconds: float
    rate: int
    vote_share: float
    vote_delay_s: float
    connections: int
    drain_timeout_s: float
    seed: int
    regenerate: float = 0.25
    popular: float = 0.05
    popular_prompts: int = 20
    max_open_tasks: int = AggregatorSettings.model_fields["max_open_tasks_per_domain"].default
    aggregators: int = 1

    def mix(self) -> PromptMix:
        return PromptMix(self.regenerate, self.popular, self.popular_prompts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the load is offered")
    parser.add_argument("--rate", type=int, default=1000, help="offered events/s (interactions + votes)")
    parser.add_argument("--vote-share", type=float, default=0.5, help="share of votes among the events")
    parser.add_argument("--vote-delay", type=float, default=2.0, help="votes go to interactions at least this old (s)")
    parser.add_argument("--connections", type=int, default=4, help="keep-alive connections per service")
    parser.add_argument("--drain-timeout", type=float, default=600.0, help="how long the lag may take to reach 0")
    parser.add_argument("--seed", type=int, default=11, help="seed of the generated events")
    parser.add_argument("--regenerate", type=float, default=0.25, help="share of interactions re-asking a prompt")
    parser.add_argument("--popular", type=float, default=0.05, help="share asking one of the popular prompts")
    parser.add_argument("--popular-prompts", type=int, default=20, help="how many popular (exact) prompts")
    parser.add_argument(
        "--max-open-tasks",
        type=int,
        default=LoadConfig.max_open_tasks,
        help="AGGREGATOR_MAX_OPEN_TASKS_PER_DOMAIN of the stack (default: the setting's)",
    )
    parser.add_argument(
        "--aggregators", type=int, default=1, help="aggregator instances sharing the input partitions (default 1)"
    )
    add_search_options(parser)
    return parser


def config_from(a: argparse.Namespace) -> LoadConfig:
    return LoadConfig(
        a.seconds,
        a.rate,
        a.vote_share,
        a.vote_delay,
        a.connections,
        a.drain_timeout,
        a.seed,
        a.regenerate,
        a.popular,
        a.popular_prompts,
        a.max_open_tasks,
        a.aggregators,
    )


def parse_args(argv: list[str] | None = None) -> LoadConfig:
    return config_from(build_parser().parse_args(argv))


class Workload:
    """Batches for each tick: fresh interactions, and thumbs on interactions accepted long enough ago."""

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        # Not config.seed itself: make_interactions draws its event_ids from Random(seed), and the same
        # stream here would give votes the interactions' event_ids (dropped as duplicates by the edge).
        self.rng = random.Random(f"votes-{config.seed}")
        count = int(config.rate * config.seconds) + config.rate
        self.interactions = iter(make_interactions(count, config.seed, config.mix()))
        self.votable: deque[tuple[float, dict[str, Any]]] = deque()  # (accepted at, interaction)
        self.ready: list[dict[str, Any]] = []

    def accepted(self, items: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        self.votable.extend((now, item) for item in items)

    def tick(self, events: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(interactions, votes) adding up to `events`."""
        cutoff = time.monotonic() - self.config.vote_delay_s
        while self.votable and self.votable[0][0] <= cutoff:
            self.ready.append(self.votable.popleft()[1])
        votes = [self._vote() for _ in range(round(events * self.config.vote_share))] if self.ready else []
        return [next(self.interactions) for _ in range(events - len(votes))], votes

    def _vote(self) -> dict[str, Any]:
        target = self.rng.choice(self.ready[-5000:])
        return {
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "app_id": target["app_id"],
            "occurred_at": datetime.now(UTC).isoformat(),
            "interaction_id": target["interaction_id"],
            "user_ref": f"v-{self.rng.randrange(100_000):05x}",
            "kind": "thumb",
            "value": self.rng.choice((1, 1, -1)),
        }


async def sender(
    address: tuple[str, int], path: str, queue: asyncio.Queue, counters: Counters, workload: Workload, kind: str
) -> None:
    """One keep-alive connection posting the batches of `queue` until it gets None."""
    async with HttpConnection(*address) as connection:
        while (items := await queue.get()) is not None:
            started = time.perf_counter()
            try:
                status, body = await connection.request("POST", path, orjson.dumps(items))
            except (OSError, asyncio.IncompleteReadError):
                counters.http_errors += 1
                continue
            counters.latencies_s.append(time.perf_counter() - started)
            if status != 202:
                counters.http_errors += 1
                continue
            reply = orjson.loads(body)
            counters.rejected += len(reply["rejected"])
            # "duplicate" items are in `accepted` too, but publish nothing: only fresh ones are counted.
            ids = {r["event_id"] for r in reply["results"] if r["status"] == "accepted"}
            counters.duplicates += sum(1 for r in reply["results"] if r["status"] == "duplicate")
            good = [item for item in items if item["event_id"] in ids]
            if kind == "interactions":
                counters.accepted_interactions.extend(i["event_id"] for i in good)
                workload.accepted(good)
            else:
                counters.accepted_votes.extend(v["event_id"] for v in good)


async def offer_load(stack: Stack, config: LoadConfig, counters: Counters, workload: Workload) -> float:
    """Queue a tick's batches every TICK_S for `seconds` (open loop); returns when everything queued was sent."""
    queues = {"interactions": asyncio.Queue(), "votes": asyncio.Queue()}
    targets = {"interactions": ("ingest", "/v1/interactions/batch"), "votes": ("feedback", "/v1/votes/batch")}
    tasks = []
    for kind, (service, path) in targets.items():
        url = urlsplit(stack.services[service].url)
        address = (url.hostname or "127.0.0.1", url.port or 80)
        tasks += [
            asyncio.create_task(sender(address, path, queues[kind], counters, workload, kind))
            for _ in range(config.connections)
        ]
    per_tick = config.rate * TICK_S
    started = time.monotonic()
    ticks = int(config.seconds / TICK_S)
    for n in range(ticks):
        # Fractional events per tick carry over, so any rate is offered exactly on average.
        events = int(per_tick * (n + 1)) - int(per_tick * n)
        interactions, votes = workload.tick(events)
        for kind, items in (("interactions", interactions), ("votes", votes)):
            if items:
                queues[kind].put_nowait(items)
        counters.backlog_max = max(counters.backlog_max, *(q.qsize() for q in queues.values()))
        await asyncio.sleep(max(0.0, started + (n + 1) * TICK_S - time.monotonic()))
    for kind in queues:
        for _ in range(config.connections):
            queues[kind].put_nowait(None)
    await asyncio.gather(*tasks)
    return time.monotonic() - started


async def start_aggregators(stack: Stack, config: LoadConfig) -> None:
    """The aggregator instances past the first (one consumer group: the input partitions are shared)."""
    for instance in range(2, config.aggregators + 1):
        await stack.start_service("aggregator", instance)


async def run(config: LoadConfig, run_dir: Path) -> dict[str, Any]:
    counters, workload = Counters(), Workload(config)
    budget_env = {"AGGREGATOR_MAX_OPEN_TASKS_PER_DOMAIN": str(config.max_open_tasks)}
    async with Stack(run_dir, fast_unsafe_database=True, ready_timeout_s=120, extra_env=budget_env) as stack:
        await start_aggregators(stack, config)
        sampler = Sampler(stack, counters)
        sampling = asyncio.create_task(sampler.run())
        try:
            load_s = await offer_load(stack, config, counters, workload)
        finally:
            sampling.cancel()
            await asyncio.gather(sampling, return_exceptions=True)
        during = list(sampler.samples)
        drain_s = await sampler.drain(config.drain_timeout_s)
        await sampler.close()
        assert stack.database_url is not None
        loss = await missing_effects(stack.database_url, counters)
        final = await processed_by_aggregator(stack)
        kept = await load_budget.final_check(stack.database_url, config.max_open_tasks)
    result = summarize(config, counters, during, sampler.samples, load_s, drain_s, loss, final)
    return {**result, "annotation_budget": load_budget.summary(sampler.samples, kept)}


def summarize(
    config: LoadConfig,
    counters: Counters,
    during: list[dict[str, Any]],
    samples: list[dict[str, Any]],
    load_s: float,
    drain_s: float | None,
    loss: dict[str, int],
    final: dict[str, float],
) -> dict[str, Any]:
    services = sorted({name for s in samples for name in s["rss_mb"]})
    memory = {
        name: {
            "peak_mb": max((s["rss_mb"][name] or 0) for s in samples),
            "end_mb": samples[-1]["rss_mb"][name],
            "start_mb": samples[0]["rss_mb"][name],
        }
        for name in services
    }
    # The steady part: after the first 10 s (warm-up: votes start after vote_delay_s, pools grow).
    steady = [s for s in during if s["t_s"] >= 10] or during
    rate = (steady[-1]["accepted"] - steady[0]["accepted"]) / max(steady[-1]["t_s"] - steady[0]["t_s"], 1e-9)
    processed_rate = (steady[-1]["processed"] - steady[0]["processed"]) / max(
        steady[-1]["t_s"] - steady[0]["t_s"], 1e-9
    )
    return {
        "offered_events_per_s": config.rate,
        "load_seconds": round(load_s, 1),
        "accepted": {"interactions": len(counters.accepted_interactions), "votes": len(counters.accepted_votes)},
        "accepted_events_per_s_overall": round(counters.accepted / load_s, 1),
        "accepted_events_per_s_steady": round(rate, 1),
        "processed_events_per_s_steady": round(processed_rate, 1),
        "rejected_items": counters.rejected,
        "duplicate_items": counters.duplicates,
        "http_errors": counters.http_errors,
        "send_backlog_max_batches": counters.backlog_max,
        "http_latency_ms": {
            "p50": round(percentile(counters.latencies_s, 50) * 1000, 1),
            "p99": round(percentile(counters.latencies_s, 99) * 1000, 1),
            "max": round(max(counters.latencies_s) * 1000, 1),
        },
        "lag_max_during_load": max(s["lag"] for s in during),
        "lag_at_load_end": during[-1]["lag"],
        "lag_end": samples[-1]["lag"],
        "drain_seconds_after_load": None if drain_s is None else round(drain_s, 1),
        "aggregator_inputs_total": final,
        "missing_effects": loss,
        "rss_mb": memory,
        "samples": samples,
    }


def write_results(config: LoadConfig, result: dict[str, Any]) -> dict[str, Any]:
    report = {
        **run_header("load"),
        "settings": asdict(config),
        "result": result,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "load.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS_DIR / "load.md").write_text(markdown(report))
    return report


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if (args.floor or args.compare) and not args.find_max:
        raise SystemExit("--floor and --compare go with --find-max")
    if args.find_max and (args.floor or args.compare):
        from bench import load_floor  # it builds on load_max: imported only when asked for

        load_floor.main(args)
        return
    if args.find_max:
        from bench import load_max  # it builds on this module: imported only when asked for

        load_max.main(args)
        return
    config = config_from(args)
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        result = asyncio.run(run(config, Path(tmp)))
    report = write_results(config, result)
    if "annotation_budget" in result:
        row = load_budget.quality_row(result["annotation_budget"], config.seconds)
        load_budget.write_quality_row(RESULTS_DIR / "quality.md", row)
    print(markdown(report))


if __name__ == "__main__":
    main()
