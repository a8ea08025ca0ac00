"""An edge's hot POSTs (`POST /v1/<things>` and `.../batch`) as plain ASGI handlers, and the replies they send.

A chat app posts one interaction per turn and one vote per click, so these two routes carry the
production traffic. FastAPI's per-request machinery (routing through included routers, dependency
solving, Request and Response objects) cost about a third of a single post's CPU in the issue 15
profile, more than validating and publishing the event. `EdgeLane` does what the FastAPI route
did, in the same order and with the same answers: the service's context (503 before it started),
the caller's app key from `Authorization: Bearer` when keys are required (401 before the body is
read), the body, then `single_reply` / `batch_reply`; a PipelineError is answered by the shared
mapping (shared.http.error_response). shared.http.LeanRoutes hands it the requests of its method
and path, inside the body limit and request metrics; FastAPI keeps the route for the OpenAPI
document and answers it only where no lane is installed (both call the same reply functions).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson
import structlog
from fastapi.security.utils import get_authorization_scheme_param
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from shared.app_keys import AppKey, authenticate_app, refuse_app
from shared.edge import EdgePublisher, ItemResult
from shared.errors import ContractError, PipelineError
from shared.http import error_response, send_json
from shared.runtime import ContextDependency

log = structlog.get_logger(__name__)


class EdgeContext(Protocol):
    """A service context that publishes an edge stream (ingest's, feedback's)."""

    edge: EdgePublisher


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: its status and JSON body."""

    status_code: int
    body: dict[str, Any]


