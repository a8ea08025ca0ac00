"""The search of `python -m bench.load --find-max`, pure: whether a probe held, which rate to probe next, the answer.

A probe offers one rate for the load's seconds on a fresh stack (bench/load_max.py runs it). It HOLDS
when every offered event was accepted (HTTP 202, fresh) with no HTTP error, the senders kept up with the
schedule, the lag came back to zero within the drain limit after the load stopped, and no accepted
event is missing from the aggregator's state. The search grows the rate geometrically from the start
rate until a probe fails (going down the same way if the start rate already fails), then bisects
between the highest held rate and the lowest failed rate above it until they are within the resolution.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SearchPlan:
    """Where the search starts, how it moves and when it stops (rates in events/s)."""

    start_rate: int = 500
    growth: float = 2.0
    resolution: float = 0.10  # stop when the lowest failed rate is within this fraction above the highest held
    min_rate: int = 10
    max_rate: int = 50_000


@dataclass(frozen=True)
class HoldLimits:
    """What a probe may show and still hold."""

    drain_limit_s: float = 5.0
    # The senders finish the last batch this long after the schedule's end at most: more means batches
    # queued faster than the services answered them (the send backlog grew).
    send_late_limit_s: float = 1.0


@dataclass(frozen=True)
class ProbeFigures:
    """What one probe measured, as far as the verdict needs it."""

    rate: int
    offered: int
    accepted: int
    http_errors: int
    rejected: int
    send_late_s: float
    lag_at_load_end: int
    drain_s: float | None  # None: the lag did not reach zero within the drain timeout
    lost: int | None  # None: not checked (the lag never reached zero)


@dataclass(frozen=True)
class Probe:
    rate: int
    is_held: bool


def failures(figures: ProbeFigures, limits: HoldLimits) -> list[str]:
    """Why the probe did not hold, one phrase per broken condition; empty when it held."""
    found = []
    if figures.accepted != figures.offered:
        found.append(f"accepted {figures.accepted:,} of {figures.offered:,} offered events")
    if figures.http_errors:
        found.append(f"{figures.http_errors:,} HTTP errors")
    if figures.rejected:
        found.append(f"{figures.rejected:,} items rejected")
    if figures.send_late_s > limits.send_late_limit_s:
        found.append(f"senders {figures.send_late_s:.1f} s behind the schedule at the end (send backlog)")
    if figures.drain_s is None:
        found.append(f"lag {figures.lag_at_load_end:,} at load end never reached zero")
    elif figures.drain_s > limits.drain_limit_s:
        found.append(
            f"lag {figures.lag_at_load_end:,} at load end took {figures.drain_s:.1f} s to drain"
            f" (limit {limits.drain_limit_s:g} s)"
        )
    if figures.lost:
        found.append(f"{figures.lost:,} accepted events lost")
    return found


def _bounds(probes: Sequence[Probe]) -> tuple[int | None, int | None]:
    """(highest held rate, lowest failed rate above it); a failure below a held rate is noise, not a bound."""
    held = max((p.rate for p in probes if p.is_held), default=None)
    failed = [p.rate for p in probes if not p.is_held and (held is None or p.rate > held)]
    return held, min(failed, default=None)


def next_rate(plan: SearchPlan, probes: Sequence[Probe]) -> int | None:
    """The rate to probe next, or None when the search is over (the answer is `highest_held(probes)`)."""
    if not probes:
        return plan.start_rate
    held, failed = _bounds(probes)
    if failed is None:
        assert held is not None
        return None if held >= plan.max_rate else min(plan.max_rate, max(held + 1, round(held * plan.growth)))
    if held is None:
        if failed <= plan.min_rate:
            return None
        return max(plan.min_rate, min(failed - 1, int(failed / plan.growth)))
    middle = (held + failed) // 2
    if failed <= held * (1 + plan.resolution) or middle == held:
        return None
    return middle


def highest_held(probes: Sequence[Probe]) -> int | None:
    """The highest rate that held, None if none did."""
    return _bounds(probes)[0]


def out_of_order(probes: Sequence[Probe]) -> list[int]:
    """Rates that failed below a rate that held: the box's noise, shown beside the answer."""
    held = highest_held(probes)
    return sorted(p.rate for p in probes if not p.is_held and held is not None and p.rate < held)


def add_search_options(parser: argparse.ArgumentParser) -> None:
    """The options of `--find-max` (bench/load.py's parser holds them, so `--help` shows them)."""
    defaults, limits = SearchPlan(), HoldLimits()
    group = parser.add_argument_group("--find-max", "search the highest offered rate that holds (bench/load_max.py)")
    group.add_argument("--find-max", action="store_true", help="search instead of one run at --rate")
    group.add_argument("--start-rate", type=int, default=defaults.start_rate, help="first rate probed (events/s)")
    group.add_argument("--growth", type=float, default=defaults.growth, help="factor between rates until one fails")
    group.add_argument(
        "--resolution", type=float, default=defaults.resolution, help="stop when failed <= held x (1 + this)"
    )
    group.add_argument("--min-rate", type=int, default=defaults.min_rate, help="lowest rate probed (events/s)")
    group.add_argument("--max-rate", type=int, default=defaults.max_rate, help="highest rate probed (events/s)")
    group.add_argument(
        "--drain-limit", type=float, default=limits.drain_limit_s, help="a held rate's lag is zero this soon (s)"
    )
    group.add_argument(
        "--floor",
        action="store_true",
        help="search the floor stack instead: bare endpoints + a bare consumer, no logic (bench/load_floor.py)",
    )
    group.add_argument(
        "--compare", action="store_true", help="search the floor, then the pipeline, in one run (the ratio)"
    )


def plan_from(args: argparse.Namespace) -> tuple[SearchPlan, HoldLimits]:
    plan = SearchPlan(args.start_rate, args.growth, args.resolution, args.min_rate, args.max_rate)
    if plan.growth <= 1 or plan.resolution <= 0 or not 0 < plan.min_rate <= plan.start_rate <= plan.max_rate:
        raise SystemExit("--find-max needs growth > 1, resolution > 0 and 0 < min-rate <= start-rate <= max-rate")
    return plan, HoldLimits(drain_limit_s=args.drain_limit)
