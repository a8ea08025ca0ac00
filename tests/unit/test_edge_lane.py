"""The edge's hot POSTs served by plain ASGI lanes (shared.edge_lane): same answers, limits and metrics (no sockets).

The app is built but not started (no broker, no database): what is checked here comes before any
I/O (the context, the app key, the body limit). Accepting, deduping and publishing through the lanes
is covered end to end by tests/integration/test_edge_services.py and test_edge_group_commit.py.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi.security import HTTPBearer
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.edge_lane import bearer_token
from shared.runtime import runtime_of

PATHS = ("/v1/interactions", "/v1/interactions/batch")


def client_of(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest")


def requests_counted(metrics: str, route: str, status: int) -> float:
    labels = f'method="POST",route="{re.escape(route)}",service="ingest",status="{status}"'
    pattern = rf"^http_requests_total{{{labels}}} (\S+)$"
    match = re.search(pattern, metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.mark.parametrize("path", PATHS)
async def test_before_the_service_started_a_post_is_503_with_retry_after_and_counted_under_its_route(
    path: str,
) -> None:
    app = create_app(IngestSettings())
    async with client_of(app) as client:
        response = await client.post(path, content=b"{}")
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["code"] == "transient"
    assert requests_counted(metrics, path, 503) == 1


@pytest.mark.parametrize("path", PATHS)
async def test_a_body_over_the_limit_is_413_before_the_lane(path: str) -> None:
    app = create_app(IngestSettings(max_body_bytes=1024))
    async with client_of(app) as client:
        response = await client.post(path, content=b"x" * 2048)
    assert response.status_code == 413
    assert response.json()["detail"][0]["type"] == "too_large"


@pytest.mark.parametrize("authorization", [None, "Basic dXNlcjpwdw==", "Bearer", "Bearer   "])
async def test_with_keys_required_a_post_without_a_bearer_key_is_401_before_the_body_is_read(
    authorization: str | None,
) -> None:
    app = create_app(IngestSettings(app_keys_required=True))
    # A started context's stand-in: a missing key is refused before the pool is ever asked.
    edge = SimpleNamespace(pool=None, settings=IngestSettings())
    runtime_of(app).context.set(SimpleNamespace(edge=edge))  # type: ignore[arg-type]
    headers = {"Authorization": authorization} if authorization is not None else {}
    async with client_of(app) as client:
        responses = [await client.post(path, content=b"not json", headers=headers) for path in PATHS]
    for response in responses:
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["code"] == "unauthenticated"


async def test_the_openapi_document_still_describes_both_posts_and_their_app_key() -> None:
    app = create_app(IngestSettings(app_keys_required=True))
    async with client_of(app) as client:
        document = (await client.get("/openapi.json")).json()
    for path in PATHS:
        post = document["paths"][path]["post"]
        assert "202" in post["responses"] and "requestBody" in post
        assert {"AppKey": []} in post["security"]


@given(
    st.one_of(
        st.none(),
        st.text(alphabet=st.sampled_from("Bb earrBASIC xy\t=:"), max_size=16),
        st.builds(lambda s, t: f"{s} {t}", st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", ""]), st.text()),
    )
)
async def test_bearer_token_reads_the_header_as_fastapis_http_bearer_does(authorization: str | None) -> None:
    header = [] if authorization is None else [(b"authorization", authorization.encode("latin-1", "replace"))]
    request = Request({"type": "http", "method": "POST", "path": "/", "headers": header, "query_string": b""})
    expected = await HTTPBearer(auto_error=False)(request)
    sent = request.headers.get("authorization")
    assert bearer_token(sent) == (expected.credentials if expected is not None else None)
