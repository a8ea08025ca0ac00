"""Where and when a benchmark ran: written at the top of every results file."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def run_header(benchmark: str) -> dict[str, Any]:
    """Benchmark name, date, commit, Python, platform, CPUs and the load average after the run."""
    return {
        "benchmark": benchmark,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        # Other work on the box skews every figure: the load average says how much there was.
        "load_average_1m_after": round(os.getloadavg()[0], 2),
    }


def kept_notes(path: Path, marker: str) -> str:
    """What follows `marker` in the results file at `path` (notes, before/after tables), marker included: kept
    when a run rewrites the table above it ("" without a marker)."""
    text = path.read_text() if path.is_file() else ""
    _, found, notes = text.partition(marker)
    return "\n" + found + notes if found else ""


def write_results(out: Path, stem: str, result: dict[str, Any], text: str) -> None:
    """`<stem>.json` (the result) and `<stem>.md` (`text`, then the notes kept after its marker) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    path = out / f"{stem}.md"
    path.write_text(text + kept_notes(path, notes_marker(stem)))


def notes_marker(stem: str) -> str:
    """The line after which a results file's notes (profiles, before/after tables) are kept across runs."""
    return f"<!-- notes: kept by bench.{stem} -->"


def run_sentence(header: dict[str, Any]) -> str:
    """Where and when, for the top of a results file: "Run <date> at commit `<sha>`; 2 CPUs; load average after 0.8."""
    return (
        f"Run {header['date']} at commit `{header['git_commit']}`; {header['cpus']} CPUs; load average after "
        f"{header['load_average_1m_after']}."
    )
