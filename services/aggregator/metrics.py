"""The aggregator's Prometheus series (in the service's registry): inputs, outputs, batch time, the leaderboard."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.aggregator.batches import BatchOutcome
from services.aggregator.leaderboard_worker import LeaderboardMetrics


class AggregatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.taken = Counter("aggregator_inputs", "Inputs taken in", ["kind"], registry=registry)
        self.outputs = Counter("aggregator_outputs", "Messages queued in the outbox", ["kind"], registry=registry)
        self.batch_seconds = Histogram(
            "aggregator_batch_seconds",
            "One batch's transaction, from decode to commit",
            ["topic"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.budget = Counter(
            "aggregator_task_budget",
            "Annotation budget decisions (admitted, updated, demoted, rejected, withdrawn, promoted, released)",
            ["decision"],
            registry=registry,
        )
        self.leaderboard = LeaderboardMetrics(registry)

    def record(self, outcome: BatchOutcome) -> None:
        for kind in ("interactions", "votes_applied", "votes_parked", "duplicates", "dead_letters"):
            self.taken.labels(kind).inc(getattr(outcome, kind))
        for kind in ("pairs", "tombstones", "requests", "withdrawals"):
            self.outputs.labels(kind).inc(getattr(outcome, kind))
        for decision, count in outcome.budget.items():
            self.budget.labels(decision).inc(count)
