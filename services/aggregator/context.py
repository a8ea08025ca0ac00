"""The aggregator's per-process context: what its routes and subscribers use, built once pool and producer are up."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from services.aggregator import jobs
from services.aggregator.export_stream import ExportContext
from services.aggregator.intake import BatchIntake
from services.aggregator.metrics import AggregatorMetrics
from services.aggregator.rules import batch_rules, export_rules, job_rules
from services.aggregator.settings import AggregatorSettings
from shared.kafka import RedeliveryPause
from shared.runtime import Runtime


@dataclass(kw_only=True, slots=True)
class AggregatorContext:
    """Built by `start` (the one start hook), closed by `aclose`; handlers get it by Depends (shared.runtime)."""

    pool: asyncpg.Pool
    """The runtime's pool: the read-only routes (pairs, stats windows)."""

    intake: BatchIntake
    """Applies consumed batches of interactions and votes, one transaction each."""

    exports: ExportContext
    """The export route's pool, rules and slots (the slots bound the exports running at once)."""

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
        pause = RedeliveryPause(settings.retry_initial_backoff_s, settings.retry_max_backoff_s)
        intake = BatchIntake(pool=pool, relay=relay, rules=rules, metrics=metrics, pause=pause)
        exports = ExportContext.create(pool=pool, rules=export_rules(settings, rules.routing))
        return cls(pool=pool, intake=intake, exports=exports)

    async def aclose(self) -> None:
        """Nothing of its own to close: the pool, producer, relay and jobs belong to the runtime."""
