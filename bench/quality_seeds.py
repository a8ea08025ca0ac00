"""Flag latency over many seeds, by the pure core's replay: bench/results/quality_seeds.md.

`python -m bench.quality_seeds [--seeds 20] [--significance 0.002]` replays bench.quality's scenario (the
default size) for seeds 1..N vote by vote through the aggregator's pure core (bench.simulation.replay:
what the pipeline does per batch, with no stack), and writes per seed the votes each always-👍 bot and
contrarian had sent when flagged, each bot's bound (the earliest vote at which any test that never counts
agreement against a voter could flag it, at the same significance), and the honest voters flagged.
One seed (bench.quality on the running stack) says little about a goal like "within 20 votes": this says
how often it holds, and whether a miss is the test's or the evidence's. Counts, not timings.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.provenance import run_header
from bench.quality import LATENCY_GOAL, scenario_of
from bench.quality import parse_args as quality_args
from bench.simulation.replay import bound, hindsight_bound, replay
from bench.simulation.scenario import VoterKind
from services.aggregator.voters import VoterRules

RESULTS = Path(__file__).parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.quality_seeds", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="replay seeds 1..N")
    parser.add_argument("--significance", type=float, default=VoterRules().significance)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def seed_row(seed: int, rules: VoterRules) -> dict[str, Any]:
    """One seed's flag latencies (None: never flagged), the bots' bounds and the honest voters flagged."""
    replayed = replay(scenario_of(quality_args(["--seed", str(seed)])), rules)
    bots = sorted(replayed.voters(VoterKind.BOT), key=lambda v: replayed.flagged_after(v) or 10**6)
    contrarians = sorted(replayed.voters(VoterKind.CONTRARIAN), key=lambda v: replayed.flagged_after(v) or 10**6)
    honest = [v for v in replayed.voters(VoterKind.HONEST) if v in replayed.states]
    return {
        "seed": seed,
        "bots": [replayed.flagged_after(v) for v in bots],
        "bot_bounds": [bound(replayed.tested[v], rules.significance) for v in bots],
        "contrarians": [replayed.flagged_after(v) for v in contrarians],
        "contrarian_bounds": [hindsight_bound(replayed.tested[v], rules.significance) for v in contrarians],
        "honest_voters": len(honest),
        "honest_flagged": sum(replayed.states[v].flagged for v in honest),
    }


def _within(latencies: list[int | None], limits: list[int]) -> int:
    return sum(1 for n, limit in zip(latencies, limits, strict=True) if n is not None and n <= limit)


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    bots = [n for row in rows for n in row["bots"]]
    bounds = [b for row in rows for b in row["bot_bounds"]]
    contrarians = [n for row in rows for n in row["contrarians"]]
    contrarian_bounds = [b for row in rows for b in row["contrarian_bounds"]]
    goal = [LATENCY_GOAL] * len(bots)
    return {
        "bots": len(bots),
        "bots_within_goal": _within(bots, goal),
        "bots_with_bound_past_goal": sum(1 for b in bounds if b is None or b > LATENCY_GOAL),
        "bots_within_goal_or_bound": _within(bots, [max(LATENCY_GOAL, b or 10**6) for b in bounds]),
        "bot_votes_past_bound_median": statistics.median(
            n - b for n, b in zip(bots, bounds, strict=True) if n is not None and b is not None
        ),
        "contrarians": len(contrarians),
        "contrarians_within_goal": _within(contrarians, [LATENCY_GOAL] * len(contrarians)),
        "contrarians_with_bound_past_goal": sum(1 for b in contrarian_bounds if b is None or b > LATENCY_GOAL),
        "honest_voters": sum(row["honest_voters"] for row in rows),
        "honest_flagged": sum(row["honest_flagged"] for row in rows),
    }


def report(result: dict[str, Any]) -> str:
    s, header = result["summary"], result["run"]
    lines = [
        "# Flag latency over many seeds (bench/quality_seeds.py)",
        "",
        f"Run {header['date']} at commit {header['git_commit']}; seeds 1-{len(result['seeds'])} of bench.quality's "
        f"default scenario; significance {result['significance']}. The pure core replayed vote by vote "
        "(bench.simulation.replay), no stack: votes each voter had sent when flagged. The bound of a bot is the "
        "earliest vote at which any test that never counts agreement against a voter could flag it at this "
        "significance (the product of 1/d over its tested disagreements reaching 1/significance); the hindsight "
        "bound of a contrarian is the earliest vote at which a bet on a constant disagreement rate, the best rate "
        "for its votes so far picked afterwards, could flag it (bench.simulation.replay's docstring).",
        "",
        f"- always-👍 bots flagged within {LATENCY_GOAL} votes: **{s['bots_within_goal']}/{s['bots']}**; "
        f"bots whose bound is past {LATENCY_GOAL}: {s['bots_with_bound_past_goal']}; within {LATENCY_GOAL} or their "
        f"bound: {s['bots_within_goal_or_bound']}/{s['bots']}; median votes past the bound: "
        f"{s['bot_votes_past_bound_median']}",
        f"- contrarians flagged within {LATENCY_GOAL} votes: **{s['contrarians_within_goal']}/{s['contrarians']}**; "
        f"contrarians whose hindsight bound is past {LATENCY_GOAL}: {s['contrarians_with_bound_past_goal']}",
        f"- honest voters flagged: **{s['honest_flagged']}/{s['honest_voters']}**",
        "",
        "| seed | bots: flagged after (bound) | contrarians: flagged after (hindsight bound) | honest flagged |",
        "|---:|---|---|---|",
    ]
    for row in result["seeds"]:
        bots = ", ".join(f"{n} ({b})" for n, b in zip(row["bots"], row["bot_bounds"], strict=True))
        contrarians = ", ".join(f"{n} ({b})" for n, b in zip(row["contrarians"], row["contrarian_bounds"], strict=True))
        lines.append(f"| {row['seed']} | {bots} | {contrarians} | {row['honest_flagged']}/{row['honest_voters']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rules = replace(VoterRules(), significance=args.significance)
    rows = [seed_row(seed, rules) for seed in range(1, args.seeds + 1)]
    result = {
        "run": run_header("quality_seeds"),
        "significance": args.significance,
        "seeds": rows,
        "summary": summary(rows),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality_seeds.json").write_text(json.dumps(result, indent=2) + "\n")
    text = report(result)
    (args.out / "quality_seeds.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
