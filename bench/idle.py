"""What a whole stack costs doing nothing: each part's CPU share with no traffic, by consumer fetch wait.

`python -m bench.idle [--seconds 30] [--settle 15]` starts the pipeline as processes (deploy.stack.Stack:
its own Tansu and PostgreSQL) twice and, after `--settle` seconds, measures each part's CPU (user + system
of its process tree, bench.load_processes) over `--seconds` with nothing sent:

- baseline: every consumer at `KAFKA_FETCH_MAX_WAIT_MS` (10 ms), as before the background setting;
- pipeline: the defaults, consumers off the event -> pair path (annotation-requests, the dead-letter
  counter) at `KAFKA_BACKGROUND_FETCH_MAX_WAIT_MS`.

Tansu answers an empty fetch only when its wait ends (Kafka answers as soon as a record arrives), so
on this broker every idle consumer sends a fetch per wait and the whole stack pays for it in every
process: CPU the services and the broker do not have under load (bench.load --find-max). Results:
bench/results/idle.json and idle.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.load_processes import LOAD_GENERATOR, cpu_seconds, roots
from bench.provenance import run_header, run_sentence
from deploy.stack import Stack
from shared.settings import PipelineSettings

RESULTS = Path(__file__).parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the idle CPU is measured")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds after start before measuring")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


async def idle_shares(env: dict[str, str], args: argparse.Namespace) -> dict[str, float]:
    """CPU cores each part used, on average, over `args.seconds` of an idle stack run with `env`."""
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as run_dir:
        async with Stack(Path(run_dir), fast_unsafe_database=True, ready_timeout_s=120, extra_env=env) as stack:
            await asyncio.sleep(args.settle)
            parts = {name: pid for name, pid in roots(stack).items() if name != LOAD_GENERATOR and pid}
            before, started = {name: cpu_seconds(pid) for name, pid in parts.items()}, time.monotonic()
            await asyncio.sleep(args.seconds)
            wall_s = time.monotonic() - started
            return {name: round((cpu_seconds(pid) - before[name]) / wall_s, 3) for name, pid in parts.items()}


def report(result: dict[str, Any]) -> str:
    header, baseline, pipeline = result["run"], result["baseline"], result["pipeline"]
    total_base, total_pipe = sum(baseline.values()), sum(pipeline.values())
    lines = [
        "# An idle stack's CPU (bench/idle.py)",
        "",
        f"{run_sentence(header)} Each part's CPU (cores, user + system of its process tree) over "
        f"{result['seconds']:.0f} s of a stack receiving nothing, {result['settle']:.0f} s after it started. "
        f"Baseline: every consumer's fetch wait at {result['fetch_wait_ms']} ms; pipeline: consumers off the "
        f"event -> pair path at {result['background_fetch_wait_ms']} ms.",
        "",
        "| part | baseline (cores) | pipeline (cores) |",
        "|---|---:|---:|",
        *(f"| {name} | {baseline[name]:.3f} | {pipeline.get(name, 0.0):.3f} |" for name in baseline),
        f"| **all** | **{total_base:.3f}** | **{total_pipe:.3f}** ({total_pipe / total_base:.2f}×) |",
    ]
    return "\n".join(lines) + "\n"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    defaults = PipelineSettings()
    foreground = str(defaults.kafka_fetch_max_wait_ms)
    return {
        "seconds": args.seconds,
        "settle": args.settle,
        "fetch_wait_ms": defaults.kafka_fetch_max_wait_ms,
        "background_fetch_wait_ms": defaults.kafka_background_fetch_max_wait_ms,
        "baseline": await idle_shares({"KAFKA_BACKGROUND_FETCH_MAX_WAIT_MS": foreground}, args),
        "pipeline": await idle_shares({}, args),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(run(args))
    result["run"] = run_header("idle")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "idle.json").write_text(json.dumps(result, indent=2) + "\n")
    text = report(result)
    (args.out / "idle.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
