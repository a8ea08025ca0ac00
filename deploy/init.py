"""`python -m deploy.init`: apply every migration and create every topic, then exit (a deploy job)."""

from __future__ import annotations

import asyncio

import structlog

from services.aggregator.app import MIGRATIONS as AGGREGATOR_MIGRATIONS
from services.feedback.app import MIGRATIONS as FEEDBACK_MIGRATIONS
from services.ingest.app import MIGRATIONS as INGEST_MIGRATIONS
from shared.db import Migrations, migrate
from shared.kafka import ensure_topics
from shared.logging import configure_logging
from shared.settings import PipelineSettings

log = structlog.get_logger(__name__)


def all_migrations() -> tuple[Migrations, ...]:
    """Every service's migrations, each component once, in the order the services list them (shared first)."""
    seen: dict[str, Migrations] = {}
    for migrations in (INGEST_MIGRATIONS, FEEDBACK_MIGRATIONS, AGGREGATOR_MIGRATIONS):
        for component in migrations:
            seen.setdefault(component.component, component)
    return tuple(seen.values())


async def migrate_all(database_url: str) -> list[str]:
    """Apply every pending migration of every service; return those applied now."""
    return await migrate(database_url, all_migrations())


async def initialise(settings: PipelineSettings) -> None:
    applied = await migrate_all(settings.database_url)
    created = await ensure_topics(settings)
    log.info("deployment_initialised", migrations_applied=len(applied), topics_created=created)


if __name__ == "__main__":
    settings = PipelineSettings()
    configure_logging(settings.log_format, settings.log_level)
    asyncio.run(initialise(settings))
