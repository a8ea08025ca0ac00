"""ingest's per-process context: what its routes and subscriber use, built once the pool and producer are up."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from services.ingest.settings import IngestSettings
from services.ingest.stream import interaction_stream
from shared.edge import EdgeMetrics, EdgePublisher
from shared.edge_http import start_edge
from shared.runtime import Runtime


@dataclass(kw_only=True, slots=True)
class IngestContext:
    """Built by `start` (the one start hook), closed by `aclose`; handlers get it by Depends (shared.runtime)."""

    pool: asyncpg.Pool
    """The runtime's pool: app keys (the admin routes)."""

    edge: EdgePublisher
    """Validates, dedupes and publishes interactions, from HTTP and from interactions.raw."""

    @classmethod
    async def start(
        cls, runtime: Runtime[IngestContext], *, settings: IngestSettings, edge_metrics: EdgeMetrics
    ) -> IngestContext:
        edge = start_edge(
            runtime, stream=interaction_stream(settings.topic_prefix), metrics=edge_metrics, settings=settings
        )
        return cls(pool=runtime.db, edge=edge)

    async def aclose(self) -> None:
        """Nothing of its own to close: the pool and producer belong to the runtime."""
