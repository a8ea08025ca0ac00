"""Vote quality on the simulator, measured from the pipeline's own state: bench/results/quality.md.

`python -m bench.quality [--seed 1] [--users 200] [--bots 3] [--contrarians 3] [--stuffers 2] [--brigades 2]
[--events 4000]` starts the whole pipeline as processes (deploy.stack.Stack: its own Tansu and
PostgreSQL), generates one seeded simulation (bench.simulation: honest users with noise, always-👍
bots, contrarians, ballot stuffers, brigades of fresh user_refs), sends it over HTTP as fast as the
stack takes it (occurred_at in the past: quality, not timing), waits until the live pairs stop
changing and no flagged voter's groups wait to be decided again, then reads what the pipeline itself
concluded:

- flags: the aggregator's admin route `GET /v1/admin/voters` (flagged, and after how many of the
  voter's votes it took in), per voter kind of the truth: flag latency of bots and contrarians (goal:
  within 20 of their votes), the share of honest voters flagged (goal: under 1%);
- pairs: the live `preference-pairs` of the run's answers scored against the ground truth (the
  pipeline, with the filter), beside the same pair math on every effective vote with no voter left out
  (bench.simulation.offline.offline_pairs: "without the filter"), overall and on the pairs that touch
  a brigade's target answers;
- stats: raw vote events vs effective votes vs quarantined, summed over the run's `GET /v1/stats`.

The figures are counts and rates, not timings: they hold on a loaded machine. The row "open tasks
under load" is left for the annotation budget (bench.load) to fill.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench import load_budget
from bench.provenance import run_header
from bench.simulate import (
    Scenario,
    Simulation,
    VoterKind,
    drive_http,
    generate,
    offline_reference,
    read_pairs,
    score_pairs,
)
from bench.simulation.offline import offline_pairs
from deploy.stack import Stack
from services.aggregator.voters import VoterRules

RESULTS = Path(__file__).parent / "results"
LATENCY_GOAL = 20
FALSE_POSITIVE_GOAL = 0.01


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--users", type=int, default=200, help="honest users")
    parser.add_argument("--honest-votes", type=int, default=3000)
    parser.add_argument("--prompts", type=int, default=150, help="prompt groups")
    parser.add_argument("--bots", type=int, default=3, help="always-👍 bots")
    parser.add_argument("--contrarians", type=int, default=3)
    parser.add_argument("--stuffers", type=int, default=2)
    parser.add_argument("--brigades", type=int, default=2)
    parser.add_argument("--brigade-size", type=int, default=20)
    parser.add_argument("--stuff-repeats", type=int, default=80, help="a stuffer's votes on its one answer")
    parser.add_argument(
        "--budget", type=int, default=60, help="FEEDBACK_MAX_VOTES_PER_VOTER_PER_HOUR (the product default: 60)"
    )
    parser.add_argument("--quiet-s", type=float, default=10.0, help="pairs unchanged this long: the pipeline is done")
    parser.add_argument("--settle-timeout-s", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def scenario_of(args: argparse.Namespace) -> Scenario:
    return Scenario(
        seed=args.seed,
        tag=f"q{args.seed}-",
        apps=("sim-quality",),
        prompts=args.prompts,
        min_answers=2,
        honest_users=args.users,
        honest_votes=args.honest_votes,
        bots=args.bots,
        contrarians=args.contrarians,
        stuffers=args.stuffers,
        brigades=args.brigades,
        brigade_size=args.brigade_size,
        stuff_repeats=args.stuff_repeats,
        duration_s=60.0,
    )


async def admin_voters(http: httpx.AsyncClient, token: str, app_id: str) -> list[dict[str, Any]]:
    response = await http.get(
        "/v1/admin/voters", params={"app_id": app_id, "limit": 1000}, headers={"Authorization": f"Bearer {token}"}
    )
    response.raise_for_status()
    return response.json()


async def settle(stack: Stack, sim: Simulation, http: httpx.AsyncClient, args: argparse.Namespace) -> dict[str, Any]:
    """The run's live pairs once they stopped changing for quiet_s and no voter waits for a re-decide."""
    loop = asyncio.get_running_loop()
    deadline, last, stable_since = loop.time() + args.settle_timeout_s, None, loop.time()
    app_id = sim.scenario.apps[0]
    while True:
        pairs = await read_pairs(stack.kafka_bootstrap or "", stack.topic_prefix)
        ours = {k: v for k, v in pairs.items() if v["chosen"]["interaction_id"] in sim.truth.answers}
        pending = any(v["redecide_pending"] for v in await admin_voters(http, stack.admin_token, app_id))
        if ours != last or pending:
            last, stable_since = ours, loop.time()
        if loop.time() - stable_since >= args.quiet_s or loop.time() >= deadline:
            return ours
        await asyncio.sleep(1.0)


