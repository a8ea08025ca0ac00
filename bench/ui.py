"""Annotator UI: the time from a verdict key to the next task drawn, in the system Chromium.

`python -m bench.ui [--verdicts 30] [--think-ms 500]` starts a local broker and database, feedback on a
loopback port (uvicorn, in-process), fills the queue with `verdicts + 1` compare tasks, signs in from
Chromium (Playwright, headless) and presses `1` on each task in a row. Each sample runs from the key's
keydown to the frame after the next task is on screen: the verdict's POST, then the prefetched task
drawn (its lease and word diff were fetched while the previous task was shown). Two rows: a person's
pace (`--think-ms` on each task: the prefetch has finished) and keys back to back (0 ms: a verdict may
wait for a prefetch still in flight). Results: bench/results/ui.json and ui.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import async_playwright

from bench.provenance import run_header
from deploy.init import migrate_all
from deploy.local_broker import start_broker
from deploy.local_database import start_database
from services.feedback.app import create_app
from services.feedback.settings import FeedbackSettings
from shared.kafka import ensure_topics
from shared.logging import configure_logging
from tests.browser.annotator_page import measure_verdict_to_next, sign_in, wait_for_task
from tests.browser.support import CHROMIUM_ARGS, Feedback, find_chromium, percentile, served
from tests.browser.tasks import compare_request

RESULTS_DIR = Path(__file__).parent / "results"
ADMIN = "bench-ui-admin"
PREFIX = "bench-ui."


@dataclass(frozen=True)
class UiBenchConfig:
    verdicts: int
    think_ms: float


def parse_args(argv: list[str] | None = None) -> UiBenchConfig:
    parser = argparse.ArgumentParser(prog="python -m bench.ui", description=__doc__.splitlines()[0])
    parser.add_argument("--verdicts", type=int, default=30, help="verdicts per row (tasks queued: one more)")
    parser.add_argument("--think-ms", type=float, default=500.0, help="pause on each task before its key")
    args = parser.parse_args(argv)
    return UiBenchConfig(args.verdicts, args.think_ms)


async def run_row(feedback: Feedback, browser: Any, domain: str, verdicts: int, think_ms: float) -> dict[str, Any]:
    token = await feedback.issue(f"bench-{domain}", domain)
    bodies = [compare_request(domain, priority=1_000.0 - i) for i in range(verdicts + 1)]
    await feedback.publish(*bodies)
    await feedback.wait_queued(domain, verdicts + 1)
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        page = await context.new_page()
        await sign_in(page, feedback.base_url, token)
        await wait_for_task(page, bodies[0]["task_id"])
        samples = await measure_verdict_to_next(page, verdicts, think_ms)
    finally:
        await context.close()
    return {
        "think_ms": think_ms,
        "verdicts": len(samples),
        "p50_ms": round(percentile(samples, 50), 1),
        "p99_ms": round(percentile(samples, 99), 1),
        "max_ms": round(max(samples), 1),
        "samples_ms": [round(s, 1) for s in samples],
    }


async def measure(bootstrap: str, database_url: str, config: UiBenchConfig) -> list[dict[str, Any]]:
    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("no Chromium found: install Debian's `chromium` package or set CHROMIUM_PATH")
    settings = FeedbackSettings(
        kafka_bootstrap_servers=bootstrap,
        database_url=database_url,
        topic_prefix=PREFIX,
        admin_token=ADMIN,
        http_port=0,
        log_level="WARNING",
    )
    await migrate_all(database_url)
    await ensure_topics(settings)
    app = create_app(settings)
    async with (
        served(app) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=30) as client,
        async_playwright() as playwright,
    ):
        feedback = Feedback(base_url, client, bootstrap, PREFIX, app, ADMIN)
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            return [
                await run_row(feedback, browser, "paced", config.verdicts, config.think_ms),
                await run_row(feedback, browser, "rushed", config.verdicts, 0.0),
            ]
        finally:
            await browser.close()


def write_results(rows: list[dict[str, Any]], config: UiBenchConfig) -> None:
    report = {**run_header("ui"), "settings": asdict(config), "results": rows}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "ui.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Annotator UI: verdict key to the next task on screen",
        "",
        f"{report['date']}, commit `{report['git_commit']}`, Python {report['python']}, {report['platform']}, "
        f"{report['cpus']} CPUs, load average after the run {report['load_average_1m_after']}. "
        "Chromium headless (system package) driven by Playwright; feedback in-process under uvicorn on "
        "loopback; local Tansu and embedded PostgreSQL (fsync off). A sample runs from the keydown of `1` "
        "to the frame after the next task is drawn: the verdict POST, then the prefetched task shown.",
        "",
        "| pace | verdicts | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        pace = f"{row['think_ms']:.0f} ms on each task" if row["think_ms"] else "keys back to back"
        lines.append(f"| {pace} | {row['verdicts']} | {row['p50_ms']} | {row['p99_ms']} | {row['max_ms']} |")
    if report["cpus"] and report["load_average_1m_after"] > report["cpus"]:
        lines += ["", "The machine was busy (load average above its CPU count): run it again on a quiet one."]
    (RESULTS_DIR / "ui.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    configure_logging("console", "WARNING")
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        workdir = Path(tmp)
        with start_broker(log_dir=workdir) as broker, start_database(workdir / "pg", fast_unsafe=True) as database:
            rows = asyncio.run(measure(broker.bootstrap, database.url, config))
    write_results(rows, config)
    print((RESULTS_DIR / "ui.md").read_text())


if __name__ == "__main__":
    main()
