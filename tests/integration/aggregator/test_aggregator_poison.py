"""A batch the aggregator cannot apply is narrowed to its poison: the rest is applied, the poison dead-lettered."""

from __future__ import annotations

import json

from aiokafka import ConsumerRecord

from services.aggregator.batches import BatchRules
from services.aggregator.decoders import decode_inputs
from services.aggregator.settings import AggregatorSettings
from shared import db
from tests.integration.aggregator.aggregator_flow import consumed, intake_for, interaction


async def test_a_batch_that_cannot_be_applied_is_narrowed_to_its_poison(database_url: str) -> None:
    settings = AggregatorSettings(database_url=database_url, topic_prefix="p.")
    good = [interaction("app", f"Question {i}?", f"int-{i}", f"Answer {i}.") for i in range(3)]
    poison = interaction("app", "A question our code chokes on", "int-poison", "Boom.")
    attempts: list[int] = []

    def decode(records: tuple[ConsumerRecord, ...], rules: BatchRules):
        # Stands in for a bug or an unforeseen state: this one record always makes the batch fail.
        if any(r.value == poison.value for r in records):
            attempts.append(len(records))
            raise RuntimeError("the rules met a state they never met before")
        return decode_inputs(records, rules)

    pool = await db.create_pool(settings)
    try:
        await intake_for(settings, pool).take(consumed("p.", [good[0], poison, good[1], good[2]]), decode)
        stored = await pool.fetch("SELECT interaction_id FROM agg_interactions ORDER BY interaction_id")
        letters = await pool.fetch("SELECT topic, value FROM outbox WHERE service = 'aggregator'")
    finally:
        await pool.close()

    assert [r["interaction_id"] for r in stored] == ["int-0", "int-1", "int-2"]
    dead = [json.loads(r["value"]) for r in letters if r["topic"] == "p.dead-letter"]
    assert [(d["source_offset"], d["error_code"]) for d in dead] == [(1, "processing_failed")]
    assert json.loads(dead[0]["raw_value"])["interaction_id"] == "int-poison"
    assert attempts == [4, 1, 1, 1], "the whole batch once, then the poison alone three times"
    assert "after 3 attempts: RuntimeError" in dead[0]["reason"]
