"""Every consumer under the one failure policy: a record that fails for good is dead-lettered, the rest flow.

One test per consumer (interactions.raw and feedback.raw at the edge, interactions and votes at the
aggregator, annotation-requests at the queue), each against the real broker and database: a good
record, a poison record and a good record on one partition; the one after the poison arrives, and
the poison is on `dead-letter` with its origin and `processing_failed`.

The poison is real where the pipeline has one: a record valid by contract that PostgreSQL refuses
(a NUL character inside a field the contract leaves unchecked). Where it has none, one processing
step is monkeypatched to raise for one specific event id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from services.aggregator import batches
from shared import topics
from shared.edge import EdgePublisher
from shared.events import DeadLetter
from tests.hostile.pipeline import Pipeline, running_pipeline
from tests.integration.aggregator.aggregator_flow import interaction, vote
from tests.support.builders import annotation_request_body, interaction_body, vote_body
from tests.support.kafka import Record, producing
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
async def pipeline(kafka_bootstrap: str, pg_server_url: str, template_db: str) -> AsyncIterator[Pipeline]:
    async with running_pipeline(kafka_bootstrap, pg_server_url, template_db) as running:
        yield running


async def send_on_one_partition(pipeline: Pipeline, name: str, values: list[bytes]) -> list[tuple[int, int]]:
    async with producing(pipeline.bootstrap, pipeline.prefix) as producer:
        return await producer.send([Record(topic=name, value=v, key=b"one-key") for v in values])


async def dead_letter_at(pipeline: Pipeline, name: str, origin: tuple[int, int]) -> DeadLetter:
    async with pipeline.reading(topics.DEAD_LETTER) as reader:

        async def found() -> DeadLetter | None:
            for record in await reader.poll():
                letter = DeadLetter.model_validate_json(record.value)
                if (letter.source_topic, letter.source_partition, letter.source_offset) == (
                    pipeline.topic(name),
                    *origin,
                ):
                    return letter
            return None

        return await eventually(found, timeout=40)


async def on_topic(pipeline: Pipeline, name: str, event_id: str) -> None:
    async with pipeline.reading(name) as reader:

        async def arrived() -> bool:
            return any(r.value and json.loads(r.value)["event_id"] == event_id for r in await reader.poll())

        await eventually(arrived, timeout=40)


async def in_table(pipeline: Pipeline, query: str, *args: Any) -> None:
    async def found() -> bool:
        connection = await asyncpg.connect(pipeline.database_url)
        try:
            return bool(await connection.fetchval(query, *args))
        finally:
            await connection.close()

    await eventually(found, timeout=40, interval=0.2)


def failing_for(function: Callable[..., Any], poison: bytes) -> Callable[..., Any]:
    """`function`, except that it raises when its first argument is the poison record's value."""

    def fails(self: Any, item: Any, *args: Any, **kwargs: Any) -> Any:
        if item == poison or (isinstance(item, dict) and json.dumps(item).encode() == poison):
            raise RuntimeError("a step that never copes with this one record")
        return function(self, item, *args, **kwargs)

    return fails


@pytest.mark.parametrize(
    ("raw_topic", "output", "body"),
    [(topics.INTERACTIONS_RAW, topics.INTERACTIONS, interaction_body), (topics.FEEDBACK_RAW, topics.VOTES, vote_body)],
)
async def test_an_edge_raw_topic_dead_letters_its_poison_and_flows_on(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, raw_topic: str, output: str, body: Callable[[], Any]
) -> None:
    before, poison, after = body(), body(), body()
    values = [json.dumps(b).encode() for b in (before, poison, after)]
    monkeypatch.setattr(EdgePublisher, "validate", failing_for(EdgePublisher.validate, values[1]))
    origins = await send_on_one_partition(pipeline, raw_topic, values)
    await on_topic(pipeline, output, after["event_id"])
    await on_topic(pipeline, output, before["event_id"])
    letter = await dead_letter_at(pipeline, raw_topic, origins[1])
    assert (letter.error_code, letter.raw_bytes()) == ("processing_failed", values[1])
    assert "RuntimeError" in letter.reason


