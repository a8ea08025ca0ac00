"""bench/results/load_floor.json and load_floor.md from `bench.load --find-max --floor` (or `--compare`).

The report is bench/load_max.py's (the same search, limits and probe records) for the floor stack, plus,
with `--compare`, the pipeline's highest held rate from the same run as a ratio of the floor's and each
process's CPU per event at both held rates. The notes after NOTES_MARKER in load_floor.md (what a quiet
box showed, before/after tables) are kept across runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.load import RESULTS_DIR
from bench.load_max_report import (
    PROBE_HEADER,
    held_and_failed,
    probe_rows,
    process_rows,
    results_stem,
    search_caveats,
)
from bench.provenance import kept_notes, run_header

NOTES_MARKER = "<!-- notes: kept by bench.load --floor -->"
STEM = "load_floor"
# The floor's processes keep the pipeline's role names in the json (rows compare one to one); shown as:
LABELS = {
    "ingest": "ingest's place: bare endpoint (interactions)",
    "feedback": "feedback's place: bare endpoint (votes)",
    "aggregator": "aggregator's place: bare consumer",
}


def _pipeline_summary(pipeline: dict[str, Any], floor_best: int | None) -> dict[str, Any]:
    best = pipeline["highest_held_events_per_s"]
    held, _ = held_and_failed(pipeline)
    return {
        "highest_held_events_per_s": best,
        "ratio_to_floor": None if best is None or not floor_best else round(best / floor_best, 3),
        "is_capped": pipeline["is_capped"],
        "aggregators": pipeline["settings"].get("aggregators", 1),
        "cpu_share": None if held is None else held["cpu_share"],
        "rss_mb": None if held is None else held["rss_mb"],
        "results": f"{results_stem(pipeline)}.json",
    }


def floor_report(floor: dict[str, Any], pipeline: dict[str, Any] | None) -> dict[str, Any]:
    """The floor's find-max report, named load_floor, with the pipeline's answer beside it when measured."""
    best = floor["highest_held_events_per_s"]
    settings = {k: v for k, v in floor["settings"].items() if k not in ("aggregators", "max_open_tasks")}
    summary = None if pipeline is None else _pipeline_summary(pipeline, best)
    return {**floor, **run_header(STEM), "settings": settings, "pipeline": summary}


def _relabelled(probe: dict[str, Any]) -> dict[str, Any]:
    def names(values: dict[str, Any]) -> dict[str, Any]:
        return {LABELS.get(name, name): value for name, value in values.items()}

    return {**probe, "cpu_share": names(probe["cpu_share"]), "rss_mb": names(probe["rss_mb"])}


def _answer(report: dict[str, Any]) -> str:
    best, goal = report["highest_held_events_per_s"], report["goal_events_per_s"]
    seconds = report["settings"]["seconds"]
    if best is None:
        return f"The floor held no rate for {seconds:g} s (lowest probed: {report['search']['min_rate']:,} events/s)."
    reach = "the goal is within the floor" if best >= goal else "even the floor is under the goal"
    text = f"**Highest rate the floor holds for {seconds:g} s: {best:,} events/s** (goal >= {goal:,}: {reach})."
    text += search_caveats(report, "the floor")
    pipeline = report["pipeline"]
    if pipeline is None:
        return text + " The pipeline was not searched in this run (`--compare` searches both)."
    held = pipeline["highest_held_events_per_s"]
    instances = "" if pipeline["aggregators"] == 1 else f" with {pipeline['aggregators']} aggregator instances"
    if held is None:
        return text + f" The pipeline{instances}, searched in the same run, held no rate."
    return text + (
        f"\n\n**The pipeline{instances}, searched in the same run: {held:,} events/s ="
        f" {pipeline['ratio_to_floor']}x the floor** ({pipeline['results']})."
    )


def _ms_per_event(share: float | None, rate: int) -> str:
    return "-" if share is None else f"{share / rate * 1000:.3f}"


def _compare_rows(floor_probe: dict[str, Any], floor_rate: int, pipeline: dict[str, Any], rate: int) -> str:
    rows = []
    names = list(dict.fromkeys([*floor_probe["cpu_share"], *pipeline["cpu_share"]]))
    for name in names:
        mine, theirs = floor_probe["cpu_share"].get(name), pipeline["cpu_share"].get(name)
        times = "-" if not mine or theirs is None else f"{(theirs / rate) / (mine / floor_rate):.1f}x"
        label = LABELS.get(name, name)
        rows.append(f"| {label} | {_ms_per_event(mine, floor_rate)} | {_ms_per_event(theirs, rate)} | {times} |")
    return "\n".join(rows)


def _tables(report: dict[str, Any]) -> str:
    held, failed = held_and_failed(report)
    if held is None:
        return ""
    failed_header = "a failed rate (none above)" if failed is None else f"{failed['rate']:,} events/s (failed)"
    text = f"""
