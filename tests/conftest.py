"""Session servers (Tansu, PostgreSQL) and per-test isolation (a cloned database, unique topic names).

KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL, when set before the run, point the tests at external servers
instead of local ones. Every other setting a service could read from the environment is cleared.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from deploy.init import migrate_all
from deploy.local_broker import start_broker
from deploy.local_database import start_database
from shared.kafka import ensure_topics
from shared.settings import PipelineSettings

SERVICE_ENV_PREFIXES = ("INGEST_", "FEEDBACK_", "AGGREGATOR_")
TEMPLATE_DB = "pipeline_template"
ADMIN_TIMEOUT_S = 30.0
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class ExternalServers:
    """The servers named in the environment before it was cleared (None: start a local one)."""

    def __init__(self, kafka_bootstrap: str | None, database_url: str | None) -> None:
        self.kafka_bootstrap = kafka_bootstrap
        self.database_url = database_url


EXTERNAL_SERVERS = pytest.StashKey[ExternalServers]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[EXTERNAL_SERVERS] = ExternalServers(
        os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None, os.environ.get("DATABASE_URL") or None
    )
    # Unprefixed shared settings (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, TOPIC_PREFIX, ADMIN_TOKEN, ...)
    # and every service's prefixed ones: a developer's shell must not change what tests see.
    shared_names = {name.upper() for name in PipelineSettings.model_fields}
    for name in list(os.environ):
        if name.upper() in shared_names or name.upper().startswith(SERVICE_ENV_PREFIXES):
            del os.environ[name]


def topic_settings(kafka_bootstrap: str, prefix: str, **overrides: Any) -> PipelineSettings:
    """The settings topics are created with (partitions, retention) for a test's prefix."""
    return PipelineSettings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, **overrides)


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


@pytest.fixture(scope="session")
def kafka_bootstrap(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Kafka-protocol broker for the whole session (memory storage: topics are per test, by prefix)."""
    external = pytestconfig.stash[EXTERNAL_SERVERS].kafka_bootstrap
    if external is not None:
        yield external
        return
    with start_broker(log_dir=tmp_path_factory.mktemp("tansu")) as broker:
        yield broker.bootstrap


@pytest.fixture(scope="session")
def pg_server_url(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server for the whole session; tests get their own database from `database_url`."""
    external = pytestconfig.stash[EXTERNAL_SERVERS].database_url
    if external is not None:
        yield external
        return
    with start_database(tmp_path_factory.mktemp("postgres") / "pgdata", fast_unsafe=True) as database:
        yield database.url


@pytest.fixture(scope="session")
async def template_db(pg_server_url: str) -> AsyncIterator[str]:
    """A database with every migration applied, cloned by each test; its name."""
    name = _quoted(TEMPLATE_DB)
    await _execute(pg_server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await _execute(pg_server_url, f"CREATE DATABASE {name}")
    await migrate_all(database_url_for(pg_server_url, TEMPLATE_DB))
    yield TEMPLATE_DB
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


@asynccontextmanager
async def isolated_pipeline(
    kafka_bootstrap: str, pg_server_url: str, template_db: str
) -> AsyncIterator[tuple[str, str]]:
    """For a module's running services: a fresh database and a topic prefix with every topic created."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    await ensure_topics(topic_settings(kafka_bootstrap, prefix))
    async with fresh_database(pg_server_url, template_db) as url:
        yield url, prefix


@pytest.fixture
async def database_url(pg_server_url: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test, dropped afterwards."""
    async with fresh_database(pg_server_url, template_db) as url:
        yield url


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix no other test uses, e.g. "t1a2b3c4."."""
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
async def topics(kafka_bootstrap: str, topic_prefix: str) -> str:
    """Every pipeline topic created under this test's prefix; the prefix."""
    await ensure_topics(topic_settings(kafka_bootstrap, topic_prefix))
    return topic_prefix
