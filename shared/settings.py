"""Settings shared by every service (unprefixed env vars) and the base each service extends.

Every number the pipeline uses is a setting here or in a service's `settings.py`; the
`description` of each field is the operator documentation.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from shared.security_settings import SECRET_SETTING, database_tls_errors, kafka_security_errors


def _shared(name: str, default, description: str, **kw):
    """A field read from the unprefixed env var `NAME` whatever the service's prefix is."""
    return Field(default, description=description, validation_alias=AliasChoices(name, name.upper()), **kw)


def _shared_secret(name: str, description: str, **kw):
    """A secret shared setting (default None): read from `NAME`, or from the file `NAME_FILE` names."""
    text = f"{description} Secret: or set {name.upper()}_FILE to a file holding it (e.g. a mounted container secret)."
    return _shared(name, None, text, json_schema_extra=SECRET_SETTING, **kw)


def secret_setting(default: Any, description: str, **kw) -> Any:
    """A service's own secret setting (env prefix and all), readable from `<PREFIX><NAME>_FILE` too."""
    return Field(default, description=description, json_schema_extra=SECRET_SETTING, **kw)


def env_names(settings_cls: type[BaseSettings], name: str, field: FieldInfo) -> list[str]:
    """The environment variables a field is read from: its unprefixed aliases, else the prefixed name."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return list(dict.fromkeys(str(choice).upper() for choice in alias.choices))
    return [f"{settings_cls.model_config.get('env_prefix', '')}{name}".upper()]


class SecretFilesSource(PydanticBaseSettingsSource):
    """Secret settings read from the file named by `<NAME>_FILE` (content stripped), as container secrets are mounted.

    Setting both `NAME` and `NAME_FILE` (non-empty) is an error naming both; an unreadable file is an
    error naming `NAME_FILE` and the path. Only settings declared with `SECRET_SETTING` are looked up.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every secret setting at once

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            if field.json_schema_extra != SECRET_SETTING:
                continue
            for env_name in env_names(self.settings_cls, name, field):
                path = os.environ.get(f"{env_name}_FILE")
                if path:
                    values[name] = _read_secret_file(env_name, path)
                    break
        return values


def _read_secret_file(env_name: str, path: str) -> str:
    if os.environ.get(env_name):
        raise SettingsError(f"{env_name} and {env_name}_FILE are both set: set only one of them")
    try:
        return Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SettingsError(f"{env_name}_FILE={path} cannot be read: {reason}") from exc


class Limits(BaseModel):
    """Size bounds applied when validating incoming events (see shared.events).

    No defaults here: `limits_from(settings)` builds them, so each bound has one default, its setting's.
    """

    model_config = ConfigDict(frozen=True)

    max_messages: int
    max_content_chars: int
    max_metadata_bytes: int
    max_tags: int
    max_id_chars: int
    max_clock_skew_s: float


