"""bench.ingest's results: each phase's figures, its ratio to its baseline and the goals, as JSON and Markdown."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.provenance import run_header

RESULTS_DIR = Path(__file__).parent / "results"
# Issue 15's goals: each a ratio to its baseline measured in the same run.
GOAL_RATIO = 0.5
GOAL_SINGLE_P99_MS = 50.0
# ingest.md below this line is written by hand and kept when the bench rewrites the file.
NOTES_MARKER = "<!-- notes: kept by bench.ingest -->"


@dataclass(frozen=True)
class PhaseResult:
    mode: str
    timed_until: str
    events: int
    seconds: float
    events_per_s: float
    acked_seconds: float | None = None
    acked_events_per_s: float | None = None
    requests: int | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    baseline: str | None = None
    """The mode this one is a ratio to (None: it is a baseline)."""
    server_cpu_ms_per_event: float | None = None
    """CPU time (user + system) the HTTP server process spent per event in the phase: a figure a shared box skews
    less than events/s."""
    note: str | None = None


def write_results(
    results: list[PhaseResult], settings: dict[str, Any], payload_bytes: float, notes: str = ""
) -> dict[str, Any]:
    rates = {r.mode: r.events_per_s for r in results}
    report = {
        **run_header("ingest"),
        "settings": {**settings, "mean_payload_bytes": round(payload_bytes)},
        "goals": {"ratio": GOAL_RATIO, "single_p99_ms": GOAL_SINGLE_P99_MS},
        "results": [
            {**asdict(r), "ratio_to_baseline": round(r.events_per_s / rates[r.baseline], 4) if r.baseline else None}
            for r in results
        ],
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "ingest.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS_DIR / "ingest.md").write_text(markdown(report) + notes)
    return report


def _goal(r: dict[str, Any], goals: dict[str, float]) -> str:
    if r["ratio_to_baseline"] is None:
        return "baseline"
    met = r["ratio_to_baseline"] >= goals["ratio"]
    text = f"≥ {goals['ratio']}×: {'met' if met else 'not met'}"
    if "single" in r["mode"]:
        p99_met = r["latency_p99_ms"] < goals["single_p99_ms"]
        text += f"; p99 < {goals['single_p99_ms']:.0f} ms: {'met' if p99_met else 'not met'}"
    return text


def markdown(report: dict[str, Any]) -> str:
    def fmt(value: float | None, digits: int = 1) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    lines = [
        "# Ingest throughput",
        "",
        f"{report['date']}, commit `{report['git_commit']}`, Python {report['python']}, {report['platform']}, "
        f"{report['cpus']} CPUs (load average {report['load_average_1m_after']}).",
        "",
        f"Settings: `{json.dumps(report['settings'])}`.",
        "",
        "events/s runs from the first send/request until the raw producer's last broker ack, or until a reader "
        'of the phase\'s topic has seen every event of the phase (HTTP); "acked" stops at the last HTTP 202. '
        "Batch ingest is a ratio to the tuned raw producer, single posts to the bare endpoint (same load "
        "generator, same clients), both measured in this run. Server CPU ms/event: user + system CPU of the "
        "HTTP server's process during the phase, per event (on a shared box a steadier figure than events/s).",
        "",
        "| mode | timed until | events | events/s | × its baseline | goal | events/s (acked) | requests "
        "| p50 ms | p99 ms | server CPU ms/event |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        ratio = "-" if r["ratio_to_baseline"] is None else f"{r['ratio_to_baseline']:.3f}"
        lines.append(
            f"| {r['mode']} | {r['timed_until']} | {r['events']:,} | {fmt(r['events_per_s'], 0)} | {ratio} | "
            f"{_goal(r, report['goals'])} | {fmt(r['acked_events_per_s'], 0)} | {r['requests'] or '-'} | "
            f"{fmt(r['latency_p50_ms'])} | {fmt(r['latency_p99_ms'])} | {fmt(r['server_cpu_ms_per_event'], 3)} |"
        )
    lines += ["", *(f"- {r['mode']}: {r['note']}." for r in report["results"] if r["note"])]
    return "\n".join(lines) + "\n"
