"""Browser-test plumbing: the system Chromium, a service on a real TCP port, the queue filled from Kafka.

Playwright's own browser download is not reachable here, so Playwright drives the system Chromium
(Debian's `chromium` package). Services run in-process under uvicorn on a loopback port, so the page
talks to them over real HTTP, as a browser would.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from shared import topics
from shared.runtime import runtime_of
from tests.support.kafka import produce
from tests.support.waiting import eventually

CHROMIUM_PACKAGE = "chromium"
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "/usr/bin/chromium", "/usr/lib/chromium/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).parent / "screenshots"
SERVER_START_TIMEOUT_S = 60.0


def find_chromium() -> str | None:
    """The system Chromium's path (CHROMIUM_PATH first), or None."""
    for candidate in (os.environ.get("CHROMIUM_PATH"), *CHROMIUM_CANDIDATES):
        if not candidate:
            continue
        found = shutil.which(candidate)
        if found:
            return found
    return None


def has_playwright() -> bool:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return False
    return True


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """Run `app` (its lifespan too) under uvicorn on a free loopback port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
    try:
        await eventually(lambda: server.started or task.done(), timeout=SERVER_START_TIMEOUT_S)
        if task.done():
            task.result()
            raise AssertionError("uvicorn stopped before it started")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)
        sock.close()


@dataclass
class Feedback:
    """A running feedback service: its URL, a client, and how to fill its queue."""

    base_url: str
    client: httpx.AsyncClient
    bootstrap: str
    prefix: str
    app: FastAPI
    admin_token: str

    async def publish(self, *bodies: dict[str, Any]) -> None:
        """Publish annotation requests as the aggregator would (keyed by task_id)."""
        for body in bodies:
            await produce(
                self.bootstrap,
                self.prefix,
                topics.ANNOTATION_REQUESTS,
                [json.dumps(body).encode()],
                key=body["task_id"].encode(),
            )

    async def issue(self, annotator: str, *domains: str) -> str:
        response = await self.client.post(
            "/v1/admin/annotators",
            json={"annotator_id": annotator, "domains": list(domains)},
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )
        assert response.status_code == 201, response.text
        return response.json()["token"]

    async def revoke(self, annotator: str) -> None:
        response = await self.client.delete(
            f"/v1/admin/annotators/{annotator}", headers={"Authorization": f"Bearer {self.admin_token}"}
        )
        assert response.status_code == 200, response.text

    async def stats(self) -> dict[str, Any]:
        response = await self.client.get("/v1/tasks/stats", headers={"Authorization": f"Bearer {self.admin_token}"})
        assert response.status_code == 200, response.text
        return response.json()

    async def wait_queued(self, domain: str, tasks: int) -> None:
        """Until the consumer has queued `tasks` open tasks in `domain` (the first group join takes seconds)."""

        async def queued() -> bool:
            entry = (await self.stats())["domains"].get(domain) or {}
            return entry.get("queued", 0) >= tasks

        await eventually(queued, timeout=60, interval=0.1)

    async def verdicts(self, task_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored verdicts of these tasks, by task_id."""
        rows = await runtime_of(self.app).db.fetch(
            "SELECT task_id, annotator_id, verdict, rewrite, shown_left FROM task_verdicts WHERE task_id = ANY($1)",
            list(task_ids),
        )
        return {r["task_id"]: dict(r) for r in rows}


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def monotonic_ms() -> float:
    return time.monotonic() * 1000
