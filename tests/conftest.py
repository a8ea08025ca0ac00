"""Session servers (Tansu, PostgreSQL) and per-test isolation (a cloned database, unique topic names).

KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL, when set before the run, point the tests at external servers
instead of local ones: with the Kafka security settings (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*,
KAFKA_SSL_*), which stay in the environment for every client the tests make, and DATABASE_SSL_ROOT_CERT,
which goes into the server URL as its sslrootcert. Every other setting a service could read from the
environment is cleared. The plumbing behind these fixtures is in tests/support/.
"""

from __future__ import annotations

import os

# Before numpy loads: one BLAS thread per process. The suite runs in parallel workers on few cores, and
# OpenBLAS's own thread pool per worker turned a 2 s unit test into a 120 s timeout.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

from collections.abc import AsyncIterator, Iterator

import pytest

from deploy.local_broker import start_broker
from deploy.local_database import start_database
from shared.db import database_dsn
from shared.kafka import ensure_topics
from shared.security_settings import KAFKA_SECURITY_FIELDS
from shared.settings import PipelineSettings
from tests.support.isolation import fresh_database, migrated_template, new_topic_prefix, topic_settings

SERVICE_ENV_PREFIXES = ("INGEST_", "FEEDBACK_", "AGGREGATOR_")


class ExternalServers:
    """The servers named in the environment before it was cleared (None: start a local one)."""

    def __init__(self, kafka_bootstrap: str | None, database_url: str | None) -> None:
        self.kafka_bootstrap = kafka_bootstrap
        self.database_url = database_url


EXTERNAL_SERVERS = pytest.StashKey[ExternalServers]()


def pytest_configure(config: pytest.Config) -> None:
    kafka_bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None
    # DATABASE_URL (or DATABASE_URL_FILE) with DATABASE_SSL_ROOT_CERT as the URL's sslrootcert.
    is_external_database = bool(os.environ.get("DATABASE_URL") or os.environ.get("DATABASE_URL_FILE"))
    database_url = database_dsn(PipelineSettings()) if is_external_database else None
    config.stash[EXTERNAL_SERVERS] = ExternalServers(kafka_bootstrap, database_url)
    # Unprefixed shared settings (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, TOPIC_PREFIX, ADMIN_TOKEN, ...), their
    # `_FILE` twins, and every service's prefixed ones: a developer's shell must not change what tests see.
    shared_names = {name.upper() for name in PipelineSettings.model_fields}
    kept = {name.upper() for name in KAFKA_SECURITY_FIELDS} if kafka_bootstrap is not None else set()
    for name in list(os.environ):
        setting = name.upper().removesuffix("_FILE")
        if setting in kept:
            continue
        if setting in shared_names or name.upper().startswith(SERVICE_ENV_PREFIXES):
            del os.environ[name]
    if kafka_bootstrap is None:
        os.environ.update(TANSU_GROUP_TIMING)


# Tansu answers a JoinGroup after half the session timeout (measured: 10 s sessions join in 5.0 s, 3 s in
# 1.5 s), and every service a test starts waits for its consumers' groups. Shorter sessions on the local
# broker only: a real Kafka refuses sessions under its group.min.session.timeout.ms (6 s by default).
TANSU_GROUP_TIMING = {"KAFKA_SESSION_TIMEOUT_MS": "4000", "KAFKA_HEARTBEAT_INTERVAL_MS": "500"}


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
    # One database per test: PostgreSQL's own autovacuum naptime, not the stack's (it visits each database).
    pgdata = tmp_path_factory.mktemp("postgres") / "pgdata"
    with start_database(pgdata, fast_unsafe=True, autovacuum_naptime_s=None) as database:
        yield database.url


@pytest.fixture(scope="session")
async def template_db(pg_server_url: str) -> AsyncIterator[str]:
    """A database with every migration applied, cloned by each test; its name."""
    async with migrated_template(pg_server_url) as name:
        yield name


@pytest.fixture
async def database_url(pg_server_url: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test, dropped afterwards."""
    async with fresh_database(pg_server_url, template_db) as url:
        yield url


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix no other test uses, e.g. "t1a2b3c4."."""
    return new_topic_prefix()


@pytest.fixture
async def topics(kafka_bootstrap: str, topic_prefix: str) -> str:
    """Every pipeline topic created under this test's prefix; the prefix."""
    await ensure_topics(topic_settings(kafka_bootstrap, topic_prefix))
    return topic_prefix
