"""`python -m deploy.up` (what `make up` runs): the whole pipeline locally until Ctrl-C or SIGTERM.

Reads the environment (`StackSettings`), starts a `deploy.stack.Stack`, prints every address and
stops everything in order on a signal, or when a service exits on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import structlog
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from deploy.localstack import read_tail
from deploy.stack import SERVICES, Stack, StackError
from shared.logging import configure_logging
from shared.security_settings import SECRET_SETTING
from shared.settings import SecretFilesSource

log = structlog.get_logger(__name__)


class StackSettings(BaseSettings):
    """What `make up` reads from the environment; unset servers are started locally."""

    model_config = SettingsConfigDict(
        env_prefix="STACK_", extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    kafka_bootstrap_servers: str | None = Field(
        None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS"),
        description="External Kafka; when unset a local Tansu broker is started.",
    )
    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("DATABASE_URL"),
        description="External PostgreSQL (or DATABASE_URL_FILE); when unset a local one runs on <run_dir>/pgdata.",
        json_schema_extra=SECRET_SETTING,
    )
    topic_prefix: str = Field(
        "", validation_alias=AliasChoices("TOPIC_PREFIX"), description="Prefix put before every topic name."
    )
    admin_token: str | None = Field(
        None,
        validation_alias=AliasChoices("ADMIN_TOKEN"),
        description="Token guarding the admin endpoints (or ADMIN_TOKEN_FILE); a random one is generated when unset.",
        json_schema_extra=SECRET_SETTING,
    )
    app_keys_required: bool = Field(
        False,
        validation_alias=AliasChoices("APP_KEYS_REQUIRED"),
        description="true: the services require app keys on the end-user write routes (off unless asked).",
    )
    run_dir: Path = Field(Path(".run"), description="Where logs, pgdata and stack.json go (STACK_RUN_DIR).")
    ready_timeout_s: float = Field(
        60.0, gt=0, description="How long each service may take to answer /readyz (STACK_READY_TIMEOUT_S)."
    )
    stop_timeout_s: float = Field(
        15.0,
        gt=0,
        description="How long a service may take to exit on SIGTERM before SIGKILL (STACK_STOP_TIMEOUT_S).",
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
        return init_settings, SecretFilesSource(settings_cls), env_settings, dotenv_settings, file_secret_settings


def stack_from(settings: StackSettings, *, log_format: str) -> Stack:
    return Stack(
        settings.run_dir,
        kafka_bootstrap=settings.kafka_bootstrap_servers,
        database_url=settings.database_url,
        topic_prefix=settings.topic_prefix,
        admin_token=settings.admin_token,
        app_keys_required=settings.app_keys_required,
        log_format=log_format,
        ready_timeout_s=settings.ready_timeout_s,
        stop_timeout_s=settings.stop_timeout_s,
    )


def without_password(url: str) -> str:
    """`url` with its password, if any, replaced by `***` (what may be printed)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _app_keys_lines(stack: Stack) -> list[str]:
    """Whether app keys are required, how to switch, and how to issue one (never a key itself)."""
    ingest = stack.services["ingest"].url if "ingest" in stack.services else "<ingest>"
    state = (
        "required: writes need Authorization: Bearer <app key> (APP_KEYS_REQUIRED=false make up to turn off)"
        if stack.app_keys_required
        else "off: anyone may write any app_id (APP_KEYS_REQUIRED=true make up to require them)"
    )
    return [
        f"  {'app keys':<12} {state}",
        "  issue a key:",
        f"    curl -s -X POST {ingest}/v1/admin/apps -H 'Authorization: Bearer <admin token>' \\",
        """      -H 'content-type: application/json' -d '{"app_ids": ["helpdesk"]}'""",
        "    or: .venv/bin/python -m services.ingest.admin issue --app-ids helpdesk",
    ]


def _summary(stack: Stack, *, closing: str = "Press Ctrl-C to stop.") -> str:
    lines = ["", "The pipeline is running:"]
    for name in SERVICES:
        if name in stack.services:
            url = stack.services[name].url
            lines.append(f"  {name:<12} {url}   (API docs: {url}/docs)")
    lines += [
        f"  {'kafka':<12} {stack.kafka_bootstrap}",
        f"  {'database':<12} {without_password(stack.database_url or '')}",
        f"  {'topic prefix':<12} {stack.topic_prefix!r}",
        # Only a token generated here is shown: one the operator set is theirs and stays out of terminals.
        f"  {'admin token':<12} {stack.admin_token if stack.is_admin_token_generated else '(yours, not shown)'}",
        *_app_keys_lines(stack),
        "  logs:",
        *(f"    {process.log_path}" for process in stack.services.values()),
    ]
    if stack.broker is not None:
        lines.append(f"    {stack.broker.log_path}")
    if stack.database is not None:
        lines.append(f"    {stack.database.log_path}")
    lines += [f"  written to {stack.stack_json_path}", *([closing] if closing else []), ""]
    return "\n".join(lines)


def forget_local_state(settings: StackSettings) -> None:
    """With a local broker, start from an empty local database too.

    The local broker keeps its topics in memory, so they are gone; state derived from them (what
    was published, dedupe tables, queued tasks) would otherwise claim messages that no topic holds.
    """
    pgdata = settings.run_dir / "pgdata"
    if settings.kafka_bootstrap_servers is None and settings.database_url is None and pgdata.exists():
        shutil.rmtree(pgdata)
        log.info("local_database_reset", data_dir=str(pgdata))


async def _up(settings: StackSettings, log_format: str) -> int:
    forget_local_state(settings)
    stack = stack_from(settings, log_format=log_format)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stack.request_stop)
    try:
        await stack.start()
        print(_summary(stack), flush=True)
        failed = await stack.run_until_stopped()
        if failed is not None:
            process = stack.services[failed]
            print(
                f"{failed} exited with code {process.returncode}; log {process.log_path}:\n"
                f"{read_tail(process.log_path)}",
                file=sys.stderr,
                flush=True,
            )
            return 1
        return 0
    except StackError as exc:
        if stack.is_stop_requested:
            return 0
        print(f"make up failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        await stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.up",
        description=(
            "Run the whole pipeline locally: broker, database and the three services, until Ctrl-C. "
            "Reads KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (local servers are started when unset), "
            "TOPIC_PREFIX, APP_KEYS_REQUIRED (default false), ADMIN_TOKEN (generated when unset; DATABASE_URL and "
            "ADMIN_TOKEN may come from the file "
            "named by DATABASE_URL_FILE / ADMIN_TOKEN_FILE), STACK_RUN_DIR (default .run), "
            "STACK_READY_TIMEOUT_S and STACK_STOP_TIMEOUT_S. Writes <run dir>/stack.json."
        ),
    )
    parser.parse_args(argv)
    log_format = "console" if sys.stdout.isatty() else "json"
    configure_logging(log_format)
    # httpx logs every readiness probe at info.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return asyncio.run(_up(StackSettings(), log_format))


if __name__ == "__main__":
    sys.exit(main())
