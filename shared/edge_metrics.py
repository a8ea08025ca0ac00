"""The edge's Prometheus metrics: events accepted, duplicate, conflicting, refused, dead-lettered; publish latency."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class EdgeMetrics:
    def __init__(self, registry: CollectorRegistry, stream: str) -> None:
        labels = ["stream", "via"]
        self.accepted = Counter("events_accepted", "Events published to the output topic", labels, registry=registry)
        self.duplicates = Counter(
            "events_duplicate", "Events whose event_id was already published with the same body", labels,
            registry=registry,
        )  # fmt: skip
        self.conflicts = Counter(
            "events_conflict", "Events whose event_id was already published with another body", labels,
            registry=registry,
        )  # fmt: skip
        self.rejected = Counter("events_rejected", "Invalid events refused over HTTP", labels, registry=registry)
        self.forbidden = Counter(
            "events_forbidden", "Items refused over HTTP: their app_id is not one of the app key's", labels,
            registry=registry,
        )  # fmt: skip
        self.dead_lettered = Counter(
            "events_dead_lettered",
            "Invalid raw-topic messages sent to dead-letter",
            ["stream", "error_code"],
            registry=registry,
        )
        self.publish_latency = Histogram(
            "publish_duration_seconds",
            "From validation to broker acknowledgement, per batch",
            ["stream"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.stream = stream
