"""bench/aggregator_hot_group.py at tiny sizes on a fresh database: the group it grows is stored, and each size
is timed against the small group's baseline."""

from __future__ import annotations

import asyncpg
import pytest

from bench.aggregator_hot_group import BASELINE_ANSWERS, measure

pytestmark = pytest.mark.timeout(120)


async def test_each_size_is_grown_stored_and_timed(database_url: str) -> None:
    rows = await measure(database_url, [15, 40], rounds=2)
    assert [(r["answers"], r["stored_votes"]) for r in rows] == [(15, 30), (40, 80)]
    assert all(r["wall_ms"] > 0 and r["baseline"]["wall_ms"] > 0 and r["ratio"] > 0 for r in rows)
    conn = await asyncpg.connect(database_url)
    try:
        answers = await conn.fetch("SELECT prompt_key, count(*) AS n FROM agg_interactions GROUP BY prompt_key")
        votes = await conn.fetchval("SELECT count(*) FROM agg_votes")
    finally:
        await conn.close()
    assert sorted(r["n"] for r in answers) == [BASELINE_ANSWERS, 40]
    # Two thumbs per answer, and each timed batch's thumb (a warm-up and two rounds, per size, on each group).
    assert votes == 2 * (BASELINE_ANSWERS + 40) + 2 * 2 * 3