class PipelineSettings(BaseSettings):
    """Settings every service reads without a prefix (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, ...)."""

    # hide_input_in_errors: a validation error must not print the settings it was given (passwords among them).
    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", hide_input_in_errors=True)

    kafka_bootstrap_servers: str = _shared(
        "kafka_bootstrap_servers", "127.0.0.1:9092", "Kafka bootstrap servers, comma separated."
    )
    database_url: str = _shared(
        "database_url",
        "postgresql://postgres@127.0.0.1:5432/postgres",
        "PostgreSQL DSN; `?sslmode=verify-full` (with DATABASE_SSL_ROOT_CERT) for a server that requires TLS. "
        "Secret (it may hold a password): or set DATABASE_URL_FILE to a file holding it.",
        json_schema_extra=SECRET_SETTING,
    )
    database_ssl_root_cert: Path | None = _shared(
        "database_ssl_root_cert",
        None,
        "PEM file of the CA that signed PostgreSQL's certificate, checked with sslmode=verify-full or verify-ca in "
        "DATABASE_URL (the same as sslrootcert in the URL). Unset: asyncpg's default, ~/.postgresql/root.crt.",
    )
    topic_prefix: str = _shared("topic_prefix", "", "Prefix put before every topic name.")
    admin_token: SecretStr | None = _shared_secret("admin_token", "Token guarding the admin endpoints.")
    app_keys_required: bool = _shared(
        "app_keys_required",
        False,
        "true: every end-user write route (POST /v1/interactions, /v1/interactions/batch, /v1/votes, "
        "/v1/votes/batch) needs `Authorization: Bearer <app key>` (401 without a live one) and takes only items "
        "whose app_id the key covers (403 `app_not_allowed` otherwise). Keys: POST {ingest}/v1/admin/apps or "
        "python -m services.ingest.admin. The raw topics carry no key: the broker's ACLs protect them. "
        "false: any caller may write any app_id.",
    )

    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = _shared(
        "kafka_security_protocol",
        "PLAINTEXT",
        "How every Kafka client of the project connects: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT, or SASL_SSL "
        "(credentials over TLS, what managed Kafka services ask for).",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = _shared(
        "kafka_sasl_mechanism",
        None,
        "SASL mechanism with SASL_PLAINTEXT or SASL_SSL: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512.",
    )
    kafka_sasl_username: str | None = _shared(
        "kafka_sasl_username", None, "SASL user name (SASL_PLAINTEXT or SASL_SSL)."
    )
    kafka_sasl_password: SecretStr | None = _shared_secret(
        "kafka_sasl_password", "SASL password (SASL_PLAINTEXT or SASL_SSL)."
    )
    kafka_ssl_cafile: Path | None = _shared(
        "kafka_ssl_cafile",
        None,
        "PEM file of the CA(s) that signed the brokers' certificates (SSL, SASL_SSL). Unset: the system's trusted CAs.",
    )
    kafka_ssl_certfile: Path | None = _shared(
        "kafka_ssl_certfile",
        None,
        "Client certificate (PEM) for brokers that require mutual TLS; it may also hold the key.",
    )
    kafka_ssl_keyfile: Path | None = _shared(
        "kafka_ssl_keyfile", None, "Private key (PEM) of KAFKA_SSL_CERTFILE, when it is a separate file."
    )
    kafka_ssl_key_password: SecretStr | None = _shared_secret(
        "kafka_ssl_key_password", "Password of an encrypted KAFKA_SSL_KEYFILE."
    )

    log_format: Literal["json", "console"] = _shared(
        "log_format", "json", "json in production, console for a readable terminal."
    )
    log_level: str = _shared("log_level", "INFO", "Minimum log level.")

    topic_partitions: int = _shared("topic_partitions", 6, "Partitions of each topic the project creates.", ge=1)
    topic_replication_factor: int = _shared(
        "topic_replication_factor", 1, "Replication factor of created topics.", ge=1
    )
    topic_retention_ms: int = _shared(
        "topic_retention_ms", 7 * 24 * 3600 * 1000, "retention.ms of the non-compacted topics."
    )
    dead_letter_retention_ms: int = _shared(
        "dead_letter_retention_ms", 30 * 24 * 3600 * 1000, "retention.ms of the dead-letter topic."
    )

    kafka_fetch_max_wait_ms: int = _shared(
        "kafka_fetch_max_wait_ms",
        10,
        "Fetch wait of the consumers on the event -> pair path. Tansu answers an empty fetch only when the wait "
        "ends, so it sets the latency floor (500 ms -> p50 134 ms) and an idle consumer sends a fetch per wait; "
        "Kafka answers as soon as a record arrives (docker-compose sets 500).",
        ge=0,
    )
    kafka_background_fetch_max_wait_ms: int = _shared(
        "kafka_background_fetch_max_wait_ms",
        250,
        "Fetch wait of the consumers off the event -> pair path (annotation-requests into the queue, the "
        "dead-letter counter): an idle consumer on Tansu costs one fetch per wait, ~0.06 of a core at 10 ms.",
        ge=0,
    )
    kafka_max_batch_records: int = _shared(
        "kafka_max_batch_records", 500, "Most records a consumer hands to one batch handler.", ge=1
    )
    kafka_batch_timeout_ms: int = _shared(
        "kafka_batch_timeout_ms", 50, "How long a batch consumer waits to fill a batch.", ge=0
    )
    kafka_linger_ms: int = _shared("kafka_linger_ms", 2, "Producer linger: batches sends made close together.")
    kafka_max_batch_bytes: int = _shared(
        "kafka_max_batch_bytes", 64 * 1024, "Producer batch size per partition (64 KB doubles Tansu throughput)."
    )
    kafka_max_request_size: int = _shared(
        "kafka_max_request_size", 2 * 1024 * 1024, "Largest produce request in bytes."
    )
    kafka_session_timeout_ms: int = _shared("kafka_session_timeout_ms", 10_000, "Consumer group session timeout.")
    kafka_heartbeat_interval_ms: int = _shared(
        "kafka_heartbeat_interval_ms", 1_000, "Consumer group heartbeat interval."
    )
    kafka_max_raw_bytes: int = _shared(
        "kafka_max_raw_bytes", 1024 * 1024, "Raw-topic messages larger than this are dead-lettered.", ge=1
    )
    publish_timeout_s: float = _shared(
        "publish_timeout_s", 30.0, "Deadline for the broker to acknowledge a publish.", gt=0
    )

    db_pool_min_size: int = _shared("db_pool_min_size", 1, "Smallest PostgreSQL pool size.", ge=0)
    db_pool_max_size: int = _shared("db_pool_max_size", 10, "Largest PostgreSQL pool size.", ge=1)
    db_command_timeout_s: float = _shared("db_command_timeout_s", 30.0, "asyncpg command timeout.", gt=0)
    db_acquire_timeout_s: float = _shared(
        "db_acquire_timeout_s", 10.0, "Deadline to get a connection from the pool.", gt=0
    )
    db_connect_timeout_s: float = _shared("db_connect_timeout_s", 10.0, "Deadline of one connection attempt.", gt=0)
    retry_initial_backoff_s: float = _shared(
        "retry_initial_backoff_s", 0.2, "First wait after a transient failure (doubles each try).", gt=0
    )
    retry_max_backoff_s: float = _shared(
        "retry_max_backoff_s", 5.0, "Longest wait between retries of a transient failure.", gt=0
    )
    consumer_max_attempts: int = _shared(
        "consumer_max_attempts",
        3,
        "Tries of a consumed record that fails for a reason other than an outage (taken alone, out of its batch)"
        " before it is dead-lettered as processing_failed.",
        ge=1,
    )

    max_messages: int = _shared("max_messages", 200, "Most messages in one interaction's context.", ge=1)
    max_content_chars: int = _shared(
        "max_content_chars", 100_000, "Longest message, response, edit or comment (characters).", ge=1
    )
    max_metadata_bytes: int = _shared("max_metadata_bytes", 16_384, "Largest `metadata` object, as JSON bytes.", ge=2)
    max_tags: int = _shared("max_tags", 32, "Most tags on an interaction.", ge=0)
    max_id_chars: int = _shared(
        "max_id_chars", 256, "Longest identifier (app_id, interaction_id, user_ref, model, ...), in characters.", ge=1
    )
    max_clock_skew_s: float = _shared(
        "max_clock_skew_s", 86_400.0, "How far in the future an event's occurred_at may be (producer clocks).", gt=0
    )
    max_batch_items: int = _shared("max_batch_items", 500, "Most items in one HTTP batch request.", ge=1)
    edge_group_max_events: int = _shared(
        "edge_group_max_events",
        1000,
        "Most events one group commit at an edge carries: the HTTP posts in flight share one dedupe query, one "
        "producer flush and one insert of their ids (a post with more goes alone).",
        ge=1,
    )
    edge_group_depth: int = _shared(
        "edge_group_depth",
        1,
        "How many group commits at an edge may be in flight: with 2, the next group is judged (against the previous "
        "group's ids, kept in memory) and handed to the producer while the previous one's acknowledgement and "
        "recording are in flight. 1: one flush at a time (larger groups; on a 2-core box less CPU per event).",
        ge=1,
        le=4,
    )
    redrive_read_idle_s: float = _shared(
        "redrive_read_idle_s",
        1.0,
        "A redrive reads dead-letter until a poll this long brings nothing past the end offsets it saw at start.",
        gt=0,
    )
    max_body_bytes: int = _shared(
        "max_body_bytes", 8 * 1024 * 1024, "Largest HTTP request body; larger gets 413.", ge=1024
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Before the environment: `NAME=""` beside `NAME_FILE` (an empty compose default) leaves the file's value.
        return init_settings, SecretFilesSource(settings_cls), env_settings, dotenv_settings, file_secret_settings

    @model_validator(mode="after")
    def _check_security(self) -> PipelineSettings:
        errors = kafka_security_errors(self) + database_tls_errors(self)
        if errors:
            raise ValueError("; ".join(errors))
        return self


def limits_from(settings: PipelineSettings) -> Limits:
    """The validation bounds of `settings` (build once per component: it is a new object on each call)."""
    return Limits(
        max_messages=settings.max_messages,
        max_content_chars=settings.max_content_chars,
        max_metadata_bytes=settings.max_metadata_bytes,
        max_tags=settings.max_tags,
        max_id_chars=settings.max_id_chars,
        max_clock_skew_s=settings.max_clock_skew_s,
    )


@functools.cache
def default_limits() -> Limits:
    """The bounds of the settings' defaults, environment ignored: for contracts validated without a context."""
    return limits_from(PipelineSettings.model_construct())


class ServiceSettings(PipelineSettings):
    """Base of a service's settings: subclasses set `env_prefix` (INGEST_, FEEDBACK_, AGGREGATOR_)."""

    http_host: str = Field("127.0.0.1", description="Address the HTTP server binds.")
    http_port: int = Field(8000, description="Port of the HTTP server.", ge=0, le=65535)
    shutdown_grace_s: float = Field(10.0, description="How long in-flight work may take to finish on SIGTERM.", gt=0)


class EdgeServiceSettings(ServiceSettings):
    """Base of the edge services' settings (ingest, feedback): dedupe of re-posted event ids."""

    dedupe_window_s: float = Field(
        7 * 24 * 3600.0, description="How long a published event_id is remembered to drop re-posts.", gt=0
    )
    dedupe_prune_interval_s: float = Field(300.0, description="How often old event ids are pruned.", gt=0)
