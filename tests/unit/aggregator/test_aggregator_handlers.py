"""The aggregator's subscribers, alone on FastStream's in-memory broker: which batch goes where.

What a batch does to the state is the intake's business (tests/integration/aggregator); a handler only
hands the batch's records, with the right decoder, to the context's intake, and only once started.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker

from services.aggregator.app import SERVICE
from services.aggregator.decoders import decode_interactions, decode_votes
from services.aggregator.handlers import register_subscribers
from services.aggregator.settings import AggregatorSettings
from shared import topics
from shared.errors import TransientError
from shared.runtime import Runtime

SETTINGS = AggregatorSettings(topic_prefix="p.")


class RecordingIntake:
    def __init__(self) -> None:
        self.taken: list[tuple[str, Any, list[bytes]]] = []

    async def take(self, records: tuple[Any, ...], decode: Any, topic_name: str) -> None:
        self.taken.append((topic_name, decode, [r.value for r in records]))


def runtime_with_subscribers() -> Runtime[Any]:
    runtime: Runtime[Any] = Runtime.create(service=SERVICE, settings=SETTINGS, migrations=())
    register_subscribers(runtime, SETTINGS)
    return runtime


async def test_each_input_topic_goes_to_the_intake_with_its_decoder() -> None:
    runtime = runtime_with_subscribers()
    intake = RecordingIntake()
    runtime.context.set(SimpleNamespace(intake=intake))
    async with TestKafkaBroker(runtime.broker) as broker:
        await broker.publish_batch(b"i1", b"i2", topic=topics.topic("p.", topics.INTERACTIONS))
        await broker.publish_batch(b"v1", topic=topics.topic("p.", topics.VOTES))
    assert intake.taken == [
        (topics.INTERACTIONS, decode_interactions, [b"i1", b"i2"]),
        (topics.VOTES, decode_votes, [b"v1"]),
    ]


async def test_a_batch_before_the_context_exists_is_rewound_not_lost() -> None:
    runtime = runtime_with_subscribers()
    async with TestKafkaBroker(runtime.broker) as broker:
        with pytest.raises(TransientError):
            await broker.publish_batch(b"v1", topic=topics.topic("p.", topics.VOTES))
