"""feedback's per-process context: what its routes and subscribers use, built once the pool and producer are up."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from aiokafka import ConsumerRecord

from services.feedback.quarantine import BudgetMetrics, VoterBudgetGate
from services.feedback.queue import TaskQueue
from services.feedback.queue_metrics import QueueMetrics
from services.feedback.settings import FeedbackSettings
from services.feedback.stream import vote_stream
from services.feedback.voter_budget import VoterBudget
from shared import topics
from shared.consumer import ConsumerPolicy, consumer_policy, outbox_dead_letters
from shared.edge import EdgeMetrics, EdgePublisher
from shared.edge_http import start_edge
from shared.errors import PipelineError
from shared.runtime import Runtime


@dataclass(kw_only=True, slots=True)
class FeedbackContext:
    """Built by `start` (the one start hook), closed by `aclose`; handlers get it by Depends (shared.runtime)."""

    pool: asyncpg.Pool
    """The runtime's pool: annotator tokens (authentication, the admin routes)."""

    edge: EdgePublisher
    """Validates, dedupes and publishes end-user votes, from HTTP and from feedback.raw."""

    queue: TaskQueue
    """The annotation queue: requests in, leases and verdicts, combined expert votes out (outbox)."""

    requests_policy: ConsumerPolicy
    """What the annotation-requests consumer does when a batch fails (shared.consumer): poison dead-lettered."""

    @classmethod
    async def start(
        cls,
        runtime: Runtime[FeedbackContext],
        *,
        settings: FeedbackSettings,
        edge_metrics: EdgeMetrics,
        queue_metrics: QueueMetrics,
        budget_metrics: BudgetMetrics,
    ) -> FeedbackContext:
        relay = runtime.start_outbox_relay(
            batch_size=settings.outbox_batch_size, poll_interval_s=settings.outbox_poll_interval_s
        )
        queue = TaskQueue(
            service=runtime.service, pool=runtime.db, settings=settings, relay=relay, metrics=queue_metrics
        )
        runtime.every("queue_gauges", settings.stats_refresh_interval_s, queue.refresh_gauges)
        runtime.every("queue_counts_compaction", settings.counts_compaction_interval_s, queue.compact_counts)
        runtime.every("held_tasks", settings.held_tasks_interval_s, queue.offer_held)
        gate = VoterBudgetGate(
            pool=runtime.db,
            budget=VoterBudget(max_votes_per_hour=settings.max_votes_per_voter_per_hour),
            metrics=budget_metrics,
            timeout_s=settings.db_acquire_timeout_s,
        )
        runtime.every("prune_voter_budget", settings.voter_budget_prune_interval_s, gate.prune)
        stream = vote_stream(settings.topic_prefix, mark=gate.mark)
        edge = start_edge(runtime, stream=stream, metrics=edge_metrics, settings=settings)
        send = outbox_dead_letters(
            pool=runtime.db, relay=relay, service=runtime.service, topic_prefix=settings.topic_prefix
        )

        async def dead_letter(record: ConsumerRecord, error: PipelineError) -> None:
            await send(record, error)
            queue_metrics.requests.labels("dead_lettered").inc()

        policy = consumer_policy(settings, name=topics.ANNOTATION_REQUESTS, dead_letter=dead_letter)
        return cls(pool=runtime.db, edge=edge, queue=queue, requests_policy=policy)

    async def aclose(self) -> None:
        """Nothing of its own to close: the pool, producer, relay and jobs belong to the runtime."""
