"""PostgreSQL over TLS: DATABASE_URL's sslmode with DATABASE_SSL_ROOT_CERT, checked against the test's own CA.

The embedded PostgreSQL wheel is built without TLS (ssl=on: "SSL is not supported by this build"), so the
TLS endpoint is tests/support/pg_tls_proxy.py in front of the session's server: it speaks PostgreSQL's TLS
negotiation with a certificate for 127.0.0.1 from tests/support/pki.py and turns away clients that do not
ask for TLS, so a query answered through it was asked over TLS.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from deploy.localstack import free_port
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from shared import db
from shared.errors import ConfigurationError
from shared.settings import PipelineSettings
from tests.support.apps import running_app
from tests.support.builders import interaction_body
from tests.support.isolation import new_topic_prefix
from tests.support.pg_tls_proxy import PostgresTlsProxy
from tests.support.pki import Pki, make_pki, server_tls

pytestmark = pytest.mark.timeout(120)
# Well under the pool's retry deadline (3 x db_connect_timeout_s = 30 s): refused at once, not retried.
REFUSAL_DEADLINE_S = 5.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def tls_front(pki: Pki, database_url: str) -> AsyncIterator[tuple[PostgresTlsProxy, str]]:
    """The proxy in front of this test's database; the database's URL through it (no sslmode yet)."""
    parts = urlsplit(database_url)
    assert parts.hostname is not None and parts.port is not None
    async with PostgresTlsProxy(free_port(), (parts.hostname, parts.port), server_tls(pki)) as proxy:
        netloc = f"{parts.username}@127.0.0.1:{proxy.port}"
        yield proxy, urlunsplit(parts._replace(netloc=netloc, query=""))


def settings_for(url: str, root_cert: object, sslmode: str = "verify-full") -> PipelineSettings:
    return PipelineSettings(database_url=f"{url}?sslmode={sslmode}", database_ssl_root_cert=root_cert)


async def test_the_pool_verifies_the_server_with_the_ca_file(pki: Pki, tls_front: tuple[PostgresTlsProxy, str]):
    proxy, url = tls_front
    pool = await db.create_pool(settings_for(url, pki.ca))
    try:
        async with pool.acquire() as connection:
            assert await connection.fetchval("SELECT 1") == 1
    finally:
        await pool.close()
    assert proxy.tls_sessions >= 1 and proxy.refused_plaintext == 0


async def test_the_ca_may_also_be_sslrootcert_in_the_url(pki: Pki, tls_front: tuple[PostgresTlsProxy, str]) -> None:
    proxy, url = tls_front
    connection = await asyncpg.connect(f"{url}?sslmode=verify-full&sslrootcert={pki.ca}")
    try:
        assert await connection.fetchval("SELECT 1") == 1
    finally:
        await connection.close()
    assert proxy.tls_sessions == 1


async def test_a_wrong_ca_is_refused_at_once_with_a_clear_error(pki: Pki, tls_front: tuple[PostgresTlsProxy, str]):
    proxy, url = tls_front
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as refused:
        await db.create_pool(settings_for(url, pki.other_ca))
    assert time.monotonic() - started < REFUSAL_DEADLINE_S
    assert "DATABASE_SSL_ROOT_CERT" in refused.value.message
    assert "certificate" in refused.value.context["reason"]
    with pytest.raises(ConfigurationError, match="DATABASE_SSL_ROOT_CERT"):
        await db.migrate(db.database_dsn(settings_for(url, pki.other_ca)), ())
    assert proxy.tls_sessions == 0


async def test_a_client_that_does_not_ask_for_tls_is_turned_away(tls_front: tuple[PostgresTlsProxy, str]) -> None:
    # What makes the other tests' counts proof: nothing reaches the database through the front without TLS.
    proxy, url = tls_front
    with pytest.raises((OSError, asyncpg.exceptions.ConnectionDoesNotExistError)):
        await asyncpg.connect(f"{url}?sslmode=disable", timeout=REFUSAL_DEADLINE_S)
    assert proxy.refused_plaintext == 1 and proxy.tls_sessions == 0


async def test_a_service_opens_every_connection_over_tls(
    pki: Pki, tls_front: tuple[PostgresTlsProxy, str], kafka_bootstrap: str
) -> None:
    proxy, url = tls_front
    settings = IngestSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=f"{url}?sslmode=verify-full",
        database_ssl_root_cert=pki.ca,
        topic_prefix=new_topic_prefix(),
        http_port=0,
        db_pool_min_size=2,
    )
    async with running_app(create_ingest(settings)) as ingest:
        response = await ingest.post("/v1/interactions", json=interaction_body())
        assert response.status_code == 202, response.text
    # The migration's connection and the pool's (at least two) all came through TLS; none tried without.
    assert proxy.tls_sessions >= 3 and proxy.refused_plaintext == 0, (proxy.tls_sessions, proxy.refused_plaintext)
