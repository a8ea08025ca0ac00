"""aggregator's wiring: settings -> runtime -> subscribers and routes -> app. No logic here."""

from __future__ import annotations

from fastapi import FastAPI

from services.aggregator import jobs, store
from services.aggregator.handlers import (
    Aggregator,
    AggregatorMetrics,
    document_outputs,
    http_router,
    register_subscribers,
)
from services.aggregator.rules import batch_rules, job_rules
from services.aggregator.settings import AggregatorSettings
from shared.db import SHARED_MIGRATIONS, Migrations
from shared.kafka import RedeliveryPause
from shared.runtime import Runtime, build_app

SERVICE = "aggregator"
MIGRATIONS = (SHARED_MIGRATIONS, Migrations(SERVICE, store.MIGRATIONS_DIR))


def create_app(settings: AggregatorSettings | None = None) -> FastAPI:
    settings = settings or AggregatorSettings()
    runtime = Runtime.create(SERVICE, settings, migrations=MIGRATIONS)
    rules, background = batch_rules(settings, runtime.service), job_rules(settings, runtime.service)
    metrics = AggregatorMetrics(runtime.registry)
    register_subscribers(runtime, settings.group_id)
    document_outputs(runtime)

    async def on_started(rt: Runtime) -> None:
        relay = rt.start_outbox_relay(
            batch_size=settings.outbox_batch_size,
            poll_interval_s=settings.outbox_poll_interval_s,
            is_enabled=settings.outbox_relay_enabled,
        )
        rt.state["aggregator"] = Aggregator(
            pool=rt.db,
            relay=relay,
            rules=rules,
            metrics=metrics,
            pause=RedeliveryPause(settings.retry_initial_backoff_s, settings.retry_max_backoff_s),
        )
        rt.every(
            "publish_stats", settings.stats_publish_interval_s, lambda: jobs.publish_stats(rt.db, relay, background)
        )
        rt.every(
            "expire_parked_votes",
            settings.parked_sweep_interval_s,
            lambda: jobs.expire_parked_votes(rt.db, relay, background),
        )
        rt.every(
            "prune_seen_votes", settings.vote_dedupe_prune_interval_s, lambda: jobs.prune_seen_votes(rt.db, background)
        )

    return build_app(
        runtime,
        title="aggregator",
        description="What it means: preference pairs, annotation requests and feedback stats.",
        routers=[http_router()],
        on_started=on_started,
    )
