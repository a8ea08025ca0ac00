"""The annotation budget after its cap changed: each domain's open tasks made the top `cap` again, once at start.

Admission (budget_store.admit_tasks) keeps a domain's open tasks the top `cap` by rank as long as the cap
stays the same; after AGGREGATOR_MAX_OPEN_TASKS_PER_DOMAIN was lowered a domain has more open than the
cap, after it was raised waiting tasks would wait for releases. At start, each domain in its own
transaction: its lock (the batches' per-domain advisory lock, so a batch admitting there waits), its
open tasks and its `cap` best waiting ones, budget.rebalance, the new statuses, a tombstone for each
task withdrawn and the stored request of each task promoted (through the outbox). Nothing to do (the
usual case) writes nothing. Every instance may run it at once: the second finds the domain balanced.
"""

from __future__ import annotations

import asyncio

import asyncpg
import structlog

from services.aggregator import budget_store, stats_store
from services.aggregator.batches import BatchRules
from services.aggregator.outputs import SYNTHETIC_MODELS, Emission
from services.aggregator.stats import StatsDeltas, model_versions
from shared import db, topics
from shared.errors import TransientError
from shared.kafka import OutRecord
from shared.outbox import OutboxRelay, insert_outbox

log = structlog.get_logger(__name__)


async def rebalance_domain(conn: asyncpg.Connection, domain: str, rules: BatchRules) -> int:
    """Rebalance one domain in the caller's transaction; the number of tasks withdrawn or promoted."""
    outcome = await budget_store.rebalance_domain(conn, domain, rules.max_open_tasks_per_domain)
    if not outcome.emissions:
        return 0
    deltas = StatsDeltas(rules.stats_window_s)
    for request in outcome.first_published:
        for version in model_versions(request.candidates.values(), SYNTHETIC_MODELS):
            deltas.add(request.app_id, version, request.occurred_at, tasks_queued=1)
    await stats_store.add_stats(conn, deltas)
    await insert_outbox(conn, rules.service, [_record(rules.topic_prefix, e) for e in outcome.emissions])
    return len(outcome.emissions)


def _record(prefix: str, emission: Emission) -> OutRecord:
    return OutRecord(topic=topics.topic(prefix, emission.topic), key=emission.key.encode(), value=emission.value)


async def rebalance_budget(pool: asyncpg.Pool, relay: OutboxRelay, rules: BatchRules) -> int:
    """Every domain in turn, one transaction each; the number of tasks withdrawn or promoted."""
    async with db.translate_errors(), pool.acquire() as conn:
        domains = await budget_store.select_budget_domains(conn)
    moved = 0
    for domain in domains:
        async with db.translate_errors(), pool.acquire() as conn, conn.transaction():
            moved += await rebalance_domain(conn, domain, rules)
    if moved:
        relay.notify()
        log.info("task_budget_rebalanced", domains=len(domains), tasks_moved=moved)
    return moved


async def rebalance_until_done(pool: asyncpg.Pool, relay: OutboxRelay, rules: BatchRules, retry_s: float) -> None:
    """Run `rebalance_budget` once at start, retrying through database outages."""
    while True:
        try:
            await rebalance_budget(pool, relay, rules)
        except TransientError:
            await asyncio.sleep(retry_s)
            continue
        return
