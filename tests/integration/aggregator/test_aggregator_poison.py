"""A batch the aggregator cannot apply is narrowed to its poison: the rest is applied, the poison dead-lettered."""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import SimpleNamespace

from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry

from services.aggregator.app import SERVICE
from services.aggregator.batches import BatchRules
from services.aggregator.context import input_policies
from services.aggregator.decoders import decode_interactions
from services.aggregator.intake import BatchIntake
from services.aggregator.metrics import AggregatorMetrics
from services.aggregator.rules import batch_rules
from services.aggregator.settings import AggregatorSettings
from shared import db, topics
from shared.kafka import make_broker
from shared.outbox import OutboxRelay
from tests.integration.aggregator.aggregator_flow import interaction


def consumed(values: Sequence[bytes]) -> tuple[ConsumerRecord, ...]:
    return tuple(
        ConsumerRecord("p.interactions", 0, offset, 0, 0, b"k", value, None, 1, len(value), ())
        for offset, value in enumerate(values)
    )


async def test_a_batch_that_cannot_be_applied_is_narrowed_to_its_poison(database_url: str) -> None:
    settings = AggregatorSettings(database_url=database_url, topic_prefix="p.")
    good = [interaction("app", f"Question {i}?", f"int-{i}", f"Answer {i}.").value for i in range(3)]
    poison = interaction("app", "A question our code chokes on", "int-poison", "Boom.").value
    attempts: list[int] = []

    def decode(records: tuple[ConsumerRecord, ...], rules: BatchRules):
        # Stands in for a bug or an unforeseen state: this one record always makes the batch fail.
        if any(r.value == poison for r in records):
            attempts.append(len(records))
            raise RuntimeError("the rules met a state they never met before")
        return decode_interactions(records, rules)

    pool = await db.create_pool(settings)
    registry = CollectorRegistry()
    relay = OutboxRelay(  # never started: the outbox rows stay in the table to be read
        service=SERVICE,
        pool=pool,
        broker=make_broker(settings, client_id="t"),
        registry=registry,
        batch_size=100,
        poll_interval_s=1.0,
        publish_timeout_s=1.0,
        max_backoff_s=1.0,
    )
    metrics = AggregatorMetrics(registry)
    runtime = SimpleNamespace(db=pool, service=SERVICE)
    intake = BatchIntake(
        pool=pool,
        relay=relay,
        rules=batch_rules(settings, SERVICE),
        metrics=metrics,
        policies=input_policies(runtime, settings, relay, metrics),  # type: ignore[arg-type]
    )
    try:
        await intake.take(consumed([good[0], poison, good[1], good[2]]), decode, topics.INTERACTIONS)
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
