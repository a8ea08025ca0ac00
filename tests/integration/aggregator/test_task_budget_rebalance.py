"""The annotation budget after its cap changed, on real PostgreSQL: each domain made the top `cap` again.

A domain's budget is written as a batch would have left it at cap 2 (t4 and t3 open and published, t2
withdrawn earlier, t1 never published), then rebalanced at other caps: a raised cap promotes the best
waiting tasks (their stored request is published again, a first publication counts as queued), a lowered
one withdraws the lowest open (tombstones), the same cap again writes nothing, and another domain is
left alone.
"""

from __future__ import annotations

import json

import asyncpg

from services.aggregator import budget_rebalance
from services.aggregator.outputs import RETRACTED
from services.aggregator.rules import batch_rules
from services.aggregator.settings import AggregatorSettings
from shared import db, topics
from tests.support.builders import annotation_request_body

PRIORITIES = {"t1": 1.0, "t2": 2.0, "t3": 3.0, "t4": 4.0, "l1": 1.0}


async def _seed(conn: asyncpg.Connection) -> None:
    opened = {"t3", "t4", "l1"}
    for task_id, priority in PRIORITIES.items():
        domain = "legal" if task_id.startswith("l") else "medical"
        body = annotation_request_body(task_id, domain, priority=priority)
        await conn.execute(
            "INSERT INTO agg_task_budget (task_id, prompt_key, kind, domain, priority, status, state_hash, request)"
            " VALUES ($1, $2, 'compare', $3, $4, $5, $6, $7)",
            task_id, body["prompt_key"], domain, priority, "open" if task_id in opened else "waiting",
            f"hash-{task_id}", json.dumps(body),
        )  # fmt: skip
        if task_id != "t1":
            published = f"hash-{task_id}" if task_id in opened else RETRACTED
            await conn.execute(
                "INSERT INTO agg_annotation_requests (task_id, prompt_key, kind, state_hash)"
                " VALUES ($1, $2, 'compare', $3)",
                task_id, body["prompt_key"], published,
            )  # fmt: skip


async def _rebalance(conn: asyncpg.Connection, database_url: str, cap: int) -> list[tuple[str, dict | None]]:
    """Rebalance every domain at `cap`; the annotation-requests messages it queued (key, value)."""
    rules = batch_rules(AggregatorSettings(database_url=database_url, max_open_tasks_per_domain=cap), "aggregator")
    await conn.execute("DELETE FROM outbox")
    for domain in ("legal", "medical"):
        async with conn.transaction():
            await budget_rebalance.rebalance_domain(conn, domain, rules)
    rows = await conn.fetch("SELECT topic, key, value FROM outbox ORDER BY id")
    assert all(r["topic"] == topics.topic(rules.topic_prefix, topics.ANNOTATION_REQUESTS) for r in rows)
    return [(r["key"].decode(), json.loads(r["value"]) if r["value"] is not None else None) for r in rows]


async def _open(conn: asyncpg.Connection) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for r in await conn.fetch("SELECT task_id, domain FROM agg_task_budget WHERE status = 'open'"):
        found.setdefault(r["domain"], set()).add(r["task_id"])
    return found


async def test_a_changed_cap_promotes_or_withdraws_until_the_open_tasks_are_the_top_cap(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    await db._init_connection(conn)  # the services' codecs (jsonb)
    try:
        await _seed(conn)
        assert await _rebalance(conn, database_url, 2) == [], "balanced already: nothing to write"

        messages = await _rebalance(conn, database_url, 3)
        assert [(key, value["task_id"] if value else None) for key, value in messages] == [("t2", "t2")]
        assert await _open(conn) == {"medical": {"t2", "t3", "t4"}, "legal": {"l1"}}
        published = await conn.fetchval("SELECT state_hash FROM agg_annotation_requests WHERE task_id = 't2'")
        assert published == "hash-t2"

        messages = await _rebalance(conn, database_url, 1)
        assert messages == [("t2", None), ("t3", None)], "the two lowest open ones withdrawn"
        assert await _open(conn) == {"medical": {"t4"}, "legal": {"l1"}}
        states = await conn.fetch("SELECT task_id, state_hash FROM agg_annotation_requests ORDER BY task_id")
        assert {r["task_id"]: r["state_hash"] for r in states} == {
            "l1": "hash-l1", "t2": RETRACTED, "t3": RETRACTED, "t4": "hash-t4",
        }  # fmt: skip

        messages = await _rebalance(conn, database_url, 10)
        assert sorted(key for key, value in messages if value is not None) == ["t1", "t2", "t3"]
        assert await _open(conn) == {"medical": {"t1", "t2", "t3", "t4"}, "legal": {"l1"}}
        queued = await conn.fetchval("SELECT coalesce(sum(tasks_queued), 0) FROM agg_stats")
        assert queued == 2, "t1's first publication counts as queued (two model versions), the others not again"
    finally:
        await conn.close()
