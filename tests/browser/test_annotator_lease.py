"""The lease in the annotator UI, with a 3-second lease: extended while the annotator is active, lost when idle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from playwright.async_api import Page, expect

from shared.runtime import runtime_of
from tests.browser.annotator_page import alert_text, press, sign_in, snap, wait_for_task
from tests.browser.conftest import new_domain, running_feedback
from tests.browser.support import Feedback
from tests.browser.tasks import compare_request
from tests.support.isolation import isolated_pipeline

pytestmark = pytest.mark.timeout(180)
LEASE_SECONDS = 3.0


@pytest.fixture(scope="module")
async def short_leases(
    chromium_path: str, kafka_bootstrap: str, pg_server_url: str, template_db: str
) -> AsyncIterator[Feedback]:
    async with isolated_pipeline(kafka_bootstrap, pg_server_url, template_db) as (url, prefix):
        async for running in running_feedback(kafka_bootstrap, url, prefix, lease_seconds=LEASE_SECONDS):
            yield running


async def lease_expiry(feedback: Feedback, task_id: str, annotator: str) -> datetime:
    leases = await runtime_of(feedback.app).db.fetchval("SELECT leases FROM tasks WHERE task_id = $1", task_id)
    return datetime.fromisoformat(leases[annotator])


async def test_an_active_annotator_keeps_the_lease_and_an_idle_one_is_told_it_was_lost(
    short_leases: Feedback, page: Page
) -> None:
    domain = new_domain()
    token = await short_leases.issue("ann-lease", domain)
    body = compare_request(domain)
    await short_leases.publish(body)
    await short_leases.wait_queued(domain, 1)
    await sign_in(page, short_leases.base_url, token)
    await wait_for_task(page, body["task_id"])
    first_expiry = await lease_expiry(short_leases, body["task_id"], "ann-lease")

    # Working (here: toggling the diff marks) for twice the lease: the page extends it, nothing is lost.
    for _ in range(int(2 * LEASE_SECONDS / 0.4)):
        await press(page, "d")
        await asyncio.sleep(0.4)  # the pace of a person at work, not a synchronisation
    await expect(page.get_by_role("alert")).to_have_text("")
    assert await lease_expiry(short_leases, body["task_id"], "ann-lease") > first_expiry

    # Idle: the lease runs out (one more extension may follow the last key) and the page says so,
    # in an alert, without a key pressed.
    await alert_text(page, r"lease on this task ran out.*went back to the queue", timeout_ms=4 * LEASE_SECONDS * 1000)
    await expect(page.locator("#lease-left")).to_have_text("lost")
    await expect(page.get_by_role("button", name="Get a task")).to_be_visible()
    await expect(page.get_by_role("button", name="A is better", exact=True)).to_be_disabled()
    await snap(page, "10-lease-lost")
    await press(page, "1")
    await alert_text(page, r"lease on this task ran out")
    assert await short_leases.verdicts([body["task_id"]]) == {}

    # n: the task went back to the queue, so it is offered again, with a fresh lease.
    await press(page, "n")
    await expect(page.get_by_role("alert")).to_have_text("")
    await expect(page.get_by_role("button", name="A is better", exact=True)).to_be_enabled()
    await press(page, "2")
    await expect(page.get_by_text("No task", exact=True)).to_be_visible()
    assert set(await short_leases.verdicts([body["task_id"]])) == {body["task_id"]}