def flag_figures(sim: Simulation, voters: list[dict[str, Any]]) -> dict[str, Any]:
    """Per voter kind: voters, how many the pipeline flagged, and after how many of their votes."""
    by_key = {(v["app_id"], v["voter"]): v for v in voters}
    kinds: dict[str, dict[str, Any]] = {}
    for key, truth in sim.truth.voters.items():
        entry = kinds.setdefault(truth.kind.value, {"voters": 0, "flagged": 0, "flagged_after_votes": []})
        entry["voters"] += 1
        row = by_key.get(key)
        if row and row["flagged"]:
            entry["flagged"] += 1
            entry["flagged_after_votes"].append(row["flagged_after_votes"])
    return kinds


def touching(pairs: dict[str, dict[str, Any]], answers: set[str]) -> dict[str, dict[str, Any]]:
    return {
        k: v for k, v in pairs.items() if {v["chosen"]["interaction_id"], v["rejected"]["interaction_id"]} & answers
    }


def pair_figures(sim: Simulation, pipeline: dict[str, dict[str, Any]]) -> dict[str, Any]:
    without_filter = offline_pairs(sim)
    brigade = {a for kind, answers in sim.truth.targets.items() if "brigade" in kind for a in answers}
    return {
        "pipeline": score_pairs(pipeline, sim.truth).as_dict(),
        "without_filter": score_pairs(without_filter, sim.truth).as_dict(),
        "brigade_pipeline": score_pairs(touching(pipeline, brigade), sim.truth).as_dict(),
        "brigade_without_filter": score_pairs(touching(without_filter, brigade), sim.truth).as_dict(),
        "brigade_targets": len(brigade),
    }


async def stats_figures(http: httpx.AsyncClient, app_id: str) -> dict[str, int]:
    rows = (await http.get("/v1/stats", params={"app_id": app_id, "limit": 1000})).json()
    names = ("thumbs_up", "thumbs_down", "effective_thumbs_up", "effective_thumbs_down", "quarantined_votes")
    return {name: sum(r[name] for r in rows) for name in names}


