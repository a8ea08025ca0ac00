"""The annotator page as tests drive it: by its accessible names (ARCHITECTURE.md's contract), never by CSS."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Page, expect

from tests.browser.support import SCREENSHOTS

VERDICT_BUTTONS = ("A is better", "B is better", "Tie", "Both bad", "Write a better answer", "Skip")


async def sign_in(page: Page, base_url: str, token: str) -> None:
    await page.goto(f"{base_url}/ui/")
    await page.get_by_label("Annotator token", exact=True).fill(token)
    await page.get_by_role("button", name="Sign in", exact=True).click()


def region(page: Page, name: str) -> Any:
    return page.get_by_role("region", name=name, exact=True)


async def shown_task_id(page: Page) -> str | None:
    return await page.locator("#task").get_attribute("data-task-id")


async def wait_for_task(page: Page, task_id: str | None = None, timeout_ms: float = 20_000) -> str:
    """Until a task is on screen (this one, if given); its task_id. The empty page looks again every 5 s."""
    await expect(region(page, "Answer A")).to_be_visible(timeout=timeout_ms)
    if task_id is not None:
        await expect(page.locator("#task")).to_have_attribute("data-task-id", task_id, timeout=timeout_ms)
    shown = await shown_task_id(page)
    assert shown is not None
    return shown


async def wait_for_other_task(page: Page, previous: str) -> str:
    await expect(page.locator("#task")).not_to_have_attribute("data-task-id", previous)
    return await wait_for_task(page)


async def answer_texts(page: Page) -> tuple[str, str]:
    """The full text of the left (Answer A) and right (Answer B) answers, as shown."""
    left = await region(page, "Answer A").locator(".answer-text").text_content()
    right = await region(page, "Answer B").locator(".answer-text").text_content()
    return left or "", right or ""


async def press(page: Page, key: str) -> None:
    """A key with no text field focused, as an annotator would press it."""
    await page.locator("main").focus()
    await page.keyboard.press(key)


async def alert_text(page: Page, pattern: str, timeout_ms: float = 5_000) -> None:
    await expect(page.get_by_role("alert")).to_have_text(re.compile(pattern, re.IGNORECASE), timeout=timeout_ms)


async def snap(page: Page, name: str, *, full_page: bool = False) -> None:
    """Save what a person sees (the laptop-sized viewport, or the whole page)."""
    await page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=full_page)


# Installed in the page: the time from a verdict key's keydown to the frame after the next task's id is
# on screen (the content is drawn in the same synchronous step as the id, so that frame shows it).
_LATENCY_PROBE = """
() => {
  const task = document.getElementById("task");
  const probe = { pressedAt: null, lastId: task.dataset.taskId, samples: [] };
  window.__verdictProbe = probe;
  document.addEventListener("keydown", (event) => {
    if ("1234".includes(event.key)) probe.pressedAt = performance.now();
  }, true);
  new MutationObserver(() => {
    const id = task.dataset.taskId;
    if (id === probe.lastId || probe.pressedAt === null) return;
    probe.lastId = id;
    const pressedAt = probe.pressedAt;
    probe.pressedAt = null;
    requestAnimationFrame(() => probe.samples.push(performance.now() - pressedAt));
  }).observe(task, { attributes: true, attributeFilter: ["data-task-id"] });
}
"""


async def measure_verdict_to_next(page: Page, verdicts: int, think_ms: float) -> list[float]:
    """Milliseconds from each verdict key to the next task drawn, over `verdicts` verdicts in a row.

    `think_ms` is the pause on each task before its key (a person reads for seconds; the prefetch of
    the next task runs meanwhile). Needs `verdicts + 1` tasks queued, the first one on screen.
    """
    await page.evaluate(_LATENCY_PROBE)
    for done in range(verdicts):
        await page.wait_for_timeout(think_ms)
        await press(page, "1")
        # A function, not a string: the page's CSP forbids eval, which a string expression would need.
        await page.wait_for_function("(done) => window.__verdictProbe.samples.length > done", arg=done)
    return await page.evaluate("window.__verdictProbe.samples")
