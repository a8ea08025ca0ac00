"""The README's example, run as `make example` runs it (the virtualenv's python), against a running stack.

The stack is what `make up` starts (deploy.stack.Stack: three service processes) on the session's
broker and a fresh database; the example reads its addresses from the stack.json the stack wrote.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from deploy.stack import Stack
from tests.support.isolation import consumer_groups_env, new_topic_prefix

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_TIMEOUT_S = 60.0


async def test_the_example_drives_a_running_stack_to_a_pair_and_a_task(
    tmp_path: Path, kafka_bootstrap: str, database_url: str
) -> None:
    prefix = new_topic_prefix()
    stack = Stack(
        tmp_path,
        kafka_bootstrap=kafka_bootstrap,
        database_url=database_url,
        topic_prefix=prefix,
        extra_env={**consumer_groups_env(prefix), "AGGREGATOR_OUTBOX_POLL_INTERVAL_S": "0.1"},
    )
    async with stack:
        assert json.loads(stack.stack_json_path.read_text())["topic_prefix"] == prefix
        example = await asyncio.create_subprocess_exec(
            sys.executable,
            "examples/pair_and_task.py",
            "--stack",
            str(stack.stack_json_path),
            "--within",
            "10",  # the example's own 1 s bound is for a quiet machine; the suite shares two cores
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(example.communicate(), EXAMPLE_TIMEOUT_S)
    text = output.decode(errors="replace")
    assert example.returncode == 0, text
    assert "pair " in text and "annotation request " in text and "no preference pair (as expected)" in text
    assert not stack.stack_json_path.exists(), "stack.json is removed once the stack stopped"
