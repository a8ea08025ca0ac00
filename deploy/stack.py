"""The whole pipeline on one machine: broker, database, migrations, topics and the three services.

`Stack` starts what is not given, waits until every service is ready, writes `<run dir>/stack.json`
and stops everything in reverse order. `make up` runs it (`deploy/up.py`); end-to-end and fault tests
use it to kill and restart services.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import structlog

from deploy.init import migrate_all
from deploy.local_broker import KAFKA_SECURITY_ENV_VARS, LOCAL_BROKER_SECURITY, BrokerProcess, start_broker
from deploy.local_database import DatabaseProcess, start_database
from deploy.localstack import free_port, read_tail
from deploy.service_process import SERVICE_HOST, ServiceProcess
from shared.db import database_dsn
from shared.kafka import ensure_topics
from shared.settings import PipelineSettings

log = structlog.get_logger(__name__)

SERVICES = ("ingest", "feedback", "aggregator")
READY_POLL_INTERVAL_S = 0.1
READY_PROBE_TIMEOUT_S = 2.0
KILL_WAIT_S = 10.0  # after SIGKILL, how long the kernel may take to tear a process down.
SUPERVISE_INTERVAL_S = 0.5
# The local database has no TLS: clients of it ignore DATABASE_SSL_ROOT_CERT (the local broker: LOCAL_BROKER_SECURITY).
LOCAL_DATABASE_ENV_VARS = frozenset({"DATABASE_SSL_ROOT_CERT", "DATABASE_SSL_ROOT_CERT_FILE"})
# The stack sets these itself; their `_FILE` twins beside them would be an error in the services.
STACK_SET_FILE_VARS = frozenset({"DATABASE_URL_FILE", "ADMIN_TOKEN_FILE"})


def write_atomically(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Readers see the old file or the whole new one, never a part (a rename within one directory is atomic)."""
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    # Created with `mode` (not chmod-ed after): a secret in it is never readable by others, even briefly.
    with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "w") as file:
        file.write(text)
    os.replace(partial, path)


class StackError(RuntimeError):
    """The stack could not start, or a service failed."""


