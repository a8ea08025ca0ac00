"""bench/results/load_max.md from the report of `python -m bench.load --find-max` (bench/load_max.py)."""

from __future__ import annotations

import json
from typing import Any

PROBE_HEADER = (
    "| probe | offered events/s | held | accepted events/s (steady) | taken in events/s (steady) | lag at load end"
    " | lag to zero after | lost | HTTP errors | senders late by | why not |\n"
    "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"
)


def _number(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:,}{unit}"


def probe_rows(probes: list[dict[str, Any]]) -> str:
    """One table row per probe, in the order they ran."""
    rows = []
    for n, probe in enumerate(probes, 1):
        f, r = probe["figures"], probe["result"]
        rows.append(
            f"| {n} | {f['rate']:,} | {'yes' if probe['held'] else 'no'} "
            f"| {r['accepted_events_per_s_steady']:,} | {r['processed_events_per_s_steady']:,} "
            f"| {f['lag_at_load_end']:,} | {_number(f['drain_s'], ' s')} | {_number(f['lost'])} "
            f"| {f['http_errors']:,} | {f['send_late_s']} s | {'; '.join(probe['failures']) or '-'} |"
        )
    return "\n".join(rows)


def process_rows(probe: dict[str, Any], failed: dict[str, Any] | None, cpus: int) -> str:
    """CPU share and RSS per process tree at the held rate (and the CPU share at the first failed rate)."""
    rows = []
    for name, share in probe["cpu_share"].items():
        rss = probe["rss_mb"].get(name, {})
        of_box = "-" if share is None else f"{share / cpus:.0%}"
        at_failed = "-" if failed is None else _number(failed["cpu_share"].get(name))
        rows.append(
            f"| {name} | {_number(share)} | {of_box} | {at_failed} "
            f"| {_number(rss.get('start_mb'))} | {_number(rss.get('peak_mb'))} | {_number(rss.get('end_mb'))} |"
        )
    total = sum(share or 0.0 for share in probe["cpu_share"].values())
    rows.append(f"| all of them | {total:.2f} | {total / cpus:.0%} | | | | |")
    return "\n".join(rows)


def results_stem(report: dict[str, Any]) -> str:
    """The results' file name without suffix: load_max, or load_max_<N>_aggregators with N > 1 instances."""
    aggregators = report["settings"].get("aggregators", 1)
    return "load_max" if aggregators == 1 else f"load_max_{aggregators}_aggregators"


def _answer(report: dict[str, Any]) -> str:
    best, goal = report["highest_held_events_per_s"], report["goal_events_per_s"]
    seconds = report["settings"]["seconds"]
    if best is None:
        return f"No rate held for {seconds:g} s (lowest probed: {report['search']['min_rate']:,} events/s)."
    verdict = "met" if best >= goal else "not met"
    aggregators = report["settings"].get("aggregators", 1)
    instances = "" if aggregators == 1 else f" with {aggregators} aggregator instances"
    text = f"**Highest rate held for {seconds:g} s{instances}: {best:,} events/s**"
    text += f" (goal >= {goal:,} events/s: {verdict})."
    return text + search_caveats(report, "the pipeline")


def search_caveats(report: dict[str, Any], searched: str) -> str:
    """What bounds a search's answer: the --max-rate cap, lower rates that failed too (a noisy box)."""
    text = ""
    if report["is_capped"]:
        text += f" It is the search's --max-rate: {searched} may hold more."
    if report["failed_below_answer"]:
        rates = ", ".join(f"{r:,}" for r in report["failed_below_answer"])
        text += f" Lower rates failed too ({rates} events/s): the box was noisy, repeat on a quiet one."
    return text


def held_and_failed(report: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    best = report["highest_held_events_per_s"]
    held = next((p for p in report["probes"] if p["held"] and p["rate"] == best), None)
    above = [p for p in report["probes"] if not p["held"] and (best is None or p["rate"] > best)]
    return held, min(above, key=lambda p: p["rate"], default=None)


def _processes(report: dict[str, Any]) -> str:
    held, failed = held_and_failed(report)
    if held is None:
        return ""
    failed_header = "a failed rate (none above)" if failed is None else f"{failed['rate']:,} events/s (failed)"
    return f"""
Each process at the held rate, {held["rate"]:,} events/s: CPU seconds (user + system) per wall second of
the load (1.0 = one core busy throughout), read from /proc at the load's start and end; resident memory
sampled every second from the start of the load to the end of the drain (MB). PostgreSQL is the
postmaster and all its backends (their RSS sums count shared buffers once per backend); the load
generator is this Python process (HTTP clients, lag sampler).

| process | CPU (cores) | share of {report["cpus"]} CPUs | CPU at {failed_header} | RSS start | RSS peak | RSS end |
|---|---:|---:|---:|---:|---:|---:|
{process_rows(held, failed, report["cpus"])}
"""


def markdown(report: dict[str, Any]) -> str:
    search, limits = report["search"], report["limits"]
    return f"""# Highest sustained rate

{report["date"]}, commit `{report["git_commit"]}`, Python {report["python"]}, {report["platform"]},
{report["cpus"]} CPUs (load average {report["load_average_1m_after"]} after the search). Broker, database,
the three services and this load generator all share those CPUs.

`python -m bench.load --find-max`: the workload of bench/results/load.md (HTTP interactions + thumbs
votes, the same prompt mix and open-loop pacing) offered at one rate per probe, each probe on a fresh
stack (its own broker, database and services: no backlog, consumer position or table growth carried over
from the previous probe). A rate HOLDS when, over {report["settings"]["seconds"]:g} s of load, every offered event was
accepted (HTTP 202, fresh) with no HTTP error, the senders finished at most
{limits["send_late_limit_s"]:g} s after the schedule (no growing send backlog), the lag (accepted - taken in by
the aggregator) was back to zero within {limits["drain_limit_s"]:g} s after the load, and no accepted event was
missing from the aggregator's state. Search: from {search["start_rate"]:,} events/s, x{search["growth"]:g} until a
rate fails (/{search["growth"]:g} while none holds, down to {search["min_rate"]:,}; up to {search["max_rate"]:,}),
then bisection until the lowest failed rate is within {search["resolution"]:.0%} of the highest held.

Settings: `{json.dumps(report["settings"])}`.

{_answer(report)}

{PROBE_HEADER}
{probe_rows(report["probes"])}
{_processes(report)}
"Steady" rates leave out the first 10 s of a probe (as in load.md); "lost" is not checked ("-") when the
lag never reached zero within the drain timeout. Every probe's figures, per-second lag and per-process
CPU and RSS are in {results_stem(report)}.json.
"""
