"""The annotator web UI at /ui/: the page, its static files, and three UI-support routes beside the task API.

The page is one server-rendered template plus a little plain JavaScript (static/), no build step and
no CDN. The browser keeps the annotator's token in sessionStorage and sends it as a bearer header to
the task API (/v1/tasks/... for verdict, extend, release, skip, stats) and to the routes here:

- `GET /ui/api/me`: who the token is, its domains and the lease length (sign-in checks the token here).
- `POST /ui/api/lease`: the task API's lease plus what only a display needs: which task side to show
  left for this annotator (ui_view.shown_left) and the word diff of the two answers in that order
  (difflib, on the server, in a worker thread).
- `GET /ui/api/guidelines/{domain}`: the domain's guidelines rendered from markdown (raw HTML off).

Every response here carries a Content-Security-Policy with no inline script or style and no other
origin, so page text can only ever be text. Nothing here logs a token or any task text.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from services.feedback import auth, store, ui_view
from services.feedback.context import FeedbackContext
from services.feedback.queue import Lease
from services.feedback.queue_rules import check_domain, task_view
from services.feedback.settings import FeedbackSettings
from shared.events import Domain
from shared.runtime import ContextDependency
from shared.web_pages import add_page_routes, json_response, load_assets, render_page, with_headers

log = structlog.get_logger(__name__)

HERE = Path(__file__).parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
GENERAL_GUIDELINES = "general"

ui_bearer = HTTPBearer(auto_error=False, scheme_name="AnnotatorToken", description="An annotator's token.")


class UiLeaseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: Domain | None = Field(None, description="Lease only in this domain (one of the token's).")


class GuidelinesCache:
    """Rendered guidelines per file, re-rendered when the file changes (edits show without a restart)."""

    def __init__(self) -> None:
        self._rendered: dict[Path, tuple[int, str]] = {}

    async def get(self, folder: Path, domain: str) -> tuple[str | None, str | None]:
        """(the file's name, its HTML) for `domain`, falling back to general.md; (None, None) when neither."""
        for name in (domain, GENERAL_GUIDELINES):
            path = folder / f"{name}.md"
            found = await asyncio.to_thread(self._read, path)
            if found is not None:
                return path.name, found
        return None, None

    def _read(self, path: Path) -> str | None:
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return None
        cached = self._rendered.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        html = ui_view.render_guidelines(path.read_text(encoding="utf-8"))
        self._rendered[path] = (mtime, html)
        return html


def ui_router(dependency: ContextDependency[FeedbackContext], settings: FeedbackSettings) -> APIRouter:
    """The page, its assets, and the UI-support routes; no state beyond the assets and rendered guidelines."""
    router = APIRouter(prefix="/ui", tags=["annotator UI"])
    assets = load_assets(STATIC_DIR)
    page = render_page(TEMPLATES_DIR, "annotate.html", assets)
    guidelines = GuidelinesCache()

    async def current_annotator(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(ui_bearer)],
        context: FeedbackContext = Depends(dependency),
    ) -> store.Annotator:
        token = credentials.credentials if credentials is not None else None
        return await auth.authenticate(context.pool, token)

    async def token_caller(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(ui_bearer)],
    ) -> store.Bearer:
        """The token, checked by the lease statement itself: one round trip, as on the task API."""
        return auth.bearer(credentials.credentials if credentials is not None else None)

    add_page_routes(router, page, assets)

    @router.get("/api/me", summary="The signed-in annotator: id, domains, lease length")
    async def me(annotator: store.Annotator = Depends(current_annotator)) -> Response:
        return json_response(
            {
                "annotator_id": annotator.annotator_id,
                "domains": list(annotator.domains),
                "lease_seconds": settings.lease_seconds,
            }
        )

    @router.post(
        "/api/lease",
        summary="Lease the next task, with the side to show left and the word diff in that order",
        responses={204: {"description": "Nothing queued for this annotator"}},
    )
    async def lease(
        caller: store.Bearer = Depends(token_caller),
        context: FeedbackContext = Depends(dependency),
        body: UiLeaseBody | None = None,
    ) -> Response:
        leased = await context.queue.lease(caller, body.domain if body else None)
        if leased is None:
            return with_headers(Response(status_code=204))
        return json_response(await displayed(leased, leased.annotator_id))

    @router.get("/api/guidelines/{domain}", summary="A domain's annotation guidelines, as HTML")
    async def domain_guidelines(domain: str, annotator: store.Annotator = Depends(current_annotator)) -> Response:
        check_domain(domain, annotator.domains)
        source, html = await guidelines.get(settings.guidelines_dir, domain)
        return json_response({"domain": domain, "source": source, "html": html})

    return router


async def displayed(leased: Lease, annotator_id: str) -> dict[str, Any]:
    """The leased task as the task API shows it, plus its display: the side shown left, the (left, right) diff."""
    task = task_view(leased.request, leased.lease_expires_at, leased.priority)
    left = ui_view.shown_left(task["task_id"], annotator_id, task["kind"])
    candidates = task["candidates"]
    diff = None
    if "B" in candidates:
        right = "B" if left == "A" else "A"
        diff = await asyncio.to_thread(ui_view.word_diff, candidates[left]["content"], candidates[right]["content"])
    log.debug("ui_task_displayed", task_id=task["task_id"], shown_left=left, has_diff=diff is not None)
    return {"task": task, "shown_left": left, "diff": diff}
