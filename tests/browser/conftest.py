"""Browser tests: the system Chromium driven by Playwright against services on real TCP ports.

Without a Chromium (Debian's `chromium` package; `make test` installs it where it can) or without
Playwright, every test here is skipped and the run ends with a loud notice naming the package.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.feedback.app import create_app
from services.feedback.settings import FeedbackSettings
from tests.browser.support import (
    CHROMIUM_ARGS,
    CHROMIUM_PACKAGE,
    SCREENSHOTS,
    Feedback,
    find_chromium,
    has_playwright,
    served,
)
from tests.support.isolation import isolated_pipeline

ADMIN = "browser-admin-token"
VIEWPORT = {"width": 1440, "height": 900}
MISSING = (
    f"no Chromium found: install Debian's `{CHROMIUM_PACKAGE}` package (apt-get install {CHROMIUM_PACKAGE}) "
    "or set CHROMIUM_PATH; the browser tests were SKIPPED"
)
MISSING_PLAYWRIGHT = (
    "Playwright for Python is not installed (pip install -r requirements-dev.lock); browser tests SKIPPED"
)


def _why_skipped() -> str | None:
    if not has_playwright():
        return MISSING_PLAYWRIGHT
    if find_chromium() is None:
        return MISSING
    return None


def pytest_report_header(config: pytest.Config) -> str:
    return f"browser tests: {find_chromium() or 'no Chromium'}"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    reason = _why_skipped()
    ran_here = any("tests/browser" in str(getattr(r, "nodeid", "")) for r in terminalreporter.stats.get("skipped", []))
    if reason and ran_here:
        terminalreporter.write_sep("!", "BROWSER TESTS SKIPPED", red=True, bold=True)
        terminalreporter.write_line(reason, red=True, bold=True)
        terminalreporter.write_sep("!", "", red=True, bold=True)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    reason = _why_skipped()
    if reason:
        pytest.skip(reason)
    path = find_chromium()
    assert path is not None
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
async def browser(chromium_path: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


class PageProblems(list):
    """Console errors and uncaught exceptions of a page (a CSP violation shows up here)."""


@pytest.fixture
async def page_problems() -> PageProblems:
    return PageProblems()


@pytest.fixture
async def page(browser: Any, page_problems: PageProblems) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport=VIEWPORT, locale="en-US", timezone_id="UTC")
    context.set_default_timeout(15_000)
    opened = await context.new_page()
    opened.on("console", lambda m: page_problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    opened.on("pageerror", lambda e: page_problems.append(f"page error: {e}"))
    try:
        yield opened
    finally:
        await context.close()


def feedback_settings(kafka_bootstrap: str, url: str, prefix: str, **overrides: Any) -> FeedbackSettings:
    return FeedbackSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=url,
        topic_prefix=prefix,
        admin_token=ADMIN,
        http_port=0,
        group_id=f"feedback-{prefix}",
        tasks_group_id=f"feedback-tasks-{prefix}",
        outbox_poll_interval_s=0.1,
        **overrides,
    )


async def running_feedback(kafka_bootstrap: str, url: str, prefix: str, **overrides: Any) -> AsyncIterator[Feedback]:
    app = create_app(feedback_settings(kafka_bootstrap, url, prefix, **overrides))
    async with served(app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        yield Feedback(base_url, client, kafka_bootstrap, prefix, app, ADMIN)


@pytest.fixture(scope="module")
async def feedback(
    chromium_path: str, kafka_bootstrap: str, pg_server_url: str, template_db: str
) -> AsyncIterator[Feedback]:
    """One feedback service on a real port for a test module (each test works in its own domains)."""
    async with isolated_pipeline(kafka_bootstrap, pg_server_url, template_db) as (url, prefix):
        async for running in running_feedback(kafka_bootstrap, url, prefix, reviewers_per_domain={"twofold": 2}):
            yield running


def new_domain() -> str:
    """A domain of one test's own, so the tests of a module never lease each other's tasks."""
    return f"d{uuid.uuid4().hex[:10]}"
