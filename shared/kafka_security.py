"""How every Kafka client of the project connects: the security settings as aiokafka kwargs and as FastStream's object.

One source for both: `kafka_client_kwargs` is what each raw aiokafka producer, consumer and admin client
gets (`AIOKafkaConsumer(bootstrap_servers=..., **kafka_client_kwargs(settings))`); `kafka_broker_security`
is the same settings as the `security` argument of FastStream's KafkaBroker, which turns it back into those
kwargs for its own producer and consumers (and describes the server's security in /asyncapi.json). The
settings were checked when they loaded (shared.security_settings), so building the TLS context here
does not fail on a file that was fine then.
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.helpers import create_ssl_context
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from shared.security_settings import KAFKA_SASL_PROTOCOLS, KAFKA_TLS_PROTOCOLS, secret_value
from shared.settings import PipelineSettings

_FASTSTREAM_SASL: dict[str, type[SASLPlaintext] | type[SASLScram256] | type[SASLScram512]] = {
    "PLAIN": SASLPlaintext,
    "SCRAM-SHA-256": SASLScram256,
    "SCRAM-SHA-512": SASLScram512,
}


def kafka_ssl_context(settings: PipelineSettings) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL (hostname checked, CA file or the system's CAs); None otherwise."""
    if settings.kafka_security_protocol not in KAFKA_TLS_PROTOCOLS:
        return None
    return create_ssl_context(
        cafile=settings.kafka_ssl_cafile,
        certfile=settings.kafka_ssl_certfile,
        keyfile=settings.kafka_ssl_keyfile,
        # Always a password (empty when none is set): without one OpenSSL would prompt on the terminal.
        password=secret_value(settings.kafka_ssl_key_password) or "",
    )


def kafka_client_kwargs(settings: PipelineSettings) -> dict[str, Any]:
    """The security keyword arguments of an aiokafka producer, consumer or admin client."""
    protocol = settings.kafka_security_protocol
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    context = kafka_ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if protocol in KAFKA_SASL_PROTOCOLS:
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = secret_value(settings.kafka_sasl_password)
    return kwargs


def kafka_broker_security(settings: PipelineSettings) -> BaseSecurity | None:
    """The `security` argument of FastStream's KafkaBroker for these settings (None for PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = kafka_ssl_context(settings)
    is_tls = protocol in KAFKA_TLS_PROTOCOLS
    if protocol not in KAFKA_SASL_PROTOCOLS:
        return BaseSecurity(ssl_context=context, use_ssl=is_tls)
    assert settings.kafka_sasl_mechanism is not None and settings.kafka_sasl_username is not None
    return _FASTSTREAM_SASL[settings.kafka_sasl_mechanism](
        settings.kafka_sasl_username,
        secret_value(settings.kafka_sasl_password) or "",
        ssl_context=context,
        use_ssl=is_tls,
    )
