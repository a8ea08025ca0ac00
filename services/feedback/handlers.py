"""feedback's handlers: every subscriber and route of the service.

- End users: votes over HTTP and from feedback.raw, through the shared edge flow.
- The annotation-requests consumer that fills the queue.
- Annotators (`/v1/tasks/...`): `Authorization: Bearer <token>`; 401 without a valid, unrevoked one,
  403 outside its domains or on someone else's lease.
- Admins (`/v1/admin/...`): the ADMIN_TOKEN; the admin routes answer 403 while it is unset (never open).
- The annotator web UI (`/ui/...`): its page, assets and UI-support routes, in services/feedback/ui.py.

Handlers take the service's context (`FeedbackContext`) by Depends and shape their JSON from the
queue's typed results.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from faststream import Depends as SubscriberDepends
from faststream.kafka.annotations import KafkaMessage
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.feedback import auth, store
from services.feedback.agreement import Agreement
from services.feedback.context import FeedbackContext
from services.feedback.position_bias import PositionBias
from services.feedback.queue_rules import Judgement, task_view
from services.feedback.queue_stats import AnnotatorProgress, DomainStats, QueueStats
from services.feedback.settings import FeedbackSettings
from services.feedback.stream import vote_json_schema
from services.feedback.ui import ui_router
from shared import topics
from shared.edge_http import EdgeEndpoints, install_edge
from shared.errors import ContractError, NotFoundError
from shared.events import DeadLetter, Domain, Vote
from shared.kafka import batch_subscriber, document_output
from shared.runtime import ContextDependency, Runtime
from shared.security_settings import secret_value

log = structlog.get_logger(__name__)

# What apps may say (ARCHITECTURE.md, Trust boundaries), in the OpenAPI and AsyncAPI descriptions.
END_USER_NOTES = (
    "End-user evidence only (thumb, rating, comparison, edit, comment; source end_user): a body claiming "
    "expert evidence (source expert, kind verdict, annotator_id or another field of a verdict) is refused, "
    "422 naming each such field with type `forbidden_source` (dead letter `forbidden_source` from "
    "feedback.raw); experts answer through POST /v1/tasks/{task_id}/verdict. A comparison of two answers "
    "known to answer different prompts: 422 / dead letter `cross_group_comparison`."
)
DEAD_LETTER_NOTES = (
    "Messages that could not be processed, with their origin and the reason (error_code). Once the cause is "
    "fixed they can be sent back to their origin (python -m services.ops redrive, or the aggregator's "
    "POST /v1/admin/dead-letters/redrive), with a `redriven_from` header naming the letter."
)

annotator_bearer = HTTPBearer(auto_error=False, scheme_name="AnnotatorToken", description="An annotator's token.")
admin_bearer = HTTPBearer(auto_error=False, scheme_name="AdminToken", description="The ADMIN_TOKEN.")
Credentials = HTTPAuthorizationCredentials | None
DAY_START = "Annotators: count your verdicts since this moment (default: midnight UTC today)."


class LeaseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: Domain | None = Field(None, description="Lease only in this domain (one of the token's).")


class VerdictBody(BaseModel):
    """See services.feedback.queue_rules for which verdicts fit which task kind."""

    model_config = ConfigDict(extra="forbid")

    verdict: Literal["A", "B", "tie", "both_bad"]
    rewrite: str | None = Field(None, min_length=1, description="The better answer; only with both_bad.")
    comment: str | None = Field(None, min_length=1)
    shown_left: Literal["A", "B"] | None = Field(
        None, description="Which task side the annotator's screen showed on the left (position bias is measured)."
    )


def register(runtime: Runtime[FeedbackContext], settings: FeedbackSettings) -> list[APIRouter]:
    """Every subscriber of feedback, and its routes (returned)."""
    document_output(runtime.broker, settings, topics.VOTES, Vote, key="interaction_id",
                    description="End-user votes (received_at stamped) and experts' combined verdicts, which come "
                    "only from POST /v1/tasks/{task_id}/verdict.")  # fmt: skip
    document_output(runtime.broker, settings, topics.DEAD_LETTER, DeadLetter, key="source topic:partition:offset",
                    description=DEAD_LETTER_NOTES)  # fmt: skip
    endpoints = EdgeEndpoints(
        raw_topic=topics.FEEDBACK_RAW,
        path="/v1/votes",
        noun="vote",
        tag="votes",
        item_schema=vote_json_schema(),
        notes=END_USER_NOTES,
    )
    votes = install_edge(runtime, endpoints=endpoints, group_id=settings.group_id, settings=settings)
    register_annotation_requests(runtime, settings)
    return [
        votes,
        tasks_router(runtime.context, settings),
        admin_router(runtime.context, settings),
        ui_router(runtime.context, settings),
    ]


def register_annotation_requests(runtime: Runtime[FeedbackContext], settings: FeedbackSettings) -> None:
    """Fill the queue from annotation-requests; offsets commit after the upsert transaction commits.

    A batch that fails is handled by the consumers' one policy (shared.consumer): an outage waits and
    redelivers; a record that fails otherwise (a conflict, a row the database refuses) is isolated,
    retried a bounded number of times and dead-lettered, so it never blocks its partition.
    """
    dependency = runtime.context

    @batch_subscriber(
        runtime.broker,
        settings,
        topics.ANNOTATION_REQUESTS,
        group_id=settings.tasks_group_id,
        fetch_max_wait_ms=settings.kafka_background_fetch_max_wait_ms,  # tasks for people: off the pair path
        title="annotation-requests",
        description="Ambiguous pairs and lone bad answers routed by the aggregator, queued for experts.",
    )
    async def on_annotation_requests(
        msg: KafkaMessage, context: FeedbackContext = SubscriberDepends(dependency, cast=False)
    ) -> None:
        await context.requests_policy.consume(msg.raw_message, context.queue.ingest)


def tasks_router(dependency: ContextDependency[FeedbackContext], settings: FeedbackSettings) -> APIRouter:
    """The annotators' routes: lease, verdict, extend, release, skip, stats."""
    router = APIRouter(prefix="/v1/tasks", tags=["annotators"])

    async def current_annotator(
        credentials: Annotated[Credentials, Depends(annotator_bearer)],
        context: FeedbackContext = Depends(dependency),
    ) -> store.Annotator:
        token = credentials.credentials if credentials is not None else None
        return await auth.authenticate(context.pool, token)

    async def caller(credentials: Annotated[Credentials, Depends(annotator_bearer)]) -> store.Bearer:
        """The token, checked by the lease or verdict statement itself (one round trip fewer)."""
        return auth.bearer(credentials.credentials if credentials is not None else None)

    @router.post(
        "/lease",
        summary="Lease the next task (optionally in one domain)",
        responses={204: {"description": "Nothing queued for this annotator"}},
    )
    async def lease(
        who: store.Bearer = Depends(caller),
        context: FeedbackContext = Depends(dependency),
        body: LeaseBody | None = None,
    ) -> Any:
        leased = await context.queue.lease(who, body.domain if body else None)
        if leased is None:
            return Response(status_code=204)
        return JSONResponse(task_view(leased.request, leased.lease_expires_at, leased.priority))

    @router.post("/{task_id}/verdict", summary="Submit a verdict on a leased task")
    async def verdict(
        task_id: str,
        body: VerdictBody,
        who: store.Bearer = Depends(caller),
        context: FeedbackContext = Depends(dependency),
    ) -> dict[str, Any]:
        _check_lengths(body, settings.max_content_chars)
        given = Judgement(verdict=body.verdict, rewrite=body.rewrite, comment=body.comment, shown_left=body.shown_left)
        recorded = await context.queue.submit_verdict(who, task_id, given)
        return {
            "task_id": task_id,
            "status": "recorded",
            "task_status": recorded.outcome.status,
            "verdicts": recorded.verdicts,
            "reviewers_needed": recorded.outcome.reviewers_needed,
        }

    @router.post("/{task_id}/extend", summary="Extend a lease by the lease duration from now")
    async def extend(
        task_id: str,
        annotator: store.Annotator = Depends(current_annotator),
        context: FeedbackContext = Depends(dependency),
    ) -> dict[str, Any]:
        expires_at = await context.queue.extend(annotator, task_id)
        return {"task_id": task_id, "lease_expires_at": expires_at.isoformat()}

    @router.post("/{task_id}/release", summary="Give a leased task back to the queue")
    async def release(
        task_id: str,
        annotator: store.Annotator = Depends(current_annotator),
        context: FeedbackContext = Depends(dependency),
    ) -> dict[str, Any]:
        await context.queue.release(annotator, task_id)
        return {"task_id": task_id, "status": "released"}

    @router.post("/{task_id}/skip", summary="Give a leased task back; it is not offered to you again")
    async def skip(
        task_id: str,
        annotator: store.Annotator = Depends(current_annotator),
        context: FeedbackContext = Depends(dependency),
    ) -> dict[str, Any]:
        await context.queue.skip(annotator, task_id)
        return {"task_id": task_id, "status": "skipped"}

    @router.get("/stats", summary="Queue depth, outcomes and agreement (annotators: their domains only)")
    async def stats(
        credentials: Annotated[Credentials, Depends(annotator_bearer)],
        day_start: Annotated[AwareDatetime | None, Query(description=DAY_START)] = None,
        context: FeedbackContext = Depends(dependency),
    ) -> dict[str, Any]:
        token = credentials.credentials if credentials is not None else None
        admin_token = secret_value(settings.admin_token)
        if token and admin_token and auth.is_admin_token(token, admin_token):
            return _stats_json(await context.queue.stats(None))
        annotator = await auth.authenticate(context.pool, token)
        return _stats_json(await context.queue.stats(annotator.domains, annotator.annotator_id, day_start))

    return router