Each process of the floor at its held rate, {held["rate"]:,} events/s (measured as in load_max.md: CPU
seconds per wall second of the load, RSS in MB from the load's start to the drain's end):

| process | CPU (cores) | share of {report["cpus"]} CPUs | CPU at {failed_header} | RSS start | RSS peak | RSS end |
|---|---:|---:|---:|---:|---:|---:|
{process_rows(_relabelled(held), None if failed is None else _relabelled(failed), report["cpus"])}
"""
    pipeline = report["pipeline"]
    if pipeline is None or pipeline["cpu_share"] is None:
        return text
    rate = pipeline["highest_held_events_per_s"]
    return (
        text
        + f"""
CPU per event (ms: CPU seconds per wall second / events per second), the floor at {held["rate"]:,} events/s
against the pipeline at {rate:,} events/s, both held, same run:

| process | floor ms/event | pipeline ms/event | pipeline / floor |
|---|---:|---:|---:|
{_compare_rows(held, held["rate"], pipeline, rate)}

CPU per event includes what a process spends whatever the rate (consumers fetch every
`fetch_max_wait_ms` on Tansu, bench/results/idle.md; the once-a-second intake sample is a query on
PostgreSQL for both stacks): at two different held rates the idle part weighs differently.
"""
    )


def markdown(report: dict[str, Any]) -> str:
    search, limits, seconds = report["search"], report["limits"], report["settings"]["seconds"]
    return f"""# The floor: the highest rate a pipeline of the same shape without our logic holds

{report["date"]}, commit `{report["git_commit"]}`, Python {report["python"]}, {report["platform"]},
{report["cpus"]} CPUs (load average {report["load_average_1m_after"]} after the run). Broker, database,
the floor's three processes and this load generator all share those CPUs.

`python -m bench.load --find-max --floor` (bench/load_floor.py): the least any design must do per event,
under the load, rules and search of load_max.md. Tansu and PostgreSQL as the real stack starts them;
in ingest's and feedback's places one bare endpoint each (uvicorn, one worker, as the services: the
handler parses the JSON batch and awaits the acknowledged send of each item, keyed by its event_id, to
the interactions or votes topic; one process per edge, as the pipeline has); in the aggregator's place
one bare consumer (one group on both topics, one COPY of each batch into an unindexed table, offsets
committed after the write). No validation, dedupe, pairs or outbox. Taken in = rows of that table;
lost = accepted event_ids without a row. Each probe on a fresh stack. A rate HOLDS when, over
{seconds:g} s of load, every offered event was accepted with no HTTP error, the senders finished at most
{limits["send_late_limit_s"]:g} s after the schedule, the lag was back to zero within {limits["drain_limit_s"]:g} s
after the load, and no accepted event was missing. Search: from {search["start_rate"]:,} events/s,
x{search["growth"]:g} until a rate fails (down to {search["min_rate"]:,}; up to {search["max_rate"]:,}), then
bisection until the lowest failed rate is within {search["resolution"]:.0%} of the highest held.

Settings: `{json.dumps(report["settings"])}`.

{_answer(report)}

{PROBE_HEADER}
{probe_rows(report["probes"])}
{_tables(report)}
Every probe's figures, per-second lag and per-process CPU and RSS are in {STEM}.json.
"""


def write_floor_results(report: dict[str, Any], results_dir: Path = RESULTS_DIR) -> str:
    """Write load_floor.json and load_floor.md (keeping its notes); return the markdown."""
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{STEM}.json").write_text(json.dumps(report, indent=2) + "\n")
    path = results_dir / f"{STEM}.md"
    text = markdown(report) + kept_notes(path, NOTES_MARKER)
    path.write_text(text)
    return text
