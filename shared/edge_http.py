"""The I/O shell of the edge flow: `POST /v1/<things>`, `POST /v1/<things>/batch` and the raw-topic consumer.

The HTTP routes authorize before anything else: with APP_KEYS_REQUIRED the caller's app key is
checked (401) before the body is read, and items of app_ids the key does not cover are set aside as
`forbidden` before the edge validates, dedupes or publishes the rest (shared.app_keys). The raw
topics carry no key: the broker's ACLs decide who may produce to them. The two POSTs are answered
by plain ASGI lanes (shared.edge_lane) with the same replies as these FastAPI routes, which the
OpenAPI document describes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from faststream import Depends as SubscriberDepends
from faststream.kafka.annotations import KafkaMessage

from shared.app_keys import AppKey
from shared.edge import EdgeMetrics, EdgePublisher, EdgeStream, prune_published
from shared.edge_lane import EdgeContext, EdgeLane, Reply, batch_reply, caller_app_key, single_reply
from shared.http import LeanRoute
from shared.kafka import batch_subscriber
from shared.runtime import ContextDependency, Runtime
from shared.settings import EdgeServiceSettings

log = structlog.get_logger(__name__)

app_key_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AppKey",
    description="An app key (issued by POST {ingest}/v1/admin/apps); required when APP_KEYS_REQUIRED=true.",
)


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
        token = credentials.credentials if credentials is not None else None
        return await caller_app_key(context.edge, token, is_required=is_required)

    return app_key


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
        return _response(await single_reply(context.edge, await request.body(), key, noun=noun))

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
        return _response(await batch_reply(context.edge, await request.body(), key, max_batch_items=max_batch_items))

    return router


def _response(reply: Reply) -> JSONResponse:
    return JSONResponse(reply.body, status_code=reply.status_code)


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


def install_edge(
    runtime: Runtime[Any],
    *,
    endpoints: EdgeEndpoints,
    group_id: str,
    settings: EdgeServiceSettings,
) -> APIRouter:
    """Register the raw-topic consumer of an edge stream and the lanes of its hot POSTs; return its HTTP routes.

    The routes document the POSTs (OpenAPI); their lanes (shared.edge_lane) answer them. All take the
    publisher from the service's context (`EdgeContext.edge`, see `start_edge`).
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

    lane = partial(EdgeLane, dependency, is_key_required=settings.app_keys_required)
    single = partial(single_reply, noun=endpoints.noun)
    batch = partial(batch_reply, max_batch_items=settings.max_batch_items)
    runtime.lean_routes.extend(
        [
            LeanRoute("POST", endpoints.path, lane(single)),
            LeanRoute("POST", f"{endpoints.path}/batch", lane(batch)),
        ]
    )
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
