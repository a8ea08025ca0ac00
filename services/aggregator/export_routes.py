"""The export route: `GET /v1/exports/{kind}.{format}` streams one consistent snapshot as training data.

The route takes the aggregator's context by Depends, like the other routes, and uses its `exports`
part (pool, rules, export slots: services/aggregator/context.py). Bad input is refused before
anything is read: 422 naming each bad part (kind, format, filter, unknown or repeated parameter).
An export that matches no row is 404, so a client never takes an empty file for a result.
Otherwise the response is streamed (chunked) while the snapshot is read; the snapshot point travels
in the headers, and the connection is given back when the body ends or the client goes away.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from services.aggregator import export_store
from services.aggregator.context import AggregatorContext
from services.aggregator.export_stream import ExportStream
from shared.errors import NotFoundError
from shared.exports import (
    HEADER_REQUEST,
    HEADER_SCHEMA_VERSION,
    HEADER_SNAPSHOT,
    HEADER_SNAPSHOT_AT,
    MEDIA_TYPES,
    SCHEMA_VERSION,
    ExportRequest,
    parse_request,
)
from shared.runtime import ContextDependency

_DESCRIPTION = """One consistent snapshot of the live state as training data, streamed.

Kinds: `dpo`, `reward`, `kto`, `sft` (TRL's column formats) and `openai-dpo` (JSONL only).
Formats: `parquet`, `jsonl`, `arrow` (an Arrow IPC stream). `split=all` (the default) adds a
`split` column; `train` / `test` keep one side. 422 names each bad parameter; 404 when no row
matches. Headers: X-Export-Snapshot-At (the transaction's now()), X-Export-Snapshot
(pg_current_snapshot()), X-Export-Request (the request as validated, defaults included)."""


class ClosingStreamingResponse(StreamingResponse):
    """A streaming response that always closes its body iterator, even when the client went away mid-body."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]


def _query(request: Request) -> tuple[dict[str, str], tuple[str, ...]]:
    items = request.query_params.multi_items()
    names = [name for name, _ in items]
    repeated = tuple(sorted({name for name in names if names.count(name) > 1}))
    return dict(items), repeated


async def _body(first: bytes, rest: AsyncIterator[bytes], stream: ExportStream) -> AsyncIterator[bytes]:
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
        await stream.aclose()


def _etag(request: ExportRequest, point: export_store.ExportPoint) -> str:
    """Changes when the request or the database's state may have: caches (datasets keys downloads on it)
    never serve an old export for a URL whose data moved on."""
    text = json.dumps([request.to_json(), point.snapshot, SCHEMA_VERSION], sort_keys=True)
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'


def _headers(stream: ExportStream) -> dict[str, str]:
    request, point = stream.request, stream.point
    assert point is not None
    suffix = "" if request.split == "all" else f"-{request.split}"
    return {
        "ETag": _etag(request, point),
        HEADER_SNAPSHOT_AT: point.taken_at.isoformat(),
        HEADER_SNAPSHOT: point.snapshot,
        HEADER_SCHEMA_VERSION: str(SCHEMA_VERSION),
        HEADER_REQUEST: json.dumps(request.to_json(), ensure_ascii=True, separators=(",", ":")),
        "Content-Disposition": f'attachment; filename="{request.kind}{suffix}.{request.format}"',
        "Cache-Control": "no-store",
    }


def _nothing_matches(request: dict[str, Any]) -> str:
    given = {k: v for k, v in request["filters"].items() if v is not None}
    given |= {"test_size": request["test_size"], "split": request["split"]}
    named = ", ".join(f"{k}={v}" for k, v in given.items())
    return f"no {request['kind']} rows match the filters ({named})"


def _text_param(description: str) -> Any:
    return Query(None, description=description)


def _add_head(router: APIRouter, dependency: ContextDependency[AggregatorContext]) -> None:
    """HEAD of the export route: cheap (no snapshot read), so HTTP clients that ask first start no export."""

    @router.head("/{name}", include_in_schema=False)
    async def export_head(name: str, request: Request, context: AggregatorContext = Depends(dependency)) -> Response:
        """What a GET would be (validation, type, ETag) without reading it: HTTP clients and caches ask first."""
        params, repeated = _query(request)
        export_request = parse_request(name, params, repeated)
        point = await export_store.select_export_point(context.exports.pool)
        headers = {"ETag": _etag(export_request, point), HEADER_SNAPSHOT: point.snapshot, "Cache-Control": "no-store"}
        return Response(status_code=200, media_type=MEDIA_TYPES[export_request.format], headers=headers)


def export_router(dependency: ContextDependency[AggregatorContext]) -> APIRouter:
    """The export route (GET and HEAD); `dependency` is the runtime's context (`runtime.context`)."""
    router = APIRouter(prefix="/v1/exports", tags=["exports"])

    @router.get("/{name}", summary="Training data: KIND.FORMAT, e.g. dpo.parquet", description=_DESCRIPTION)
    async def export(
        name: str,
        request: Request,
        context: AggregatorContext = Depends(dependency),
        app_id: str | None = _text_param("Only this app."),
        domain: str | None = _text_param("Only this routed domain."),
        method: str | None = _text_param("votes, comparison, edit, expert (kto also: approval)."),
        model_version: str | None = _text_param("Rows about this model version (either side of a pair)."),
        min_confidence: str | None = _text_param("At least this confidence, 0-1."),
        since: str | None = _text_param("updated_at at or after this ISO 8601 time (with offset) or date."),
        until: str | None = _text_param("updated_at before this ISO 8601 time (with offset) or date."),
        test_size: str | None = _text_param("Share of prompt groups in test, 0-1 (default 0.1)."),
        split: str | None = _text_param("all (default, adds a split column), train or test."),
    ) -> StreamingResponse:
        params, repeated = _query(request)
        stream = ExportStream(context.exports, parse_request(name, params, repeated))
        try:
            await stream.open()
            body = stream.chunks()
            first = await anext(body)
            if stream.rows == 0:
                await body.aclose()
                raise NotFoundError(_nothing_matches(stream.request.to_json()))
        except BaseException:
            await stream.aclose()
            raise
        return ClosingStreamingResponse(
            _body(first, body, stream), media_type=MEDIA_TYPES[stream.request.format], headers=_headers(stream)
        )

    _add_head(router, dependency)
    return router
