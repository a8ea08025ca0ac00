"""One service process: its resources (broker, pool, metrics, background tasks), its typed context, its HTTP app.

Each service's `app.py` builds a `Runtime`, registers its subscribers and routes, and hands both to
`build_app` with the one function that starts the service's context (`<service>/context.py`). The
FastAPI lifespan starts the runtime, then the context, then consuming; `aclose()` stops them in the
order STYLE.md asks for: stop consuming (in-flight handlers finish) -> stop the periodic jobs -> close
the context -> stop the relay loop -> flush the outbox -> close the producer -> cancel what is left -> close the pool.

Routes and subscribers get the context from `runtime.context`, a dependency for both FastAPI
(`fastapi.Depends(runtime.context)`) and FastStream (`faststream.Depends(runtime.context, cast=False)`:
without `cast=False` FastStream would validate the context against its annotation with pydantic on
every message).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import asyncpg
import structlog
from fastapi import APIRouter, FastAPI
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry

from shared import db, heap
from shared.errors import TransientError
from shared.http import (
    BodySizeLimit,
    HttpMetrics,
    LeanRoute,
    LeanRoutes,
    install_error_handlers,
    install_offline_docs,
    install_request_metrics,
    ops_router,
)
from shared.kafka import ensure_topics, make_broker
from shared.log_end_guard import LogEndGuard
from shared.logging import configure_logging
from shared.outbox import OutboxRelay
from shared.settings import ServiceSettings

log = structlog.get_logger(__name__)

# How often the consumers' positions are compared with their partitions' ends (shared.log_end_guard).
LOG_END_CHECK_S = 5.0


class ServiceContext(Protocol):
    """What every service context offers: closing what it opened itself.

    Each service has one (`services/<service>/context.py`), a dataclass built by its `start` classmethod.
    A new per-process resource is a new field there: built in `start` (jobs go to `runtime.every`),
    closed in `aclose` if the context opened it, and read by handlers as `context.<field>`.
    """

    async def aclose(self) -> None: ...


C = TypeVar("C", bound=ServiceContext)


class ContextDependency(Generic[C]):
    """The started service's context, handed to routes and subscribers as a dependency.

    Set by `Runtime.start` once the context is built, cleared by `Runtime.aclose` before it is
    closed. Asked for outside that window it raises TransientError: a route answers 503, a batch
    is rewound for redelivery. Async, so FastAPI calls it on the loop rather than in a thread.
    """

    def __init__(self) -> None:
        self._context: C | None = None

    async def __call__(self) -> C:
        if self._context is None:
            raise TransientError("the service is not started")
        return self._context

    def set(self, context: C) -> None:
        self._context = context

    def clear(self) -> C | None:
        context, self._context = self._context, None
        return context


StartContext = Callable[["Runtime[C]"], Awaitable[C]]


@dataclass(kw_only=True)
class Runtime(Generic[C]):
    """Per-process resources of a service, built in the lifespan and closed in `aclose()`."""

    service: str
    settings: ServiceSettings
    broker: KafkaBroker
    registry: CollectorRegistry
    migrations: tuple[db.Migrations, ...]
    context: ContextDependency[C] = field(default_factory=ContextDependency)
    pool: asyncpg.Pool | None = None
    relay: OutboxRelay | None = None
    relay_task: asyncio.Task[Any] | None = None
    """The relay's loop (`OutboxRelay.run`): stopped before the final flush, which needs the relay lock."""
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    # The periodic jobs among `tasks`: stopped before the final outbox flush, since they write to it.
    jobs: set[asyncio.Task[Any]] = field(default_factory=set)
    # Hot routes served by plain ASGI apps (shared.http.LeanRoutes), added while routes are registered.
    lean_routes: list[LeanRoute] = field(default_factory=list)

    @classmethod
    def create(cls, *, service: str, settings: ServiceSettings, migrations: Sequence[db.Migrations]) -> Runtime[C]:
        """A runtime named `service`: that name keys its outbox, relay lock, dead letters and Kafka client id."""
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
        task.add_done_callback(_log_if_failed)
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
        operator's switch to hold publishing, e.g. during Kafka maintenance); `outbox_pending` still
        counts them every `poll_interval_s`.
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
            self.relay = relay
            self.relay_task = self.spawn("outbox_relay", relay.run())
        else:
            self.every("outbox_pending", poll_interval_s, relay.count_pending)
        return relay

    async def start(self, start_context: StartContext[C]) -> None:
        """Pool, migrations, topics and producer; then the service's context; then consuming.

        Subscribers start last, so no message arrives before the context their handlers use exists.
        """
        settings = self.settings
        self.pool = await db.create_pool(settings)
        await db.migrate(db.database_dsn(settings), self.migrations)
        await ensure_topics(settings)
        await self.broker.connect()
        self.context.set(await start_context(self))
        await self.broker.start()
        guard = LogEndGuard()
        self.every("log_end_guard", LOG_END_CHECK_S, lambda: guard.check(self._consumers()))
        heap.settle_after_start()
        log.info("service_started", service=self.service, http_port=settings.http_port)

    async def aclose(self) -> None:
        """Stop in order; a step that fails or times out is logged and the next one still runs."""
        grace_s = self.settings.shutdown_grace_s
        await self._step("stop_consuming", self._stop_consuming(), grace_s)
        await self._cancel(self.jobs)
        context = self.context.clear()
        if context is not None:
            await self._step("close_context", context.aclose(), grace_s)
        if self.relay is not None:
            # The loop's cycle in progress ends first: it holds the relay lock, and a flush meeting the lock
            # taken relays nothing (rows were left in the outbox when the two overlapped).
            await self._step("stop_relay", self._stop_relay(self.relay), grace_s)
            # Nothing writes to the outbox any more: what is in it now goes out before the producer closes.
            await self._step("flush_outbox", self.relay.flush(grace_s), grace_s)
        await self._step("close_producer", self.broker.stop(), grace_s)
        await self._cancel(self.tasks)
        if self.pool is not None:
            await self._step("close_pool", self.pool.close(), grace_s)
        log.info("service_stopped", service=self.service)

    async def _step(self, step: str, action: Awaitable[Any], timeout_s: float) -> None:
        try:
            await asyncio.wait_for(action, timeout=timeout_s)
        except Exception:
            log.exception("shutdown_step_failed", service=self.service, step=step, timeout_s=timeout_s)

    async def _stop_relay(self, relay: OutboxRelay) -> None:
        relay.stop()
        if self.relay_task is not None:
            await self.relay_task

    @staticmethod
    async def _cancel(tasks: set[asyncio.Task[Any]]) -> None:
        pending = list(tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _stop_consuming(self) -> None:
        """Stop every subscriber (each waits for its in-flight handler); the producer stays open."""
        for subscriber in self.broker.subscribers:
            await subscriber.stop()

    def _consumers(self) -> list[Any]:
        """The aiokafka consumers of the started subscribers."""
        return [consumer for s in self.broker.subscribers if (consumer := getattr(s, "consumer", None)) is not None]

    async def is_broker_ready(self) -> bool:
        return await self.broker.ping(timeout=2.0)

    async def is_database_ready(self) -> bool:
        return self.pool is not None and await db.ping(self.pool, timeout_s=2.0)


def _log_if_failed(task: asyncio.Task[Any]) -> None:
    """A background task should run until cancelled: one that ended on an error says so at once."""
    if not task.cancelled() and task.exception() is not None:
        log.error("background_task_failed", task=task.get_name(), exc_info=task.exception())


def runtime_of(app: FastAPI) -> Runtime[Any]:
    """The runtime behind an app built by `build_app` (tests look at its pool, context and subscribers)."""
    return app.state.runtime


NO_OTEL_TELEMETRY: dict[str, Any] = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


def build_app(
    runtime: Runtime[C],
    *,
    start_context: StartContext[C],
    title: str,
    description: str,
    routers: Sequence[APIRouter],
) -> FastAPI:
    """The FastAPI app of a service: its routes, /healthz /readyz /metrics, error mapping, lifespan.

    `start_context` is the one start hook: it builds the service's context (and starts its relay and
    jobs) once the pool and producer are up; the context is closed in `runtime.aclose()`.
    """
    settings = runtime.settings

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_format, settings.log_level)
        try:
            await runtime.start(start_context)
            yield
        finally:
            await runtime.aclose()

    app = FastAPI(
        title=title,
        description=description,
        version="1.0.0",
        lifespan=lifespan,
        docs_url=None,
        # No OpenTelemetry here (metrics are Prometheus): FastAPI's native telemetry, on by default, looks up
        # the global OTel providers on every request (4% of a single post's CPU in the issue 15 profile).
        telemetry=NO_OTEL_TELEMETRY,
    )
    install_offline_docs(app, title=title)
    # For tests and debugging only (`runtime_of`): handlers take `runtime.context` by Depends.
    app.state.runtime = runtime
    install_error_handlers(app)
    # Added first, so it runs inside the body limit and the request metrics added below.
    app.add_middleware(LeanRoutes, routes=runtime.lean_routes)
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
