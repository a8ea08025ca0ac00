"""`python -m bench.load --find-max` at a tiny size: two probes, each on a fresh stack, measured and reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.load import LoadConfig
from bench.load_max import build_report, find_max, write_results
from bench.load_search import HoldLimits, Probe, SearchPlan, next_rate

pytestmark = pytest.mark.timeout(300)
PARTS = {"broker (Tansu)", "PostgreSQL", "ingest", "feedback", "aggregator", "load generator"}


async def test_the_search_probes_fresh_stacks_and_reports_each_process(tmp_path: Path) -> None:
    """With two aggregator instances sharing the partitions: the lag reaches zero only if both are counted."""
    config = LoadConfig(
        seconds=3.0, rate=0, vote_share=0.5, vote_delay_s=1.0, connections=2, drain_timeout_s=90.0, seed=5,
        aggregators=2,
    )  # fmt: skip
    # Rates this low hold on any box: a generous drain limit keeps a busy test machine from failing them.
    plan, limits = SearchPlan(start_rate=20, growth=2.0, min_rate=10, max_rate=40), HoldLimits(drain_limit_s=60.0)
    records = await find_max(config, plan, limits, tmp_path / "probes")

    assert [r["rate"] for r in records] == [20, 40]
    for n, record in enumerate(records):
        assert next_rate(plan, [Probe(r["rate"], r["held"]) for r in records[:n]]) == record["rate"]
        figures = record["figures"]
        assert record["held"], record["failures"]
        assert figures["accepted"] == figures["offered"] == record["rate"] * 3
        assert figures["http_errors"] == 0 and figures["lost"] == 0
        assert figures["drain_s"] is not None and figures["drain_s"] <= limits.drain_limit_s
        # Every part of the stack ran and was measured: some CPU, some memory.
        assert set(record["cpu_share"]) == PARTS | {"aggregator-2"}
        assert all(share is not None and share > 0 for share in record["cpu_share"].values()), record["cpu_share"]
        assert all(record["rss_mb"][part]["peak_mb"] > 1 for part in PARTS | {"aggregator-2"}), record["rss_mb"]
    assert not (tmp_path / "probes" / "probe-1").exists(), "a probe's run directory is removed after it"

    report = build_report(config, plan, limits, records)
    write_results(report, tmp_path / "results")
    stem = tmp_path / "results" / "load_max_2_aggregators"
    assert json.loads(stem.with_suffix(".json").read_text())["highest_held_events_per_s"] == 40
    text = stem.with_suffix(".md").read_text()
    assert "**Highest rate held for 3 s with 2 aggregator instances: 40 events/s**" in text
    assert "the pipeline may hold more" in text
