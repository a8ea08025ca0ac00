"""bench/gc_pauses.py at a tiny size: each mode applies the same workload in its own interpreter and
database, to the same pairs and requests; only the survivors mode freezes what its collections leave."""

from __future__ import annotations

import asyncio

import pytest

from bench.aggregator_batches import load_mix
from bench.gc_pauses import MODES, create_database, report, run_mode

pytestmark = pytest.mark.timeout(180)


async def test_both_modes_apply_the_same_workload_and_only_one_freezes_survivors(database_url: str) -> None:
    urls = [await create_database(database_url, f"gc_test_{mode}") for mode in MODES]
    startup, survivors = [
        await asyncio.to_thread(run_mode, url, 3_000, 250, mode) for url, mode in zip(urls, MODES, strict=True)
    ]
    assert startup["events"] == survivors["events"] == len(load_mix(3_000))
    assert startup["pairs"] == survivors["pairs"] > 0, "the collector's policy changes no decision"
    assert startup["annotation_requests"] == survivors["annotation_requests"]
    assert sum(startup["collections"].values()) > 0 and sum(survivors["collections"].values()) > 0
    assert survivors["frozen_objects_at_end"] > startup["frozen_objects_at_end"], "survivors of collections frozen"
    text = report([startup, survivors], {"events": 3_000, "batch": 250}, "Run here.")
    assert sum(line.startswith("| startup") or line.startswith("| survivors") for line in text.splitlines()) == 2
