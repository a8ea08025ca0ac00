"""The annotation budget under load (bench/load.py): open tasks per domain over time, and the kept set at the end.

Sampled once a second beside the lag: open tasks per domain in the aggregator's budget (agg_task_budget,
status open: what it has published and not withdrawn, changed only in its batch transactions) and in
feedback's queue (tasks with status open: what annotators are offered; feedback holds a request back,
status held, while its domain already offers the cap, e.g. when the request arrives before the tombstone
of the task it displaced, which travels on another partition: services/feedback/task_cap.py), and the
held ones apart. At the end (after the drain, and once feedback's queue caught up or `settle_s` passed):
per domain, whether the open tasks are exactly the `cap` best by rank (priority, then task_id, as
budget.Ranked orders them) among every task the pair math still asks for, and whether feedback's open
tasks are the same set."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import asyncpg

from services.aggregator.budget import Ranked

QUALITY_ROW_PREFIX = "| open tasks under load"
_AGGREGATOR_OPEN = "SELECT domain, count(*) AS n FROM agg_task_budget WHERE status = 'open' GROUP BY domain"
_FEEDBACK_OPEN = "SELECT domain, count(*) AS n FROM tasks WHERE status = 'open' GROUP BY domain"
_FEEDBACK_HELD = "SELECT domain, count(*) AS n FROM tasks WHERE status = 'held' GROUP BY domain"


async def open_per_domain(connection: asyncpg.Connection) -> dict[str, dict[str, int]]:
    """{"aggregator": domain -> open tasks, "feedback": domain -> offered, "feedback_held": domain -> held} now."""
    return {
        "aggregator": {r["domain"]: r["n"] for r in await connection.fetch(_AGGREGATOR_OPEN)},
        "feedback": {r["domain"]: r["n"] for r in await connection.fetch(_FEEDBACK_OPEN)},
        "feedback_held": {r["domain"]: r["n"] for r in await connection.fetch(_FEEDBACK_HELD)},
    }


async def _kept_sets(connection: asyncpg.Connection) -> tuple[dict[str, list[Ranked]], dict[str, set[str]]]:
    budget: dict[str, list[Ranked]] = defaultdict(list)
    opened: dict[str, set[str]] = defaultdict(set)
    for r in await connection.fetch("SELECT task_id, domain, priority, status FROM agg_task_budget"):
        budget[r["domain"]].append(Ranked(r["priority"], r["task_id"]))
        if r["status"] == "open":
            opened[r["domain"]].add(r["task_id"])
    return budget, opened


async def _feedback_open(connection: asyncpg.Connection) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for r in await connection.fetch("SELECT task_id, domain FROM tasks WHERE status = 'open'"):
        found[r["domain"]].add(r["task_id"])
    return found


async def final_check(database_url: str, cap: int, settle_s: float = 60.0) -> dict[str, Any]:
    """Per domain: tasks asked for, open, whether open = the top `cap` by rank, whether feedback agrees."""
    connection = await asyncpg.connect(database_url)
    try:
        started = time.monotonic()
        while True:
            budget, opened = await _kept_sets(connection)
            feedback = await _feedback_open(connection)
            if feedback == opened or time.monotonic() - started > settle_s:
                break
            await asyncio.sleep(0.5)
    finally:
        await connection.close()
    domains = {}
    for domain in sorted(budget.keys() | feedback.keys()):
        ranked = sorted(budget.get(domain, []), reverse=True)
        top = {r.task_id for r in ranked[:cap]}
        domains[domain] = {
            "asked": len(ranked),
            "open": len(opened.get(domain, set())),
            "open_in_feedback": len(feedback.get(domain, set())),
            "open_is_top_cap": opened.get(domain, set()) == top,
            "feedback_matches": feedback.get(domain, set()) == opened.get(domain, set()),
        }
    return {
        "cap": cap,
        "domains": domains,
        "open_is_top_cap": all(d["open_is_top_cap"] for d in domains.values()),
        "feedback_matches": all(d["feedback_matches"] for d in domains.values()),
    }


def summary(samples: list[dict[str, Any]], final: dict[str, Any]) -> dict[str, Any]:
    """The most open (held) tasks seen in one domain (aggregator, feedback) over the samples, and the final check."""

    def most(side: str) -> int:
        return max((n for s in samples for n in s.get("open_tasks", {}).get(side, {}).values()), default=0)

    return {
        **final,
        "max_open_aggregator": most("aggregator"),
        "max_open_feedback": most("feedback"),
        "max_held_feedback": most("feedback_held"),
    }


def markdown_rows(budget: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows for load.md's table."""
    by_size = sorted(budget["domains"].items(), key=lambda kv: (-kv[1]["asked"], kv[0]))
    domains = ", ".join(f"{name} {d['open']}/{d['asked']}" for name, d in by_size)
    return [
        (
            f"open annotation tasks per domain, max over the run (cap {budget['cap']})",
            f"{budget['max_open_aggregator']} in the aggregator's budget,"
            f" {budget['max_open_feedback']} offered in feedback's queue"
            f" (at most {budget.get('max_held_feedback', 0)} held back there, over the cap)",
        ),
        ("open / asked-for tasks per domain at the end", domains or "none"),
        (
            "open tasks at the end = the top cap by priority / feedback's queue agrees",
            f"{'yes' if budget['open_is_top_cap'] else 'NO'} / {'yes' if budget['feedback_matches'] else 'NO'}",
        ),
    ]


def quality_row(budget: dict[str, Any], seconds: float) -> str:
    """The "open tasks under load" row of bench/results/quality.md's table (measure | goal | pipeline | offline)."""
    kept = "yes" if budget["open_is_top_cap"] else "no"
    return (
        f"{QUALITY_ROW_PREFIX} (annotation budget, `python -m bench.load --seconds {seconds:g}`, cap "
        f"{budget['cap']} per domain; bench/results/load.md) | at or under the cap "
        f"| max {budget['max_open_aggregator']} per domain in the aggregator, {budget['max_open_feedback']} offered "
        f"in feedback's queue ({budget.get('max_held_feedback', 0)} held back at most); kept set = top "
        f"{budget['cap']} by priority at the end: {kept} |  |"
    )


def read_quality_row(path: Path) -> str | None:
    """The "open tasks under load" row quality.md holds now (None: no file or no row)."""
    lines = path.read_text().splitlines() if path.exists() else []
    return next((line for line in lines if line.startswith(QUALITY_ROW_PREFIX)), None)


def write_quality_row(path: Path, row: str) -> None:
    """Put the row into quality.md: in place of the previous one (inside the table), else at the end."""
    lines = path.read_text().splitlines() if path.exists() else []
    at = next((i for i, line in enumerate(lines) if line.startswith(QUALITY_ROW_PREFIX)), None)
    if at is None:
        lines.append(row)
    else:
        lines[at] = row
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
