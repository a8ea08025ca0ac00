"""Every HTTP API fuzzed from its own OpenAPI schema with schemathesis, in-process against the ASGI apps.

ingest, feedback (end-user votes, and the annotator and admin routes without tokens and with valid ones)
and the aggregator run on the real broker and database. Cases come from the schema (valid and invalid
bodies, paths and queries) with a fixed seed and a bounded number per operation. Every response must
be below 500, and every 4xx must say what was wrong: a 422 names each bad field (`loc`) or gives a
message; other 4xx carry a non-empty `detail`.

schemathesis runs each app's lifespan on its own event-loop thread (its ASGI client), so the apps'
broker and pool live there; the fixtures here only create the database and topics and stop the
lifespans at the end.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi

from services.aggregator.app import create_app as create_aggregator
from services.aggregator.settings import AggregatorSettings
from services.feedback import auth
from services.feedback.app import create_app as create_feedback
from services.feedback.settings import FeedbackSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from shared import db
from tests.support.isolation import isolated_pipeline

pytestmark = [
    pytest.mark.timeout(300),
    # schemathesis' own strategies use `random` inside Hypothesis (its concern, not the apps').
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

ADMIN = "fuzz-admin-token"
MAX_BATCH = 20
MAX_BODY_BYTES = 64 * 1024
# Seeded and derandomized: the same cases on every run; max-examples bounds the fuzzing phase per operation.
CONFIG = {
    "seed": 20261126,
    "generation": {"max-examples": 25, "deterministic": True, "database": "none"},
    "phases": {"stateful": {"enabled": False}},
    # The first request of each app waits for its start (consumer-group joins: ~5 s each on Tansu).
    "request-timeout": 60,
}


@dataclass
class FuzzEnv:
    database_url: str
    prefix: str
    common: dict[str, Any]
    annotator_token: str = ""


@pytest.fixture(scope="module")
async def fuzz_env(kafka_bootstrap: str, pg_server_url: str, template_db: str) -> AsyncIterator[FuzzEnv]:
    async with isolated_pipeline(kafka_bootstrap, pg_server_url, template_db) as (url, prefix):
        common: dict[str, Any] = {
            "kafka_bootstrap_servers": kafka_bootstrap,
            "database_url": url,
            "topic_prefix": prefix,
            "admin_token": ADMIN,
            "http_port": 0,
            "max_batch_items": MAX_BATCH,
            "max_body_bytes": MAX_BODY_BYTES,
            "log_format": "console",
            "log_level": "WARNING",
        }
        env = FuzzEnv(url, prefix, common)
        pool = await db.create_pool(FeedbackSettings(**common))
        try:
            grant = auth.grant_from("fuzz-annotator", ["general", "medical"])
            env.annotator_token = await auth.issue_token(pool, grant)
        finally:
            await pool.close()
        yield env


class RunningApp:
    """An ASGI app whose lifespan this fixture owns, started on the loop of its first request.

    schemathesis ends every app's lifespan after each test item (one item per operation) and starts
    it again on the next request: each restart of a service costs a consumer-group leave and join,
    and re-registers its metrics. So the lifespan scope is declined here (schemathesis then treats the
    app as one without a lifespan) and the real one runs once, in a task on the loop that serves the
    requests, until `stop()`.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("the lifespan is run by the test fixture")
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._started, self._stop = asyncio.Event(), asyncio.Event()
            self._task = self._loop.create_task(self._serve())
        assert self._started is not None
        await asyncio.wait_for(self._started.wait(), timeout=60)
        await self.app(scope, receive, send)

    async def _serve(self) -> None:
        assert self._started is not None and self._stop is not None
        async with self.app.router.lifespan_context(self.app):
            self._started.set()
            await self._stop.wait()

    async def _finish(self) -> None:
        assert self._stop is not None and self._task is not None
        self._stop.set()
        await self._task

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop the lifespan from any other thread (blocking)."""
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._finish(), self._loop).result(timeout_s)


@dataclass
class Apps:
    ingest: RunningApp
    feedback: RunningApp
    aggregator: RunningApp


@pytest.fixture(scope="module")
async def apps(fuzz_env: FuzzEnv) -> AsyncIterator[Apps]:
    """The apps under test; each starts on its first request and stops with the module."""
    common, prefix = fuzz_env.common, fuzz_env.prefix
    running = Apps(
        RunningApp(create_ingest(IngestSettings(**common, group_id=f"ingest-{prefix}"))),
        RunningApp(
            create_feedback(FeedbackSettings(**common, group_id=f"feedback-{prefix}", tasks_group_id=f"tasks-{prefix}"))
        ),
        RunningApp(create_aggregator(AggregatorSettings(**common, group_id=f"aggregator-{prefix}"))),
    )
    # Started together (each start waits seconds for its consumer groups), through the client the cases use.
    await asyncio.gather(
        *(asyncio.to_thread(_warm_up, app) for app in (running.ingest, running.feedback, running.aggregator))
    )
    yield running
    for app in (running.ingest, running.feedback, running.aggregator):
        await asyncio.to_thread(app.stop)


def _warm_up(app: RunningApp) -> None:
    with asgi.get_client(app) as client:
        response = client.get("/readyz", timeout=60)
    assert response.status_code == 200, response.text


def _schema(app: Any) -> Any:
    # The schema comes from an app built with the limits under test but never started: schemathesis'
    # lazy (fixture) loader does not run on pytest 9, so cases are generated at import and each call
    # is sent to the running app of the `apps` fixture.
    return schemathesis.openapi.from_dict(app.openapi(), config=SchemathesisConfig.from_dict(CONFIG))


LIMITS = {"max_batch_items": MAX_BATCH, "max_body_bytes": MAX_BODY_BYTES, "admin_token": ADMIN}
ingest = _schema(create_ingest(IngestSettings(**LIMITS)))
feedback = _schema(create_feedback(FeedbackSettings(**LIMITS)))
aggregator = _schema(create_aggregator(AggregatorSettings(**LIMITS)))


def rejection_names_the_problem(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 4xx says what was wrong: each 422 error has a non-empty `loc` or message; others a `detail`."""
    if not 400 <= response.status_code < 500:
        return None
    body = response.json()
    assert isinstance(body, dict), f"{response.status_code} body is not an object: {response.text[:200]}"
    if response.status_code == 422 and "results" in body:
        errors = [e for item in body["rejected"] for e in item["errors"]]
        assert body["rejected"] and all(item["errors"] for item in body["rejected"]), body
    else:
        detail = body.get("detail")
        assert detail, f"{response.status_code} without a detail: {response.text[:200]}"
        errors = detail if isinstance(detail, list) else []
    for error in errors:
        assert error.get("loc") or str(error.get("msg", "")).strip(), f"an error naming nothing: {error}"
    return True