def admin_router(dependency: ContextDependency[FeedbackContext], settings: FeedbackSettings) -> APIRouter:
    """The admins' routes: issue and revoke annotator tokens."""

    async def require_admin(credentials: Annotated[Credentials, Depends(admin_bearer)]) -> None:
        token = credentials.credentials if credentials is not None else None
        auth.check_admin(token, secret_value(settings.admin_token))

    router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])

    @router.post("/annotators", status_code=201, summary="Issue a token for an annotator and its domains")
    async def issue(body: auth.AnnotatorGrant, context: FeedbackContext = Depends(dependency)) -> dict[str, Any]:
        token = await auth.issue_token(context.pool, body)
        return {"annotator_id": body.annotator_id, "domains": sorted(set(body.domains)), "token": token}

    # `:path`: an annotator id may contain "/" (any character but controls), which arrives decoded.
    @router.delete("/annotators/{annotator_id:path}", summary="Revoke every token of an annotator")
    async def revoke(annotator_id: str, context: FeedbackContext = Depends(dependency)) -> dict[str, Any]:
        if not await auth.revoke_annotator(context.pool, annotator_id):
            raise NotFoundError("no such annotator", annotator_id=annotator_id)
        return {"annotator_id": annotator_id, "revoked": True}

    return router


def _check_lengths(body: VerdictBody, max_chars: int) -> None:
    for name in ("rewrite", "comment"):
        value = getattr(body, name)
        if value is not None and len(value) > max_chars:
            raise ContractError(
                f"{name} too long",
                errors=[{"loc": ["body", name], "msg": f"more than {max_chars} characters", "type": "too_long"}],
            )


