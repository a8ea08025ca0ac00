"""bench/load_floor_report.py: the floor's answer, its processes, and the pipeline's rate beside it as a ratio."""

from __future__ import annotations

from typing import Any

from bench.load import LoadConfig
from bench.load_floor_report import floor_report, markdown
from bench.load_max import build_report
from bench.load_search import HoldLimits, SearchPlan

CONFIG = LoadConfig(
    seconds=60.0, rate=1000, vote_share=0.5, vote_delay_s=2.0, connections=4, drain_timeout_s=600.0, seed=11
)
ROLES = ("broker (Tansu)", "PostgreSQL", "ingest", "feedback", "aggregator", "load generator")


def _probe(rate: int, held: bool, cpu: dict[str, float]) -> dict[str, Any]:
    figures = {
        "rate": rate,
        "offered": rate * 60,
        "accepted": rate * 60,
        "http_errors": 0,
        "rejected": 0,
        "send_late_s": 0.0,
        "lag_at_load_end": 100 if held else 9_000,
        "drain_s": 0.5 if held else 9.0,
        "lost": 0,
    }
    return {
        "rate": rate,
        "held": held,
        "failures": [] if held else ["lag 9,000 at load end took 9.0 s to drain (limit 5 s)"],
        "figures": figures,
        "cpu_share": cpu,
        "rss_mb": {name: {"start_mb": 50.0, "peak_mb": 60.0, "end_mb": 55.0} for name in cpu},
        "result": {"accepted_events_per_s_steady": float(rate), "processed_events_per_s_steady": float(rate)},
    }


def _cpu(aggregator: float) -> dict[str, float]:
    return {**dict.fromkeys(ROLES, 0.1), "aggregator": aggregator}


FLOOR_PROBES = [
    _probe(500, True, _cpu(0.05)),
    _probe(1000, True, _cpu(0.1)),
    _probe(2000, False, _cpu(0.25)),
    _probe(1500, True, _cpu(0.3)),
    _probe(1750, False, _cpu(0.35)),
]
PIPELINE_PROBES = [_probe(500, True, _cpu(0.5)), _probe(1000, False, _cpu(0.7)), _probe(750, True, _cpu(0.72))]


def test_the_pipeline_measured_in_the_same_run_is_a_ratio_of_the_floor() -> None:
    plan, limits = SearchPlan(), HoldLimits()
    pipeline = build_report(CONFIG, plan, limits, PIPELINE_PROBES)
    report = floor_report(build_report(CONFIG, plan, limits, FLOOR_PROBES), pipeline)

    assert report["benchmark"] == "load_floor"
    assert report["highest_held_events_per_s"] == 1500
    assert "aggregators" not in report["settings"] and "max_open_tasks" not in report["settings"]
    assert report["pipeline"]["highest_held_events_per_s"] == 750
    assert report["pipeline"]["ratio_to_floor"] == 0.5
    assert report["pipeline"]["cpu_share"] == PIPELINE_PROBES[2]["cpu_share"]
    text = markdown(report)
    assert "**Highest rate the floor holds for 60 s: 1,500 events/s** (goal >= 3,000: even the floor" in text
    assert "**The pipeline, searched in the same run: 750 events/s = 0.5x the floor** (load_max.json)." in text
    # The floor's processes under their places' names, at 1,500 held and 1,750 failed.
    assert "| aggregator's place: bare consumer | 0.3 | 15% | 0.35 | 50.0 | 60.0 | 55.0 |" in text
    # CPU per event: 0.3 cores / 1,500 events/s = 0.2 ms; 0.72 / 750 = 0.96 ms; 4.8x.
    assert "| aggregator's place: bare consumer | 0.200 | 0.960 | 4.8x |" in text
    assert "| broker (Tansu) | 0.067 | 0.133 | 2.0x |" in text


def test_without_the_pipeline_the_floor_stands_alone() -> None:
    report = floor_report(build_report(CONFIG, SearchPlan(max_rate=1000), HoldLimits(), FLOOR_PROBES[:2]), None)
    assert report["pipeline"] is None
    text = markdown(report)
    assert "**Highest rate the floor holds for 60 s: 1,000 events/s**" in text
    assert "the floor may hold more" in text
    assert "`--compare` searches both" in text
    assert "CPU per event" not in text


def test_a_floor_over_the_goal_says_so() -> None:
    probes = [_probe(4000, True, _cpu(0.5)), _probe(8000, False, _cpu(0.9)), _probe(6000, False, _cpu(0.8))]
    report = floor_report(build_report(CONFIG, SearchPlan(start_rate=4000), HoldLimits(), probes), None)
    assert "4,000 events/s** (goal >= 3,000: the goal is within the floor)." in markdown(report)
