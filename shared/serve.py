"""Run a service's app factory under uvicorn (SIGTERM/SIGINT -> graceful lifespan shutdown)."""

from __future__ import annotations

import uvicorn

from shared import heap
from shared.settings import ServiceSettings


def serve(factory: str, settings: ServiceSettings) -> None:
    heap.freeze_after_start()
    uvicorn.run(
        factory,
        factory=True,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        lifespan="on",
    )
