"""Deciding again the groups of voters whose flag changed: flagged by a batch, or cleared by an admin. A job.

A batch that flags a voter marks it `redecide_pending` (vote_quality.update_voter); so does an admin's
clear (vote_quality.cleared). This job takes such voters one at a time, each in its own transaction:
the voter's advisory lock (never waits: another instance doing the same voter is skipped), the groups
holding a vote of the voter whose `is_counted` disagrees with the flag (at most `batch` of them), and
then the batches' own `decide_groups` on those groups with no new input: the group row locks, the
voters' rows (this voter's among them), the leaderboard and the stats rows, in the batches' lock order.
A flagged voter's votes leave the evidence, a cleared one's come back, pairs and tasks follow, and
the effective stats gain or lose the votes. Once no such group is left the voter's `redecide_pending`
is cleared (only if the flag is still the one acted on: an admin may have changed it meanwhile).
"""

from __future__ import annotations

import asyncpg
import structlog
from prometheus_client import Gauge

from services.aggregator import stats_store, voter_store
from services.aggregator.batches import BatchOutcome, BatchRules, decide_groups
from services.aggregator.stats import StatsDeltas
from services.aggregator.vote_quality import VoterKey
from shared import db
from shared.events import utcnow
from shared.outbox import OutboxRelay, insert_outbox

log = structlog.get_logger(__name__)

_VOTERS_PER_RUN = 20


async def redecide_voters(pool: asyncpg.Pool, relay: OutboxRelay, rules: BatchRules, batch: int) -> int:
    """One run: decide again up to `batch` groups of each voter waiting for it; the number of groups."""
    done = 0
    for voter in await voter_store.select_redecide_pending(pool, _VOTERS_PER_RUN):
        done += await redecide_voter(pool, voter, rules, batch)
    if done:
        relay.notify()
        log.info("voter_groups_redecided", groups=done)
    return done


async def redecide_voter(pool: asyncpg.Pool, voter: VoterKey, rules: BatchRules, batch: int) -> int:
    """Decide again up to `batch` groups where the voter's votes do not count as its flag says."""
    async with db.translate_errors(), pool.acquire() as conn, conn.transaction():
        if not await voter_store.try_lock_voter(conn, voter):
            return 0
        flagged = await voter_store.select_voter_flag(conn, voter)
        if flagged is None:
            return 0
        keys = await voter_store.select_stale_voter_groups(conn, voter, flagged, batch)
        deltas = StatsDeltas(rules.stats_window_s)
        records = await decide_groups(
            conn, set(), {}, deltas, rules, utcnow(), BatchOutcome(), redecide=frozenset(keys), also_lock=[voter]
        )
        await stats_store.add_stats(conn, deltas)
        await insert_outbox(conn, rules.service, records)
        if len(keys) < batch:
            await voter_store.finish_redecide(conn, voter, flagged)
    return len(keys)


async def refresh_flagged_gauge(pool: asyncpg.Pool, gauge: Gauge) -> None:
    """Set the flagged-voters gauge per app from the table (apps with none left go back to 0)."""
    counts = await voter_store.count_flagged_voters(pool)
    gauge.clear()
    for app_id, voters in counts.items():
        gauge.labels(app_id).set(voters)
