"""`python -m bench.load --find-max`: the highest offered rate the whole pipeline holds, probe by probe.

Each probe is bench.load's sustained run at one rate (HTTP interactions + thumbs votes, the same prompt
mix, open-loop pacing) for `--seconds`, judged by bench/load_search.py: every offered event accepted with
no HTTP error and no growing send backlog, the lag back to zero within `--drain-limit` seconds after the
load, and no loss. The search (bench/load_search.py) grows the rate from `--start-rate` until a probe
fails, then bisects to `--resolution`.

Every probe runs on a fresh stack (its own Tansu broker, PostgreSQL and services under a new run
directory): Tansu keeps its topics in memory and the aggregator's tables only grow, so a probe on a
used stack would start with the previous probe's backlog, its consumer groups' positions and bigger
tables, and a failed probe could make the next one fail. A fresh stack costs some seconds of start-up
per probe, outside the measured window.

During each probe's load the CPU seconds of every process tree (broker, PostgreSQL with its backends,
ingest, feedback, aggregator, this load generator) are read at the start and the end of the load, and
their RSS once a second until the drain ends (bench/load_processes.py).
Results: bench/results/load_max.json and load_max.md, beside the single-rate load.json and load.md
(load_max_<N>_aggregators.* with `--aggregators N`). A probe runs against a Target: the pipeline here,
the floor stack (no logic, the same shape) in bench/load_floor.py, under the same load, rules and search.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench import load_processes
from bench.load import RESULTS_DIR, TICK_S, LoadConfig, Workload, config_from, offer_load, start_aggregators, summarize
from bench.load_max_report import markdown, results_stem
from bench.load_sampling import Counters, Sampler, missing_effects, processed_by_aggregator
from bench.load_search import (
    HoldLimits,
    Probe,
    ProbeFigures,
    SearchPlan,
    failures,
    highest_held,
    next_rate,
    out_of_order,
    plan_from,
)
from bench.provenance import run_header
from deploy.stack import Stack

GOAL_EVENTS_PER_S = 3000  # issue 15, goal 4: broker, database, services and load generator on this box


def offered_events(config: LoadConfig) -> int:
    """How many events offer_load queues at `config.rate` for `config.seconds` (the same arithmetic)."""
    per_tick = config.rate * TICK_S
    return int(per_tick * int(config.seconds / TICK_S))


async def _cancel(*tasks: asyncio.Task) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _offer_watched(
    stack: Stack, config: LoadConfig, sampler: Sampler, watch: load_processes.ProcessWatch
) -> tuple[float, dict[str, float | None]]:
    """Offer the load while sampling the lag; (load seconds, CPU share of each process tree)."""
    workload = Workload(config)  # generated before the marks: the events, not their generation, are the load
    sampling = asyncio.create_task(sampler.run())
    cpu_start, started = watch.cpu_mark(), time.monotonic()
    try:
        load_s = await offer_load(stack, config, sampler.counters, workload)
        cpu = load_processes.cpu_shares(cpu_start, watch.cpu_mark(), time.monotonic() - started)
    finally:
        await _cancel(sampling)
    return load_s, cpu


@contextlib.asynccontextmanager
async def pipeline_stack(config: LoadConfig, run_dir: Path) -> AsyncIterator[Stack]:
    """The whole pipeline on a fresh stack under `run_dir`, with `config.aggregators` aggregator instances."""
    env = {"AGGREGATOR_MAX_OPEN_TASKS_PER_DOMAIN": str(config.max_open_tasks)}
    async with Stack(run_dir, fast_unsafe_database=True, ready_timeout_s=120, extra_env=env) as stack:
        await start_aggregators(stack, config)
        yield stack


async def _missing_in_aggregator(stack: Stack, counters: Counters) -> dict[str, int]:
    assert stack.database_url is not None
    return await missing_effects(stack.database_url, counters)


@dataclass(frozen=True)
class Target:
    """What a probe offers its load to: the stack it starts and how it reads what that stack took in.

    The stack has the attributes bench.load and bench/load_processes.py read: `services` (the
    "ingest" and "feedback" edges the senders post to, and the consumer side, each with `url` and
    `pid`), `broker`, `database` and `database_url`.
    """

    start: Callable[[LoadConfig, Path], AbstractAsyncContextManager[Any]]
    sampler: Callable[[Any, Counters], Sampler]
    missing: Callable[[Any, Counters], Awaitable[dict[str, int]]]
    taken_in: Callable[[Any], Awaitable[dict[str, float]]]


PIPELINE = Target(pipeline_stack, Sampler, _missing_in_aggregator, processed_by_aggregator)


async def run_probe(config: LoadConfig, run_dir: Path, limits: HoldLimits, target: Target = PIPELINE) -> dict[str, Any]:
    """One rate on a fresh stack under `run_dir`: its figures, whether it held and why not."""
    counters = Counters()
    async with target.start(config, run_dir) as stack:
        watch = load_processes.ProcessWatch(load_processes.roots(stack))
        sampler = target.sampler(stack, counters)
        watching = asyncio.create_task(watch.run())
        try:
            load_s, cpu = await _offer_watched(stack, config, sampler, watch)
            during = list(sampler.samples)
            drain_s = await sampler.drain(config.drain_timeout_s)
        finally:
            await _cancel(watching)
            await sampler.close()
        # Before the lag is zero, events still on their way would count as lost: no loss check then.
        loss = None if drain_s is None else await target.missing(stack, counters)
        final = await target.taken_in(stack)
    result = summarize(config, counters, during, sampler.samples, load_s, drain_s, loss or {}, final)
    samples = result.pop("samples")
    figures = ProbeFigures(
        rate=config.rate,
        offered=offered_events(config),
        accepted=counters.accepted,
        http_errors=counters.http_errors,
        rejected=counters.rejected,
        send_late_s=round(load_s - config.seconds, 2),
        lag_at_load_end=samples[len(during)]["lag"],  # the drain's first sample, right after the last answer
        drain_s=None if drain_s is None else round(drain_s, 1),
        lost=None if loss is None else sum(loss.values()),
    )
    why_not = failures(figures, limits)
    return {
        "rate": config.rate,
        "held": not why_not,
        "failures": why_not,
        "figures": asdict(figures),
        "cpu_share": cpu,
        "rss_mb": load_processes.rss_summary(watch.rss_samples),
        "lag_series": [[s["t_s"], s["lag"]] for s in samples],
        "result": result,
    }


async def find_max(
    config: LoadConfig,
    plan: SearchPlan,
    limits: HoldLimits,
    work_dir: Path,
    on_probe: Callable[[dict[str, Any]], None] = lambda record: None,
    target: Target = PIPELINE,
) -> list[dict[str, Any]]:
    """Probe rates as the search asks until it has its answer; every probe's record, in order."""
    records: list[dict[str, Any]] = []
    while (rate := next_rate(plan, [Probe(r["rate"], r["held"]) for r in records])) is not None:
        run_dir = work_dir / f"probe-{len(records) + 1}"
        records.append(await run_probe(replace(config, rate=rate), run_dir, limits, target))
        # A probe's pgdata is hundreds of MB at high rates; only its figures are kept.
        shutil.rmtree(run_dir, ignore_errors=True)
        on_probe(records[-1])
    return records


