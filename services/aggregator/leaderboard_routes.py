"""The leaderboard's HTTP route: the latest body of an app's (or one domain's) board."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from services.aggregator.context import AggregatorContext
from shared.runtime import ContextDependency

# As the contracts' ids: no control characters (PostgreSQL cannot even compare a NUL).
NO_CONTROL = r"^[^\x00-\x1f\x7f]+$"


def leaderboard_router(dependency: ContextDependency[AggregatorContext]) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["leaderboard"])

    @router.get(
        "/leaderboard",
        summary="Model versions of an app ranked by Bradley-Terry rating, with intervals, approval and fragility",
        responses={404: {"description": "No interaction of this app was ever taken in."}},
    )
    async def get_leaderboard(
        app_id: str = Query(
            ..., min_length=1, max_length=256, pattern=NO_CONTROL, description="The app whose versions are ranked."
        ),
        domain: str | None = Query(
            None,
            min_length=1,
            max_length=64,
            pattern=NO_CONTROL,
            description="Only this domain's battles and votes (default: the whole app).",
        ),
        context: AggregatorContext = Depends(dependency),
    ) -> dict[str, Any]:
        """The body published on `model-leaderboard` (shared/events/leaderboard.py: ModelLeaderboard).

        An app with no battles, or a domain with nothing in it, gets an empty or unranked list and `reason`.
        """
        return await context.leaderboards.body_for(app_id, domain)

    return router
