"""bench.aggregator's results: aggregator.json and the table of aggregator.md, with its kept notes.

The notes (what the profiles showed, before/after tables) follow NOTES_MARKER in aggregator.md and
are kept when a run rewrites the table above them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.provenance import kept_notes, run_header

RESULTS_DIR = Path(__file__).parent / "results"
NOTES_MARKER = "<!-- notes: kept by bench.aggregator -->"
GOALS = {"ratio_to_baseline": 0.3, "latency_p99_ms_at_1000_events_per_s": 100.0}


def _cell(value: Any, digits: int | None = None) -> str:
    if value is None:
        return "-"
    if digits is not None and isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _batches(result: dict[str, Any]) -> str:
    """Batch transactions in the phase, with their mean time."""
    if not result.get("batches"):
        return "-"
    return f"{result['batches']:,} ({result['batch_ms_mean']} ms)"


def markdown(report: dict[str, Any]) -> str:
    """The results table (one row per phase) under the run's provenance."""
    lines = [
        "# Aggregator throughput and latency",
        "",
        f"{report['date']}, commit `{report['git_commit']}`, Python {report['python']}, {report['platform']}, "
        f"{report['cpus']} CPUs (load average {report['load_average_1m_after']} after the run). "
        f"Settings: `{json.dumps(report['settings'])}`. Each group: 2 answers + 8 thumbs "
        "(a clear split, one pair). Throughput runs from the first send until every event is written "
        "(baseline table / aggregator state); latency from a group's send until its pair is on `preference-pairs`. "
        "CPU ms/event: user + system CPU of the aggregator process during the phase, per event (PostgreSQL: "
        "of its server processes); batches: the aggregator's "
        "batch transactions in the phase (mean time). "
        f"Goals (issue 15): ≥ {GOALS['ratio_to_baseline']}× the baseline, p99 under "
        f"{GOALS['latency_p99_ms_at_1000_events_per_s']:g} ms at 1,000 events/s.",
        "",
        "| mode | events | seconds | events/s | × baseline | p50 ms | p99 ms | max ms | CPU ms/event | "
        "PostgreSQL CPU ms/event | batches |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['mode']} | {r['events']:,} | {_cell(r.get('seconds'))} | {_cell(r.get('events_per_s'))} | "
            f"{_cell(r.get('ratio_to_baseline'))} | {_cell(r.get('latency_p50_ms'))} | "
            f"{_cell(r.get('latency_p99_ms'))} | {_cell(r.get('latency_max_ms'))} | "
            f"{_cell(r.get('cpu_ms_per_event'), 3)} | {_cell(r.get('database_cpu_ms_per_event'), 3)} | "
            f"{_batches(r)} |"
        )
    return "\n".join(lines) + "\n"


def write_results(results: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    """Write aggregator.json and aggregator.md (keeping its notes); return the markdown."""
    report = {**run_header("aggregator"), "settings": settings, "goals": GOALS, "results": results}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "aggregator.json").write_text(json.dumps(report, indent=2) + "\n")
    path = RESULTS_DIR / "aggregator.md"
    text = markdown(report) + kept_notes(path, NOTES_MARKER)
    path.write_text(text)
    return text
