"""What every service's web pages share: static assets read once with content-hash ETags, and the security headers.

A page is one server-rendered template plus a little plain JavaScript from the service's `static/`
folder, no build step and no CDN. Every page, asset and UI data response carries the same
Content-Security-Policy: no inline script or style and no other origin, so text on a page can only
ever be text and nothing is loaded from elsewhere.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from shared.errors import NotFoundError

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def load_assets(folder: Path) -> dict[str, Asset]:
    """Every file of `folder`, read once (a handful of small files), with a content hash as ETag."""
    assets = {}
    for path in sorted(folder.iterdir()):
        if path.is_file():
            body = path.read_bytes()
            media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if path.suffix == ".js":
                media_type = "text/javascript"
            assets[path.name] = Asset(body, f"{media_type}; charset=utf-8", hashlib.sha256(body).hexdigest()[:16])
    return assets


def render_page(templates: Path, name: str, assets: dict[str, Asset]) -> bytes:
    """The page `name` of `templates`, rendered once, its assets' URLs versioned by their ETags (autoescaped)."""
    environment = Environment(loader=FileSystemLoader(templates), autoescape=select_autoescape(["html"]))
    versions = {asset_name: asset.etag for asset_name, asset in assets.items()}
    return environment.get_template(name).render(versions=versions).encode()


def with_headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def json_response(body: Any, status_code: int = 200) -> Response:
    """A UI data response: never cached (it answers for one signed-in tab), with the security headers."""
    return with_headers(JSONResponse(body, status_code=status_code, headers={"Cache-Control": "no-store"}))


def add_page_routes(router: APIRouter, page: bytes, assets: dict[str, Asset]) -> None:
    """`{prefix}` (redirect), `{prefix}/` (the page) and `{prefix}/static/{name}` (an asset, with ETag) on `router`."""
    prefix = router.prefix

    @router.get("", include_in_schema=False)
    async def root() -> Response:
        return with_headers(RedirectResponse(f"{prefix}/", status_code=308))

    @router.get("/", include_in_schema=False)
    async def index() -> Response:
        return with_headers(HTMLResponse(page, headers={"Cache-Control": "no-cache"}))

    @router.get("/static/{name}", include_in_schema=False)
    async def static(name: str, request: Request) -> Response:
        asset = assets.get(name)
        if asset is None:
            raise NotFoundError("no such file")
        headers = {"ETag": f'"{asset.etag}"', "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == headers["ETag"]:
            return with_headers(Response(status_code=304, headers=headers))
        return with_headers(Response(asset.body, media_type=asset.media_type, headers=headers))