CHECKS = [not_a_server_error, rejection_names_the_problem]


@ingest.parametrize()
def test_ingest(case: Any, apps: Apps) -> None:
    case.call_and_validate(checks=CHECKS, app=apps.ingest)


@feedback.parametrize()
def test_feedback_without_tokens(case: Any, apps: Apps) -> None:
    case.call_and_validate(checks=CHECKS, app=apps.feedback)


@feedback.include(path_regex="^/v1/(tasks|admin)").parametrize()
def test_feedback_with_valid_tokens(case: Any, apps: Apps, fuzz_env: FuzzEnv) -> None:
    token = ADMIN if case.path.startswith("/v1/admin") else fuzz_env.annotator_token
    case.call_and_validate(checks=CHECKS, app=apps.feedback, headers={"Authorization": f"Bearer {token}"})


@aggregator.parametrize()
def test_aggregator(case: Any, apps: Apps) -> None:
    case.call_and_validate(checks=CHECKS, app=apps.aggregator)


def test_every_openapi_reference_resolves() -> None:
    """Regression: request bodies referred to `#/$defs/...`, which is not in the document (no body was fuzzed)."""
    for spec in (ingest, feedback, aggregator):
        document = json.dumps(spec.raw_schema)
        refs = set(re.findall(r'"\$ref": "#/([^"]+)"', document))
        for ref in refs:
            node: Any = spec.raw_schema
            for part in ref.split("/"):
                assert isinstance(node, dict) and part in node, f"dangling $ref #/{ref}"
                node = node[part]
    bodies = [op.ok() for op in ingest.get_all_operations()] + [op.ok() for op in feedback.get_all_operations()]
    assert all(list(op.body) for op in bodies if op.method == "post" and op.path.endswith(("interactions", "votes")))


@pytest.mark.parametrize("service", ["ingest", "feedback"])
def test_body_and_batch_limits_hold(apps: Apps, service: str) -> None:
    app, path = (apps.ingest, "/v1/interactions") if service == "ingest" else (apps.feedback, "/v1/votes")
    with asgi.get_client(app) as client:
        too_many = client.post(f"{path}/batch", json=[{}] * (MAX_BATCH + 1), timeout=30)
        assert too_many.status_code == 413 and too_many.json()["detail"][0]["type"] == "too_many_items"
        huge = client.post(path, json={"content": "x" * MAX_BODY_BYTES}, timeout=30)
        assert huge.status_code == 413 and huge.json()["detail"][0]["loc"] == ["body"]
        # A body streamed without a Content-Length is cut off at the limit too.
        chunks = (b"x" * 8192 for _ in range(MAX_BODY_BYTES // 8192 + 2))
        streamed = client.post(path, data=chunks, headers={"content-type": "application/json"}, timeout=30)
        assert streamed.status_code == 413
