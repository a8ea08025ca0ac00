"""The aggregator's Prometheus series (in the service's registry): inputs, outputs, batch time, voters, leaderboard."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
        self.voters_flagged = Counter(
            "aggregator_voters_flagged", "Voters flagged by the outlier test (vote_quality.py)", registry=registry
        )
        self.flagged_voters = Gauge(
            "aggregator_flagged_voters", "Voters flagged now, per app (a job)", ["app_id"], registry=registry
        )

    def record(self, outcome: BatchOutcome) -> None:
        kinds = ("interactions", "votes_applied", "votes_parked", "votes_quarantined", "duplicates", "dead_letters")
        for kind in kinds:
            self.taken.labels(kind).inc(getattr(outcome, kind))
        self.voters_flagged.inc(outcome.voters_flagged)
        for kind in ("pairs", "tombstones", "requests", "withdrawals"):
            self.outputs.labels(kind).inc(getattr(outcome, kind))
        for decision, count in outcome.budget.items():
            self.budget.labels(decision).inc(count)
