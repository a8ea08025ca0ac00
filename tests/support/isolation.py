"""What keeps tests apart on shared servers: databases cloned from a migrated template, and unique topic prefixes."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from deploy.init import migrate_all
from shared.kafka import ensure_topics
from shared.settings import PipelineSettings

TEMPLATE_DB = "pipeline_template"
ADMIN_TIMEOUT_S = 30.0
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def database_url_for(server_url: str, database: str) -> str:
    """The URL of another database on the same server."""
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{database}"))


async def _execute(server_url: str, statement: str) -> None:
    connection = await asyncpg.connect(server_url, timeout=ADMIN_TIMEOUT_S)
    try:
        await connection.execute(statement, timeout=ADMIN_TIMEOUT_S)
    finally:
        await connection.close()


def _quoted(database: str) -> str:
    # Database names cannot be bind parameters; ours are generated and checked against this pattern.
    if not _DB_NAME.match(database):
        raise ValueError(f"unexpected database name {database!r}")
    return f'"{database}"'


@asynccontextmanager
async def migrated_template(pg_server_url: str) -> AsyncIterator[str]:
    """A database with every service's migrations applied, for tests to clone; its name."""
    name = _quoted(TEMPLATE_DB)
    await _execute(pg_server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await _execute(pg_server_url, f"CREATE DATABASE {name}")
    await migrate_all(database_url_for(pg_server_url, TEMPLATE_DB))
    try:
        yield TEMPLATE_DB
    finally:
        await _execute(pg_server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@asynccontextmanager
async def fresh_database(pg_server_url: str, template_db: str) -> AsyncIterator[str]:
    """A new database cloned from the migrated template; its URL. Dropped on exit."""
    database = f"test_{uuid.uuid4().hex}"
    await _execute(pg_server_url, f"CREATE DATABASE {_quoted(database)} TEMPLATE {_quoted(template_db)}")
    try:
        yield database_url_for(pg_server_url, database)
    finally:
        await _execute(pg_server_url, f"DROP DATABASE IF EXISTS {_quoted(database)} WITH (FORCE)")


def new_topic_prefix() -> str:
    """A topic prefix no other test uses, e.g. "t1a2b3c4."."""
    return f"t{uuid.uuid4().hex[:8]}."


def consumer_groups_env(prefix: str) -> dict[str, str]:
    """Environment giving a stack's services consumer groups of their own, named after the topic prefix."""
    groups = {f"{s}_GROUP_ID": f"{s.lower()}-{prefix}" for s in ("INGEST", "FEEDBACK", "AGGREGATOR")}
    return {**groups, "FEEDBACK_TASKS_GROUP_ID": f"tasks-{prefix}"}


def topic_settings(kafka_bootstrap: str, prefix: str, **overrides: Any) -> PipelineSettings:
    """The settings topics are created with (partitions, retention) for a test's prefix."""
    return PipelineSettings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, **overrides)


@asynccontextmanager
async def isolated_pipeline(
    kafka_bootstrap: str, pg_server_url: str, template_db: str, **topic_overrides: Any
) -> AsyncIterator[tuple[str, str]]:
    """For a module's running services: a fresh database and a topic prefix with every topic created."""
    prefix = new_topic_prefix()
    await ensure_topics(topic_settings(kafka_bootstrap, prefix, **topic_overrides))
    async with fresh_database(pg_server_url, template_db) as url:
        yield url, prefix
