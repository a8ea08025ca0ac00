"""Leaderboard refit time: the Bradley-Terry point fit, the fit with its bootstrap, and the order's fragility.

`python -m bench.leaderboard` builds, for 10, 100 and 1,000 model versions, 1,000,000 battles as
counts over a sparse-ish schedule (each version meets about 20 others: its 10 nearest in true
strength, the way Arena pairs close models, and about 10 at random), true strengths N(0, 1) logits,
winners drawn from the Bradley-Terry model. It times the pure core that the live path runs on
every debounced change (services/aggregator/leaderboard.py, bradley_terry.py, fragility.py):

1. point fit: the counts matrix folded per pair and fitted (`bradley_terry.fit`, L-BFGS-B);
2. fit + bootstrap: the whole `build_leaderboard` from the (winner, loser) -> battles mapping and
   per-version votes (matrix, point fit, `--rounds` bootstrap fits, percentiles, ranks, approval);
   the goal is under 1 s at 100 versions;
3. fragility: `order_fragility` over every adjacent pair of the ranking (at most
   `--fragility-pairs` pairs from the top, for the largest size).

Each figure is the median of `--repeats` runs (one run at 1,000 versions and more), in one
process on one core's worth of numpy work. The columns beside check the fit is real: Kendall's
tau between the fitted and the true order, and whether the fit is the MLE.

Then the live path: the time from the vote that changes a pair to the updated leaderboard on the
`model-leaderboard` topic (p50/p99), against the aggregator as a process on a local broker and
database (bench/leaderboard_latency.py: a sparse phase, changes further apart than the debounce, and
a constant one; `--no-latency` skips it). `--small` runs 10 and 30 versions with 20,000 battles and
20 rounds and no latency phase (a smoke run for the unit tests). Results:
bench/results/leaderboard.json and leaderboard.md (or `--results-dir`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau
from threadpoolctl import ThreadpoolController

from bench.leaderboard_latency import LatencyConfig, measure_latency
from bench.provenance import run_header
from deploy.local_broker import start_broker
from deploy.local_database import start_database
from services.aggregator import bradley_terry as bt
from services.aggregator.leaderboard import ApprovalCounts, VersionKey, build_leaderboard, order_fragility

RESULTS_DIR = Path(__file__).parent / "results"
GOAL_VERSIONS = 100
GOAL_S = 1.0


@dataclass(frozen=True)
class BenchConfig:
    versions: tuple[int, ...]
    battles: int
    neighbours: int
    rounds: int
    repeats: int
    fragility_pairs: int
    seed: int
    latency: LatencyConfig | None = None


def parse_args(argv: list[str] | None = None) -> tuple[BenchConfig, Path]:
    parser = argparse.ArgumentParser(prog="python -m bench.leaderboard", description=__doc__.splitlines()[0])
    parser.add_argument("--versions", default="10,100,1000", help="comma-separated numbers of model versions")
    parser.add_argument("--battles", type=int, default=1_000_000, help="battles in total, as counts")
    parser.add_argument("--neighbours", type=int, default=20, help="opponents per version (about)")
    parser.add_argument("--rounds", type=int, default=100, help="bootstrap rounds")
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure (median); 1 at 1,000 versions+")
    parser.add_argument("--fragility-pairs", type=int, default=10, help="adjacent pairs timed at 1,000 versions+")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--small", action="store_true", help="10 and 30 versions, 20,000 battles, 20 rounds")
    parser.add_argument("--no-latency", action="store_true", help="skip the pair -> topic latency phases")
    parser.add_argument("--latency-sparse", type=int, default=20, help="changes of the sparse phase (0.5/s)")
    parser.add_argument("--latency-constant", type=int, default=100, help="changes of the constant phase (10/s)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    a = parser.parse_args(argv)
    if a.small:
        a.versions, a.battles, a.rounds, a.repeats, a.no_latency = "10,30", 20_000, 20, 2, True
    sizes = tuple(int(v) for v in a.versions.split(","))
    latency = (
        None if a.no_latency else LatencyConfig(sparse_changes=a.latency_sparse, constant_changes=a.latency_constant)
    )
    config = BenchConfig(sizes, a.battles, a.neighbours, a.rounds, a.repeats, a.fragility_pairs, a.seed, latency)
    return config, a.results_dir


def schedule(n: int, neighbours: int, rng: np.random.Generator) -> np.ndarray:
    """Pairs (i < j) that meet: each version's nearest in strength order, and as many at random."""
    near = max(1, neighbours // 4)  # i meets i+1..i+near, and is met by i-near..i-1
    pairs = {(i, i + d) for i in range(n) for d in range(1, near + 1) if i + d < n}
    others = rng.integers(0, n, size=(n, max(0, neighbours - 2 * near)))
    pairs |= {(min(i, int(j)), max(i, int(j))) for i in range(n) for j in others[i] if j != i}
    return np.array(sorted(pairs), dtype=np.intp)


def synthetic_counts(n: int, config: BenchConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """True strengths (logits) and the wins matrix of `config.battles` battles over the schedule."""
    strengths = rng.normal(0.0, 1.0, size=n)
    pairs = schedule(n, config.neighbours, rng)
    played = rng.multinomial(config.battles, np.full(len(pairs), 1.0 / len(pairs)))
    p_first = 1.0 / (1.0 + np.exp(strengths[pairs[:, 1]] - strengths[pairs[:, 0]]))
    first_wins = rng.binomial(played, p_first)
    wins = np.zeros((n, n), dtype=np.int64)
    wins[pairs[:, 0], pairs[:, 1]] = first_wins
    wins[pairs[:, 1], pairs[:, 0]] = played - first_wins
    return strengths, wins


def _median_s(run: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def measure_size(n: int, config: BenchConfig) -> dict[str, Any]:
    """Point fit, fit + bootstrap and fragility times for `n` versions."""
    rng = np.random.default_rng(config.seed + n)
    strengths, wins = synthetic_counts(n, config, rng)
    versions = [VersionKey(f"model-{i % 7}", f"v{i:05d}") for i in range(n)]
    counts = {(versions[i], versions[j]): int(wins[i, j]) for i, j in zip(*np.nonzero(wins), strict=True)}
    up, down = rng.integers(0, 500, (2, n))
    approvals = {v: ApprovalCounts(int(up[i]), int(down[i])) for i, v in enumerate(versions)}
    repeats = config.repeats if n < 1000 else 1
    point_s, point = _median_s(lambda: bt.fit(bt.pair_counts(wins)), repeats)

    def board() -> Any:
        return build_leaderboard(
            counts, approvals, min_battles=1, rounds=config.rounds, rng=np.random.default_rng(config.seed)
        )

    board_s, built = _median_s(board, repeats)
    pairs = n - 1 if n < 1000 else min(config.fragility_pairs, n - 1)
    fragility_s, fragility = _median_s(lambda: order_fragility(built, max_pairs=pairs), 1 if n >= 100 else repeats)
    tau = kendalltau(point.logits, strengths).statistic
    return {
        "versions": n,
        "battles": int(wins.sum()),
        "pairs_met": len(built.rated.counts.first),
        "point_fit_s": round(point_s, 4),
        "fit_and_bootstrap_s": round(board_s, 4),
        "bootstrap_rounds": config.rounds,
        "fragility_s": round(fragility_s, 4),
        "fragility_pairs": len(fragility),
        "fragility_exact": sum(f.is_exact for f in fragility),
        "kendall_tau_vs_truth": round(float(tau), 4),
        "is_mle": point.is_mle,
    }


def measure_pair_to_topic_latency(config: BenchConfig) -> dict[str, Any] | None:
    """Pair change -> updated leaderboard on `model-leaderboard` (p50/p99 per phase); None when skipped.

    Starts its own broker and database (fsync off) and runs the aggregator as a process on them.
    """
    if config.latency is None:
        return None
    with tempfile.TemporaryDirectory(prefix="bench-leaderboard-") as tmp:
        workdir = Path(tmp)
        with start_broker(log_dir=workdir) as broker, start_database(workdir / "pg", fast_unsafe=True) as database:
            return asyncio.run(
                measure_latency(broker.bootstrap, database.url, "lb.", config.latency, workdir / "aggregator.log")
            )


def write_results(results: list[dict[str, Any]], latency: dict[str, Any] | None, config: BenchConfig, out: Path):
    report = {**run_header("leaderboard"), "settings": asdict(config), "results": results, "latency": latency}
    out.mkdir(parents=True, exist_ok=True)
    (out / "leaderboard.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "leaderboard.md").write_text(_markdown(report))
    return report


def _markdown(report: dict[str, Any]) -> str:
    settings = report["settings"]
    lines = [
        "# Leaderboard refit time",
        "",
        f"{report['date']}, commit `{report['git_commit']}`, Python {report['python']}, {report['platform']}, "
        f"{report['cpus']} CPUs (load average {report['load_average_1m_after']}).",
        "",
        f"Settings: `{json.dumps(settings)}`.",
        "",
        f"{settings['battles']:,} battles as (winner, loser) counts; each version meets about "
        f"{settings['neighbours']} others (nearest in strength, and at random). Point fit: counts folded per pair, "
        "L-BFGS-B. Fit + bootstrap: the whole `build_leaderboard` (matrix, fit, bootstrap rounds warm-started from "
        f"the fit, percentiles, Arena ranks, approval). Goal: fit + bootstrap under {GOAL_S:g} s at "
        f"{GOAL_VERSIONS} versions. Medians of {settings['repeats']} runs (1 at 1,000 versions and more).",
        "",
        "| versions | pairs met | point fit s | fit + bootstrap s | rounds | fragility s (pairs, exact) "
        "| Kendall tau vs truth | MLE |",
        "|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['versions']:,} | {r['pairs_met']:,} | {r['point_fit_s']} | {r['fit_and_bootstrap_s']} | "
            f"{r['bootstrap_rounds']} | {r['fragility_s']} ({r['fragility_pairs']}, {r['fragility_exact']}) | "
            f"{r['kendall_tau_vs_truth']} | {'yes' if r['is_mle'] else 'no'} |"
        )
    return "\n".join(lines + _latency_markdown(report["latency"])) + "\n"


def _latency_markdown(latency: dict[str, Any] | None) -> list[str]:
    lines = ["", "## Pair change -> updated leaderboard on `model-leaderboard`", ""]
    if latency is None:
        return [*lines, "Not measured in this run (`--small` or `--no-latency`)."]
    lines += [
        f"The aggregator as a process; one board of {latency['versions']} rated versions seeded with "
        f"{latency['seed_battles']} battles; debounce {latency['debounce_s']:g} s, maximum delay "
        f"{latency['max_delay_s']:g} s; from the send of the vote that makes a pair (one more battle) until a body "
        "that counts it is read from the topic.",
        "",
        "| phase | changes | changes/s | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in ("sparse", "constant"):
        p = latency[name]
        lines.append(
            f"| {name} | {p['changes']} | {p['rate_per_s']:g} | {p['p50_ms']} | {p['p99_ms']} | {p['max_ms']} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    config, out = parse_args(argv)
    # One BLAS thread, as the leaderboard worker fits (leaderboard_worker.py): OpenBLAS's own pool of a
    # thread per core spins against the other processes of a busy box and made a fit 20-80x slower.
    with ThreadpoolController().limit(limits=1, user_api="blas"):
        results = [measure_size(n, config) for n in config.versions]
    report = write_results(results, measure_pair_to_topic_latency(config), config, out)
    print(_markdown(report))


if __name__ == "__main__":
    main()
