"""The analyst web UI at /ui/: the page, its static files, and its data routes under /ui/api/ (aggregates only).

Analysts are operators: the page signs in with the ADMIN_TOKEN, kept in the tab's sessionStorage and sent
only as a bearer header; every data route refuses without it (403 while ADMIN_TOKEN is unset, 401 for a
missing or wrong token: shared.admin). The page itself and its assets are public: they hold no data.

Data routes (JSON; no message text, no user_ref, no token; shaped by analytics.py):
- `GET /ui/api/apps`: the known apps with their domains that have a board, and the ranges.
- `GET /ui/api/leaderboard?app_id=&domain=`: the board's latest body, the same as `GET /v1/leaderboard`.
- `GET /ui/api/approval?app_id=&range=`: thumbs approval per model version and bucket, Beta intervals.
- `GET /ui/api/flow?app_id=&range=`: pairs and annotation requests published, requests answered or withdrawn.
- `GET /ui/api/queue?app_id=`: open annotation requests per domain and kind.
- `GET /ui/api/dead-letters?range=`: every service's dead letters by reason and hour.
- `GET /ui/api/alerts[?app_id=]`: the regression alarm's states, raised first, with both versions' readings.
Nothing here logs a token or any text of a request.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.aggregator import analytics, analytics_store
from services.aggregator.context import AggregatorContext
from services.aggregator.leaderboard_routes import NO_CONTROL
from services.aggregator.settings import AggregatorSettings
from shared.admin import check_admin
from shared.events import utcnow
from shared.runtime import ContextDependency
from shared.security_settings import secret_value
from shared.web_pages import add_page_routes, json_response, load_assets, render_page

HERE = Path(__file__).parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
RangeName = Literal["1h", "6h", "24h", "7d"]

admin_bearer = HTTPBearer(auto_error=False, scheme_name="AdminToken", description="The ADMIN_TOKEN.")
AppId = Annotated[str, Query(min_length=1, max_length=256, pattern=NO_CONTROL, description="The app.")]
OptionalAppId = Annotated[
    str | None, Query(min_length=1, max_length=256, pattern=NO_CONTROL, description="Only this app (default: all).")
]
Domain = Annotated[
    str | None,
    Query(min_length=1, max_length=64, pattern=NO_CONTROL, description="Only this domain (default: the whole app)."),
]
Range = Annotated[RangeName, Query(alias="range", description="How far back, and so the bucket size.")]


def analyst_router(dependency: ContextDependency[AggregatorContext], settings: AggregatorSettings) -> APIRouter:
    """The page and its assets (public), and the data routes (admin token)."""
    router = APIRouter(prefix="/ui", tags=["analyst UI"])
    assets = load_assets(STATIC_DIR)
    add_page_routes(router, render_page(TEMPLATES_DIR, "analyst.html", assets), assets)
    router.include_router(_data_router(dependency, settings))
    return router


def _data_router(dependency: ContextDependency[AggregatorContext], settings: AggregatorSettings) -> APIRouter:
    async def require_admin(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)]) -> None:
        token = credentials.credentials if credentials is not None else None
        check_admin(token, secret_value(settings.admin_token))

    router = APIRouter(prefix="/api", dependencies=[Depends(require_admin)])

    def window(name: str) -> analytics.TimeRange:
        return analytics.time_range(name, settings.stats_window_s)

    @router.get("/apps", summary="Known apps and their domains with a board; the ranges the charts take")
    async def apps(context: AggregatorContext = Depends(dependency)) -> Response:
        known = await analytics_store.select_apps(context.pool)
        return json_response(
            {
                "apps": [{"app_id": app_id, "domains": domains} for app_id, domains in known.items()],
                "ranges": [r.to_json() for r in analytics.RANGES.values()],
                "default_range": analytics.DEFAULT_RANGE,
            }
        )

    @router.get("/leaderboard", summary="The board's latest body (the same as GET /v1/leaderboard)")
    async def leaderboard(
        app_id: AppId, domain: Domain = None, context: AggregatorContext = Depends(dependency)
    ) -> Response:
        return json_response(await context.leaderboards.body_for(app_id, domain))

    @router.get("/approval", summary="Thumbs approval per model version and bucket, with Beta intervals")
    async def approval(app_id: AppId, span: Range = "1h", context: AggregatorContext = Depends(dependency)) -> Response:
        chosen, now = window(span), utcnow()
        rows = await analytics_store.select_approval_buckets(context.pool, app_id, chosen.since(now), chosen.bucket_s)
        models = await analytics_store.select_version_models(context.pool, app_id)
        series = await asyncio.to_thread(analytics.approval_series, rows, models)
        return json_response(
            {"app_id": app_id, "range": chosen.to_json(), "since": analytics.iso(chosen.since(now)), "series": series}
        )

    @router.get("/flow", summary="Pairs and annotation requests published, requests answered or withdrawn")
    async def flow(
        app_id: OptionalAppId = None, span: Range = "1h", context: AggregatorContext = Depends(dependency)
    ) -> Response:
        chosen, now = window(span), utcnow()
        rows = await analytics_store.select_flow_buckets(context.pool, app_id, chosen.since(now), chosen.bucket_s)
        return json_response(
            {"app_id": app_id, "range": chosen.to_json(), "buckets": analytics.flow_buckets(rows, chosen, now)}
        )

    @router.get("/queue", summary="Open annotation requests per domain and kind")
    async def queue(app_id: OptionalAppId = None, context: AggregatorContext = Depends(dependency)) -> Response:
        groups = await analytics_store.select_open_request_groups(context.pool, app_id)
        domains = await asyncio.to_thread(analytics.queue_by_domain, groups, context.intake.rules.routing)
        return json_response({"app_id": app_id, "open": sum(d["open"] for d in domains), "domains": domains})

    @router.get("/dead-letters", summary="Every service's dead letters by reason and hour")
    async def dead_letters(span: Range = "1h", context: AggregatorContext = Depends(dependency)) -> Response:
        hours, now = analytics.dead_letter_span(window(span)), utcnow()
        rows = await analytics_store.select_dead_letter_counts(context.pool, hours.since(now))
        return json_response(analytics.dead_letter_view(rows, hours, now))

    @router.get("/alerts", summary="The regression alarm's states, raised first, with both versions' readings")
    async def alerts(app_id: OptionalAppId = None, context: AggregatorContext = Depends(dependency)) -> Response:
        rows = await analytics_store.select_alerts(context.pool, app_id)
        bodies = await analytics_store.select_board_bodies(context.pool, {(r.app_id, r.domain) for r in rows})
        return json_response({"alerts": analytics.alert_views(rows, bodies)})

    return router
