"""The aggregator's admin routes (ADMIN_TOKEN, shared.admin): sending dead letters back home.

`POST /v1/admin/dead-letters/redrive` with `{"reason", "since", "dry_run"}` reads `dead-letter`,
sends the letters of that error_code (failed at or after `since`) back to their origin topic, each
at most once, and answers with what it did to each (shared.redrive). The same as
`python -m services.ops redrive`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from services.aggregator.context import AggregatorContext
from services.aggregator.settings import AggregatorSettings
from shared.admin import require_admin
from shared.redrive import RedriveRequest, redrive
from shared.runtime import ContextDependency
from shared.security_settings import secret_value

ErrorCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class RedriveBody(BaseModel):
    """Which dead letters to send back to their origin topic."""

    model_config = ConfigDict(extra="forbid")

    reason: ErrorCode = Field(description="The dead letters' error_code, e.g. parked_vote_expired.")
    since: AwareDatetime | None = Field(None, description="Only letters that failed at or after this moment.")
    dry_run: bool = Field(False, description="List what would be sent, send nothing.")


def admin_router(dependency: ContextDependency[AggregatorContext], settings: AggregatorSettings) -> APIRouter:
    router = APIRouter(
        prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin(secret_value(settings.admin_token)))]
    )

    @router.post(
        "/dead-letters/redrive",
        summary="Send dead letters of one reason back to their origin topic (each at most once)",
        responses={
            200: {"description": "Each matched letter with its status: redriven (or would_redrive), "
                  "already_redriven, unconfirmed (claimed by a redrive that could not confirm it) or "
                  "not_redrivable (its origin is not an input topic)"},
            401: {"description": "Not the admin token"},
            403: {"description": "ADMIN_TOKEN is not set: admin routes are closed"},
            503: {"description": "The broker or the database is away (letters claimed by then stay unsent)"},
        },
    )  # fmt: skip
    async def redrive_dead_letters(
        body: RedriveBody, context: AggregatorContext = Depends(dependency)
    ) -> dict[str, Any]:
        request = RedriveRequest(reason=body.reason, since=body.since, dry_run=body.dry_run)
        report = await redrive(pool=context.pool, broker=context.broker, settings=settings, request=request)
        return report.to_json()

    return router
