"""The aggregator's per-process context: what its routes and subscribers use, built once pool and producer are up."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker

from services.aggregator import jobs
from services.aggregator.budget_rebalance import rebalance_until_done
from services.aggregator.dead_letter_counter import start_dead_letter_counter
from services.aggregator.export_stream import ExportContext
from services.aggregator.intake import INPUTS, BatchIntake
from services.aggregator.leaderboard_worker import LeaderboardWorker
from services.aggregator.metrics import AggregatorMetrics
from services.aggregator.redecide import redecide_voters, refresh_flagged_gauge
from services.aggregator.routing import RoutingRules
from services.aggregator.rules import batch_rules, export_rules, job_rules, leaderboard_rules
from services.aggregator.settings import AggregatorSettings
from services.aggregator.voters import VoterRules
from shared.consumer import ConsumerPolicy, consumer_policy, outbox_dead_letters
from shared.errors import PipelineError
from shared.outbox import OutboxRelay
from shared.runtime import Runtime


@dataclass(kw_only=True, slots=True)
class AggregatorContext:
    """Built by `start` (the one start hook), closed by `aclose`; handlers get it by Depends (shared.runtime)."""

    pool: asyncpg.Pool
    """The runtime's pool: the read-only routes (pairs, stats windows)."""

    intake: BatchIntake
    """Applies consumed batches of interactions and votes, one transaction each."""

    leaderboards: LeaderboardWorker
    """Refits the model leaderboards that changed (a job), and serves their latest bodies."""
    exports: ExportContext
    """The export route's pool, rules and slots (the slots bound the exports running at once)."""
    broker: KafkaBroker
    """The runtime's producer: dead letters sent back home (the admin route)."""
    voter_rules: VoterRules
    """The outlier test's rules (the admin voters route shows each voter's p-value)."""

    @classmethod
    async def start(
        cls, runtime: Runtime[AggregatorContext], *, settings: AggregatorSettings, metrics: AggregatorMetrics
    ) -> AggregatorContext:
        """The rules (a bad domain rules file stops the start here), the relay, the intake, the jobs, the exports."""
        rules, background = batch_rules(settings, runtime.service), job_rules(settings, runtime.service)
        relay = runtime.start_outbox_relay(
            batch_size=settings.outbox_batch_size,
            poll_interval_s=settings.outbox_poll_interval_s,
            is_enabled=settings.outbox_relay_enabled,
        )
        pool = runtime.db
        runtime.every(
            "publish_stats", settings.stats_publish_interval_s, lambda: jobs.publish_stats(pool, relay, background)
        )
        runtime.every(
            "expire_parked_votes",
            settings.parked_sweep_interval_s,
            lambda: jobs.expire_parked_votes(pool, relay, background),
        )
        runtime.every(
            "prune_seen_votes", settings.vote_dedupe_prune_interval_s, lambda: jobs.prune_seen_votes(pool, background)
        )
        runtime.every(
            "redecide_voters",
            settings.voter_redecide_interval_s,
            lambda: redecide_voters(pool, relay, rules, settings.voter_redecide_batch),
        )
        runtime.every(
            "flagged_voters_gauge",
            settings.voter_gauge_interval_s,
            lambda: refresh_flagged_gauge(pool, metrics.flagged_voters),
        )
        policy = input_policy(runtime, settings, relay, metrics)
        intake = BatchIntake(pool=pool, relay=relay, rules=rules, metrics=metrics, policy=policy)
        exports = ExportContext.create(pool=pool, rules=export_rules(settings, rules.routing))
        leaderboards = start_leaderboards(runtime, relay, settings, routing=rules.routing, metrics=metrics)
        start_dead_letter_counter(runtime, settings)
        runtime.spawn("rebalance_task_budget", rebalance_until_done(pool, relay, rules, settings.retry_max_backoff_s))
        return cls(
            pool=pool,
            intake=intake,
            exports=exports,
            leaderboards=leaderboards,
            broker=runtime.broker,
            voter_rules=rules.voters,
        )

    async def aclose(self) -> None:
        """Nothing of its own to close: the pool, producer, relay and jobs belong to the runtime."""


def start_leaderboards(
    runtime: Runtime[AggregatorContext],
    relay: OutboxRelay,
    settings: AggregatorSettings,
    *,
    routing: RoutingRules,
    metrics: AggregatorMetrics,
) -> LeaderboardWorker:
    """The refit job (debounced per board), the gauges' sync, and a one-off backfill of older state."""
    worker = LeaderboardWorker(
        pool=runtime.db,
        relay=relay,
        rules=leaderboard_rules(settings, runtime.service, routing),
        metrics=metrics.leaderboard,
    )
    runtime.every("refit_leaderboards", settings.leaderboard_poll_interval_s, worker.run_once)
    runtime.every("sync_regression_gauges", settings.leaderboard_gauge_sync_interval_s, worker.sync_gauges)
    runtime.spawn("backfill_leaderboard", worker.backfill_until_done(settings.retry_max_backoff_s))
    return worker


def input_policy(
    runtime: Runtime[AggregatorContext], settings: AggregatorSettings, relay: OutboxRelay, metrics: AggregatorMetrics
) -> ConsumerPolicy:
    """The failure policy of the input consumer: poison dead-lettered through the outbox, and counted."""
    send = outbox_dead_letters(
        pool=runtime.db, relay=relay, service=runtime.service, topic_prefix=settings.topic_prefix
    )

    async def dead_letter(record: ConsumerRecord, error: PipelineError) -> None:
        await send(record, error)
        metrics.taken.labels("dead_letters").inc()

    return consumer_policy(settings, name=INPUTS, dead_letter=dead_letter)
