"""The pipeline over TLS and SASL_SSL: every Kafka client of the three services connects as the settings say.

The local broker (Tansu 0.6.0) serves neither TLS nor a SASL login it can check (deploy/local_broker.py),
so the broker here is a Tansu of this module behind `KafkaProxy` (tests/support/kafka_proxy.py): TLS with a
server certificate from the test's own CA, and in the SASL tests the broker's side of SASL (SCRAM-SHA-512 or
PLAIN with one account). Tansu advertises the proxy's address, so no client can reach it any other way.
What is checked: an interaction and its votes become a pair through the proxy; what the proxy counted (TLS
connections, logins); and that a wrong CA, a wrong password or a missing login is refused.
"""

from __future__ import annotations

import json
import ssl
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from deploy.local_broker import BrokerProcess, start_broker
from deploy.localstack import free_port
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.settings import AggregatorSettings
from services.feedback.app import create_app as create_feedback
from services.feedback.settings import FeedbackSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from shared import topics
from shared.kafka import ensure_topics
from shared.kafka_security import kafka_client_kwargs
from shared.settings import PipelineSettings
from tests.support.apps import running_apps
from tests.support.builders import interaction_body, vote_body
from tests.support.isolation import consumer_groups_env, new_topic_prefix
from tests.support.kafka import produce, reading
from tests.support.kafka_proxy import KafkaProxy, SaslAccount
from tests.support.pki import Pki, make_pki, server_tls
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(240)
PAIR_TIMEOUT_S = 60.0
ACCOUNT = SaslAccount("SCRAM-SHA-512", "pipeline", "correct horse battery staple")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerProcess, int]]:
    """A Tansu of this module that tells clients to connect to the proxy port (the second item)."""
    proxy_port = free_port()
    with start_broker(log_dir=tmp_path_factory.mktemp("tansu-tls"), advertised=f"127.0.0.1:{proxy_port}") as broker:
        yield broker, proxy_port


def proxy(broker: tuple[BrokerProcess, int], tls: ssl.SSLContext, account: SaslAccount | None = None) -> KafkaProxy:
    process, port = broker
    return KafkaProxy(port, (process.host, process.port), tls, account)


def secret_file(folder: Path, name: str, value: str) -> Path:
    """A secret as a container runtime mounts it: its own file, a trailing newline."""
    path = folder / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


async def votes_become_a_pair(bootstrap: str, database_url: str, **security: Any) -> dict[str, Any]:
    """Run the three services on `bootstrap` with `security` settings (the rest from the environment); post two
    answers to one prompt, five thumbs up on one and five down on the other; return the pair read back."""
    prefix = new_topic_prefix()
    groups = {k.lower(): v for k, v in consumer_groups_env(prefix).items()}
    common: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "database_url": database_url,
        "topic_prefix": prefix,
        "http_port": 0,
        "outbox_poll_interval_s": 0.1,
        **security,
    }
    apps = [
        create_ingest(IngestSettings(**common, group_id=groups["ingest_group_id"])),
        create_feedback(
            FeedbackSettings(
                **common, group_id=groups["feedback_group_id"], tasks_group_id=groups["feedback_tasks_group_id"]
            )
        ),
        create_aggregator(AggregatorSettings(**common, group_id=groups["aggregator_group_id"])),
    ]
    client_security = kafka_client_kwargs(PipelineSettings(kafka_bootstrap_servers=bootstrap, **security))
    liked, disliked = f"int-{uuid.uuid4().hex[:8]}", f"int-{uuid.uuid4().hex[:8]}"
    prompt = [{"role": "user", "content": f"Which answer is better? ({liked})"}]
    now = datetime.now(UTC).isoformat()
    async with running_apps(*apps) as (ingest, feedback, _aggregator):
        for interaction_id, answer in ((liked, "Answer one."), (disliked, "Answer two, different.")):
            response = await ingest.post(
                "/v1/interactions",
                json=interaction_body(
                    interaction_id=interaction_id,
                    conversation_id=f"c-{interaction_id}",
                    occurred_at=now,
                    messages=prompt,
                    response={"content": answer, "model": "acme-chat", "model_version": "2026-11-01"},
                ),
            )
            assert response.status_code == 202, response.text
        votes = [
            vote_body(interaction_id=interaction_id, user_ref=f"u-{interaction_id}-{i}", value=value, occurred_at=now)
            for interaction_id, value in ((liked, 1), (disliked, -1))
            for i in range(5)
        ]
        response = await feedback.post("/v1/votes/batch", json=votes)
        assert response.status_code == 202 and not response.json()["rejected"], response.text
        async with reading(bootstrap, prefix, topics.PREFERENCE_PAIRS, security=client_security) as pairs:

            async def pair() -> dict[str, Any] | None:
                live = [record for record in await pairs.poll() if record.value is not None]
                return json.loads(live[-1].value) if live else None

            found = await eventually(pair, timeout=PAIR_TIMEOUT_S, interval=0.2)
    assert (found["chosen"]["interaction_id"], found["rejected"]["interaction_id"]) == (liked, disliked)
    return found


