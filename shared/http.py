"""HTTP plumbing every service shares: /healthz, /readyz, /metrics, /docs, error mapping, body limits."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import swagger_ui_bundle
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import (
    AuthError,
    ConflictError,
    ContractError,
    ForbiddenError,
    NotFoundError,
    PipelineError,
    TransientError,
)

ReadinessCheck = Callable[[], Awaitable[bool]]
DOCS_ASSETS = "/docs-assets"


class HttpMetrics:
    """Request counters and latency histograms, in the app's own registry."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.requests = Counter(
            "http_requests",
            "HTTP requests by route and status",
            ["service", "route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency",
            ["service", "route", "method"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.service = service


def ops_router(registry: CollectorRegistry, checks: dict[str, ReadinessCheck]) -> APIRouter:
    """/healthz (the process answers), /readyz (every dependency answers), /metrics (Prometheus)."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        results = {name: await check() for name, check in checks.items()}
        ok = all(results.values())
        return JSONResponse(
            {"status": "ready" if ok else "not_ready", "checks": results}, status_code=200 if ok else 503
        )

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


def install_offline_docs(app: FastAPI, *, title: str) -> None:
    """/docs: Swagger UI from the pinned swagger-ui-bundle-v2 package, so the docs work with no network.

    FastAPI's own /docs loads Swagger UI from a CDN; build the app with `docs_url=None` and call this.
    """
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_bundle.swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title} - API docs",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )


_STATUS: list[tuple[type[PipelineError], int]] = [
    (ContractError, 422),
    (AuthError, 401),
    (ForbiddenError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (TransientError, 503),
]


def error_response(exc: PipelineError) -> JSONResponse:
    """The HTTP answer to a pipeline error: 422 naming the fields, 401, 403, 404, 409, 503 (see `_STATUS`)."""
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
    if isinstance(exc, ContractError):
        body: dict = {"detail": exc.errors or [{"loc": [], "msg": exc.message, "type": exc.code}]}
    else:
        body = {"detail": exc.message, "code": exc.code}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "1"}
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map the pipeline's errors to HTTP in one place."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PipelineError)
        return error_response(exc)

    app.add_exception_handler(PipelineError, handle)


async def send_json(send: Send, status: int, body: Any) -> None:
    """Answer an ASGI request with `body` as JSON (orjson: the same JSON as JSONResponse, written faster)."""
    content = orjson.dumps(body)
    headers = [(b"content-length", str(len(content)).encode()), (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


@dataclass(frozen=True, slots=True)
class LeanRoute:
    """A route served by a plain ASGI app (`LeanRoutes`); `path` is its label in the request metrics."""

    method: str
    path: str
    app: ASGIApp


class LeanRoutes:
    """ASGI middleware: a request whose method and path are a lean route's goes straight to that route's app.

    For the hot routes only (shared.edge_lane): it skips FastAPI's routing and per-request machinery;
    every other request goes on to the app. Installed inside the body limit and the request metrics,
    so those apply as to any route; the app answers its own errors (shared.http.error_response).
    """

    def __init__(self, app: ASGIApp, routes: Sequence[LeanRoute]) -> None:
        self.app = app
        self.routes = {(route.method, route.path): route for route in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.routes:
            path, root = scope["path"], scope.get("root_path", "")
            route = self.routes.get((scope["method"], path[len(root) :] if root and path.startswith(root) else path))
            if route is not None:
                scope["route"] = route
                await route.app(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_request_metrics(app: FastAPI, metrics: HttpMetrics) -> None:
    app.add_middleware(RequestMetrics, metrics=metrics)


class RequestMetrics:
    """ASGI middleware: count and time each request by route template and status.

    Plain ASGI rather than Starlette's BaseHTTPMiddleware, which costs a task and a stream per request.
    Each label set's child is looked up once (prometheus_client's `labels()` builds and locks per call):
    the children kept are the ones the registry keeps anyway.
    """

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._children: dict[tuple[Any, ...], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            service = self.metrics.service
            _child(self._children, self.metrics.latency, service, route, method).observe(time.perf_counter() - started)
            _child(self._children, self.metrics.requests, service, route, method, str(status)).inc()


def _child(children: dict[tuple[Any, ...], Any], metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, looked up once per label set and metric."""
    key = (metric, *labels)
    child = children.get(key)
    if child is None:
        child = children[key] = metric.labels(*labels)
    return child


class BodySizeLimit:
    """ASGI middleware: a body over `max_bytes` gets 413 before it is read into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return
        seen = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise _BodyTooLargeError
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLargeError:
            if too_large:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = (
            b'{"detail":[{"loc":["body"],"msg":"request body larger than %d bytes","type":"too_large"}]}'
            % self.max_bytes
        )
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


class _BodyTooLargeError(Exception):
    pass
