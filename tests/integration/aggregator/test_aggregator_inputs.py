"""One consumer reads `interactions` and `votes`: a group's answers and votes consumed together are applied together.

With a consumer per topic, votes whose answers were in another batch were parked by one transaction and
taken again by the next; a batch of both topics stores the answers first, so none of its votes waits.
"""

from __future__ import annotations

import json

from services.aggregator.decoders import decode_inputs
from services.aggregator.settings import AggregatorSettings
from shared import db
from tests.integration.aggregator.aggregator_flow import clear_split, consumed, intake_for
from tests.support.kafka import Record


async def test_votes_consumed_with_their_answers_are_applied_at_once_whatever_their_order(database_url: str) -> None:
    settings = AggregatorSettings(database_url=database_url, topic_prefix="p.")
    answers, votes = clear_split("q1")
    pool = await db.create_pool(settings)
    try:
        intake = intake_for(settings, pool)
        # The votes come first in the batch (as they may from another topic's partitions): still none is parked.
        await intake.take(consumed("p.", [*votes, *answers]), decode_inputs)
        parked = await pool.fetchval("SELECT count(*) FROM agg_parked_votes")
        applied = await pool.fetchval("SELECT count(*) FROM agg_votes")
        pairs = await pool.fetch("SELECT value FROM outbox WHERE topic = 'p.preference-pairs'")
        taken = {
            s.labels["kind"]: s.value
            for m in intake.metrics.taken.collect()
            for s in m.samples
            if s.name.endswith("_total")
        }
    finally:
        await pool.close()
    assert (parked, applied) == (0, 8)
    assert [json.loads(p["value"])["chosen"]["interaction_id"] for p in pairs] == ["q1-a"]
    assert (taken["votes_parked"], taken["votes_applied"], taken["interactions"]) == (0, 8, 2)


async def test_votes_in_a_batch_before_their_answers_wait_parked_and_the_answers_batch_takes_them(
    database_url: str,
) -> None:
    """The same group split over two batches, votes first: parked, then applied with the answers (as before)."""
    settings = AggregatorSettings(database_url=database_url, topic_prefix="p.")
    answers, votes = clear_split("q2")
    pool = await db.create_pool(settings)
    try:
        intake = intake_for(settings, pool)
        await intake.take(consumed("p.", votes), decode_inputs)
        parked_between = await pool.fetchval("SELECT count(*) FROM agg_parked_votes")
        await intake.take(consumed("p.", answers), decode_inputs)
        parked_after = await pool.fetchval("SELECT count(*) FROM agg_parked_votes")
        pairs = await pool.fetchval("SELECT count(*) FROM outbox WHERE topic = 'p.preference-pairs'")
    finally:
        await pool.close()
    assert (parked_between, parked_after, pairs) == (8, 0, 1)


async def test_a_bad_record_of_either_topic_is_dead_lettered_with_its_own_origin(database_url: str) -> None:
    settings = AggregatorSettings(database_url=database_url, topic_prefix="p.")
    answers, votes = clear_split("q3")
    batch = [answers[0], Record(topic="votes", value=b"{not json"), answers[1], *votes]
    batch.insert(1, Record(topic="interactions", value=b'{"event_id": 1}'))
    pool = await db.create_pool(settings)
    try:
        await intake_for(settings, pool).take(consumed("p.", batch), decode_inputs)
        letters = await pool.fetch("SELECT value FROM outbox WHERE topic = 'p.dead-letter' ORDER BY id")
        pairs = await pool.fetchval("SELECT count(*) FROM outbox WHERE topic = 'p.preference-pairs'")
    finally:
        await pool.close()
    origins = sorted((json.loads(r["value"])["source_topic"], json.loads(r["value"])["source_offset"]) for r in letters)
    # consumed() counts offsets per topic: the bad interaction is the second of its topic, the bad vote the first.
    assert origins == [("p.interactions", 1), ("p.votes", 0)]
    assert pairs == 1, "the good records of the batch went on"
