"""bench/leaderboard_latency.py at a tiny size against the session's broker and a fresh database: it measures."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.leaderboard_latency import LatencyConfig, measure_latency
from tests.support.isolation import new_topic_prefix

pytestmark = pytest.mark.timeout(180)


async def test_pair_to_topic_latency_is_measured_per_phase(kafka_bootstrap: str, database_url: str, tmp_path: Path):
    config = LatencyConfig(
        versions=3,
        seed_battles=30,
        sparse_changes=3,
        sparse_rate=2.0,
        constant_changes=8,
        constant_rate=20.0,
        debounce_s=0.2,
        max_delay_s=1.0,
        drain_timeout_s=60.0,
    )
    log = tmp_path / "aggregator.log"
    result = await measure_latency(kafka_bootstrap, database_url, new_topic_prefix(), config, log)
    for phase, changes in (("sparse", 3), ("constant", 8)):
        figures = result[phase]
        assert figures["changes"] == changes
        # Nothing arrives before the debounce has passed, and everything within the drain timeout.
        assert config.debounce_s * 1000 <= figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"] < 60_000
    assert (result["seed_battles"], result["debounce_s"], result["max_delay_s"]) == (30, 0.2, 1.0)
