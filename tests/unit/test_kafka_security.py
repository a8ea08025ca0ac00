"""The Kafka security settings as aiokafka kwargs and as FastStream's security object: one source, the same result."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from faststream.specification import AsyncAPI

from shared.kafka import make_broker
from shared.kafka_security import kafka_broker_security, kafka_client_kwargs
from shared.settings import PipelineSettings
from tests.support.pki import Pki, make_pki

MECHANISMS = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def configurations(pki: Pki) -> list[dict[str, Any]]:
    """Every valid protocol x mechanism, TLS with a CA file, and mutual TLS with an encrypted key."""
    tls = {"kafka_ssl_cafile": pki.ca}
    client = {
        **tls,
        "kafka_ssl_certfile": pki.client_cert,
        "kafka_ssl_keyfile": pki.client_key,
        "kafka_ssl_key_password": pki.client_key_password,
    }
    sasl = [
        {"kafka_sasl_mechanism": m, "kafka_sasl_username": "pipeline", "kafka_sasl_password": "pw"} for m in MECHANISMS
    ]
    return [
        {"kafka_security_protocol": "PLAINTEXT"},
        {"kafka_security_protocol": "SSL", **tls},
        {"kafka_security_protocol": "SSL", **client},
        *({"kafka_security_protocol": "SASL_PLAINTEXT", **s} for s in sasl),
        *({"kafka_security_protocol": "SASL_SSL", **tls, **s} for s in sasl),
    ]


def test_plaintext_adds_nothing_but_the_protocol() -> None:
    settings = PipelineSettings()
    assert kafka_client_kwargs(settings) == {"security_protocol": "PLAINTEXT"}
    assert kafka_broker_security(settings) is None


def test_tls_verifies_the_broker_with_the_ca_file(pki: Pki) -> None:
    kwargs = kafka_client_kwargs(PipelineSettings(kafka_security_protocol="SSL", kafka_ssl_cafile=pki.ca))
    context = kwargs["ssl_context"]
    assert kwargs["security_protocol"] == "SSL" and isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert [cert["subject"] for cert in context.get_ca_certs()] == [((("commonName", "test-ca"),),)]


def test_sasl_ssl_carries_the_credentials(pki: Pki) -> None:
    settings = PipelineSettings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="pipeline",
        kafka_sasl_password="pw",
        kafka_ssl_cafile=pki.ca,
    )
    kwargs = kafka_client_kwargs(settings)
    assert {k: v for k, v in kwargs.items() if k != "ssl_context"} == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "pipeline",
        "sasl_plain_password": "pw",
    }
    security = kafka_broker_security(settings)
    assert isinstance(security, SASLScram512) and security.use_ssl and security.password == "pw"


def test_faststream_gets_the_same_kwargs_as_every_raw_client(pki: Pki) -> None:
    for configuration in configurations(pki):
        settings = PipelineSettings(**configuration)
        expected = kafka_client_kwargs(settings)
        security = kafka_broker_security(settings)
        given = parse_security(security) if security is not None else {"security_protocol": "PLAINTEXT"}
        given = {k: v for k, v in given.items() if not (k == "ssl_context" and v is None)}
        assert given.keys() == expected.keys(), configuration
        for key, value in expected.items():
            if key == "ssl_context":
                assert given[key].get_ca_certs() == value.get_ca_certs(), configuration
            else:
                assert given[key] == value, configuration
        protocol = configuration["kafka_security_protocol"]
        if protocol.startswith("SASL"):
            assert type(security) is MECHANISMS[configuration["kafka_sasl_mechanism"]]
        elif protocol == "SSL":
            assert type(security) is BaseSecurity and security.use_ssl


async def test_aiokafka_clients_accept_the_kwargs(pki: Pki) -> None:
    # Constructing checks the combination (aiokafka refuses SSL without a context, unknown mechanisms...).
    for configuration in configurations(pki):
        kwargs = kafka_client_kwargs(PipelineSettings(**configuration))
        producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", **kwargs)
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9", **kwargs)
        for client in (producer.client, consumer._client):
            assert client._security_protocol == configuration["kafka_security_protocol"]
        await producer.stop()
        await consumer.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers="127.0.0.1:9", **kwargs)
        assert admin._client._security_protocol == configuration["kafka_security_protocol"]
        await admin.close()


def test_the_services_broker_is_built_with_the_security(pki: Pki) -> None:
    settings = PipelineSettings(kafka_security_protocol="SSL", kafka_ssl_cafile=pki.ca)
    broker = make_broker(settings, client_id="unit")
    assert broker._connection_kwargs["security_protocol"] == "SSL"
    assert isinstance(broker._connection_kwargs["ssl_context"], ssl.SSLContext)
    assert make_broker(PipelineSettings(), client_id="unit")._connection_kwargs.get("security_protocol") in (
        None,
        "PLAINTEXT",
    )


def test_the_asyncapi_document_declares_the_security_but_not_the_password(pki: Pki) -> None:
    settings = PipelineSettings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="pipeline",
        kafka_sasl_password="never-in-a-document",
        kafka_ssl_cafile=pki.ca,
    )
    document = AsyncAPI(make_broker(settings, client_id="unit"), schema_version="3.0.0").to_specification()
    text = document.to_json()
    assert "never-in-a-document" not in text
    assert "scramSha256" in text and "kafka-secure" in text
