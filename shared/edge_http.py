"""The I/O shell of the edge flow: `POST /v1/<things>`, `POST /v1/<things>/batch` and the raw-topic consumer.

The HTTP routes authorize before anything else: with APP_KEYS_REQUIRED the caller's app key is
checked (401) before the body is read, and items of app_ids the key does not cover are set aside as
`forbidden` before the edge validates, dedupes or publishes the rest (shared.app_keys). The raw
topics carry no key: the broker's ACLs decide who may produce to them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Annotated, Any, Protocol

import orjson
import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from faststream import Depends as SubscriberDepends
from faststream.kafka.annotations import KafkaMessage

from shared.app_keys import AppKey, authenticate_app, refuse_app
from shared.edge import EdgeMetrics, EdgePublisher, EdgeStream, ItemResult, prune_published
from shared.errors import ContractError
from shared.kafka import batch_subscriber
from shared.runtime import ContextDependency, Runtime
from shared.settings import EdgeServiceSettings

log = structlog.get_logger(__name__)

app_key_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AppKey",
    description="An app key (issued by POST {ingest}/v1/admin/apps); required when APP_KEYS_REQUIRED=true.",
)


def _decode_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ContractError(
            "body is not valid JSON", errors=[{"loc": ["body"], "msg": f"Invalid JSON: {exc}", "type": "json_invalid"}]
        ) from exc


def inline_local_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with each `#/$defs/<name>` reference replaced by that definition, and no `$defs`.

    pydantic keeps nested models under the schema's own `$defs`; embedded in an OpenAPI document such
    a reference resolves against the document root, where there is no `$defs`: clients, code generators
    and fuzzers would see a body they cannot resolve. A discriminator keeps its `propertyName` and
    loses its `mapping` (whose values are such references). Our contracts are not recursive.
    """
    defs = schema.get("$defs", {})

    def resolve(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [resolve(value, seen) for value in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.removeprefix("#/$defs/")
            if name in seen:
                raise ValueError(f"recursive schema {name!r} cannot be inlined")
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            return {**resolve(defs[name], (*seen, name)), **resolve(siblings, seen)}
        inlined = {key: resolve(value, seen) for key, value in node.items() if key != "$defs"}
        if isinstance(inlined.get("discriminator"), dict):
            inlined["discriminator"] = {k: v for k, v in inlined["discriminator"].items() if k != "mapping"}
        return inlined

    return resolve(schema, ())


def caller_key(
    dependency: ContextDependency[EdgeContext], *, is_required: bool
) -> Callable[..., Awaitable[AppKey | None]]:
    """A route dependency: the caller's live app key (401 without one), or None when keys are not required."""

    async def app_key(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(app_key_bearer)],
        context: EdgeContext = Depends(dependency),
    ) -> AppKey | None:
        if not is_required:
            return None
        token = credentials.credentials if credentials is not None else None
        edge = context.edge
        return await authenticate_app(edge.pool, token, timeout_s=edge.settings.db_acquire_timeout_s)

    return app_key


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


def edge_router(
    *,
    path: str,
    noun: str,
    item_schema: dict[str, Any],
    dependency: ContextDependency[EdgeContext],
    max_batch_items: int,
    tag: str,
    app_keys_required: bool = False,
    notes: str = "",
) -> APIRouter:
    """Single and batch endpoints that authorize, validate, dedupe and publish through the context's `edge`."""
    router = APIRouter(tags=[tag])
    app_key = caller_key(dependency, is_required=app_keys_required)
    keys = (
        "App keys are required: `Authorization: Bearer <app key>` (401 without a live one); an item whose app_id "
        "the key does not cover is `forbidden` (403 for one item, type `app_not_allowed` on `body.app_id`; per "
        "item in a batch) and nothing of it is published."
        if app_keys_required
        else "App keys are not required here (APP_KEYS_REQUIRED=false): any caller may write any app_id."
    )
    rules = (
        "One event_id, one body: re-posting an event_id with the same body is a `duplicate` (nothing is "
        "published again); with another body a `conflict` (409 for one item; per item in a batch), nothing "
        f"published. {keys} {notes}"
    ).strip()
    item_schema = inline_local_refs(item_schema)
    single_body = {"requestBody": {"required": True, "content": {"application/json": {"schema": item_schema}}}}
    batch_body = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "array", "items": item_schema, "maxItems": max_batch_items}}
            },
        }
    }
    result_example = {"event_id": "7b0c2a4e-0000-4000-8000-000000000000", "status": "accepted"}

    @router.post(
        path,
        status_code=202,
        summary=f"Submit one {noun}",
        description=f"202 with `status` accepted (published now) or duplicate. {rules}",
        openapi_extra=single_body,
        responses={
            202: {
                "description": f"Accepted (or already accepted) {noun}",
                "content": {
                    "application/json": {"example": {**result_example, "accepted": [result_example["event_id"]]}}
                },
            },
            409: {
                "description": "Conflict: this event_id was accepted before with another body; nothing is published",
                "content": {
                    "application/json": {
                        "example": {
                            "event_id": result_example["event_id"],
                            "status": "conflict",
                            "detail": [{"loc": ["body", "event_id"], "msg": "...", "type": "conflict"}],
                        }
                    }
                },
            },
            401: {"description": "APP_KEYS_REQUIRED=true and no live app key (missing, unknown or revoked)"},
            403: {
                "description": "The app key does not cover this app_id: `detail` names `body.app_id`, type "
                "`app_not_allowed`; nothing is published"
            },
            422: {"description": "Invalid: `detail` names every bad field (its `type` says why)"},
        },
    )
    async def post_one(
        request: Request, context: EdgeContext = Depends(dependency), key: AppKey | None = Depends(app_key)
    ) -> JSONResponse:
        item = _decode_json(await request.body())
        if not isinstance(item, dict):
            raise ContractError(
                f"body must be one {noun} object",
                errors=[{"loc": ["body"], "msg": "Input should be an object", "type": "dict_type"}],
            )
        (result,) = await accept_authorized(context.edge, [item], key)
        if result.status == "forbidden":
            detail = [{**e, "loc": ["body", *e["loc"]]} for e in result.errors]
            return JSONResponse({"event_id": result.event_id, "status": "forbidden", "detail": detail}, status_code=403)
        if result.status == "rejected":
            raise ContractError(f"invalid {noun}", errors=[{**e, "loc": ["body", *e["loc"]]} for e in result.errors])
        if result.status == "conflict":
            detail = [{**e, "loc": ["body", *e["loc"]]} for e in result.errors]
            return JSONResponse({"event_id": result.event_id, "status": "conflict", "detail": detail}, status_code=409)
        return JSONResponse(
            {"event_id": result.event_id, "status": result.status, "accepted": [result.event_id]}, status_code=202
        )

    @router.post(
        f"{path}/batch",
        status_code=202,
        summary=f"Submit a list of {noun}s; each is judged on its own",
        description=f"Each item gets a `status` in `results`: accepted, duplicate, conflict, rejected or forbidden "
        f"(with its `errors`); two items with one event_id are judged in order, never both accepted. {rules}",
        openapi_extra=batch_body,
        responses={
            202: {
                "description": "At least one item accepted (or a duplicate); `results` has one entry per item, its "
                "`status` one of accepted, duplicate (this event_id and body were accepted before, or earlier in "
                "this list), conflict (this event_id came before with another body: nothing published) or rejected"
            },
            401: {"description": "APP_KEYS_REQUIRED=true and no live app key (missing, unknown or revoked)"},
            403: {
                "description": "No item accepted and some forbidden (their app_id is not the app key's); `detail` "
                "names each such item's `app_id`"
            },
            409: {"description": "Every item is a conflict; `detail` names each item's event_id"},
            413: {"description": f"More than {max_batch_items} items"},
            422: {"description": "No item accepted and some rejected; `results` names every bad field per item"},
        },
    )
    async def post_batch(
        request: Request, context: EdgeContext = Depends(dependency), key: AppKey | None = Depends(app_key)
    ) -> JSONResponse:
        items = _decode_json(await request.body())
        if not isinstance(items, list):
            raise ContractError(
                "body must be a JSON list",
                errors=[{"loc": ["body"], "msg": "Input should be a valid list", "type": "list_type"}],
            )
        if len(items) > max_batch_items:
            return JSONResponse(
                {
                    "detail": [
                        {
                            "loc": ["body"],
                            "type": "too_many_items",
                            "msg": f"{len(items)} items, more than the limit of {max_batch_items}",
                        }
                    ]
                },
                status_code=413,
            )
        results = await accept_authorized(context.edge, items, key)
        return _batch_response(results)

    return router


