"""Poison messages of every kind mixed into the raw topics while ingest, feedback and the aggregator run.

About 1% of what apps publish to `interactions.raw` and `feedback.raw` is poison: invalid JSON, bytes
that are not UTF-8, a wrong schema version, an oversized message, a JSON list, a null value, a missing
field, an end user's verdict, and votes for interactions that never come (the aggregator parks them
and dead-letters them after its TTL). Each poison message must end in `dead-letter` with its origin
(topic, partition, offset) and a reason; every good message must have its effect (on `interactions`,
on `votes`, in the aggregator's state and stats), including the good messages behind poison on the
same partition, so no partition stalls.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from bench.ingest_load import make_interactions
from shared import topics
from shared.events import DeadLetter
from tests.hostile.pipeline import MAX_RAW_BYTES, Pipeline, dead_letters, event_ids, running_pipeline
from tests.support.builders import interaction_body, vote_body
from tests.support.kafka import TopicReader, produce
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(240)

GOOD = 1_500  # interactions, and as many votes
# An end user's verdict claims expert evidence: refused as such, not as a mere contract violation.
ERROR_CODES = {"end_user_verdict": "forbidden_source"}
PARKED_TTL_S = 2.0
SEED = 61


@pytest.fixture(scope="module")
async def pipeline(kafka_bootstrap: str, pg_server_url: str, template_db: str) -> AsyncIterator[Pipeline]:
    # The expiry job runs every parked_sweep_interval_s: well under the TTL, so expiry is seen within ~TTL.
    async with running_pipeline(
        kafka_bootstrap, pg_server_url, template_db, parked_vote_ttl_s=PARKED_TTL_S, parked_sweep_interval_s=0.5
    ) as running:
        yield running


def _json(body: Any) -> bytes:
    return json.dumps(body).encode()


def interaction_poison() -> list[tuple[str, bytes | None]]:
    missing = interaction_body()
    missing.pop("response")
    return [
        ("invalid_json", b'{"event_id": "truncated'),
        ("not_utf8", b"\xff\xfe\x00 binary"),
        ("wrong_schema_version", _json(interaction_body(schema_version=2))),
        ("oversized", _json(interaction_body(messages=[{"role": "user", "content": "y" * MAX_RAW_BYTES}]))),
        ("not_an_object", b"[1, 2, 3]"),
        ("null_value", None),
        ("missing_field", _json(missing)),
    ]


def vote_poison() -> list[tuple[str, bytes | None]]:
    return [
        ("invalid_json", b'{"kind": "thumb", "value": '),
        ("not_utf8", b"\x80\x81\x82"),
        ("wrong_schema_version", _json(vote_body(schema_version=7))),
        ("oversized", _json(vote_body(kind="comment", text="z" * MAX_RAW_BYTES, value=None))),
        ("not_an_object", b'"just a string"'),
        ("null_value", None),
        ("end_user_verdict", _json(vote_body(kind="verdict", verdict="A", task_id="t", value=None))),
    ]


@dataclass
class Stream:
    """What was published to one raw topic: values in order, which are poison, and where each landed."""

    values: list[bytes | None]
    poison: dict[int, str]  # index in values -> kind
    origins: list[tuple[int, int]]


def mixed(good: list[bytes], poison: list[tuple[str, bytes | None]], rng: random.Random) -> Stream:
    """Good values with each poison kind twice, at seeded positions in the first 80%: good ones follow on every
    partition."""
    values: list[bytes | None] = list(good)
    kinds: dict[int, str] = {}
    for kind, value in poison * 2:
        position = rng.randrange(int(len(values) * 0.8))
        values.insert(position, value)
        kinds = {(i + 1 if i >= position else i): k for i, k in kinds.items()}
        kinds[position] = kind
    return Stream(values, kinds, [])


async def until(reader: TopicReader, wanted: set[str], timeout: float = 60) -> dict[str, Any]:
    async def check() -> dict[str, Any]:
        await reader.poll()
        found = event_ids(reader)
        missing = wanted - found.keys()
        assert not missing, f"{len(missing)} of {len(wanted)} not there yet"
        return found

    return await eventually(check, timeout=timeout, interval=0.2)


async def fetch(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetch(query, *args)
    finally:
        await connection.close()


async def test_poison_is_dead_lettered_with_its_origin_and_every_good_message_has_its_effect(
    pipeline: Pipeline,
) -> None:
    rng = random.Random(SEED)
    interactions = make_interactions(GOOD, SEED)
    votes = [
        vote_body(app_id=i["app_id"], interaction_id=i["interaction_id"], user_ref=f"u-{n}", value=1 if n % 3 else -1)
        for n, i in enumerate(interactions)
    ]
    orphans = [vote_body(interaction_id=f"never-{uuid.uuid4().hex[:8]}", user_ref="u-orphan") for _ in range(6)]
    raw_i = mixed([_json(i) for i in interactions], interaction_poison(), rng)
    raw_v = mixed([_json(v) for v in votes], vote_poison(), rng)
    for vote in orphans:
        raw_v.values.insert(position := rng.randrange(len(raw_v.values)), _json(vote))
        raw_v.poison = {(i + 1 if i >= position else i): k for i, k in raw_v.poison.items()}

    async with (
        pipeline.reading(topics.INTERACTIONS) as out_i,
        pipeline.reading(topics.VOTES) as out_v,
        pipeline.reading(topics.DEAD_LETTER) as dead,
    ):
        # Interactions first: a good vote must never wait for its interaction longer than the short TTL.
        raw_i.origins = await produce(
            pipeline.bootstrap, pipeline.prefix, topics.INTERACTIONS_RAW, raw_i.values, partitions=6
        )
        await until(out_i, {i["event_id"] for i in interactions})
        await eventually(lambda: aggregated_interactions(pipeline, interactions), timeout=60, interval=0.2)

        raw_v.origins = await produce(
            pipeline.bootstrap, pipeline.prefix, topics.FEEDBACK_RAW, raw_v.values, partitions=6
        )
        on_votes = await until(out_v, {v["event_id"] for v in [*votes, *orphans]})
        await eventually(lambda: aggregated_votes(pipeline, votes), timeout=60, interval=0.2)

        expected = len(raw_i.poison) + len(raw_v.poison) + len(orphans)

        async def all_dead() -> list[DeadLetter]:
            await dead.poll()
            letters = dead_letters(dead)
            assert len(letters) >= expected, f"{len(letters)} of {expected} dead letters"
            return letters

        letters = await eventually(all_dead, timeout=30, interval=0.2)

    check_raw_letters(pipeline, letters, topics.INTERACTIONS_RAW, raw_i, "ingest")
    check_raw_letters(pipeline, letters, topics.FEEDBACK_RAW, raw_v, "feedback")
    check_expired_letters(pipeline, letters, orphans, on_votes)
    assert len(letters) == expected, "nothing else was dead-lettered (no good message)"
    await check_stats(pipeline, interactions, votes)


async def aggregated_interactions(pipeline: Pipeline, interactions: list[dict[str, Any]]) -> bool:
    rows = await fetch(pipeline.database_url, "SELECT event_id::text AS event_id FROM agg_interactions")
    missing = {i["event_id"] for i in interactions} - {r["event_id"] for r in rows}
    assert not missing, f"{len(missing)} interactions not in the aggregator's state"
    return True


async def aggregated_votes(pipeline: Pipeline, votes: list[dict[str, Any]]) -> bool:
    wanted = [uuid.UUID(v["event_id"]) for v in votes]
    seen = await fetch(
        pipeline.database_url, "SELECT count(*) AS n FROM agg_seen_votes WHERE event_id = ANY($1)", wanted
    )
    parked = await fetch(
        pipeline.database_url, "SELECT count(*) AS n FROM agg_parked_votes WHERE event_id = ANY($1)", wanted
    )
    assert (seen[0]["n"], parked[0]["n"]) == (len(votes), 0), f"seen {seen[0]['n']}, parked {parked[0]['n']}"
    return True


def check_raw_letters(pipeline: Pipeline, letters: list[DeadLetter], name: str, stream: Stream, service: str) -> None:
    source = pipeline.topic(name)
    mine = {(d.source_partition, d.source_offset): d for d in letters if d.source_topic == source}
    expected = {stream.origins[i]: i for i in stream.poison}
    assert set(mine) == set(expected), f"{name}: dead letters at {sorted(mine)}, poison at {sorted(expected)}"
    for origin, index in expected.items():
        letter = mine[origin]
        assert letter.raw_bytes() == stream.values[index], f"{stream.poison[index]}: the original bytes"
        code = ERROR_CODES.get(stream.poison[index], "contract_violation")
        assert (letter.service, letter.reason != "", letter.error_code) == (service, True, code)
    # Good messages follow poison on every partition that had some, and all of them arrived (checked above).
    for partition in {p for p, _ in expected}:
        last_poison = max(o for p, o in expected if p == partition)
        good_after = [i for i, (p, o) in enumerate(stream.origins) if p == partition and o > last_poison]
        assert any(i not in stream.poison for i in good_after), f"{name}[{partition}]: no good message after poison"


def check_expired_letters(
    pipeline: Pipeline, letters: list[DeadLetter], orphans: list[dict[str, Any]], on_votes: dict[str, Any]
) -> None:
    expired = {json.loads(d.raw_bytes() or b"{}").get("event_id"): d for d in letters if d.service == "aggregator"}
    assert set(expired) == {v["event_id"] for v in orphans}
    for event_id, letter in expired.items():
        record = on_votes[event_id]
        assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
            record.topic,
            record.partition,
            record.offset,
        ), "the origin is where the vote was on `votes`"
        assert letter.error_code == "parked_vote_expired" and f"{PARKED_TTL_S:g} s" in letter.reason


async def check_stats(pipeline: Pipeline, interactions: list[dict[str, Any]], votes: list[dict[str, Any]]) -> None:
    (row,) = await fetch(
        pipeline.database_url,
        "SELECT sum(interactions) AS i, sum(thumbs_up) AS up, sum(thumbs_down) AS down FROM agg_stats",
    )
    ups = sum(1 for v in votes if v["value"] == 1)
    assert (row["i"], row["up"], row["down"]) == (len(interactions), ups, len(votes) - ups)
