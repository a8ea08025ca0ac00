"""Groups kept between batches (group_cache.py) leave exactly the state a batch reading every group whole leaves.

One workload (answers of three model versions arriving over several batches, thumbs, ratings and changed
minds of the same voters, small batches so a group is touched by many) is applied batch by batch, as the
service's two consumers apply it, to fresh databases: without a cache (the reference), by two instances
each with its own cache taking turns (a rebalance at every batch), by one instance that gets every batch
twice (redelivery), and by one instance whose every batch is first rolled back. The stored state and the
outbox must equal the reference's. A cache that trusts what it kept, whoever locked the group since,
must not: the same two-instance run with it differs (the test can fail).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka import ConsumerRecord

from services.aggregator.batches import BatchOutcome, apply_batch
from services.aggregator.decoders import decode_interactions, decode_votes
from services.aggregator.group_cache import GroupCache
from services.aggregator.rules import batch_rules
from services.aggregator.settings import AggregatorSettings
from services.aggregator.store import GroupRows
from shared import db, topics
from shared.events import Interaction, Message, Response
from shared.prompt_key import prompt_key
from tests.support.isolation import fresh_database

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
VERSIONS = ("v1", "v2", "v3")
Step = tuple[str, tuple[ConsumerRecord, ...], datetime]


class TrustingCache(GroupCache):
    """Uses what it kept whoever locked the group since (as if it never looked at the generation): wrong."""

    def fill(self, groups: Mapping[str, GroupRows]) -> set[str]:
        for key, rows in groups.items():
            if (kept := self._kept.get(key)) is not None:
                self._kept[key] = replace(kept, generation=rows.generation - 1)
        return super().fill(groups)


def _record(topic: str, offset: int, body: dict[str, Any] | Interaction) -> ConsumerRecord:
    value = body.model_dump_json().encode() if isinstance(body, Interaction) else json.dumps(body).encode()
    return ConsumerRecord(topic, 0, offset, 0, 0, b"k", value, None, 1, len(value), ())


def _workload(seed: int = 7, groups: int = 6, batch: int = 5) -> list[Step]:
    """Interaction and vote batches in turns; each group's answers and votes spread over several batches."""
    rng = random.Random(seed)
    answers: list[Interaction] = []
    votes: list[dict[str, Any]] = []
    for g in range(groups):
        messages = [Message(role="user", content=f"Which plan fits team {g}?")]
        for a in range(2 + g % 3):
            answers.append(
                Interaction(
                    event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                    occurred_at=T0 + timedelta(seconds=len(answers)),
                    received_at=T0 + timedelta(seconds=len(answers)),
                    app_id="app",
                    interaction_id=f"g{g}-a{a}",
                    conversation_id=f"c{g}",
                    user_ref="asker",
                    messages=messages,
                    response=Response(content=f"Answer {a} to {g}", model="chat", model_version=VERSIONS[a % 3]),
                    prompt_key=prompt_key("app", messages),
                )
            )
    for n in range(groups * 14):
        g = n % groups
        target = f"g{g}-a{rng.randrange(2 + g % 3)}"
        kind = rng.choice(("thumb", "thumb", "rating"))
        value = rng.choice((1, 1, -1)) if kind == "thumb" else rng.randint(1, 5)
        at = T0 + timedelta(seconds=60 + n)  # a voter's later vote replaces the earlier one of its slot
        votes.append(
            {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "app_id": "app",
                "occurred_at": at.isoformat(),
                "received_at": at.isoformat(),
                "interaction_id": target,
                "user_ref": f"voter-{rng.randrange(8)}",
                "source": "end_user",
                "kind": kind,
                "value": value,
            }
        )
    steps: list[Step] = []
    for start in range(0, max(len(answers), len(votes)), batch):
        now = T0 + timedelta(minutes=2, seconds=len(steps))
        if chunk := answers[start : start + batch]:
            steps.append((topics.INTERACTIONS, tuple(_record("i", start + i, a) for i, a in enumerate(chunk)), now))
        if chunk := votes[start : start + batch]:
            steps.append((topics.VOTES, tuple(_record("v", start + i, v) for i, v in enumerate(chunk)), now))
    return steps


async def _apply(conn: asyncpg.Connection, step: Step, settings: AggregatorSettings, cache: GroupCache | None):
    topic, records, now = step
    rules = batch_rules(settings, "aggregator")
    decode = decode_interactions if topic == topics.INTERACTIONS else decode_votes
    async with conn.transaction():
        outcome: BatchOutcome = await apply_batch(conn, decode(records, rules), rules, now, cache)
    if cache is not None:
        cache.keep(outcome.kept_groups)


class _RolledBack(Exception):
    pass


