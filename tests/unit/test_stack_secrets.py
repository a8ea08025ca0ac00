"""What `make up` shows and hands on: only a token it generated, no database password, no mismatched security."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from deploy.local_broker import BrokerProcess, without_kafka_security
from deploy.stack import Stack, write_atomically
from deploy.up import StackSettings, _summary, without_password
from shared.db import with_root_cert

EXTERNAL_DB = "postgresql://pipeline:db-secret@db.internal:5432/pipeline?sslmode=verify-full"


def stack(tmp_path: Path, **kwargs: object) -> Stack:
    return Stack(tmp_path, kafka_bootstrap="kafka:9093", database_url=EXTERNAL_DB, **kwargs)  # type: ignore[arg-type]


def test_the_summary_shows_a_generated_admin_token(tmp_path: Path) -> None:
    generated = stack(tmp_path)
    assert generated.is_admin_token_generated
    assert generated.admin_token in _summary(generated)


def test_the_summary_never_shows_the_operators_token_or_database_password(tmp_path: Path) -> None:
    given = stack(tmp_path, admin_token="operator-token")
    summary = _summary(given)
    assert "operator-token" not in summary and "(yours, not shown)" in summary
    assert "db-secret" not in summary
    assert "postgresql://pipeline:***@db.internal:5432/pipeline?sslmode=verify-full" in summary


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:p%40ss@h:5432/d?sslmode=require", "postgresql://u:***@h:5432/d?sslmode=require"),
        ("postgresql://u@h/d", "postgresql://u@h/d"),
        ("postgresql://:only-password@h/d", "postgresql://:***@h/d"),
    ],
)
def test_without_password(url: str, shown: str) -> None:
    assert without_password(url) == shown


def test_stack_json_is_created_for_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "stack.json"
    write_atomically(path, "{}\n", mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_services_of_a_local_broker_get_no_kafka_security(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("kafka", "admin"):
        (tmp_path / name).write_text(f"{name}-secret\n")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", str(tmp_path / "kafka"))
    monkeypatch.setenv("ADMIN_TOKEN_FILE", str(tmp_path / "admin"))
    external = stack(tmp_path)
    env = external._add_service("ingest", 1).env
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and env["KAFKA_SASL_PASSWORD_FILE"] == str(tmp_path / "kafka")
    # The stack sets ADMIN_TOKEN itself: its _FILE twin beside it would be an error in the service.
    assert "ADMIN_TOKEN_FILE" not in env and env["ADMIN_TOKEN"] == external.admin_token
    local = stack(tmp_path)
    local.broker = BrokerProcess(binary="tansu", host="127.0.0.1", port=9, log_path=tmp_path / "tansu.log")
    env = local._add_service("ingest", 1).env
    assert "KAFKA_SECURITY_PROTOCOL" not in env and "KAFKA_SASL_PASSWORD_FILE" not in env
    assert local._settings().kafka_security_protocol == "PLAINTEXT"


@pytest.mark.parametrize("is_required", [False, True])
def test_make_up_says_whether_app_keys_are_required_and_how_to_switch_and_issue_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, is_required: bool
) -> None:
    monkeypatch.setenv("APP_KEYS_REQUIRED", "true" if is_required else "false")
    settings = StackSettings()
    assert settings.app_keys_required is is_required
    up = stack(tmp_path, app_keys_required=settings.app_keys_required)
    summary = _summary(up)
    switch = "APP_KEYS_REQUIRED=false make up" if is_required else "APP_KEYS_REQUIRED=true make up"
    assert switch in summary
    assert "/v1/admin/apps" in summary and "python -m services.ingest.admin issue --app-ids" in summary
    assert up.info["app_keys_required"] is is_required
    # The stack sets it for its services whatever the shell says (their env is built from the stack's own).
    monkeypatch.setenv("APP_KEYS_REQUIRED", "false" if is_required else "true")
    assert up._add_service("feedback", 1).env["APP_KEYS_REQUIRED"] == ("true" if is_required else "false")


def test_make_up_leaves_app_keys_off_unless_asked() -> None:
    assert StackSettings().app_keys_required is False


def test_without_kafka_security_keeps_everything_else() -> None:
    env = {"KAFKA_SSL_CAFILE": "/ca.pem", "KAFKA_SSL_KEY_PASSWORD_FILE": "/pw", "KAFKA_LINGER_MS": "2", "PATH": "/bin"}
    assert without_kafka_security(env) == {"KAFKA_LINGER_MS": "2", "PATH": "/bin"}


def test_make_up_reads_its_secrets_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("file-token\n")
    (tmp_path / "url").write_text(EXTERNAL_DB + "\n")
    monkeypatch.setenv("ADMIN_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "url"))
    settings = StackSettings()
    assert (settings.admin_token, settings.database_url) == ("file-token", EXTERNAL_DB)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@h/d?sslmode=verify-full", "postgresql://u:p@h/d?sslmode=verify-full&sslrootcert=%2Fca.pem"),
        (
            "postgresql://u@h/d?sslrootcert=%2Fold.pem&sslmode=require",
            "postgresql://u@h/d?sslmode=require&sslrootcert=%2Fca.pem",
        ),
        ("postgresql://u@h/d", "postgresql://u@h/d?sslrootcert=%2Fca.pem"),
    ],
)
def test_the_database_ca_goes_into_the_dsn(url: str, expected: str) -> None:
    assert with_root_cert(url, Path("/ca.pem")) == expected
    assert with_root_cert(url, None) == url
