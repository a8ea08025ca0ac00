"""`GET /v1/tasks/stats` over HTTP for bench/queue.py: the feedback service as a process on the bench's database.

The queue bench times `TaskQueue.stats` in process; what annotators, the UIs and dashboards call is
the route, which adds the token check, the JSON and the HTTP stack. `feedback_over_http` starts a
local broker (Tansu: feedback's consumers need one to be ready) and `python -m services.feedback` on
the bench's database, with an admin token of its own; `route_latencies` times the route as an admin
and as an annotator, one client, sequential calls.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.ingest_load import percentile
from deploy.local_broker import LOCAL_BROKER_SECURITY, start_broker, without_kafka_security
from deploy.localstack import free_port, read_tail
from shared.kafka import ensure_topics
from shared.settings import PipelineSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class FeedbackHttp:
    client: httpx.AsyncClient
    admin_token: str


@asynccontextmanager
async def feedback_over_http(database_url: str, workdir: Path) -> AsyncIterator[FeedbackHttp]:
    """A broker and the feedback service on `database_url`; an HTTP client of it and its admin token."""
    admin_token = secrets.token_urlsafe(24)
    with start_broker(log_dir=workdir / "broker") as broker:
        settings = PipelineSettings(kafka_bootstrap_servers=broker.bootstrap, topic_prefix="", **LOCAL_BROKER_SECURITY)
        await ensure_topics(settings)
        port = free_port()
        env = {
            **without_kafka_security(os.environ),
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "DATABASE_URL": database_url,
            "ADMIN_TOKEN": admin_token,
            "FEEDBACK_HTTP_HOST": "127.0.0.1",
            "FEEDBACK_HTTP_PORT": str(port),
            "TOPIC_PREFIX": "",
            "LOG_LEVEL": "WARNING",
        }
        log_path = workdir / "feedback.log"
        with log_path.open("ab") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.feedback", cwd=REPO_ROOT, env=env, stdout=log_file,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            # trust_env=False: a proxy in the environment must not capture loopback calls.
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30, trust_env=False) as client:
                await _wait_ready(client, process, log_path)
                yield FeedbackHttp(client=client, admin_token=admin_token)
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def _wait_ready(client: httpx.AsyncClient, process: asyncio.subprocess.Process, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"feedback exited with {process.returncode}; log:\n{read_tail(log_path)}")
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"feedback not ready within {READY_TIMEOUT_S} s; log:\n{read_tail(log_path)}")


async def route_latencies(http: FeedbackHttp, annotator_token: str, samples: int) -> dict[str, dict[str, float]]:
    """p50/p99 ms of `GET /v1/tasks/stats` as the admin and as an annotator (its domains, with its progress)."""
    figures = {}
    for name, token in (("stats_http_admin", http.admin_token), ("stats_http_annotator", annotator_token)):
        headers = {"Authorization": f"Bearer {token}"}
        latencies = []
        for _ in range(samples):
            started = time.perf_counter()
            response = await http.client.get("/v1/tasks/stats", headers=headers)
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()
        figures[name] = {
            "p50_ms": round(percentile(latencies, 50) * 1000, 2),
            "p99_ms": round(percentile(latencies, 99) * 1000, 2),
            "n": samples,
        }
    return figures
