"""The group state read through the answer and vote caches (store.ANSWERS, store.VOTES) on real PostgreSQL: what
a batch decides on is the stored state whether the caches hold it all, none of it or part of it, and an answer
kept by a transaction that rolled back never stands for another event's row."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.aggregator import store
from services.aggregator.decoders import decode_inputs
from services.aggregator.settings import AggregatorSettings
from shared import db
from tests.integration.aggregator.aggregator_flow import clear_split, consumed, intake_for, interaction, key_of, thumbs

PREFIX = "c."


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(AggregatorSettings(database_url=database_url, topic_prefix=PREFIX))
    try:
        yield pool
    finally:
        await pool.close()


def forget_everything() -> None:
    store.ANSWERS = store.RecentlyUsed(store.ANSWER_CACHE_CHARS, lambda a: len(a.content) + 200)
    store.VOTES = store.RecentlyUsed(store.VOTE_CACHE_SIZE)


async def state_of(pool: asyncpg.Pool, keys: list[str]) -> dict[str, tuple]:
    """Each group's answers, votes and marks as load_group_state reads them (in a transaction rolled back)."""
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            groups = await store.lock_groups(conn, keys)
            await store.load_group_state(conn, groups)
        finally:
            await transaction.rollback()
    return {key: (rows.answers, rows.votes, rows.marks) for key, rows in groups.items()}


async def stored_state(pool: asyncpg.Pool, keys: list[str]) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """Each group's answers' contents and votes' event_ids, straight from the tables."""
    answers = await pool.fetch("SELECT prompt_key, interaction_id, content FROM agg_interactions")
    votes = await pool.fetch("SELECT prompt_key, slot, event_id FROM agg_votes")
    return {
        key: (
            {r["interaction_id"]: r["content"] for r in answers if r["prompt_key"] == key},
            {r["slot"]: str(r["event_id"]) for r in votes if r["prompt_key"] == key},
        )
        for key in keys
    }


async def test_the_state_is_the_stored_one_with_the_caches_full_empty_or_in_part(pool: asyncpg.Pool) -> None:
    settings = AggregatorSettings(database_url="postgresql://unused", topic_prefix=PREFIX)
    intake = intake_for(settings, pool)
    batch, keys = [], []
    for g in range(6):
        answers, votes = clear_split(f"cache{g}", "Answer {label}, at length. " * 10)
        batch += answers + votes
        keys.append(key_of("app", f"Question cache{g}?"))
    await intake.take(consumed(PREFIX, batch), decode_inputs)
    warm = await state_of(pool, keys)
    forget_everything()
    cold = await state_of(pool, keys)
    forget_everything()
    await state_of(pool, keys[:3])  # the caches hold three of the six groups
    part = await state_of(pool, keys)
    stored = await stored_state(pool, keys)
    for state in (warm, cold, part):
        assert state == warm
        for key in keys:
            answers, votes, _ = state[key]
            assert {a.interaction_id: a.content for a in answers} == stored[key][0]
            assert {slot: str(v.event_id) for slot, v in votes.items()} == stored[key][1]
    assert (len(store.ANSWERS), len(store.VOTES)) == (6 * 2, 6 * 8)


async def test_an_answer_kept_by_a_rolled_back_batch_never_stands_for_another_events_row(pool: asyncpg.Pool) -> None:
    settings = AggregatorSettings(database_url="postgresql://unused", topic_prefix=PREFIX)
    intake = intake_for(settings, pool)
    key = key_of("app", "Question rollback?")
    first = interaction("app", "Question rollback?", "rb-a", "What the first event said.")
    # The batch storing the first event's answer reads it back (and keeps it), then fails: nothing is stored.
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        batch = decode_inputs(consumed(PREFIX, [first]), intake.rules)
        await store.insert_groups(conn, batch.interactions)
        await store.insert_interactions(conn, batch.interactions)
        groups = await store.lock_groups(conn, [key])
        await store.load_group_state(conn, groups)
        assert [a.content for a in groups[key].answers] == ["What the first event said."]
        await transaction.rollback()
    # Another event with the same interaction_id is the one stored.
    second = interaction("app", "Question rollback?", "rb-a", "What the second event said.")
    await intake.take(consumed(PREFIX, [second, *thumbs("app", "rb-a", 1, 0)]), decode_inputs)
    state = await state_of(pool, [key])
    assert [a.content for a in state[key][0]] == ["What the second event said."]
