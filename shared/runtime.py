"""One service process: its resources (broker, pool, metrics, background tasks) and its HTTP app.

Each service's `app.py` builds a `Runtime`, registers its subscribers and routes, and hands both to
`build_app`; the FastAPI lifespan starts and closes the runtime in the order STYLE.md asks for:
stop consuming -> finish in-flight handlers -> stop background tasks -> close producer -> close pool.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from fastapi import APIRouter, FastAPI, Request
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry

from shared import db
from shared.http import (
    BodySizeLimit,
    HttpMetrics,
    install_error_handlers,
    install_request_metrics,
    ops_router,
)
from shared.kafka import ensure_topics, make_broker
from shared.logging import configure_logging
from shared.outbox import OutboxRelay
from shared.settings import ServiceSettings

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    """Per-process resources of a service, built in the lifespan and closed in `aclose()`."""

    service: str
    settings: ServiceSettings
    broker: KafkaBroker
    registry: CollectorRegistry
    migrations: Sequence[db.Migrations] = (db.SHARED_MIGRATIONS,)
    pool: asyncpg.Pool | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    # The periodic jobs among `tasks`: stopped before the final outbox flush, since they write to it.
    jobs: set[asyncio.Task[Any]] = field(default_factory=set)
    state: dict[str, Any] = field(default_factory=dict)
    # Run once the pool and producer are up, before the subscribers start: build what handlers use.
    on_starting: list[Callable[[Runtime], Awaitable[None]]] = field(default_factory=list)
    # Run after consuming stopped and before background tasks are cancelled (e.g. an outbox flush).
    on_stopping: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @classmethod
    def create(cls, service: str, settings: ServiceSettings, migrations: Sequence[db.Migrations]) -> Runtime:
        return cls(
            service=service,
            settings=settings,
            broker=make_broker(settings, client_id=service),
            registry=CollectorRegistry(),
            migrations=tuple(migrations),
        )

    @property
    def db(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError("the runtime is not started")
        return self.pool

    def spawn(self, name: str, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run a named background task owned by this runtime (cancelled and awaited on close)."""
        task = asyncio.create_task(coro, name=f"{self.service}:{name}")  # type: ignore[arg-type]
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def every(self, name: str, interval_s: float, job: Callable[[], Awaitable[Any]]) -> asyncio.Task[Any]:
        """Run `job` every `interval_s` in the background; a failing run is logged and retried next time."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval_s)
                try:
                    await job()
                except Exception:
                    log.exception("background_job_failed", job=name)

        task = self.spawn(name, loop())
        self.jobs.add(task)
        task.add_done_callback(self.jobs.discard)
        return task

    def start_outbox_relay(self, *, batch_size: int, poll_interval_s: float, is_enabled: bool = True) -> OutboxRelay:
        """Relay this service's outbox in the background; flushed on shutdown before the producer closes.

        With `is_enabled` False the relay is built but never runs: rows wait in the outbox (an
        operator's switch to hold publishing, e.g. during Kafka maintenance).
        """
        relay = OutboxRelay(
            service=self.service,
            pool=self.db,
            broker=self.broker,
            registry=self.registry,
            batch_size=batch_size,
            poll_interval_s=poll_interval_s,
            publish_timeout_s=self.settings.publish_timeout_s,
            max_backoff_s=self.settings.retry_max_backoff_s,
        )
        if is_enabled:
            self.spawn("outbox_relay", relay.run())
            self.on_stopping.append(lambda: relay.flush(self.settings.shutdown_grace_s))
        return relay

    async def start(self) -> None:
        settings = self.settings
        self.pool = await db.create_pool(settings)
        await db.migrate(settings.database_url, self.migrations)
        await ensure_topics(settings)
        # Connect the producer only: subscribers start in `start_consuming`, once `on_started`
        # has built what their handlers use.
        await self.broker.connect()

    async def start_consuming(self) -> None:
        await self.broker.start()
        log.info("service_started", service=self.service, http_port=self.settings.http_port)

    async def aclose(self) -> None:
        # Order: stop consuming (in-flight handlers finish) -> stop the periodic jobs -> the
        # stopping hooks (outbox flush: nothing writes to the outbox any more) -> close the producer
        # -> cancel what is left (the relay) -> close the pool.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._stop_consuming(), timeout=self.settings.shutdown_grace_s)
        jobs = list(self.jobs)
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        for hook in self.on_stopping:
            try:
                await asyncio.wait_for(hook(), timeout=self.settings.shutdown_grace_s)
            except Exception:
                log.exception("stopping_hook_failed", service=self.service)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.broker.stop(), timeout=self.settings.shutdown_grace_s)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.pool is not None:
            await self.pool.close()
        log.info("service_stopped", service=self.service)

    async def _stop_consuming(self) -> None:
        """Stop every subscriber (each waits for its in-flight handler); the producer stays open."""
        for subscriber in self.broker.subscribers:
            await subscriber.stop()

    async def is_broker_ready(self) -> bool:
        return await self.broker.ping(timeout=2.0)

    async def is_database_ready(self) -> bool:
        return self.pool is not None and await db.ping(self.pool, timeout_s=2.0)


def get_runtime(request: Request) -> Runtime:
    """FastAPI dependency: the runtime of the app serving this request."""
    return request.app.state.runtime


def build_app(
    runtime: Runtime,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    on_started: Callable[[Runtime], Awaitable[None]] | None = None,
) -> FastAPI:
    """The FastAPI app of a service: its routes, /healthz /readyz /metrics, error mapping, lifespan."""
    settings = runtime.settings

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_format, settings.log_level)
        await runtime.start()
        try:
            for hook in [*runtime.on_starting, *([on_started] if on_started else [])]:
                await hook(runtime)
            await runtime.start_consuming()
            yield
        finally:
            await runtime.aclose()

    app = FastAPI(title=title, description=description, version="1.0.0", lifespan=lifespan)
    app.state.runtime = runtime
    install_error_handlers(app)
    install_request_metrics(app, HttpMetrics(runtime.registry, runtime.service))
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.include_router(
        ops_router(runtime.registry, {"broker": runtime.is_broker_ready, "database": runtime.is_database_ready})
    )

    @app.get("/asyncapi.json", tags=["operations"], summary="AsyncAPI document of the Kafka side")
    async def asyncapi() -> dict[str, Any]:
        from faststream.specification import AsyncAPI

        return (
            AsyncAPI(runtime.broker, title=f"{title} (Kafka)", schema_version="3.0.0").to_specification().to_jsonable()
        )

    for router in routers:
        app.include_router(router)
    return app
