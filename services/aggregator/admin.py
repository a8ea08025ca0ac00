"""The aggregator's admin routes (ADMIN_TOKEN, shared.admin): dead letters sent back home, outlier voters.

`POST /v1/admin/dead-letters/redrive` with `{"reason", "since", "dry_run"}` reads `dead-letter`,
sends the letters of that error_code (failed at or after `since`) back to their origin topic, each
at most once, and answers with what it did to each (shared.redrive). The same as
`python -m services.ops redrive`.

`GET /v1/admin/voters?flagged=true[&app_id=][&limit=]` lists the outlier test's voters (the most suspect
first) with their tested votes, disagreements and p-value; `voter` is the user_ref as the app sent it
(the one place raw user refs are shown: never logged). `POST /v1/admin/voters/{voter}/clear?app_id=`
clears a flag: the voter's tally starts again and the groups it touched are decided again with its
votes (redecide.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from services.aggregator import voter_store
from services.aggregator.context import AggregatorContext
from services.aggregator.settings import AggregatorSettings
from services.aggregator.vote_quality import VoterState, cleared
from services.aggregator.voters import VoterRules, decide
from shared import db
from shared.admin import require_admin
from shared.events import utcnow
from shared.redrive import RedriveRequest, redrive
from shared.runtime import ContextDependency
from shared.security_settings import secret_value

ErrorCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
# What an app_id or user_ref may be (shared.events.Id): no control characters (PostgreSQL text holds no NUL).
_NO_CONTROL = r"^[^\x00-\x1f\x7f]+$"


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

    add_voter_routes(router, dependency)
    return router


def voter_json(state: VoterState, rules: VoterRules) -> dict[str, Any]:
    """One voter as the admin route shows it."""
    decision = decide(state.user_ref, state.tally, rules)
    return {
        "app_id": state.app_id,
        "voter": state.user_ref,
        "flagged": state.flagged,
        "flagged_at": state.flagged_at.isoformat() if state.flagged_at else None,
        "flagged_after_votes": state.flagged_after_votes,
        "votes": state.tally.votes,
        "disagreements": state.tally.disagreements,
        "votes_seen": state.votes_seen,
        "p_value": decision.p_value,
        "redecide_pending": state.redecide_pending,
    }


def add_voter_routes(router: APIRouter, dependency: ContextDependency[AggregatorContext]) -> None:
    """The outlier voters' routes (on the admin router: the admin token)."""

    @router.get(
        "/voters",
        summary="The outlier test's voters, the most suspect first",
        responses={401: {"description": "Not the admin token"}},
    )
    async def list_voters(
        flagged: bool | None = Query(None, description="Only flagged (true) or unflagged (false) voters."),
        app_id: str | None = Query(None, max_length=128, pattern=_NO_CONTROL),
        limit: int = Query(100, ge=1, le=1000),
        context: AggregatorContext = Depends(dependency),
    ) -> list[dict[str, Any]]:
        states = await voter_store.select_voters(context.pool, flagged, app_id, limit)
        return [voter_json(state, context.voter_rules) for state in states]

    @router.post(
        "/voters/{voter}/clear",
        summary="Clear a voter's flag: its votes count again and its groups are decided again",
        responses={401: {"description": "Not the admin token"}, 404: {"description": "No such voter"}},
    )
    async def clear_voter(
        voter: str = Path(..., max_length=256, pattern=_NO_CONTROL, description="The user_ref as the app sent it."),
        app_id: str = Query(..., max_length=128, pattern=_NO_CONTROL, description="The app the voter belongs to."),
        context: AggregatorContext = Depends(dependency),
    ) -> dict[str, Any]:
        async with db.translate_errors(), context.pool.acquire() as conn, conn.transaction():
            state = await voter_store.select_voter_for_update(conn, (app_id, voter))
            if state is None:
                raise HTTPException(status_code=404, detail="no such voter")
            state = cleared(state, utcnow()) if state.flagged else state
            await voter_store.update_voters(conn, [state])
        return voter_json(state, context.voter_rules)
