"""The security settings: Kafka TLS/SASL and PostgreSQL TLS checks at load, secrets from `<NAME>_FILE`, never shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict, SettingsError

from services.feedback.settings import FeedbackSettings
from shared.security_settings import KAFKA_SECURITY_FIELDS, SECRET_SETTING
from shared.settings import PipelineSettings, ServiceSettings, secret_setting
from tests.support.pki import Pki, make_pki

SASL: dict[str, Any] = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "pipeline",
    "kafka_sasl_password": "hunter2-secret",
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def errors_of(**settings: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        PipelineSettings(**settings)
    return str(caught.value)


def test_the_security_fields_list_is_every_kafka_security_setting() -> None:
    prefixes = ("kafka_security_", "kafka_sasl_", "kafka_ssl_")
    assert set(KAFKA_SECURITY_FIELDS) == {name for name in PipelineSettings.model_fields if name.startswith(prefixes)}


def test_the_defaults_are_plaintext_and_valid() -> None:
    settings = PipelineSettings()
    assert settings.kafka_security_protocol == "PLAINTEXT" and settings.database_ssl_root_cert is None


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_needs_a_mechanism_a_user_name_and_a_password(protocol: str) -> None:
    message = errors_of(kafka_security_protocol=protocol)
    for name in ("KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
        assert f"KAFKA_SECURITY_PROTOCOL={protocol} needs {name}" in message


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
def test_sasl_settings_without_a_sasl_protocol_are_a_mistake(protocol: str) -> None:
    message = errors_of(**{**SASL, "kafka_security_protocol": protocol})
    assert f"KAFKA_SASL_USERNAME is set but KAFKA_SECURITY_PROTOCOL={protocol} uses no SASL" in message


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_tls_files_without_a_tls_protocol_are_a_mistake(protocol: str, pki: Pki) -> None:
    sasl = SASL if protocol.startswith("SASL") else {}
    message = errors_of(**{**sasl, "kafka_security_protocol": protocol, "kafka_ssl_cafile": pki.ca})
    assert f"KAFKA_SSL_CAFILE is set but KAFKA_SECURITY_PROTOCOL={protocol} uses no TLS" in message


def test_an_unknown_protocol_or_mechanism_is_refused() -> None:
    assert "kafka_security_protocol" in errors_of(kafka_security_protocol="TLS")
    assert "kafka_sasl_mechanism" in errors_of(**{**SASL, "kafka_sasl_mechanism": "GSSAPI"})


def test_an_unreadable_ca_file_is_named_with_its_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "ca.pem"
    message = errors_of(kafka_security_protocol="SSL", kafka_ssl_cafile=missing)
    assert f"KAFKA_SSL_CAFILE={missing} cannot be read: No such file or directory" in message


def test_a_ca_file_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    assert "KAFKA_SSL_CAFILE" in errors_of(kafka_security_protocol="SSL", kafka_ssl_cafile=not_pem)


def test_a_key_without_its_certificate_and_a_certificate_without_a_key(pki: Pki) -> None:
    tls = {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": pki.ca}
    assert "KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE" in errors_of(**tls, kafka_ssl_keyfile=pki.client_key)
    message = errors_of(**tls, kafka_ssl_certfile=pki.server_cert)
    assert "holds no usable private key: set KAFKA_SSL_KEYFILE" in message
    assert "KAFKA_SSL_KEY_PASSWORD needs KAFKA_SSL_CERTFILE" in errors_of(**tls, kafka_ssl_key_password="x")


def test_a_key_that_does_not_fit_or_a_wrong_key_password(pki: Pki) -> None:
    tls = {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": pki.ca}
    mismatch = errors_of(**tls, kafka_ssl_certfile=pki.server_cert, kafka_ssl_keyfile=pki.client_key)
    assert "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE cannot be loaded together" in mismatch
    client = {**tls, "kafka_ssl_certfile": pki.client_cert, "kafka_ssl_keyfile": pki.client_key}
    assert "cannot be loaded together" in errors_of(**client, kafka_ssl_key_password="wrong")
    # The encrypted key without any password fails too (never an OpenSSL prompt on the terminal).
    assert "cannot be loaded together" in errors_of(**client)
    settings = PipelineSettings(**client, kafka_ssl_key_password=pki.client_key_password)
    assert settings.kafka_ssl_keyfile == pki.client_key


def test_a_complete_sasl_ssl_configuration_loads(pki: Pki) -> None:
    settings = PipelineSettings(**SASL, kafka_ssl_cafile=pki.ca)
    assert settings.kafka_sasl_password == SecretStr(SASL["kafka_sasl_password"])


def test_errors_never_show_the_values_they_were_given() -> None:
    message = errors_of(**{**SASL, "kafka_security_protocol": "PLAINTEXT", "admin_token": "admin-secret-token"})
    assert "KAFKA_SASL_PASSWORD is set" in message
    assert "hunter2-secret" not in message and "admin-secret-token" not in message


def test_secrets_are_hidden_in_reprs() -> None:
    settings = PipelineSettings(**SASL, admin_token="admin-secret-token")
    shown = repr(settings) + str(settings)
    assert "hunter2-secret" not in shown and "admin-secret-token" not in shown


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("", "sslmode=prefer (unset)"),
        ("?sslmode=disable", "sslmode=disable"),
        ("?sslmode=prefer", "sslmode=prefer"),
        ("?sslmode=verify-full&sslrootcert=/etc/ca.pem", "both set"),
    ],
)
def test_a_database_ca_needs_a_verifying_sslmode(query: str, problem: str, pki: Pki) -> None:
    message = errors_of(database_url=f"postgresql://u@db:5432/p{query}", database_ssl_root_cert=pki.ca)
    assert problem in message and "DATABASE_SSL_ROOT_CERT" in message


@pytest.mark.parametrize("sslmode", ["require", "verify-ca", "verify-full"])
def test_a_database_ca_with_a_verifying_sslmode_loads(sslmode: str, pki: Pki) -> None:
    PipelineSettings(database_url=f"postgresql://u@db:5432/p?sslmode={sslmode}", database_ssl_root_cert=pki.ca)


def test_an_unreadable_database_ca_is_named(tmp_path: Path) -> None:
    message = errors_of(database_url="postgresql://u@db/p?sslmode=verify-full", database_ssl_root_cert=tmp_path)
    assert f"DATABASE_SSL_ROOT_CERT={tmp_path} cannot be read" in message


# Secrets from files.


def secret_file(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content)
    return path


def test_every_secret_comes_from_its_file_stripped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = {
        "ADMIN_TOKEN": "admin-secret\n",
        "DATABASE_URL": "postgresql://pipeline:db-secret@db:5432/pipeline\n",
        "KAFKA_SASL_PASSWORD": "  kafka-secret\n",
        "KAFKA_SASL_USERNAME": "ignored: not a secret setting\n",
    }
    for name, content in files.items():
        monkeypatch.setenv(f"{name}_FILE", str(secret_file(tmp_path, name.lower(), content)))
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "from-env")  # beside its _FILE: no conflict, it is no secret
    settings = FeedbackSettings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN")
    assert settings.admin_token == SecretStr("admin-secret")
    assert settings.database_url == "postgresql://pipeline:db-secret@db:5432/pipeline"
    assert settings.kafka_sasl_password == SecretStr("kafka-secret")
    assert settings.kafka_sasl_username == "from-env"


def test_only_secret_settings_are_read_from_files() -> None:
    secrets = {
        name for name, field in PipelineSettings.model_fields.items() if field.json_schema_extra == SECRET_SETTING
    }
    assert secrets == {"admin_token", "database_url", "kafka_sasl_password", "kafka_ssl_key_password"}


def test_a_secret_set_both_ways_is_an_error_naming_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_TOKEN", "from-env")
    monkeypatch.setenv("ADMIN_TOKEN_FILE", str(secret_file(tmp_path, "token", "from-file")))
    with pytest.raises(SettingsError, match="ADMIN_TOKEN and ADMIN_TOKEN_FILE are both set") as caught:
        PipelineSettings()
    assert "from-env" not in str(caught.value) and "from-file" not in str(caught.value)


def test_an_empty_variable_beside_its_file_leaves_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Compose files often default a variable to "" (`${ADMIN_TOKEN:-}`): that is not a second value.
    monkeypatch.setenv("ADMIN_TOKEN", "")
    monkeypatch.setenv("ADMIN_TOKEN_FILE", str(secret_file(tmp_path, "token", "from-file\n")))
    assert PipelineSettings().admin_token == SecretStr("from-file")


def test_an_unreadable_secret_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match=r"KAFKA_SASL_PASSWORD_FILE=.*missing cannot be read: No such file"):
        PipelineSettings()


def test_a_service_secret_setting_is_read_from_its_prefixed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class KeyedSettings(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix="KEYED_")

        signing_key: SecretStr | None = secret_setting(None, "A key, e.g. to sign app keys.")

    monkeypatch.setenv("KEYED_SIGNING_KEY_FILE", str(secret_file(tmp_path, "key", "k-123\n")))
    assert KeyedSettings().signing_key == SecretStr("k-123")
    monkeypatch.setenv("KEYED_SIGNING_KEY", "also")
    with pytest.raises(SettingsError, match="KEYED_SIGNING_KEY and KEYED_SIGNING_KEY_FILE are both set"):
        KeyedSettings()
