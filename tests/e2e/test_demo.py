"""`make demo`'s entry point (`python -m deploy.demo`) as a process: it starts the stack, prints both UIs and the
tokens that open them, fills the pipeline with simulated traffic, and stops everything on Ctrl-C.

It runs on the session's broker and a fresh database (given as KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL, as an
operator would), so only the three services are started; the admin token is left to the demo to generate.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

from deploy.demo import ANNOTATORS, APP_ID, parse_args
from tests.support.isolation import consumer_groups_env, new_topic_prefix
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(240)
ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


async def _lines_until(stream: asyncio.StreamReader, last: str, seen: list[str]) -> None:
    while True:
        line = (await stream.readline()).decode()
        if not line:
            raise AssertionError("the demo ended before it was ready:\n" + "".join(seen[-40:]))
        seen.append(line)
        if last in line:
            return


def _printed(output: str, label: str) -> str:
    found = re.search(rf"^\s+{re.escape(label)}\s+(\S+)", output, re.MULTILINE)
    assert found, f"no {label!r} line in:\n{output}"
    return found.group(1)


async def test_the_demo_starts_prints_both_uis_and_tokens_and_stops_cleanly_on_ctrl_c(
    tmp_path: Path, kafka_bootstrap: str, database_url: str
) -> None:
    prefix = new_topic_prefix()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("ADMIN_TOKEN", "ADMIN_TOKEN_FILE")},
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": database_url,
        "TOPIC_PREFIX": prefix,
        "STACK_RUN_DIR": str(tmp_path),
        **consumer_groups_env(prefix),
    }
    demo = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "deploy.demo", "--rate", "40", "--minute-s", "20", "--seconds", "200"),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    seen: list[str] = []
    try:
        assert demo.stdout is not None
        await asyncio.wait_for(_lines_until(demo.stdout, "Stops by itself", seen), START_TIMEOUT_S)
        output = "".join(seen)
        admin, aggregator = _printed(output, "admin token"), _printed(output, "analyst UI")
        feedback = _printed(output, "annotator UI")
        tokens = {name: _printed(output, name) for name in ANNOTATORS}
        assert aggregator.endswith("/ui/") and feedback.endswith("/ui/")
        assert (tmp_path / "stack.json").exists()
        drained = asyncio.create_task(demo.stdout.read())  # keep reading: a full pipe would block the demo

        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            page = await http.get(aggregator)
            assert page.status_code == 200 and "Admin token" in page.text
            for name, token in tokens.items():
                me = await http.get(feedback + "api/me", headers={"Authorization": f"Bearer {token}"})
                assert me.status_code == 200 and me.json()["domains"] == sorted(ANNOTATORS[name]), me.text

            async def traffic_arrived() -> bool:
                apps = await http.get(aggregator + "api/apps", headers={"Authorization": f"Bearer {admin}"})
                assert apps.status_code == 200, apps.text
                assert APP_ID in [a["app_id"] for a in apps.json()["apps"]], apps.json()
                return True

            await eventually(traffic_arrived, timeout=60, interval=1.0)

        demo.send_signal(signal.SIGINT)  # Ctrl-C
        assert await asyncio.wait_for(demo.wait(), STOP_TIMEOUT_S) == 0
        rest = (await drained).decode()
        assert "The demo stopped" in rest and "stack_stopped" in rest, rest[-2000:]
        assert not (tmp_path / "stack.json").exists()
        async with httpx.AsyncClient(timeout=2, trust_env=False) as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(aggregator)
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()


def test_the_options_default_to_a_gentle_endless_run_and_refuse_nonsense() -> None:
    options = parse_args([])
    assert (options.rate, options.seconds, options.minute_s) == (20.0, None, 60.0)
    assert parse_args(["--seconds", "30", "--rate", "5"]).seconds == 30.0
    for bad in (["--rate", "0"], ["--seconds", "-1"], ["--minute-s", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