class Stack:
    """Broker, database and services started together; stopped in reverse order.

    Servers given as `kafka_bootstrap` / `database_url` are used as they are; missing ones are started
    locally under `run_dir`. Services are keyed by name: "aggregator", then "aggregator-2", ... for
    extra instances.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        kafka_bootstrap: str | None = None,
        database_url: str | None = None,
        topic_prefix: str = "",
        admin_token: str | None = None,
        app_keys_required: bool = False,
        log_format: str = "json",
        ready_timeout_s: float = 60.0,
        stop_timeout_s: float = 15.0,
        services: Iterable[str] = SERVICES,
        extra_env: Mapping[str, str] | None = None,
        fast_unsafe_database: bool = False,
    ) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.log_dir = self.run_dir / "logs"
        self.kafka_bootstrap = kafka_bootstrap
        self.database_url = database_url
        self.topic_prefix = topic_prefix
        self.admin_token = admin_token or secrets.token_urlsafe(32)
        self.is_admin_token_generated = not admin_token
        self.app_keys_required = app_keys_required
        self.database_dsn: str | None = None  # database_url with the CA of DATABASE_SSL_ROOT_CERT, once started
        self.log_format = log_format
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.initial_services = tuple(services)
        self.extra_env = dict(extra_env or {})
        self.fast_unsafe_database = fast_unsafe_database
        self.broker: BrokerProcess | None = None
        self.database: DatabaseProcess | None = None
        self.services: dict[str, ServiceProcess] = {}
        self._stop_requested = asyncio.Event()

    @property
    def stack_json_path(self) -> Path:
        return self.run_dir / "stack.json"

    @property
    def info(self) -> dict[str, Any]:
        """What `.run/stack.json` holds: every address a client needs (the DSN with DATABASE_SSL_ROOT_CERT in it)."""
        info: dict[str, Any] = {
            "kafka": self.kafka_bootstrap or "",
            "database_url": self.database_dsn or self.database_url or "",
        }
        for name in SERVICES:
            if name in self.services:
                info[name] = self.services[name].url
        info["topic_prefix"] = self.topic_prefix
        info["admin_token"] = self.admin_token
        # Whether clients must send `Authorization: Bearer <app key>` to the end-user write routes.
        info["app_keys_required"] = self.app_keys_required
        return info

    @property
    def is_stop_requested(self) -> bool:
        return self._stop_requested.is_set()

    def request_stop(self) -> None:
        """Make `start()` give up and `run_until_stopped()` return; safe from a signal handler."""
        self._stop_requested.set()

    async def start(self) -> None:
        """Start the servers not given, migrate, create topics, start the services and wait until all are ready.

        `stack.json` exists exactly while the stack is ready: a script waiting for it never reads the
        addresses of a previous run (even one killed before it could remove the file).
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.stack_json_path.unlink(missing_ok=True)
        if self.kafka_bootstrap is None:
            self.broker = await asyncio.to_thread(start_broker, log_dir=self.log_dir)
            self.kafka_bootstrap = self.broker.bootstrap
        if self.database_url is None:
            self._raise_if_stop_requested()
            self.database = await asyncio.to_thread(
                start_database,
                self.run_dir / "pgdata",
                fast_unsafe=self.fast_unsafe_database,
                log_path=self.log_dir / "postgres.log",
            )
            self.database_url = self.database.url
        self._raise_if_stop_requested()
        ignored = sorted((self._dropped_env_vars() - STACK_SET_FILE_VARS) & set(os.environ))
        if ignored:
            log.warning("local_servers_ignore_security_settings", env_vars=ignored)
        settings = self._settings()
        self.database_dsn = database_dsn(settings)
        await migrate_all(self.database_dsn)
        await ensure_topics(settings)
        self._raise_if_stop_requested()
        for service in self.initial_services:
            self._add_service(service, 1).spawn()
        await self._wait_all_ready([self._key(service, 1) for service in self.initial_services])
        # It holds the admin token (and an external DATABASE_URL's password): for this user only.
        write_atomically(self.stack_json_path, json.dumps(self.info, indent=2) + "\n", mode=0o600)
        log.info("stack_ready", stack_json=str(self.stack_json_path))

    async def stop(self) -> None:
        """Services first (SIGTERM; SIGKILL after `stop_timeout_s`), then the broker, then the database."""
        self._stop_requested.set()
        self.stack_json_path.unlink(missing_ok=True)
        try:
            await asyncio.gather(*(self.stop_service(name) for name in self.services))
        finally:
            try:
                if self.broker is not None:
                    await asyncio.to_thread(self.broker.stop)
            finally:
                if self.database is not None:
                    await asyncio.to_thread(self.database.stop)
        log.info("stack_stopped")

    async def start_service(self, service: str, instance: int = 1) -> ServiceProcess:
        """Start (or restart, on the same port and env) one instance of a service; return once it is ready."""
        key = self._key(service, instance)
        existing = self.services.get(key)
        if existing is not None and existing.is_running:
            # A process just sent SIGKILL may not be gone yet; one never signalled is a caller's mistake.
            if not existing.is_signalled or await existing.wait_exit(KILL_WAIT_S) is None:
                raise StackError(f"{key} is still running (pid {existing.pid}); stop or kill it first")
        process = existing or self._add_service(service, instance)
        process.spawn()
        await self.wait_ready(key)
        return process

    def kill_service(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to a service instance ("aggregator", "aggregator-2", ...) without waiting."""
        log.info("service_signalled", service=name, signal=signal.Signals(sig).name)
        self.services[name].send_signal(sig)

    async def stop_service(self, name: str, timeout_s: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL after `timeout_s` (default: the stack's stop timeout); the exit code."""
        process = self.services[name]
        if not process.is_running:
            return process.returncode
        process.send_signal(signal.SIGTERM)
        timeout_s = self.stop_timeout_s if timeout_s is None else timeout_s
        code = await process.wait_exit(timeout_s)
        if code is None:
            log.warning("service_kill_after_timeout", service=name, pid=process.pid, timeout_s=timeout_s)
            process.send_signal(signal.SIGKILL)
            code = await process.wait_exit(KILL_WAIT_S)
        log.info("service_stopped", service=name, exit_code=code)
        return code

    async def wait_ready(self, name: str, timeout_s: float | None = None) -> None:
        """Return once GET /readyz answers 200; raise StackError if the process exits or time runs out."""
        process = self.services[name]
        timeout_s = self.ready_timeout_s if timeout_s is None else timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        last_seen = "no answer yet"
        # trust_env=False: an HTTP(S)_PROXY in the environment must not capture loopback probes.
        async with httpx.AsyncClient(timeout=READY_PROBE_TIMEOUT_S, trust_env=False) as client:
            while True:
                if not process.is_running:
                    raise StackError(
                        f"{name} exited with code {process.returncode} before it was ready; "
                        f"log {process.log_path}:\n{read_tail(process.log_path)}"
                    )
                try:
                    response = await client.get(f"{process.url}/readyz")
                except httpx.HTTPError as exc:
                    last_seen = f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code == 200:
                        log.info("service_ready", service=name, url=process.url)
                        return
                    last_seen = f"HTTP {response.status_code}: {response.text[:200]}"
                if loop.time() >= deadline:
                    raise StackError(
                        f"{name} not ready within {timeout_s} s (last /readyz: {last_seen}); "
                        f"log {process.log_path}:\n{read_tail(process.log_path)}"
                    )
                self._raise_if_stop_requested()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_requested.wait(), READY_POLL_INTERVAL_S)

    async def run_until_stopped(self) -> str | None:
        """Wait for `request_stop()`; return the name of a service that exited on its own first, if any."""
        while not self._stop_requested.is_set():
            for name, process in self.services.items():
                if not process.is_running:
                    log.error(
                        "service_exited", service=name, exit_code=process.returncode, log_path=str(process.log_path)
                    )
                    return name
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), SUPERVISE_INTERVAL_S)
        return None

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @staticmethod
    def _key(service: str, instance: int) -> str:
        return service if instance == 1 else f"{service}-{instance}"

    def _add_service(self, service: str, instance: int) -> ServiceProcess:
        if service not in SERVICES:
            raise StackError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")
        port = free_port(SERVICE_HOST)
        prefix = service.upper()
        assert self.kafka_bootstrap is not None and self.database_url is not None
        env = {
            **{name: value for name, value in os.environ.items() if name not in self._dropped_env_vars()},
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "DATABASE_URL": self.database_url,
            "TOPIC_PREFIX": self.topic_prefix,
            "ADMIN_TOKEN": self.admin_token,
            "APP_KEYS_REQUIRED": "true" if self.app_keys_required else "false",
            "LOG_FORMAT": self.log_format,
            "PYTHONUNBUFFERED": "1",
            f"{prefix}_HTTP_HOST": SERVICE_HOST,
            f"{prefix}_HTTP_PORT": str(port),
            **self.extra_env,
        }
        key = self._key(service, instance)
        process = ServiceProcess(
            service=service, instance=instance, port=port, env=env, log_path=self.log_dir / f"{key}.log"
        )
        self.services[key] = process
        return process

    def _settings(self) -> PipelineSettings:
        """The shared settings of this stack's servers (partitions, retention, security: the same environment)."""
        assert self.kafka_bootstrap is not None and self.database_url is not None
        local = LOCAL_BROKER_SECURITY if self.broker is not None else {}
        if self.database is not None:
            local = {**local, "database_ssl_root_cert": None}
        return PipelineSettings(
            kafka_bootstrap_servers=self.kafka_bootstrap,
            database_url=self.database_url,
            topic_prefix=self.topic_prefix,
            **local,
        )

    def _dropped_env_vars(self) -> frozenset[str]:
        """What services must not inherit: security settings of the servers started locally, and the `_FILE`
        twins of what this stack sets itself."""
        kafka = KAFKA_SECURITY_ENV_VARS if self.broker is not None else frozenset()
        database = LOCAL_DATABASE_ENV_VARS if self.database is not None else frozenset()
        return kafka | database | STACK_SET_FILE_VARS

    async def _wait_all_ready(self, names: list[str]) -> None:
        tasks = [asyncio.create_task(self.wait_ready(name), name=f"wait_ready:{name}") for name in names]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _raise_if_stop_requested(self) -> None:
        if self._stop_requested.is_set():
            raise StackError("stop requested while starting")