async def _apply_rolled_back(conn: asyncpg.Connection, step: Step, settings: AggregatorSettings, cache: GroupCache):
    """The batch applied and then rolled back (a failure before the commit): nothing of it may be kept."""
    topic, records, now = step
    rules = batch_rules(settings, "aggregator")
    decode = decode_interactions if topic == topics.INTERACTIONS else decode_votes
    with pytest.raises(_RolledBack):
        async with conn.transaction():
            await apply_batch(conn, decode(records, rules), rules, now, cache)
            raise _RolledBack


async def _state(conn: asyncpg.Connection) -> dict[str, list[Any]]:
    """Everything the batches write, without the times PostgreSQL stamps itself."""
    queries = {
        "votes": "SELECT prompt_key, slot, event_id, vote::text, is_counted, is_tested FROM agg_votes ORDER BY 1, 2",
        "pairs": "SELECT pair_id, state_hash, (pair - 'updated_at')::text FROM agg_pairs ORDER BY 1",
        "battles": "SELECT * FROM agg_pair_battles ORDER BY pair_id",
        "counted": "SELECT * FROM agg_counted_groups ORDER BY prompt_key",
        "battle_counts": "SELECT * FROM agg_battle_counts ORDER BY 1, 2, 3, 4, 5, 6",
        "approval_counts": "SELECT * FROM agg_approval_counts ORDER BY 1, 2, 3, 4",
        "stats": "SELECT app_id, model_version, interactions, thumbs_up, thumbs_down, ratings, rating_sum,"
        " effective_thumbs_up, effective_thumbs_down, effective_ratings, effective_rating_sum, pairs_emitted"
        " FROM agg_stats ORDER BY app_id, model_version, window_start",
        "voters": "SELECT app_id, user_ref, votes_seen, votes, disagreements, flagged FROM agg_voters ORDER BY 1, 2",
        "outbox": "SELECT topic, key, value FROM outbox ORDER BY id",
    }
    return {name: [tuple(r.values()) for r in await conn.fetch(sql)] for name, sql in queries.items()}


Run = Callable[[asyncpg.Connection, Sequence[Step], AggregatorSettings], Any]


async def _run_in_fresh_database(pg_server_url: str, template_db: str, run: Run) -> dict[str, list[Any]]:
    async with fresh_database(pg_server_url, template_db) as url:
        settings = AggregatorSettings(database_url=url)
        pool = await db.create_pool(settings)
        try:
            async with pool.acquire() as conn:
                await run(conn, _workload(), settings)
                return await _state(conn)
        finally:
            await pool.close()


async def _reference(conn, steps, settings):
    for step in steps:
        await _apply(conn, step, settings, None)


def _two_instances(cache_type: type[GroupCache]) -> Run:
    async def run(conn, steps, settings):
        instances = (cache_type(64), cache_type(64))
        for n, step in enumerate(steps):
            await _apply(conn, step, settings, instances[n % 2])  # every batch on the other instance

    return run


async def _redelivered(conn, steps, settings):
    cache = GroupCache(64)
    for step in steps:
        await _apply(conn, step, settings, cache)
        await _apply(conn, step, settings, cache)


async def _rolled_back_first(conn, steps, settings):
    cache = GroupCache(64)
    for step in steps:
        await _apply_rolled_back(conn, step, settings, cache)
        await _apply(conn, step, settings, cache)


async def test_kept_groups_leave_the_state_of_whole_reads(pg_server_url: str, template_db: str) -> None:
    reference = await _run_in_fresh_database(pg_server_url, template_db, _reference)
    assert len(reference["pairs"]) >= 4 and reference["battle_counts"] and reference["outbox"]

    for run in (_two_instances(GroupCache), _redelivered, _rolled_back_first):
        state = await _run_in_fresh_database(pg_server_url, template_db, run)
        for table, rows in reference.items():
            assert state[table] == rows, f"{table} differs from the reference"

    trusting = await _run_in_fresh_database(pg_server_url, template_db, _two_instances(TrustingCache))
    assert trusting != reference, "a cache blind to other instances' batches went unnoticed"


async def test_a_group_locked_elsewhere_is_read_whole(database_url: str) -> None:
    settings = AggregatorSettings(database_url=database_url)
    steps = _workload(groups=1, batch=4)  # the group's answers, then four batches of votes
    assert [topic for topic, _, _ in steps] == [topics.INTERACTIONS, *[topics.VOTES] * 4]
    pool = await db.create_pool(settings)
    try:
        async with pool.acquire() as conn:
            mine, other = GroupCache(8), GroupCache(8)
            await _apply(conn, steps[0], settings, mine)
            await _apply(conn, steps[1], settings, mine)
            assert (mine.hits, mine.misses) == (1, 0), "the state its own last batch left is used"
            await _apply(conn, steps[2], settings, other)  # another instance locks the group
            await _apply(conn, steps[3], settings, mine)
            assert (mine.hits, mine.misses) == (1, 1), "kept state used although another instance locked the group"
            await _apply(conn, steps[4], settings, mine)
            assert (mine.hits, mine.misses) == (2, 1)
    finally:
        await pool.close()