async def test_the_pipeline_runs_over_tls(
    pki: Pki, secured_broker: tuple[BrokerProcess, int], database_url: str
) -> None:
    async with proxy(secured_broker, server_tls(pki)) as tls:
        await votes_become_a_pair(
            tls.bootstrap, database_url, kafka_security_protocol="SSL", kafka_ssl_cafile=str(pki.ca)
        )
    # Three services (producer, consumers, admin) and the test's reader all came through the TLS listener.
    assert tls.connections >= 6, tls.connections


async def test_the_pipeline_runs_over_sasl_ssl_with_the_password_from_a_file(
    pki: Pki,
    secured_broker: tuple[BrokerProcess, int],
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As an operator configures production: the environment, the password in a mounted secret file.
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", ACCOUNT.mechanism)
    monkeypatch.setenv("KAFKA_SASL_USERNAME", ACCOUNT.username)
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", str(secret_file(tmp_path, "kafka_password", ACCOUNT.password)))
    monkeypatch.setenv("KAFKA_SSL_CAFILE", str(pki.ca))
    async with proxy(secured_broker, server_tls(pki), ACCOUNT) as sasl:
        await votes_become_a_pair(sasl.bootstrap, database_url)
    # Three services and the test's reader logged in (the proxy forwards nothing but ApiVersions before that).
    assert sasl.refused == 0 and sasl.authenticated >= 6, (sasl.refused, sasl.authenticated)


async def test_mutual_tls_with_an_encrypted_client_key(
    pki: Pki, secured_broker: tuple[BrokerProcess, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password_file = secret_file(tmp_path, "key_password", pki.client_key_password)
    monkeypatch.setenv("KAFKA_SSL_KEY_PASSWORD_FILE", str(password_file))
    prefix = new_topic_prefix()
    async with proxy(secured_broker, server_tls(pki, require_client_cert=True)) as mtls:
        settings = PipelineSettings(
            kafka_bootstrap_servers=mtls.bootstrap,
            topic_prefix=prefix,
            kafka_security_protocol="SSL",
            kafka_ssl_cafile=str(pki.ca),
            kafka_ssl_certfile=str(pki.client_cert),
            kafka_ssl_keyfile=str(pki.client_key),
        )
        assert topics.topic(prefix, topics.VOTES) in await ensure_topics(settings)
        security = kafka_client_kwargs(settings)
        await produce(mtls.bootstrap, prefix, topics.FEEDBACK_RAW, [b"{}"], security=security)
        async with reading(mtls.bootstrap, prefix, topics.FEEDBACK_RAW, security=security) as raw:
            await eventually(raw.poll, timeout=10)
        monkeypatch.delenv("KAFKA_SSL_KEY_PASSWORD_FILE")
        without_certificate = PipelineSettings(
            kafka_bootstrap_servers=mtls.bootstrap,
            topic_prefix=new_topic_prefix(),
            kafka_security_protocol="SSL",
            kafka_ssl_cafile=str(pki.ca),
        )
        with pytest.raises(Exception, match="bootstrap"):
            await ensure_topics(without_certificate)


REFUSED = {
    "a CA that did not sign the broker's certificate": (
        None,
        {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "other_ca"},
    ),
    "PLAINTEXT against a TLS listener": (None, {}),
    "a wrong SASL password": (
        ACCOUNT,
        {
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": ACCOUNT.mechanism,
            "kafka_sasl_username": ACCOUNT.username,
            "kafka_sasl_password": "wrong horse",
            "kafka_ssl_cafile": "ca",
        },
    ),
    "TLS without the SASL login the broker requires": (
        ACCOUNT,
        {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "ca"},
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
async def test_a_client_without_the_right_credentials_is_refused(
    case: str, pki: Pki, secured_broker: tuple[BrokerProcess, int]
) -> None:
    account, settings = REFUSED[case]
    files = {"ca": str(pki.ca), "other_ca": str(pki.other_ca)}
    settings = {k: files.get(v, v) if k == "kafka_ssl_cafile" else v for k, v in settings.items()}
    async with proxy(secured_broker, server_tls(pki), account) as listener:
        with pytest.raises(Exception, match="bootstrap"):
            await ensure_topics(
                PipelineSettings(
                    kafka_bootstrap_servers=listener.bootstrap, topic_prefix=new_topic_prefix(), **settings
                )
            )
    if account is None:
        assert listener.connections == 0  # no TLS handshake completed
    else:
        assert listener.connections >= 1 and listener.refused >= 1 and listener.authenticated == 0
