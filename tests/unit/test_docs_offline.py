"""/docs of every service works with no network: Swagger UI comes from a pinned package, not a CDN."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest
from fastapi import FastAPI

from services.aggregator.app import create_app as create_aggregator
from services.feedback.app import create_app as create_feedback
from services.ingest.app import create_app as create_ingest


class References(HTMLParser):
    """Every src and href in a page, and any absolute URL written in its scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]

    def handle_data(self, data: str) -> None:
        self.urls += re.findall(r"(?:https?:)?//[\w.-]+[^\s'\"]*", data)


@pytest.mark.parametrize("create_app", [create_ingest, create_feedback, create_aggregator])
async def test_docs_load_only_assets_the_service_serves(create_app) -> None:  # type: ignore[no-untyped-def]
    app: FastAPI = create_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service") as client:
        page = await client.get("/docs")
        assert page.status_code == 200 and "swagger-ui" in page.text
        references = References()
        references.feed(page.text)
        assert references.urls, "the page loads its scripts and styles from somewhere"
        assert [url for url in references.urls if "//" in url] == [], "no other host"
        for url in references.urls:
            asset = await client.get(url)
            assert asset.status_code == 200 and asset.content, url
        assert "openapi.json" in page.text and (await client.get("/openapi.json")).status_code == 200
