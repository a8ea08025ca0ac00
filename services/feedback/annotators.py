"""feedback's annotator and admin HTTP routes, and the annotation-requests consumer that fills the queue.

Annotators send `Authorization: Bearer <token>` (401 without a valid, unrevoked one; 403 outside its
domains or on someone else's lease); admins send the ADMIN_TOKEN (the admin routes answer 403 while
it is unset: they are never open).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from faststream.kafka.annotations import KafkaMessage
from pydantic import BaseModel, ConfigDict, Field

from services.feedback import auth, store
from services.feedback.queue import TaskQueue
from services.feedback.queue_rules import Verdict
from shared import topics
from shared.errors import ContractError, NotFoundError, PipelineError
from shared.events import Domain
from shared.kafka import RedeliveryPause, batch_subscriber
from shared.runtime import Runtime

log = structlog.get_logger(__name__)

annotator_bearer = HTTPBearer(auto_error=False, scheme_name="AnnotatorToken", description="An annotator's token.")
admin_bearer = HTTPBearer(auto_error=False, scheme_name="AdminToken", description="The ADMIN_TOKEN.")
Credentials = HTTPAuthorizationCredentials | None


class LeaseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: Domain | None = Field(None, description="Lease only in this domain (one of the token's).")


class VerdictBody(BaseModel):
    """See services.feedback.queue_rules for which verdicts fit which task kind."""

    model_config = ConfigDict(extra="forbid")

    verdict: Literal["A", "B", "tie", "both_bad"]
    rewrite: str | None = Field(None, min_length=1, description="The better answer; only with both_bad.")
    comment: str | None = Field(None, min_length=1)


def queue_of(request: Request) -> TaskQueue:
    return request.app.state.runtime.state["queue"]


async def current_annotator(
    request: Request, credentials: Annotated[Credentials, Depends(annotator_bearer)]
) -> store.Annotator:
    token = credentials.credentials if credentials is not None else None
    return await auth.authenticate(request.app.state.runtime.db, token)


async def require_admin(request: Request, credentials: Annotated[Credentials, Depends(admin_bearer)]) -> None:
    token = credentials.credentials if credentials is not None else None
    auth.check_admin(token, request.app.state.runtime.settings.admin_token)


AnnotatorDep = Annotated[store.Annotator, Depends(current_annotator)]


def _check_lengths(body: VerdictBody, max_chars: int) -> None:
    for name in ("rewrite", "comment"):
        value = getattr(body, name)
        if value is not None and len(value) > max_chars:
            raise ContractError(
                f"{name} too long",
                errors=[{"loc": ["body", name], "msg": f"more than {max_chars} characters", "type": "too_long"}],
            )


def tasks_router() -> APIRouter:
    router = APIRouter(prefix="/v1/tasks", tags=["annotators"])

    @router.post(
        "/lease",
        summary="Lease the next task (optionally in one domain)",
        responses={204: {"description": "Nothing queued for this annotator"}},
    )
    async def lease(request: Request, annotator: AnnotatorDep, body: LeaseBody | None = None) -> Any:
        task = await queue_of(request).lease(annotator, body.domain if body else None)
        return Response(status_code=204) if task is None else JSONResponse(task)

    @router.post("/{task_id}/verdict", summary="Submit a verdict on a leased task")
    async def verdict(request: Request, task_id: str, body: VerdictBody, annotator: AnnotatorDep) -> Any:
        _check_lengths(body, request.app.state.runtime.settings.max_content_chars)
        given = Verdict(
            annotator_id=annotator.annotator_id, verdict=body.verdict, rewrite=body.rewrite, comment=body.comment
        )
        return await queue_of(request).submit_verdict(annotator, task_id, given)

    @router.post("/{task_id}/extend", summary="Extend a lease by the lease duration from now")
    async def extend(request: Request, task_id: str, annotator: AnnotatorDep) -> Any:
        return await queue_of(request).extend(annotator, task_id)

    @router.post("/{task_id}/release", summary="Give a leased task back to the queue")
    async def release(request: Request, task_id: str, annotator: AnnotatorDep) -> Any:
        return await queue_of(request).release(annotator, task_id)

    @router.post("/{task_id}/skip", summary="Give a leased task back; it is not offered to you again")
    async def skip(request: Request, task_id: str, annotator: AnnotatorDep) -> Any:
        return await queue_of(request).skip(annotator, task_id)

    @router.get("/stats", summary="Queue depth, outcomes and agreement (annotators: their domains only)")
    async def stats(request: Request, credentials: Annotated[Credentials, Depends(annotator_bearer)]) -> Any:
        token = credentials.credentials if credentials is not None else None
        admin_token = request.app.state.runtime.settings.admin_token
        if token and admin_token and auth.is_admin_token(token, admin_token):
            return await queue_of(request).stats(None)
        annotator = await auth.authenticate(request.app.state.runtime.db, token)
        return await queue_of(request).stats(annotator.domains, annotator.annotator_id)

    return router


def admin_router() -> APIRouter:
    router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])

    @router.post("/annotators", status_code=201, summary="Issue a token for an annotator and its domains")
    async def issue(request: Request, body: auth.AnnotatorGrant) -> dict[str, Any]:
        token = await auth.issue_token(request.app.state.runtime.db, body)
        return {"annotator_id": body.annotator_id, "domains": sorted(set(body.domains)), "token": token}

    # `:path`: an annotator id may contain "/" (any character but controls), which arrives decoded.
    @router.delete("/annotators/{annotator_id:path}", summary="Revoke every token of an annotator")
    async def revoke(request: Request, annotator_id: str) -> dict[str, Any]:
        if not await auth.revoke_annotator(request.app.state.runtime.db, annotator_id):
            raise NotFoundError("no such annotator", annotator_id=annotator_id)
        return {"annotator_id": annotator_id, "revoked": True}

    return router


def register_tasks_consumer(runtime: Runtime, group_id: str) -> None:
    """Fill the queue from annotation-requests; offsets commit after the upsert transaction commits."""
    pause = RedeliveryPause(runtime.settings.retry_initial_backoff_s, runtime.settings.retry_max_backoff_s)

    @batch_subscriber(
        runtime.broker,
        runtime.settings,
        topics.ANNOTATION_REQUESTS,
        group_id=group_id,
        title="annotation-requests",
        description="Ambiguous pairs and lone bad answers routed by the aggregator, queued for experts.",
    )
    async def on_annotation_requests(msg: KafkaMessage) -> None:
        try:
            await runtime.state["queue"].ingest(msg.raw_message)
        except PipelineError as exc:
            pause_s = await pause.failed()
            log.warning("batch_failed", topic=topics.ANNOTATION_REQUESTS, **exc.to_log_context(), backoff_s=pause_s)
            raise
        pause.succeeded()