async def run(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    sim = generate(scenario_of(args))
    events = list(sim.rebased(datetime.now(UTC) - timedelta(seconds=sim.span_s() + 1)))
    env = {"FEEDBACK_MAX_VOTES_PER_VOTER_PER_HOUR": str(args.budget)}
    async with Stack(run_dir, fast_unsafe_database=True, ready_timeout_s=120, extra_env=env) as stack:
        info = stack.info
        async with (
            httpx.AsyncClient(base_url=info["ingest"], timeout=60.0) as ingest,
            httpx.AsyncClient(base_url=info["feedback"], timeout=60.0) as feedback,
            httpx.AsyncClient(base_url=info["aggregator"], timeout=60.0) as aggregator,
        ):
            sent = await drive_http(events, ingest, feedback, time_scale=0)
            pipeline = await settle(stack, sim, aggregator, args)
            app_id = sim.scenario.apps[0]
            voters = await admin_voters(aggregator, stack.admin_token, app_id)
            stats = await stats_figures(aggregator, app_id)
    sent_by_kind = Counter(
        sim.truth.voters[(e.body["app_id"], e.body["user_ref"])].kind.value
        for e in sim.events
        if e.kind == "vote" and (e.body["app_id"], e.body.get("user_ref")) in sim.truth.voters
    )
    return {
        **run_header("quality"),
        "scenario": {k: v for k, v in vars(sim.scenario).items() if k not in ("versions", "start")},
        "generated": sim.counts(),
        "sent": dict(sent.statuses),  # counts only: this run's pace is no figure
        "http_errors": sent.http_errors,
        "votes_sent_by_kind": dict(sent_by_kind),
        "flags": flag_figures(sim, voters),
        "offline": offline_reference(sim, VoterRules())["voters"],
        "pairs": pair_figures(sim, pipeline),
        "stats": stats,
        "budget": args.budget,
    }


def _accuracy(score: dict[str, Any]) -> str:
    overall = score["overall"]
    share = "n/a" if overall["accuracy"] is None else f"{overall['accuracy']:.1%}"
    return f"{overall['agree']}/{overall['scored']} ({share})"


def _latency(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "none in the run"
    after = sorted(entry["flagged_after_votes"])
    shown = f"after {after} votes" if after else "never"
    return f"{entry['flagged']}/{entry['voters']} flagged, {shown}"


def table_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measure, goal, the pipeline's figure, the offline reference) per row."""
    flags, pairs, stats, offline = result["flags"], result["pairs"], result["stats"], result["offline"]
    honest = flags.get(VoterKind.HONEST.value, {"voters": 0, "flagged": 0})
    rate = honest["flagged"] / honest["voters"] if honest["voters"] else 0.0
    offline_honest = offline.get(VoterKind.HONEST.value, {"voters": 0, "flagged": 0})
    return [
        ("always-👍 bot: votes until flagged", f"within {LATENCY_GOAL}", _latency(flags.get("bot")),
         _latency(offline.get("bot"))),
        ("contrarian: votes until flagged", f"within {LATENCY_GOAL}", _latency(flags.get("contrarian")),
         _latency(offline.get("contrarian"))),
        ("honest voters flagged", "< 1%", f"{honest['flagged']}/{honest['voters']} ({rate:.2%})",
         f"{offline_honest['flagged']}/{offline_honest['voters']}"),
        ("ballot stuffers flagged", "(not needed: counted once)", _latency(flags.get("stuffer")),
         _latency(offline.get("stuffer"))),
        ("brigade members flagged", "(see below)", _latency(flags.get("brigade")), _latency(offline.get("brigade"))),
        ("pairs agreeing with the truth", "", f"{_accuracy(pairs['pipeline'])} with the filter",
         f"{_accuracy(pairs['without_filter'])} without it (every voter)"),
        (f"pairs on a brigade's {pairs['brigade_targets']} target answers agreeing", "",
         f"{_accuracy(pairs['brigade_pipeline'])} with the filter",
         f"{_accuracy(pairs['brigade_without_filter'])} without it"),
        ("👍 raw / effective (a stuffer's repeats count once)", "",
         f"{stats['thumbs_up']} / {stats['effective_thumbs_up']}", ""),
        ("👎 raw / effective", "", f"{stats['thumbs_down']} / {stats['effective_thumbs_down']}", ""),
        (f"votes quarantined (budget {result['budget']} per voter and hour)", "", str(stats["quarantined_votes"]), ""),
        (f"{load_budget.QUALITY_ROW_PREFIX[2:]} (annotation budget, bench/load.py)", "at or under the cap",
         "(to be filled by `python -m bench.load`)", ""),
    ]  # fmt: skip


def report(result: dict[str, Any]) -> str:
    lines = [
        "# Vote quality on the simulator (bench/quality.py)",
        "",
        f"Run {result['date']} at commit {result['git_commit']}; seed {result['scenario']['seed']};"
        f" generated {result['generated']}; sent {result['sent']}. Figures read from the pipeline's own state"
        " (admin voters route, preference-pairs, /v1/stats): counts and rates, no timing. Votes until flagged:",
        "the voter's votes (tested or not) up to the one whose test decided the flag (`flagged_after_votes`: a",
        "batch that carries several of a bot's votes does not add the ones after it). The offline",
        "reference is the same pure core on the whole stream at once (bench.simulation.offline): each vote tested",
        "against the final consensus, and the pair math on every voter's effective votes (no filter).",
        "",
        "| measure | goal | pipeline | offline reference |",
        "|---|---|---|---|",
        *(
            f"| {measure} | {goal} | {pipeline} | {reference} |"
            for measure, goal, pipeline, reference in table_rows(result)
        ),
        "",
        "What is caught and what is not: the outlier test flags voters whose own votes disagree with the",
        "settled consensus of the others more than chance allows (only votes against the crowd are evidence: an",
        "honest user who only ever 👍 good answers is never flagged), so bots and contrarians are caught once enough",
        "of their votes against the crowd were",
        "tested (a vote is tested only where the others settled the question, so where few honest voters vote, a",
        "bad voter is caught later; a contrarian who votes with the crowd a third of the time needs ~20 tested",
        "votes at the default significance). A ballot stuffer's repeats are one",
        "effective vote (latest per voter and answer): stuffing moves nothing whether or not it is flagged, and",
        "past the hourly budget its votes are quarantined. A brigade of fresh user_refs that each vote once or",
        "twice is not caught: no member reaches the test's minimum of tested votes, and the brigade keeps",
        "whatever it moves on its target answers (the brigade row; a defence needs signals beyond one voter's",
        "votes, e.g. account age or many new voters on one answer at once, which this pipeline does not have).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as run_dir:
        result = asyncio.run(run(args, Path(run_dir)))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    text = report(result)
    previous_load_row = load_budget.read_quality_row(args.out / "quality.md")
    (args.out / "quality.md").write_text(text)
    if previous_load_row is not None:  # bench.load's row of its last run stays until bench.load runs again
        load_budget.write_quality_row(args.out / "quality.md", previous_load_row)
        text = (args.out / "quality.md").read_text()
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