def decode_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ContractError(
            "body is not valid JSON", errors=[{"loc": ["body"], "msg": f"Invalid JSON: {exc}", "type": "json_invalid"}]
        ) from exc


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None (as FastAPI's HTTPBearer reads it)."""
    scheme, credentials = get_authorization_scheme_param(authorization)
    if not (authorization and scheme and credentials) or scheme.lower() != "bearer":
        return None
    return credentials


async def caller_app_key(edge: EdgePublisher, token: str | None, *, is_required: bool) -> AppKey | None:
    """The caller's live app key (AuthError, 401, without one), or None when keys are not required."""
    if not is_required:
        return None
    return await authenticate_app(edge.pool, token, timeout_s=edge.settings.db_acquire_timeout_s)


def _forbidden(index: int, item: Any, error: dict[str, Any]) -> ItemResult:
    event_id = item.get("event_id") if isinstance(item, dict) else None
    return ItemResult(index=index, status="forbidden", event_id=str(event_id) if event_id else None, errors=(error,))


async def accept_authorized(edge: EdgePublisher, items: Sequence[Any], key: AppKey | None) -> list[ItemResult]:
    """Each item's result: those of app_ids the key does not cover are `forbidden`, the others go through the edge.

    The forbidden are set aside first, so they are never validated further, deduped or published.
    """
    refused = {} if key is None else {i: error for i, item in enumerate(items) if (error := refuse_app(item, key))}
    if not refused:
        return await edge.accept_items(items, via="http")
    edge.metrics.forbidden.labels(edge.stream.name, "http").inc(len(refused))
    log.info("app_items_forbidden", stream=edge.stream.name, key_id=key.key_id if key else None, items=len(refused))
    allowed = [i for i in range(len(items)) if i not in refused]
    judged = await edge.accept_items([items[i] for i in allowed], via="http") if allowed else []
    results = {allowed[r.index]: replace(r, index=allowed[r.index]) for r in judged}
    results.update({i: _forbidden(i, items[i], error) for i, error in refused.items()})
    return [results[i] for i in range(len(items))]


def _parsed(edge: EdgePublisher, body: bytes, key: AppKey | None, *, many: bool) -> list[Any] | None:
    """The body's items validated from its bytes when all are valid and the key covers each; else None.

    None sends the body the per-item way (`accept_authorized`), which judges and names what is refused.
    """
    parser = edge.stream.json_items
    if parser is None:
        return None
    if many:
        events = parser.many(body, edge.limits)
    else:
        event = parser.one(body, edge.limits)
        events = None if event is None else [event]
    if events is None or (key is not None and any(refuse_app({"app_id": e.app_id}, key) for e in events)):
        return None
    return events


async def single_reply(edge: EdgePublisher, body: bytes, key: AppKey | None, *, noun: str) -> Reply:
    """`POST /v1/<things>`: 202 accepted or duplicate, 403 forbidden, 409 conflict; ContractError (422) if invalid."""
    parsed = _parsed(edge, body, key, many=False)
    if parsed is not None:
        (result,) = await edge.accept_parsed(parsed, via="http")
    else:
        item = decode_json(body)
        if not isinstance(item, dict):
            raise ContractError(
                f"body must be one {noun} object",
                errors=[{"loc": ["body"], "msg": "Input should be an object", "type": "dict_type"}],
            )
        (result,) = await accept_authorized(edge, [item], key)
    if result.status == "rejected":
        raise ContractError(f"invalid {noun}", errors=[{**e, "loc": ["body", *e["loc"]]} for e in result.errors])
    if result.status in ("forbidden", "conflict"):
        detail = [{**e, "loc": ["body", *e["loc"]]} for e in result.errors]
        status = 403 if result.status == "forbidden" else 409
        return Reply(status, {"event_id": result.event_id, "status": result.status, "detail": detail})
    return Reply(202, {"event_id": result.event_id, "status": result.status, "accepted": [result.event_id]})


async def batch_reply(edge: EdgePublisher, body: bytes, key: AppKey | None, *, max_batch_items: int) -> Reply:
    """`POST /v1/<things>/batch`: each item judged on its own (see `batch_results_reply`); 413 past the limit."""
    parsed = _parsed(edge, body, key, many=True)
    if parsed is not None and len(parsed) <= max_batch_items:
        return batch_results_reply(await edge.accept_parsed(parsed, via="http"))
    items = decode_json(body)
    if not isinstance(items, list):
        raise ContractError(
            "body must be a JSON list",
            errors=[{"loc": ["body"], "msg": "Input should be a valid list", "type": "list_type"}],
        )
    if len(items) > max_batch_items:
        too_many = {
            "loc": ["body"],
            "type": "too_many_items",
            "msg": f"{len(items)} items, more than the limit of {max_batch_items}",
        }
        return Reply(413, {"detail": [too_many]})
    return batch_results_reply(await accept_authorized(edge, items, key))


def batch_results_reply(results: list[ItemResult]) -> Reply:
    """202 when any item went through (or none was sent), else 403, 422 or 409 by the worst refusal."""
    accepted = [r.event_id for r in results if r.status in ("accepted", "duplicate")]
    by_status = {s: [r.to_json() for r in results if r.status == s] for s in ("rejected", "conflict", "forbidden")}
    body: dict[str, Any] = {
        "accepted": accepted,
        "rejected": by_status["rejected"],
        "conflicts": by_status["conflict"],
        "forbidden": by_status["forbidden"],
        "results": [r.to_json() for r in results],
    }
    status = 202 if accepted or not results else 403 if body["forbidden"] else 422 if body["rejected"] else 409
    named = {403: "forbidden", 409: "conflict"}.get(status)
    if named:
        body["detail"] = [
            {**e, "loc": ["body", r.index, *e["loc"]]} for r in results if r.status == named for e in r.errors
        ]
    return Reply(status, body)


EdgeReply = Callable[[EdgePublisher, bytes, AppKey | None], Awaitable[Reply]]


async def read_body(receive: Receive) -> bytes:
    """The whole request body (the ASGI messages of one request)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect  # as Starlette's Request.body() does
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class EdgeLane:
    """One hot POST of an edge as an ASGI app: context, app key, body, reply (see the module's docstring)."""

    dependency: ContextDependency[EdgeContext]
    reply: EdgeReply
    is_key_required: bool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            edge = (await self.dependency()).edge
            token = bearer_token(Headers(scope=scope).get("authorization")) if self.is_key_required else None
            key = await caller_app_key(edge, token, is_required=self.is_key_required)
            reply = await self.reply(edge, await read_body(receive), key)
        except PipelineError as exc:
            await error_response(exc)(scope, receive, send)
            return
        await send_json(send, reply.status_code, reply.body)