def build_report(
    config: LoadConfig, plan: SearchPlan, limits: HoldLimits, records: list[dict[str, Any]]
) -> dict[str, Any]:
    probes = [Probe(r["rate"], r["held"]) for r in records]
    best = highest_held(probes)
    settings = {k: v for k, v in asdict(config).items() if k != "rate"}
    return {
        **run_header("load_max"),
        "settings": settings,
        "search": asdict(plan),
        "limits": asdict(limits),
        "goal_events_per_s": GOAL_EVENTS_PER_S,
        "highest_held_events_per_s": best,
        "is_capped": best is not None and best >= plan.max_rate,
        "failed_below_answer": out_of_order(probes),
        "probes": records,
    }


def write_results(report: dict[str, Any], results_dir: Path = RESULTS_DIR) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = results_stem(report)
    (results_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (results_dir / f"{stem}.md").write_text(markdown(report))


def progress(record: dict[str, Any]) -> None:
    verdict = "held" if record["held"] else "failed: " + "; ".join(record["failures"])
    print(f"{record['rate']:,} events/s {verdict}", flush=True)


def main(args: argparse.Namespace) -> None:
    """Run the search with bench.load's parsed arguments (`--find-max` and its options among them)."""
    config = config_from(args)
    plan, limits = plan_from(args)
    with tempfile.TemporaryDirectory(prefix="bench-load-max-") as tmp:
        records = asyncio.run(find_max(config, plan, limits, Path(tmp), progress))
    report = build_report(config, plan, limits, records)
    write_results(report)
    print(markdown(report))
