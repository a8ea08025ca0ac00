"""bench/load_search.py: when a probe holds, which rate comes next, and where the search ends."""

from __future__ import annotations

import argparse
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.load_search import (
    HoldLimits,
    Probe,
    ProbeFigures,
    SearchPlan,
    add_search_options,
    failures,
    highest_held,
    next_rate,
    out_of_order,
    plan_from,
)

CLEAN = ProbeFigures(
    rate=1000,
    offered=60_000,
    accepted=60_000,
    http_errors=0,
    rejected=0,
    send_late_s=0.1,
    lag_at_load_end=800,
    drain_s=1.2,
    lost=0,
)


def search(plan: SearchPlan, holds) -> list[Probe]:
    """Run the search against an oracle `holds(rate) -> bool`; the probes in order."""
    probes: list[Probe] = []
    while (rate := next_rate(plan, probes)) is not None:
        assert rate not in {p.rate for p in probes}, "a rate is never probed twice"
        assert len(probes) < 100, "the search ends"
        probes.append(Probe(rate, holds(rate)))
    return probes


def test_a_clean_probe_holds() -> None:
    assert failures(CLEAN, HoldLimits()) == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"accepted": 59_990}, "accepted 59,990 of 60,000 offered events"),
        ({"http_errors": 3}, "3 HTTP errors"),
        ({"rejected": 2}, "2 items rejected"),
        ({"send_late_s": 4.5}, "senders 4.5 s behind the schedule at the end (send backlog)"),
        ({"drain_s": 26.8, "lag_at_load_end": 16_979}, "lag 16,979 at load end took 26.8 s to drain (limit 5 s)"),
        ({"drain_s": None}, "lag 800 at load end never reached zero"),
        ({"lost": 7}, "7 accepted events lost"),
    ],
)
def test_each_broken_condition_is_named(change: dict, reason: str) -> None:
    assert failures(replace(CLEAN, **change), HoldLimits()) == [reason]


def test_the_limits_are_inclusive_and_every_failure_is_listed() -> None:
    at_limits = replace(CLEAN, send_late_s=1.0, drain_s=5.0)
    assert failures(at_limits, HoldLimits(drain_limit_s=5.0, send_late_limit_s=1.0)) == []
    both = replace(CLEAN, http_errors=1, drain_s=5.1)
    assert len(failures(both, HoldLimits())) == 2


def test_the_search_grows_then_bisects() -> None:
    plan = SearchPlan(start_rate=500, growth=2.0, resolution=0.10)
    probes = search(plan, lambda rate: rate <= 700)
    assert [p.rate for p in probes] == [500, 1000, 750, 625, 687]
    assert highest_held(probes) == 687
    assert out_of_order(probes) == []


def test_the_search_goes_down_when_the_start_rate_fails() -> None:
    probes = search(SearchPlan(start_rate=500, min_rate=10), lambda rate: rate <= 100)
    assert [p.rate for p in probes][:3] == [500, 250, 125]
    assert highest_held(probes) is not None and 100 >= highest_held(probes) > 100 / 1.1


def test_nothing_held_down_to_the_lowest_rate() -> None:
    probes = search(SearchPlan(start_rate=40, min_rate=10), lambda rate: False)
    assert [p.rate for p in probes] == [40, 20, 10]
    assert highest_held(probes) is None


def test_the_search_stops_at_the_highest_rate_it_may_probe() -> None:
    probes = search(SearchPlan(start_rate=500, max_rate=1500), lambda rate: True)
    assert [p.rate for p in probes] == [500, 1000, 1500]
    assert highest_held(probes) == 1500


def test_a_failure_below_a_held_rate_is_noise_not_a_bound() -> None:
    probes = [Probe(500, True), Probe(1000, True), Probe(2000, False), Probe(1500, False), Probe(700, False)]
    assert next_rate(SearchPlan(), probes) == 1250
    assert out_of_order(probes) == [700]
    assert highest_held(probes) == 1000


@given(
    threshold=st.integers(min_value=1, max_value=60_000),
    start=st.integers(min_value=10, max_value=5_000),
    growth=st.floats(min_value=1.1, max_value=4.0),
    resolution=st.floats(min_value=0.01, max_value=0.5),
)
def test_against_a_monotone_pipeline_the_answer_is_within_the_resolution(
    threshold: int, start: int, growth: float, resolution: float
) -> None:
    plan = SearchPlan(start_rate=start, growth=growth, resolution=resolution, min_rate=10, max_rate=50_000)
    answer = highest_held(search(plan, lambda rate: rate <= threshold))
    if threshold < plan.min_rate:
        assert answer is None
    elif threshold >= plan.max_rate:
        assert answer == plan.max_rate
    else:
        assert answer is not None and answer <= threshold
        assert threshold < answer * (1 + resolution) or threshold == answer


def test_the_options_make_the_plan_and_refuse_a_search_that_cannot_end() -> None:
    parser = argparse.ArgumentParser()
    add_search_options(parser)
    plan, limits = plan_from(parser.parse_args(["--find-max", "--start-rate", "200", "--drain-limit", "3"]))
    assert (plan.start_rate, plan.growth, limits.drain_limit_s) == (200, 2.0, 3.0)
    with pytest.raises(SystemExit):
        plan_from(parser.parse_args(["--growth", "1"]))
    with pytest.raises(SystemExit):
        plan_from(parser.parse_args(["--start-rate", "5", "--min-rate", "10"]))
