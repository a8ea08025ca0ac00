"""Through the whole pipeline: split user votes -> a task in the browser -> a key -> the expert pair.

ingest and the aggregator run in-process on the session broker and database; feedback serves the page
on a real port. The annotator is picked so that the screen's left shows the task's B: a key chosen by
screen side must come out as the other letter, and the pair on `preference-pairs` must still choose
the answer the annotator saw as better.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from playwright.async_api import Page

from services.aggregator.app import create_app as create_aggregator
from services.aggregator.settings import AggregatorSettings
from services.feedback.ui_view import shown_left
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from shared import topics
from shared.events import Message
from shared.prompt_key import prompt_key
from shared.runtime import runtime_of
from tests.browser.annotator_page import answer_texts, press, sign_in, snap, wait_for_task
from tests.browser.conftest import ADMIN, running_feedback
from tests.browser.support import Feedback
from tests.e2e.test_expert_loop import comparison, interaction
from tests.support.apps import running_app
from tests.support.kafka import reading
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(240)
APP_ID = "helpdesk"
PROMPT = "Can diabetic patients do intense exercise? Write to me at jane.doe@example.com"
RISKY, SAFE = "Yes, any exercise is fine.", "Ask your doctor first, and check your blood sugar before and after."


async def _pipeline(stack: AsyncExitStack, kafka_bootstrap: str, database_url: str, prefix: str) -> Any:
    common: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "database_url": database_url,
        "topic_prefix": prefix,
        "http_port": 0,
        "admin_token": ADMIN,
    }
    ingest_app = create_ingest(IngestSettings(**common, group_id=f"ingest-{prefix}"))
    aggregator_app = create_aggregator(
        AggregatorSettings(**common, group_id=f"aggregator-{prefix}", outbox_poll_interval_s=0.1)
    )
    # Started together: each start waits for its consumer groups to join (seconds each on the local broker).
    feedback_run = running_feedback(kafka_bootstrap, database_url, prefix)
    ingest, _, feedback = await asyncio.gather(
        stack.enter_async_context(running_app(ingest_app)),
        stack.enter_async_context(running_app(aggregator_app)),
        anext(feedback_run),
    )
    stack.push_async_callback(feedback_run.aclose)
    return ingest, feedback


@pytest.fixture
async def pipeline(
    chromium_path: str, kafka_bootstrap: str, database_url: str, topics: str
) -> AsyncIterator[tuple[httpx.AsyncClient, Feedback]]:
    async with AsyncExitStack() as stack:
        yield await _pipeline(stack, kafka_bootstrap, database_url, topics)


async def test_a_key_on_the_randomized_sides_becomes_the_expert_pair(
    pipeline: tuple[httpx.AsyncClient, Feedback], page: Page
) -> None:
    ingest, feedback = pipeline
    a, b = f"int-a-{uuid.uuid4().hex[:6]}", f"int-b-{uuid.uuid4().hex[:6]}"
    for body in (interaction(a, RISKY), interaction(b, SAFE, regenerated_from=a)):
        body["messages"][0]["content"] = PROMPT
        assert (await ingest.post("/v1/interactions", json=body)).status_code == 202
    # 3-2 for the risky answer: ambiguous, so the aggregator asks an expert.
    votes = [comparison(f"u-{i}", a, b) for i in range(3)] + [comparison(f"u-{i}", b, a) for i in range(3, 5)]
    assert (await feedback.client.post("/v1/votes/batch", json=votes)).status_code == 202

    pool = runtime_of(feedback.app).db
    task_id = await eventually(lambda: pool.fetchval("SELECT task_id FROM tasks WHERE domain = 'medical'"), timeout=90)
    request = json.loads(await pool.fetchval("SELECT request::text FROM tasks WHERE task_id = $1", task_id))
    annotator = next(f"dr-{i}" for i in range(64) if shown_left(task_id, f"dr-{i}", "compare") == "B")
    token = await feedback.issue(annotator, "medical")

    await sign_in(page, feedback.base_url, token)
    await wait_for_task(page, task_id)
    left, right = await answer_texts(page)
    task_b = request["candidates"]["B"]
    # The screen's left is the task's B for this annotator, the right its A.
    assert (left, right) == (task_b["content"], request["candidates"]["A"]["content"])
    key = "1" if left == SAFE else "2"
    await snap(page, "11-expert-task")
    async with reading(feedback.bootstrap, feedback.prefix, topics.PREFERENCE_PAIRS) as pairs:
        await press(page, key)
        key_of_prompt = prompt_key(APP_ID, [Message(role="user", content=PROMPT)])

        async def expert_pair() -> dict[str, Any] | None:
            values = [json.loads(r.value) for r in await pairs.poll() if r.value is not None]
            found = [v for v in values if v["prompt_key"] == key_of_prompt and v["method"] == "expert"]
            return found[-1] if found else None

        pair = await eventually(expert_pair, timeout=60, interval=0.2)
    assert (pair["chosen"]["interaction_id"], pair["rejected"]["interaction_id"]) == (b, a)
    stored = (await feedback.verdicts([task_id]))[task_id]
    assert stored["shown_left"] == "B"
    assert stored["verdict"] == ("B" if task_b["interaction_id"] == b else "A")
