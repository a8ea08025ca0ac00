"""bench/voter_budget.py at tiny sizes on a fresh database: it times the floor and the statement, and the
statement it times is the one feedback runs (its decisions are stored, one per vote)."""

from __future__ import annotations

import asyncpg
import pytest

from bench.voter_budget import VOTES_PER_VOTER, measure, report

pytestmark = pytest.mark.timeout(120)


async def test_every_size_and_shape_is_timed_and_decided(database_url: str) -> None:
    rows = await measure(database_url, [4, 20], rounds=2)
    assert [(r["shape"], r["votes"]) for r in rows] == [(shape, n) for shape in VOTES_PER_VOTER for n in (4, 20)]
    assert all(r["floor_ms"] > 0 and r["statement_ms"] > 0 and r["ratio"] > 0 for r in rows)
    conn = await asyncpg.connect(database_url)
    try:
        decided = await conn.fetchval("SELECT count(*) FROM voter_budget_votes WHERE ordinal > 1")
        counted = await conn.fetchval("SELECT sum(votes) FROM voter_budget_hours")
    finally:
        await conn.close()
    # Three calls per size and shape (a warm-up and two rounds) of the floor and of the statement.
    assert counted == 2 * 3 * 2 * (4 + 20)
    assert decided > 0, "ten votes per voter: the statement numbers each voter's votes"
    text = report(
        {"rounds": 2, "rows": rows, "run": {"date": "d", "git_commit": "c", "cpus": 2, "load_average_1m_after": 0}}
    )
    assert sum(line.startswith("|") for line in text.splitlines()) == 2 + len(rows), "header, rule, one row each"