def _stats_json(stats: QueueStats) -> dict[str, Any]:
    body = {
        "queued": stats.total("queued"),
        "held": stats.total("held"),
        "completed": stats.total("completed"),
        "contested": stats.total("contested"),
        "withdrawn": stats.total("withdrawn"),
        "domains": {domain: _domain_json(entry) for domain, entry in stats.domains.items()},
        "annotators": {
            annotator: {**_agreement_json(agreement), "agreement_with_result": agreement.with_result}
            for annotator, agreement in stats.annotators.items()
        },
    }
    if stats.annotator is not None:
        body["annotator"] = _progress_json(stats.annotator)
    return body


def _domain_json(entry: DomainStats) -> dict[str, Any]:
    return {
        "queued": entry.queued,
        "held": entry.held,
        "leased": entry.leased,
        "completed": entry.completed,
        "contested": entry.contested,
        "withdrawn": entry.withdrawn,
        "agreement": _agreement_json(entry.agreement) if entry.agreement else None,
        "position": _position_json(entry.position) if entry.position else None,
    }


def _agreement_json(agreement: Agreement) -> dict[str, Any]:
    return {"alpha": agreement.alpha, "pairwise_agreement": agreement.pairwise, "tasks": agreement.tasks}


def _position_json(position: PositionBias) -> dict[str, Any]:
    return {
        "verdicts": position.verdicts,
        "chose_left": position.left,
        "chose_right": position.right,
        "chose_neither": position.neither,
        "left_share": position.left_share,
        "p_value": position.p_value,
    }


def _progress_json(progress: AnnotatorProgress) -> dict[str, Any]:
    return {
        "annotator_id": progress.annotator_id,
        "day_start": progress.day_start.isoformat(),
        "verdicts_today": progress.verdicts_today,
    }
