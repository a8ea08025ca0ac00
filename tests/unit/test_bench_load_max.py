"""bench/load_max.py's pure parts: events offered per probe, CPU shares, RSS summaries and the report's text."""

from __future__ import annotations

import pytest

from bench.load import TICK_S, LoadConfig
from bench.load_max import build_report, offered_events
from bench.load_max_report import markdown, search_caveats
from bench.load_processes import cpu_shares, rss_summary
from bench.load_search import HoldLimits, SearchPlan

CONFIG = LoadConfig(
    seconds=60.0, rate=1000, vote_share=0.5, vote_delay_s=2.0, connections=4, drain_timeout_s=600.0, seed=11
)
PARTS = ("broker (Tansu)", "PostgreSQL", "ingest", "feedback", "aggregator", "load generator")


@pytest.mark.parametrize(("rate", "seconds"), [(1000, 60.0), (333, 60.0), (687, 5.0), (7, 3.0), (2999, 0.95)])
def test_offered_events_are_what_the_open_loop_queues(rate: int, seconds: float) -> None:
    per_tick = rate * TICK_S
    queued = sum(int(per_tick * (n + 1)) - int(per_tick * n) for n in range(int(seconds / TICK_S)))
    config = LoadConfig(seconds, rate, 0.5, 2.0, 4, 60.0, 11)
    assert offered_events(config) == queued
    assert abs(queued - rate * int(seconds / TICK_S) * TICK_S) < 1


def test_cpu_share_is_cpu_seconds_per_wall_second_and_unknown_parts_stay_unknown() -> None:
    start = {"ingest": 10.0, "PostgreSQL": 3.0, "broker (Tansu)": None}
    end = {"ingest": 40.0, "PostgreSQL": 3.6, "broker (Tansu)": 9.0}
    assert cpu_shares(start, end, wall_s=60.0) == {"ingest": 0.5, "PostgreSQL": 0.01, "broker (Tansu)": None}


def test_rss_summary_is_start_peak_end_per_part() -> None:
    samples = [{"ingest": 70.0, "aggregator": 130.0}, {"ingest": 75.5, "aggregator": None}, {"ingest": 74.0}]
    assert rss_summary(samples) == {
        "aggregator": {"start_mb": 130.0, "peak_mb": 130.0, "end_mb": None},
        "ingest": {"start_mb": 70.0, "peak_mb": 75.5, "end_mb": 74.0},
    }


def _probe(rate: int, held: bool, failures: list[str], cpu: float) -> dict:
    figures = {
        "rate": rate,
        "offered": rate * 60,
        "accepted": rate * 60,
        "http_errors": 0,
        "rejected": 0,
        "send_late_s": 0.1,
        "lag_at_load_end": 900 if held else 40_000,
        "drain_s": 1.5 if held else 80.0,
        "lost": 0,
    }
    return {
        "rate": rate,
        "held": held,
        "failures": failures,
        "figures": figures,
        "cpu_share": dict.fromkeys(PARTS, cpu),
        "rss_mb": {name: {"start_mb": 70.0, "peak_mb": 90.0, "end_mb": 85.0} for name in PARTS},
        "result": {"accepted_events_per_s_steady": float(rate), "processed_events_per_s_steady": 640.0},
    }


def test_the_report_names_the_answer_every_probe_and_each_process_at_the_held_rate() -> None:
    probes = [
        _probe(500, True, [], 0.2),
        _probe(1000, False, ["lag 40,000 at load end took 80.0 s to drain (limit 5 s)"], 0.3),
        _probe(750, True, [], 0.25),
    ]
    report = build_report(CONFIG, SearchPlan(), HoldLimits(), probes)
    assert report["highest_held_events_per_s"] == 750
    assert "rate" not in report["settings"]
    text = markdown(report)
    assert "**Highest rate held for 60 s: 750 events/s** (goal >= 3,000 events/s: not met)." in text
    assert "| 2 | 1,000 | no | 1,000.0 | 640.0 | 40,000 | 80.0 s | 0 | 0 | 0.1 s | lag 40,000 at load end" in text
    assert "Each process at the held rate, 750 events/s" in text
    # CPU at the held rate, then at the first failed rate above it.
    assert "| aggregator | 0.25 | 12% | 0.3 | 70.0 | 90.0 | 85.0 |" in text
    assert "| all of them | 1.50 | 75% |" in text


def test_the_report_says_when_nothing_held() -> None:
    probes = [_probe(40, False, ["3 HTTP errors"], 0.1), _probe(20, False, ["3 HTTP errors"], 0.1)]
    text = markdown(build_report(CONFIG, SearchPlan(start_rate=40, min_rate=20), HoldLimits(), probes))
    assert "No rate held for 60 s (lowest probed: 20 events/s)." in text
    assert "Each process at the held rate" not in text


def test_the_search_caveats_name_the_cap_and_the_lower_rates_that_failed() -> None:
    bounded = {"is_capped": True, "failed_below_answer": [500, 1250]}
    text = search_caveats(bounded, "the floor")
    assert "It is the search's --max-rate: the floor may hold more." in text
    assert "Lower rates failed too (500, 1,250 events/s)" in text
    assert search_caveats({"is_capped": False, "failed_below_answer": []}, "the pipeline") == ""
