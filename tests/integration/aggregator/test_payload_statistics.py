"""ANALYZE skips the payload columns no plan uses (migrations 0007): statistics for the keys, none for the texts."""

from __future__ import annotations

from services.aggregator.decoders import decode_inputs
from services.aggregator.settings import AggregatorSettings
from shared import db
from tests.integration.aggregator.aggregator_flow import clear_split, consumed, intake_for

PAYLOADS = {
    ("agg_votes", "vote"),
    ("agg_interactions", "content"),
    ("agg_groups", "prompt"),
    ("agg_pairs", "pair"),
    ("outbox", "value"),
    ("outbox", "headers"),
}


async def test_analyze_gathers_statistics_for_keys_and_none_for_payloads(database_url: str) -> None:
    settings = AggregatorSettings(database_url=database_url, topic_prefix="p.")
    batch = []
    for g in range(20):
        answers, votes = clear_split(f"q{g}", "Answer {label} " * 20)
        batch += answers + votes
    pool = await db.create_pool(settings)
    try:
        await intake_for(settings, pool).take(consumed("p.", batch), decode_inputs)
        await pool.execute("ANALYZE agg_votes, agg_interactions, agg_groups, agg_pairs, outbox")
        rows = await pool.fetch(
            "SELECT tablename, attname FROM pg_stats WHERE schemaname = 'public' AND tablename = ANY($1::text[])",
            sorted({table for table, _ in PAYLOADS}),
        )
    finally:
        await pool.close()
    gathered = {(r["tablename"], r["attname"]) for r in rows}
    assert not gathered & PAYLOADS, sorted(gathered & PAYLOADS)
    assert {("agg_votes", "prompt_key"), ("agg_interactions", "prompt_key"), ("outbox", "service")} <= gathered
