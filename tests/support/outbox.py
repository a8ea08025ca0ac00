"""A service's outbox relay that never starts: the outbox rows the code under test writes stay in the table."""

from __future__ import annotations

import asyncpg
from prometheus_client import CollectorRegistry

from shared.kafka import make_broker
from shared.outbox import OutboxRelay
from shared.settings import PipelineSettings


def unstarted_relay(
    service: str, settings: PipelineSettings, pool: asyncpg.Pool, registry: CollectorRegistry
) -> OutboxRelay:
    """`service`'s relay on `pool`, never started: nothing is published, the rows are there to be read."""
    return OutboxRelay(
        service=service,
        pool=pool,
        broker=make_broker(settings, client_id="test"),
        registry=registry,
        batch_size=100,
        poll_interval_s=1.0,
        publish_timeout_s=1.0,
        max_backoff_s=1.0,
    )
