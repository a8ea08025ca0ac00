"""`bench.load --find-max --floor` at a tiny size: the floor stack probed, its intake and loss read for real."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import asyncpg
import pytest

from bench.floor_consumer import CREATE_TABLE
from bench.load import LoadConfig
from bench.load_floor import FLOOR, FloorSampler, FloorStack, missing_events
from bench.load_floor_report import NOTES_MARKER, floor_report, write_floor_results
from bench.load_max import build_report, find_max
from bench.load_sampling import Counters
from bench.load_search import HoldLimits, SearchPlan

pytestmark = pytest.mark.timeout(300)
PARTS = {"broker (Tansu)", "PostgreSQL", "ingest", "feedback", "aggregator", "load generator"}


async def test_the_floor_search_probes_fresh_floor_stacks_and_reports_each_process(tmp_path: Path) -> None:
    config = LoadConfig(
        seconds=3.0, rate=0, vote_share=0.5, vote_delay_s=1.0, connections=2, drain_timeout_s=90.0, seed=5
    )
    # Rates this low hold on any box: a generous drain limit keeps a busy test machine from failing them.
    # One probe (it holds at the search's --max-rate, so the search stops): a floor stack takes ~12 s to start.
    plan, limits = SearchPlan(start_rate=30, growth=2.0, min_rate=10, max_rate=30), HoldLimits(drain_limit_s=60.0)
    records = await find_max(config, plan, limits, tmp_path / "probes", target=FLOOR)

    assert [r["rate"] for r in records] == [30]
    for record in records:
        figures, result = record["figures"], record["result"]
        assert record["held"], record["failures"]
        assert figures["accepted"] == figures["offered"] == record["rate"] * 3
        assert result["accepted"]["votes"] > 0, "votes reached the votes endpoint"
        assert figures["http_errors"] == 0 and figures["lost"] == 0
        # Taken in is the consumer's table: one row per accepted event, no more, no fewer.
        assert result["aggregator_inputs_total"] == {"events": figures["accepted"]}
        assert set(record["cpu_share"]) == PARTS
        # Every part was measured; all but PostgreSQL (a few COPYs of a few rows: under a clock tick) did work.
        assert all(share is not None for share in record["cpu_share"].values()), record["cpu_share"]
        busy = {part: share for part, share in record["cpu_share"].items() if part != "PostgreSQL"}
        assert all(share > 0 for share in busy.values()), record["cpu_share"]
        assert all(record["rss_mb"][part]["peak_mb"] > 1 for part in PARTS), record["rss_mb"]
    assert not (tmp_path / "probes" / "probe-1").exists(), "a probe's run directory is removed after it"

    results = tmp_path / "results"
    (results / "load_floor.md").parent.mkdir()
    (results / "load_floor.md").write_text(f"old table\n{NOTES_MARKER}\nwhat the quiet box showed\n")
    write_floor_results(floor_report(build_report(config, plan, limits, records), None), results)
    report = json.loads((results / "load_floor.json").read_text())
    assert report["benchmark"] == "load_floor" and report["highest_held_events_per_s"] == 30
    assert report["pipeline"] is None
    text = (results / "load_floor.md").read_text()
    assert "**Highest rate the floor holds for 3 s: 30 events/s**" in text
    assert "the floor may hold more" in text and "old table" not in text
    assert text.endswith(f"{NOTES_MARKER}\nwhat the quiet box showed\n")


async def test_loss_and_intake_are_read_from_the_floor_table(database_url: str) -> None:
    interactions = [str(uuid.uuid4()) for _ in range(10)]
    votes = [str(uuid.uuid4()) for _ in range(6)]
    written = interactions[3:] + votes[2:]  # three interactions and two votes never written
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(CREATE_TABLE)
        rows = [(uuid.UUID(event_id), "t", b"{}") for event_id in written]
        await connection.copy_records_to_table("floor_events", records=rows, columns=("event_id", "topic", "value"))
    finally:
        await connection.close()
    # An accepted id counted twice by the senders is still one event.
    counters = Counters(accepted_interactions=[*interactions, interactions[0]], accepted_votes=votes)

    assert await missing_events(database_url, counters) == {"interactions": 3, "votes": 2}
    sampler = FloorSampler(FloorStack(None, None, database_url), counters)
    try:
        sample = await sampler.sample()
    finally:
        await sampler.close()
    assert (sample["processed"], sample["lag"]) == (11, 17 - 11)  # 7 + 4 rows; 11 + 6 accepted
