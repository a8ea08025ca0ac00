"""aggregator's wiring: settings -> runtime -> subscribers and routes -> app. No logic here."""

from __future__ import annotations

import json

from fastapi import FastAPI

from services.aggregator import jobs
from services.aggregator.batches import BatchRules
from services.aggregator.export_routes import export_router, runtime_export_context
from services.aggregator.handlers import (
    Aggregator,
    AggregatorMetrics,
    document_outputs,
    http_router,
    register_subscribers,
)
from services.aggregator.pairs import PairRules
from services.aggregator.routing import RoutingRules, parse_domain_rules
from services.aggregator.settings import AggregatorSettings
from shared.kafka import RedeliveryPause
from shared.runtime import Runtime, build_app

SERVICE = "aggregator"


def batch_rules(settings: AggregatorSettings) -> BatchRules:
    """The pure core's rules from the settings (reads the domain rules file: a bad one stops the start)."""
    domain_rules = parse_domain_rules(json.loads(settings.domain_rules_path.read_text()))
    return BatchRules(
        service=SERVICE,
        topic_prefix=settings.topic_prefix,
        pairs=PairRules(
            confidence_threshold=settings.confidence_threshold,
            min_votes=settings.min_votes,
            min_votes_per_answer=settings.min_votes_per_answer,
            min_votes_for_task=settings.min_votes_for_task,
            min_comparisons=settings.min_comparisons,
            rewrite_min_down=settings.rewrite_min_down,
            edit_confidence=settings.edit_confidence,
            max_answers=settings.max_answers_per_group,
        ),
        routing=RoutingRules(
            domain_rules=domain_rules,
            traffic_weight=settings.priority_traffic_weight,
            uncertainty_weight=settings.priority_uncertainty_weight,
            priority_step=settings.priority_step,
        ),
        stats_window_s=settings.stats_window_s,
        parked_vote_ttl_s=settings.parked_vote_ttl_s,
    )


def job_rules(settings: AggregatorSettings) -> jobs.JobRules:
    return jobs.JobRules(
        service=SERVICE,
        topic_prefix=settings.topic_prefix,
        stats_allowed_lateness_s=settings.stats_allowed_lateness_s,
        stats_publish_batch=settings.stats_publish_batch,
        parked_vote_ttl_s=settings.parked_vote_ttl_s,
        parked_sweep_batch=settings.parked_sweep_batch,
        vote_dedupe_window_s=settings.vote_dedupe_window_s,
    )


def create_app(settings: AggregatorSettings | None = None) -> FastAPI:
    settings = settings or AggregatorSettings()
    runtime = Runtime.create(SERVICE, settings, migration_components=["shared", "aggregator"])
    rules, background = batch_rules(settings), job_rules(settings)
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
            rt.db,
            relay,
            rules,
            settings.limits,
            metrics,
            RedeliveryPause(settings.retry_initial_backoff_s, settings.retry_max_backoff_s),
            settings.topic_prefix,
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
        routers=[http_router(), export_router(runtime_export_context(settings))],
        on_started=on_started,
    )
