"""Checks of the connection security settings (Kafka SASL and TLS, PostgreSQL TLS), run whenever settings load.

Each check returns what is wrong, each message naming the setting (never its value when it is a secret),
so that a service refuses to start with a clear error instead of failing on its first connection.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from pydantic import SecretStr

if TYPE_CHECKING:
    from shared.settings import PipelineSettings

# `json_schema_extra` of a secret setting: it may come from the file named by `<NAME>_FILE` (see SecretFilesSource).
SECRET_SETTING = {"secret": True}
# Every Kafka security setting (PipelineSettings' field names), e.g. to reset them all for a PLAINTEXT broker.
KAFKA_SECURITY_FIELDS = (
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_cafile",
    "kafka_ssl_certfile",
    "kafka_ssl_keyfile",
    "kafka_ssl_key_password",
)
KAFKA_SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
KAFKA_TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
# Only these sslmodes make asyncpg check the server's certificate against a CA.
VERIFYING_SSLMODES = frozenset({"require", "verify-ca", "verify-full"})


def secret_value(secret: SecretStr | None) -> str | None:
    """The plain text of an optional secret setting (only where it is used, never to log or print)."""
    return secret.get_secret_value() if secret is not None else None


def _unreadable(name: str, path: Path) -> str | None:
    """Why the file a setting names cannot be read, or None when it can."""
    try:
        with path.open("rb"):
            return None
    except OSError as exc:
        return f"{name}={path} cannot be read: {exc.strerror}"


def kafka_security_errors(settings: PipelineSettings) -> list[str]:
    """What is wrong with the Kafka security settings (protocol, SASL, TLS files), each naming its setting."""
    protocol = settings.kafka_security_protocol
    stated = f"KAFKA_SECURITY_PROTOCOL={protocol}"
    sasl = {
        "KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
        "KAFKA_SASL_USERNAME": settings.kafka_sasl_username,
        "KAFKA_SASL_PASSWORD": secret_value(settings.kafka_sasl_password),
    }
    tls = {
        "KAFKA_SSL_CAFILE": settings.kafka_ssl_cafile,
        "KAFKA_SSL_CERTFILE": settings.kafka_ssl_certfile,
        "KAFKA_SSL_KEYFILE": settings.kafka_ssl_keyfile,
        "KAFKA_SSL_KEY_PASSWORD": secret_value(settings.kafka_ssl_key_password),
    }
    if protocol in KAFKA_SASL_PROTOCOLS:
        errors = [f"{stated} needs {name}" for name, value in sasl.items() if not value]
    else:
        errors = [
            f"{name} is set but {stated} uses no SASL (SASL_PLAINTEXT or SASL_SSL)" for name, v in sasl.items() if v
        ]
    if protocol not in KAFKA_TLS_PROTOCOLS:
        return errors + [f"{name} is set but {stated} uses no TLS (SSL or SASL_SSL)" for name, v in tls.items() if v]
    return errors + _kafka_tls_errors(settings)


def _kafka_tls_errors(settings: PipelineSettings) -> list[str]:
    files = {
        "KAFKA_SSL_CAFILE": settings.kafka_ssl_cafile,
        "KAFKA_SSL_CERTFILE": settings.kafka_ssl_certfile,
        "KAFKA_SSL_KEYFILE": settings.kafka_ssl_keyfile,
    }
    errors = [error for name, path in files.items() if path is not None and (error := _unreadable(name, path))]
    if settings.kafka_ssl_keyfile is not None and settings.kafka_ssl_certfile is None:
        errors.append("KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE (the client certificate the key belongs to)")
    if settings.kafka_ssl_key_password is not None and settings.kafka_ssl_certfile is None:
        errors.append("KAFKA_SSL_KEY_PASSWORD needs KAFKA_SSL_CERTFILE (and KAFKA_SSL_KEYFILE unless the key is in it)")
    return errors or _kafka_tls_load_errors(settings)


def _kafka_tls_load_errors(settings: PipelineSettings) -> list[str]:
    """Load the CA and the client certificate as the clients will, so a bad file fails at start."""
    try:
        context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    except ssl.SSLError as exc:
        return [f"KAFKA_SSL_CAFILE={settings.kafka_ssl_cafile} holds no usable PEM certificate ({exc.reason or exc})"]
    if settings.kafka_ssl_certfile is None:
        return []
    try:
        # Always a password (empty when none is set): without one OpenSSL would prompt on the terminal.
        password = secret_value(settings.kafka_ssl_key_password) or ""
        context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile, password)
    except ssl.SSLError as exc:
        if settings.kafka_ssl_keyfile is None:
            return [
                f"KAFKA_SSL_CERTFILE={settings.kafka_ssl_certfile} holds no usable private key: set KAFKA_SSL_KEYFILE"
            ]
        return [
            f"KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE cannot be loaded together ({exc.reason or exc}): a key that "
            "does not match the certificate, an encrypted key without the right KAFKA_SSL_KEY_PASSWORD, or not PEM"
        ]
    return []


def database_tls_errors(settings: PipelineSettings) -> list[str]:
    """What is wrong with DATABASE_SSL_ROOT_CERT against DATABASE_URL's sslmode."""
    root_cert = settings.database_ssl_root_cert
    if root_cert is None:
        return []
    query = parse_qs(urlsplit(settings.database_url).query)
    errors = [error] if (error := _unreadable("DATABASE_SSL_ROOT_CERT", root_cert)) else []
    if "sslrootcert" in query:
        errors.append("DATABASE_SSL_ROOT_CERT and sslrootcert in DATABASE_URL are both set: set only one of them")
    sslmode = query.get("sslmode", ["prefer (unset)"])[-1]
    if sslmode not in VERIFYING_SSLMODES:
        errors.append(
            f"DATABASE_SSL_ROOT_CERT is set but DATABASE_URL has sslmode={sslmode}, which never checks the server's "
            "certificate: add sslmode=verify-full (or verify-ca) to DATABASE_URL"
        )
    return errors