async def test_the_aggregators_interactions_consumer_dead_letters_what_postgresql_refuses(pipeline: Pipeline) -> None:
    app = f"app-{uuid.uuid4().hex[:6]}"
    before, after = interaction(app, "First?", "i-1", "One."), interaction(app, "Third?", "i-3", "Three.")
    poison = json.loads(interaction(app, "Second?", "i-2", "Two.").value or b"")
    poison["prompt_key"] = "a key PostgreSQL cannot store: \x00"
    values = [before.value, json.dumps(poison).encode(), after.value]
    origins = await send_on_one_partition(pipeline, topics.INTERACTIONS, [v for v in values if v is not None])
    query = "SELECT count(*) = 2 FROM agg_interactions WHERE app_id = $1 AND interaction_id IN ('i-1', 'i-3')"
    await in_table(pipeline, query, app)
    letter = await dead_letter_at(pipeline, topics.INTERACTIONS, origins[1])
    assert (letter.error_code, letter.service) == ("processing_failed", "aggregator")
    assert json.loads(letter.raw_bytes() or b"")["interaction_id"] == "i-2"


async def test_the_aggregators_votes_consumer_dead_letters_its_poison(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = f"app-{uuid.uuid4().hex[:6]}"
    await send_on_one_partition(pipeline, topics.INTERACTIONS, [interaction(app, "Q?", "a", "A.").value or b""])
    # The votes must find their interaction stored: a vote that comes first is parked and applied by the
    # interactions consumer when the interaction arrives, and then it is that consumer which meets the poison.
    await in_table(pipeline, "SELECT count(*) = 1 FROM agg_interactions WHERE app_id = $1", app)
    records = [vote(app, "a", f"u{i}", kind="thumb", value=1) for i in range(3)]
    poison_id = json.loads(records[1].value or b"")["event_id"]
    fold = batches.fold_and_test

    def fold_failing(current: Any, marks: Any, new: Any, *args: Any) -> Any:
        new = list(new)
        if any(str(v.event_id) == poison_id for v in new):
            raise RuntimeError("a step that never copes with this one vote")
        return fold(current, marks, new, *args)

    monkeypatch.setattr(batches, "fold_and_test", fold_failing)
    origins = await send_on_one_partition(pipeline, topics.VOTES, [r.value or b"" for r in records])
    after_id = json.loads(records[2].value or b"")["event_id"]
    await in_table(pipeline, "SELECT count(*) = 1 FROM agg_votes WHERE event_id = $1", uuid.UUID(after_id))
    letter = await dead_letter_at(pipeline, topics.VOTES, origins[1])
    assert (letter.error_code, json.loads(letter.raw_bytes() or b"")["event_id"]) == ("processing_failed", poison_id)


async def test_a_parked_vote_that_fails_is_dead_lettered_alone_and_its_interaction_stored(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The votes come first and are parked; the interactions consumer applies them when the interaction
    # arrives, and it is there that the poison fails: the interaction and the good votes must go through.
    app = f"app-{uuid.uuid4().hex[:6]}"
    records = [vote(app, "a", f"u{i}", kind="thumb", value=1) for i in range(3)]
    ids = [json.loads(r.value or b"")["event_id"] for r in records]
    fold = batches.fold_and_test

    def fold_failing(current: Any, marks: Any, new: Any, *args: Any) -> Any:
        new = list(new)
        if any(str(v.event_id) == ids[1] for v in new):
            raise RuntimeError("a step that never copes with this one vote")
        return fold(current, marks, new, *args)

    monkeypatch.setattr(batches, "fold_and_test", fold_failing)
    origins = await send_on_one_partition(pipeline, topics.VOTES, [r.value or b"" for r in records])
    await in_table(pipeline, "SELECT count(*) = 3 FROM agg_parked_votes WHERE app_id = $1", app)
    [interaction_origin] = await send_on_one_partition(
        pipeline, topics.INTERACTIONS, [interaction(app, "Q?", "a", "A.").value or b""]
    )
    letter = await dead_letter_at(pipeline, topics.VOTES, origins[1])
    assert (letter.error_code, json.loads(letter.raw_bytes() or b"")["event_id"]) == ("processing_failed", ids[1])
    await in_table(pipeline, "SELECT count(*) = 1 FROM agg_interactions WHERE app_id = $1", app)
    good = [uuid.UUID(ids[0]), uuid.UUID(ids[2])]
    await in_table(pipeline, "SELECT count(*) = 2 FROM agg_votes WHERE event_id = ANY($1::uuid[])", good)
    await in_table(pipeline, "SELECT count(*) = 0 FROM agg_parked_votes WHERE app_id = $1", app)
    # Every letter up to the vote's (one relay, in order): none of them is the interaction's.
    async with pipeline.reading(topics.DEAD_LETTER) as reader:

        async def letters_up_to_the_votes() -> set[tuple[str, int | None, int | None]] | None:
            read = [DeadLetter.model_validate_json(r.value) for r in await reader.poll()]
            origins = {(x.source_topic, x.source_partition, x.source_offset) for x in read}
            return origins if (letter.source_topic, letter.source_partition, letter.source_offset) in origins else None

        lettered = await eventually(letters_up_to_the_votes, timeout=40)
    assert (pipeline.topic(topics.INTERACTIONS), *interaction_origin) not in lettered


async def test_an_interaction_taken_again_claims_the_votes_left_parked_for_it(pipeline: Pipeline) -> None:
    # What a crash between storing an interaction alone and applying its parked votes one by one leaves
    # (intake.py): a vote parked for an interaction already stored. The interaction's redelivery takes it.
    app = f"app-{uuid.uuid4().hex[:6]}"
    record = interaction(app, "Q?", "a", "A.")
    await send_on_one_partition(pipeline, topics.INTERACTIONS, [record.value or b""])
    await in_table(pipeline, "SELECT count(*) = 1 FROM agg_interactions WHERE app_id = $1", app)
    left = json.loads(vote(app, "a", "u0", kind="thumb", value=1).value or b"")
    connection = await asyncpg.connect(pipeline.database_url)
    try:
        await connection.execute(
            "INSERT INTO agg_parked_votes (event_id, app_id, interaction_id, vote, source_topic, source_partition,"
            " source_offset, expires_at) VALUES ($1, $2, 'a', $3::jsonb, $4, 0, 0, now() + interval '1 hour')",
            uuid.UUID(left["event_id"]),
            app,
            json.dumps(left),
            pipeline.topic(topics.VOTES),
        )
    finally:
        await connection.close()
    await send_on_one_partition(pipeline, topics.INTERACTIONS, [record.value or b""])
    await in_table(pipeline, "SELECT count(*) = 1 FROM agg_votes WHERE event_id = $1", uuid.UUID(left["event_id"]))
    await in_table(pipeline, "SELECT count(*) = 0 FROM agg_parked_votes WHERE app_id = $1", app)


async def test_the_annotation_requests_consumer_dead_letters_what_postgresql_refuses(pipeline: Pipeline) -> None:
    domain = f"d{uuid.uuid4().hex[:6]}"
    before, poison, after = (annotation_request_body(f"task-{uuid.uuid4().hex[:8]}", domain) for _ in range(3))
    poison["reason"] = "jsonb cannot store \x00"
    values = [json.dumps(b).encode() for b in (before, poison, after)]
    origins = await send_on_one_partition(pipeline, topics.ANNOTATION_REQUESTS, values)
    await in_table(pipeline, "SELECT count(*) = 2 FROM tasks WHERE task_id = ANY($1::text[])", [
        before["task_id"], after["task_id"],
    ])  # fmt: skip
    letter = await dead_letter_at(pipeline, topics.ANNOTATION_REQUESTS, origins[1])
    assert (letter.error_code, letter.service) == ("processing_failed", "feedback")
    assert json.loads(letter.raw_bytes() or b"")["task_id"] == poison["task_id"]