def _batch_response(results: list[ItemResult]) -> JSONResponse:
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
    return JSONResponse(body, status_code=status)


@dataclass(kw_only=True, frozen=True)
class EdgeEndpoints:
    """Where one edge stream comes in: its raw topic and its HTTP path."""

    raw_topic: str
    path: str
    noun: str
    tag: str
    item_schema: dict[str, Any]
    notes: str = ""
    """What else this stream refuses, for the OpenAPI and AsyncAPI descriptions."""


class EdgeContext(Protocol):
    """A service context that publishes an edge stream (ingest's, feedback's)."""

    edge: EdgePublisher


def install_edge(
    runtime: Runtime[Any],
    *,
    endpoints: EdgeEndpoints,
    group_id: str,
    settings: EdgeServiceSettings,
) -> APIRouter:
    """Register the raw-topic consumer of an edge stream; return its HTTP routes.

    Both take the publisher from the service's context (`EdgeContext.edge`, see `start_edge`).
    Offsets of the raw topic are committed only after the outputs are acknowledged by the broker.
    """
    dependency: ContextDependency[EdgeContext] = runtime.context

    @batch_subscriber(
        runtime.broker,
        settings,
        endpoints.raw_topic,
        group_id=group_id,
        title=endpoints.raw_topic,
        description=f"{endpoints.noun.capitalize()}s as apps publish them (same body as the HTTP API). Invalid ones "
        "are dead-lettered with the reason (error_code); an event_id seen before with another body as `conflict`. "
        f"{endpoints.notes}".strip(),
    )
    async def on_raw(msg: KafkaMessage, context: EdgeContext = SubscriberDepends(dependency, cast=False)) -> None:
        await context.edge.consume(msg.raw_message)

    return edge_router(
        path=endpoints.path,
        noun=endpoints.noun,
        item_schema=endpoints.item_schema,
        dependency=dependency,
        max_batch_items=settings.max_batch_items,
        tag=endpoints.tag,
        app_keys_required=settings.app_keys_required,
        notes=endpoints.notes,
    )


def start_edge(
    runtime: Runtime[Any], *, stream: EdgeStream, metrics: EdgeMetrics, settings: EdgeServiceSettings
) -> EdgePublisher:
    """The edge publisher of a starting service, and its job pruning old published event ids."""
    window = timedelta(seconds=settings.dedupe_window_s)
    runtime.every("prune_published", settings.dedupe_prune_interval_s, lambda: prune_published(runtime.db, window))
    return EdgePublisher(
        service=runtime.service,
        stream=stream,
        broker=runtime.broker,
        pool=runtime.db,
        settings=settings,
        metrics=metrics,
    )
