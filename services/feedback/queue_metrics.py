"""The annotation queue's Prometheus series (counters of requests, leases, verdicts; gauges of depth and agreement)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class QueueMetrics:
    """The queue's Prometheus series, in the service's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "annotation_requests", "annotation-requests records consumed", ["outcome"], registry=registry
        )
        self.leases = Counter("task_leases", "Tasks leased to annotators", ["domain"], registry=registry)
        self.verdicts = Counter("task_verdicts", "Verdicts recorded", ["domain"], registry=registry)
        self.closed = Counter("tasks_closed", "Tasks completed or contested", ["domain", "status"], registry=registry)
        self.escalations = Counter(
            "task_escalations", "Split verdicts that asked for one more reviewer", ["domain"], registry=registry
        )
        self.depth = Gauge("task_queue_depth", "Tasks per domain and status", ["domain", "status"], registry=registry)
        self.held_opened = Counter(
            "held_tasks_opened", "Held tasks opened once their domain had room under the cap", registry=registry
        )
        self.leased = Gauge("task_leased", "Live leases per domain", ["domain"], registry=registry)
        self.domain_alpha = Gauge(
            "task_agreement_alpha", "Krippendorff's alpha (nominal) per domain", ["domain"], registry=registry
        )
        self.position_left_share = Gauge(
            "task_position_left_share",
            "Share of A/B verdicts that chose the answer shown on the left (0.5: no position bias)",
            ["domain"],
            registry=registry,
        )
        self.annotator_alpha = Gauge(
            "annotator_agreement_alpha",
            "Krippendorff's alpha over the tasks an annotator reviewed",
            ["annotator"],
            registry=registry,
        )
        self.annotator_pairwise = Gauge(
            "annotator_pairwise_agreement",
            "Share of an annotator's reviewer pairs that agree",
            ["annotator"],
            registry=registry,
        )
