"""The aggregator's subscribers, alone on FastStream's in-memory broker: which batch goes where.

What a batch does to the state is the intake's business (tests/integration/aggregator); a handler only
hands the batch's records, with the right decoder, to the context's intake, and only once started.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.specification import AsyncAPI

from services.aggregator.app import SERVICE
from services.aggregator.decoders import decode_inputs
from services.aggregator.handlers import register_subscribers
from services.aggregator.settings import AggregatorSettings
from shared import topics
from shared.errors import TransientError
from shared.runtime import Runtime

SETTINGS = AggregatorSettings(topic_prefix="p.")


class RecordingIntake:
    def __init__(self) -> None:
        self.taken: list[tuple[Any, list[bytes]]] = []

    async def take(self, records: tuple[Any, ...], decode: Any) -> None:
        self.taken.append((decode, [r.value for r in records]))


def runtime_with_subscribers() -> Runtime[Any]:
    runtime: Runtime[Any] = Runtime.create(service=SERVICE, settings=SETTINGS, migrations=())
    register_subscribers(runtime, SETTINGS)
    return runtime


async def test_both_input_topics_go_to_the_intake_through_one_consumer() -> None:
    runtime = runtime_with_subscribers()
    intake = RecordingIntake()
    runtime.context.set(SimpleNamespace(intake=intake))
    async with TestKafkaBroker(runtime.broker) as broker:
        await broker.publish_batch(b"i1", b"i2", topic=topics.topic("p.", topics.INTERACTIONS))
        await broker.publish_batch(b"v1", topic=topics.topic("p.", topics.VOTES))
    assert intake.taken == [(decode_inputs, [b"i1", b"i2"]), (decode_inputs, [b"v1"])]
    # One subscriber of both topics (one consumer, one group member), documented as receiving on both.
    assert len(runtime.broker.subscribers) == 1
    spec = AsyncAPI(runtime.broker, schema_version="3.0.0").to_specification().to_jsonable()
    received = {
        spec["channels"][op["channel"]["$ref"].rsplit("/", 1)[-1]]["address"]
        for op in spec["operations"].values()
        if op["action"] == "receive"
    }
    assert received == {"p.interactions", "p.votes"}


async def test_a_batch_before_the_context_exists_is_rewound_not_lost() -> None:
    runtime = runtime_with_subscribers()
    async with TestKafkaBroker(runtime.broker) as broker:
        with pytest.raises(TransientError):
            await broker.publish_batch(b"v1", topic=topics.topic("p.", topics.VOTES))
