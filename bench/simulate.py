"""Traffic simulator: seeded chat-app traffic with honest and bad voters, sent to a running stack and scored.

`python -m bench.simulate --seed 1 --users 200 --bots 2 --contrarians 1 --stuffers 1 --brigades 1
--rate 200 --seconds 60 [--raw]` finds the stack in `.run/stack.json` (`make up`), generates about
rate x seconds events (bench.simulation.generate: versions of known quality, prompt groups with
regenerations and A/B answers, honest users with noise, bots, contrarians, ballot stuffers, brigades),
sends them in real time over HTTP (or to the raw topics with --raw), waits until `preference-pairs`
stops changing, and prints what it sent and the share of published pairs that agree with the ground
truth, by method, beside the same pair math applied offline with and without the outlier filter.

Library use (tests, benchmarks): `generate(Scenario(...))` gives the events and the truth;
`drive_http` / `drive_raw` send them; `read_pairs` + `score_pairs` score the outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.simulation.drivers import DriveReport, StackInfo, drive_http, drive_raw, ticks
from bench.simulation.generate import generate
from bench.simulation.offline import flagged_voters, offline_pairs, voter_traces
from bench.simulation.scenario import (
    DEFAULT_VERSIONS,
    Scenario,
    SimEvent,
    Simulation,
    Truth,
    VersionSpec,
    VoterKind,
)
from bench.simulation.scoring import PairScore, latest_per_key, ranking_agreement, read_pairs, score_pairs
from services.aggregator.voters import VoterRules

__all__ = [
    "DEFAULT_VERSIONS",
    "DriveReport",
    "PairScore",
    "Scenario",
    "SimEvent",
    "Simulation",
    "StackInfo",
    "Truth",
    "VersionSpec",
    "VoterKind",
    "drive_http",
    "drive_raw",
    "generate",
    "latest_per_key",
    "ranking_agreement",
    "read_pairs",
    "score_pairs",
    "ticks",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.simulate", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tag", default=None, help="goes into every id (default: the start time, so reruns are fresh)")
    parser.add_argument("--apps", nargs="+", default=["sim-helpdesk"])
    parser.add_argument("--users", type=int, default=200, help="honest users")
    parser.add_argument("--bots", type=int, default=0, help="always-👍 bots")
    parser.add_argument("--contrarians", type=int, default=0)
    parser.add_argument("--stuffers", type=int, default=0, help="ballot stuffers (many votes on one answer)")
    parser.add_argument("--brigades", type=int, default=0, help="brigades of fresh users pushing one answer")
    parser.add_argument("--brigade-size", type=int, default=20)
    parser.add_argument("--rate", type=float, default=200.0, help="events/s offered")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--raw", action="store_true", help="publish to the raw topics instead of HTTP")
    parser.add_argument("--stack", type=Path, default=Path(".run/stack.json"))
    parser.add_argument("--quiet-s", type=float, default=10.0, help="pairs unchanged this long: the pipeline is done")
    parser.add_argument("--settle-timeout-s", type=float, default=300.0)
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    parser.add_argument("--offline", action="store_true", help="no stack: only the pure core on the generated stream")
    return parser.parse_args(argv)


def scenario_of(args: argparse.Namespace) -> Scenario:
    return Scenario.for_rate(
        args.rate,
        args.seconds,
        seed=args.seed,
        tag=args.tag if args.tag is not None else f"t{int(time.time())}-",
        apps=tuple(args.apps),
        honest_users=args.users,
        bots=args.bots,
        contrarians=args.contrarians,
        stuffers=args.stuffers,
        brigades=args.brigades,
        brigade_size=args.brigade_size,
    )


async def send(sim: Simulation, stack: StackInfo, raw: bool) -> DriveReport:
    """Rebase onto now and send in real time."""
    events = sim.rebased(datetime.now(UTC))
    if raw:
        return await drive_raw(events, stack.kafka, stack.topic_prefix)
    async with (
        httpx.AsyncClient(base_url=stack.ingest, timeout=30.0) as ingest,
        httpx.AsyncClient(base_url=stack.feedback, timeout=30.0) as feedback,
    ):
        return await drive_http(events, ingest, feedback)


async def settled_pairs(stack: StackInfo, truth: Truth, quiet_s: float, timeout_s: float) -> dict[str, dict]:
    """The live pairs once the ones on this run's answers stop changing for `quiet_s` (or at the timeout)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last: dict[str, Any] | None = None
    stable_since = loop.time()
    while True:
        pairs = await read_pairs(stack.kafka, stack.topic_prefix)
        ours = {k: v for k, v in pairs.items() if v["chosen"]["interaction_id"] in truth.answers}
        if ours != last:
            last, stable_since = ours, loop.time()
        if loop.time() - stable_since >= quiet_s or loop.time() >= deadline:
            return ours
        await asyncio.sleep(1.0)


def offline_reference(sim: Simulation, rules: VoterRules) -> dict[str, Any]:
    """The pure core on the whole stream: outlier flags per voter kind, pairs with and without the filter."""
    traces = voter_traces(sim, rules)
    flagged = flagged_voters(traces, rules)
    kinds: dict[str, dict[str, Any]] = {}
    for trace in traces.values():
        entry = kinds.setdefault(trace.kind.value, {"voters": 0, "flagged": 0, "flagged_after_votes": []})
        entry["voters"] += 1
        after = trace.flagged_after(rules)
        if after is not None:
            entry["flagged"] += 1
            entry["flagged_after_votes"].append(after)
    return {
        "voters": kinds,
        "pairs_all_votes": score_pairs(offline_pairs(sim), sim.truth).as_dict(),
        "pairs_without_flagged": score_pairs(offline_pairs(sim, excluded=flagged), sim.truth).as_dict(),
    }


def summary(result: dict[str, Any]) -> str:
    lines = [f"scenario: {json.dumps(result['scenario'], default=str)}", f"generated: {result['generated']}"]
    lines.append(f"sent: {json.dumps(result['sent'])}")
    for name, score in (("pipeline", result["pipeline"]), *result["offline"].items()):
        if name == "voters" or score is None:
            continue
        overall = score["overall"]
        by = ", ".join(f"{m} {s['agree']}/{s['scored']}" for m, s in score["by_method"].items())
        lines.append(
            f"{name}: {overall['agree']}/{overall['scored']} agree ({overall['accuracy']}); {by};"
            f" unscored {score['unscored']}, foreign {score['foreign']}"
        )
    for kind, entry in result["offline"]["voters"].items():
        lines.append(
            f"offline outlier test, {kind}: {entry['flagged']}/{entry['voters']} flagged,"
            f" after {sorted(entry['flagged_after_votes'])[:20]} votes"
        )
    lines.append(f"versions by true quality: {result['version_ranking']}")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    scenario = scenario_of(args)
    sim = generate(scenario)
    sent: dict[str, Any] | None = None
    pipeline: dict[str, Any] | None = None
    if not args.offline:
        stack = StackInfo.load(args.stack)
        sent = (await send(sim, stack, args.raw)).as_dict()
        pairs = await settled_pairs(stack, sim.truth, args.quiet_s, args.settle_timeout_s)
        pipeline = score_pairs(pairs, sim.truth).as_dict()
    return {
        "scenario": {k: v for k, v in vars(scenario).items() if k not in ("versions", "start")},
        "generated": sim.counts(),
        "sent": sent,
        "pipeline": pipeline,
        "offline": offline_reference(sim, VoterRules()),
        "version_ranking": [(v, sim.truth.versions[v]) for v in sim.truth.version_ranking()],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(run(args))
    print(summary(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
