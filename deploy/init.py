"""`python -m deploy.init`: apply every migration and create every topic, then exit (a deploy job)."""

from __future__ import annotations

import asyncio

import structlog

from shared.db import migrate
from shared.kafka import ensure_topics_for
from shared.logging import configure_logging
from shared.settings import PipelineSettings

log = structlog.get_logger(__name__)


async def initialise(settings: PipelineSettings) -> None:
    applied = await migrate(settings.database_url)
    created = await ensure_topics_for(settings)
    log.info("deployment_initialised", migrations_applied=len(applied), topics_created=created)


if __name__ == "__main__":
    settings = PipelineSettings()
    configure_logging(settings.log_format, settings.log_level)
    asyncio.run(initialise(settings))
