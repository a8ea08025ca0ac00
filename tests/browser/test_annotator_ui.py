"""The annotator UI in Chromium against a running feedback: sign-in, the task, keys, rewrite, skip, errors."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from services.feedback.ui_view import shown_left
from shared.runtime import runtime_of
from shared.web_pages import CONTENT_SECURITY_POLICY
from tests.browser.annotator_page import (
    VERDICT_BUTTONS,
    alert_text,
    answer_texts,
    press,
    region,
    sign_in,
    snap,
    wait_for_task,
)
from tests.browser.conftest import PageProblems, new_domain
from tests.browser.support import Feedback
from tests.browser.tasks import CARELESS, CAUTIOUS, compare_request, rewrite_request, task_ids_with_both_sides
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)
TWO_REVIEWERS = "twofold"  # the module's service asks two verdicts per task here


async def test_sign_in_shows_the_task_every_turn_both_answers_and_the_guidelines(
    feedback: Feedback, page: Page, page_problems: PageProblems
) -> None:
    domain = new_domain()
    token = await feedback.issue("ann-view", domain)
    body = compare_request(domain)
    await feedback.publish(body)
    await feedback.wait_queued(domain, 1)

    response = await page.goto(f"{feedback.base_url}/ui/")
    assert response is not None and response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
    await snap(page, "01-sign-in")
    await sign_in(page, feedback.base_url, token)
    await wait_for_task(page, body["task_id"])
    assert "token" not in page.url and token not in page.url

    prompt = region(page, "Prompt")
    for turn in body["prompt"][:-1]:
        await expect(prompt).to_contain_text(turn["content"])
    await expect(prompt).to_contain_text("[EMAIL]")
    await expect(prompt).not_to_contain_text("jane.doe@example.com")
    left, right = await answer_texts(page)
    expected_left = "A" if shown_left(body["task_id"], "ann-view", "compare") == "A" else "B"
    texts = {"A": CAUTIOUS, "B": CARELESS}
    # Full length, no cut, and in the order the server chose for this annotator.
    assert (left, right) == (texts[expected_left], texts["B" if expected_left == "A" else "A"])
    await expect(region(page, "Answer A").locator("mark").first).to_be_visible()
    for name in VERDICT_BUTTONS:
        await expect(page.get_by_role("button", name=name, exact=True)).to_be_visible()
    await expect(page.get_by_role("heading", name=f"Guidelines: {domain}")).to_be_visible()
    await expect(page.locator("#guidelines")).to_contain_text("Length is not quality")
    await expect(page.locator("#lease-left")).to_have_text(re.compile(r"^\d+:\d\d left$"))
    await snap(page, "02-task")
    await snap(page, "02-task-full-page", full_page=True)

    await press(page, "?")
    await expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    await snap(page, "03-shortcuts")
    await page.keyboard.press("Escape")
    await expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_hidden()
    assert page_problems == []


async def test_a_wrong_token_is_refused_in_an_alert_and_the_field_keeps_it(feedback: Feedback, page: Page) -> None:
    await sign_in(page, feedback.base_url, "not-a-real-token")
    await alert_text(page, r"token was not accepted")
    await expect(page.get_by_label("Annotator token", exact=True)).to_have_value("not-a-real-token")
    await expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0
    await snap(page, "04-wrong-token")


async def test_an_empty_queue_says_no_task_with_its_depth_then_shows_a_new_task(feedback: Feedback, page: Page) -> None:
    domain = new_domain()
    token = await feedback.issue("ann-empty", domain)
    await sign_in(page, feedback.base_url, token)
    await expect(page.get_by_text("No task", exact=True)).to_be_visible()
    await expect(page.locator("#empty-depth")).to_contain_text("Queue depth in your domains: 0")
    await expect(page.get_by_role("button", name="A is better", exact=True)).to_be_hidden()
    await snap(page, "05-no-task")
    # The page looks again by itself: a task queued now shows up without a key.
    body = compare_request(domain)
    await feedback.publish(body)
    await wait_for_task(page, body["task_id"])


async def test_a_token_of_another_domain_sees_nothing_of_this_one(feedback: Feedback, page: Page) -> None:
    domain, other = new_domain(), new_domain()
    await feedback.issue("ann-owner", domain)
    outsider = await feedback.issue("ann-outsider", other)
    await feedback.publish(compare_request(domain))
    await feedback.wait_queued(domain, 1)
    await sign_in(page, feedback.base_url, outsider)
    await expect(page.get_by_text("No task", exact=True)).to_be_visible()
    await expect(page.locator("#queue-depth")).to_have_text(f"{other}: 0")
    entry = (await feedback.stats())["domains"][domain]
    assert (entry["queued"], entry["leased"]) == (1, 0)
    refused = await feedback.client.get(f"/ui/api/guidelines/{domain}", headers={"Authorization": f"Bearer {outsider}"})
    assert refused.status_code == 403


async def test_a_prompt_holding_script_shows_as_text(
    feedback: Feedback, page: Page, page_problems: PageProblems
) -> None:
    domain = new_domain()
    token = await feedback.issue("ann-xss", domain)
    hostile = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> <b>bold?</b>'
    body = compare_request(domain, prompt=[{"role": "user", "content": hostile}])
    body["candidates"]["B"]["content"] = "</div><script>window.__pwned = 3</script>"
    await feedback.publish(body)
    await feedback.wait_queued(domain, 1)
    await sign_in(page, feedback.base_url, token)
    await wait_for_task(page, body["task_id"])
    await expect(region(page, "Prompt")).to_contain_text(hostile)
    assert await page.locator("main script, main img, main b").count() == 0
    assert await page.evaluate("window.__pwned") is None
    assert "</div><script>window.__pwned = 3</script>" in "".join(await answer_texts(page))
    await snap(page, "06-script-prompt")
    assert page_problems == []


async def test_keys_judge_by_screen_side_and_each_verdict_maps_back_to_the_tasks_own_side(
    feedback: Feedback, page: Page
) -> None:
    domain = new_domain()
    token = await feedback.issue("ann-keys", domain)
    task_ids = task_ids_with_both_sides("ann-keys", 6)
    # Highest priority first: the page shows them in this order. A is always the cautious answer.
    await feedback.publish(*(compare_request(domain, t, priority=10.0 - i) for i, t in enumerate(task_ids)))
    await feedback.wait_queued(domain, 6)
    await sign_in(page, feedback.base_url, token)
    pressed = []
    for i, task_id in enumerate(task_ids):
        await wait_for_task(page, task_id)
        left, right = await answer_texts(page)
        assert {left, right} == {CAUTIOUS, CARELESS}
        # The first four choose the cautious answer wherever it is; then a tie and a both bad.
        key = ("1" if left == CAUTIOUS else "2") if i < 4 else ("3" if i == 4 else "4")
        pressed.append(key)
        await press(page, key)
    await expect(page.get_by_text("No task", exact=True)).to_be_visible()
    assert pressed[:4] == ["1", "2", "1", "2"]  # the cautious answer was left, right, left, right
    stored = await feedback.verdicts(task_ids)
    assert [stored[t]["verdict"] for t in task_ids] == ["A", "A", "A", "A", "tie", "both_bad"]
    assert [stored[t]["shown_left"] for t in task_ids] == [shown_left(t, "ann-keys", "compare") for t in task_ids]
    assert [stored[t]["shown_left"] for t in task_ids[:4]] == ["A", "B", "A", "B"]
    await expect(page.locator("#done-today")).to_have_text("6")
    position = (await feedback.stats())["domains"][domain]["position"]
    assert (position["chose_left"], position["chose_right"], position["chose_neither"]) == (2, 2, 2)


async def test_write_a_better_answer_on_a_compare_task_and_on_a_rewrite_task(feedback: Feedback, page: Page) -> None:
    domain = new_domain()
    token = await feedback.issue("ann-rewrite", domain)
    compare, lone = compare_request(domain, priority=5.0), rewrite_request(domain)
    await feedback.publish(compare, lone)
    await feedback.wait_queued(domain, 2)
    await sign_in(page, feedback.base_url, token)

    await wait_for_task(page, compare["task_id"])
    await press(page, "r")
    editor = page.get_by_role("textbox", name="Better answer")
    await expect(editor).to_be_focused()
    await page.keyboard.type("1 2 s")  # in a text field keys type text: no verdict, no skip
    await expect(editor).to_have_value("1 2 s")
    await expect(page.locator("#task")).to_have_attribute("data-task-id", compare["task_id"])
    await page.get_by_role("button", name="Start from Answer A", exact=True).click()
    left, _ = await answer_texts(page)
    await expect(editor).to_have_value(left)
    await editor.fill("Check your glucose before, during and after; ask your team about the pump.")
    await page.get_by_role("button", name="Submit rewrite", exact=True).click()

    await wait_for_task(page, lone["task_id"])
    await expect(region(page, "Answer B")).to_be_hidden()
    await expect(page.get_by_role("button", name="A is better", exact=True)).to_be_hidden()
    await expect(page.get_by_role("button", name="Good as is", exact=True)).to_be_visible()
    await press(page, "r")
    await expect(editor).to_have_value(CARELESS)  # a rewrite starts from the answer
    await editor.fill("A drop to 3.4 mmol/L is a hypo: check before training and talk to your diabetes team.")
    await snap(page, "07-rewrite-editor")
    await page.keyboard.press("Control+Enter")
    await expect(page.get_by_text("No task", exact=True)).to_be_visible()

    stored = await feedback.verdicts([compare["task_id"], lone["task_id"]])
    assert stored[compare["task_id"]]["verdict"] == "both_bad"
    assert stored[compare["task_id"]]["rewrite"].startswith("Check your glucose before, during and after")
    assert (stored[lone["task_id"]]["verdict"], stored[lone["task_id"]]["shown_left"]) == ("both_bad", "A")
    assert stored[lone["task_id"]]["rewrite"].startswith("A drop to 3.4 mmol/L is a hypo")


async def test_skip_shows_the_next_task_and_never_offers_the_skipped_one_again(feedback: Feedback, page: Page) -> None:
    domain = new_domain()
    token = await feedback.issue("ann-skip", domain)
    first, second = compare_request(domain, priority=5.0), compare_request(domain, priority=1.0)
    await feedback.publish(first, second)
    await feedback.wait_queued(domain, 2)
    await sign_in(page, feedback.base_url, token)
    await wait_for_task(page, first["task_id"])
    await page.get_by_role("button", name="Skip", exact=True).focus()
    await page.keyboard.press("s")  # a key on a focused button still counts: buttons are not text fields
    await wait_for_task(page, second["task_id"])
    await press(page, "3")
    await expect(page.get_by_text("No task", exact=True)).to_be_visible()
    skipped_by = await runtime_of(feedback.app).db.fetchval(
        "SELECT skipped_by FROM tasks WHERE task_id = $1", first["task_id"]
    )
    assert skipped_by == ["ann-skip"]
    assert set(await feedback.verdicts([first["task_id"], second["task_id"]])) == {second["task_id"]}


async def test_errors_are_plain_sentences_and_nothing_typed_is_lost(feedback: Feedback, page: Page) -> None:
    domain = new_domain()
    token = await feedback.issue("ann-errors", domain)
    body = compare_request(domain)
    await feedback.publish(body)
    await feedback.wait_queued(domain, 1)
    await sign_in(page, feedback.base_url, token)
    await wait_for_task(page, body["task_id"])
    await press(page, "r")
    editor = page.get_by_role("textbox", name="Better answer")
    typed = "My careful answer, typed once and never retyped."
    await editor.fill(typed)

    await page.route("**/verdict", lambda route: route.abort())
    await page.keyboard.press("Control+Enter")
    await alert_text(page, r"could not reach the server.*nothing you typed is lost")
    await expect(editor).to_have_value(typed)
    await snap(page, "08-network-error")
    await page.unroute("**/verdict")

    await feedback.revoke("ann-errors")
    await page.get_by_role("button", name="Submit rewrite", exact=True).click()
    await alert_text(page, r"token was not accepted")
    await expect(page.get_by_label("Annotator token", exact=True)).to_be_visible()
    await snap(page, "09-token-revoked")
    # Signed in again (a new token re-enables the annotator): the same task comes back with the text.
    await sign_in(page, feedback.base_url, await feedback.issue("ann-errors", domain))
    await wait_for_task(page, body["task_id"])
    await expect(editor).to_have_value(typed)
    await page.keyboard.press("Control+Enter")
    await expect(page.get_by_text("No task", exact=True)).to_be_visible()
    assert (await feedback.verdicts([body["task_id"]]))[body["task_id"]]["rewrite"] == typed


async def test_closing_the_tab_gives_the_shown_and_the_prefetched_task_back(feedback: Feedback, page: Page) -> None:
    domain = new_domain()
    token = await feedback.issue("ann-close", domain)
    await feedback.publish(compare_request(domain, priority=2.0), compare_request(domain, priority=1.0))
    await feedback.wait_queued(domain, 2)
    await sign_in(page, feedback.base_url, token)
    await wait_for_task(page)

    async def leased(expected: int) -> bool:
        count = (await feedback.stats())["domains"][domain]["leased"]
        assert count == expected, f"{count} leased, waiting for {expected}"
        return True

    await eventually(lambda: leased(2), timeout=15)  # the task on screen and the prefetched one
    # ... and the page knows the prefetched one (its lease answer has arrived): both can be given back.
    await expect(page.locator("#task")).to_have_attribute("data-next", re.compile(r"^task-"))
    await page.close(run_before_unload=True)
    await eventually(lambda: leased(0), timeout=15)


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (1024, 768)])
async def test_the_page_fits_a_laptop_screen_and_shows_where_the_focus_is(
    feedback: Feedback, page: Page, width: int, height: int
) -> None:
    domain = new_domain()
    token = await feedback.issue(f"ann-fit-{width}", domain)
    body = compare_request(domain)
    await feedback.publish(body)
    await feedback.wait_queued(domain, 1)
    await page.set_viewport_size({"width": width, "height": height})
    await sign_in(page, feedback.base_url, token)
    await wait_for_task(page, body["task_id"])
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    for name in ("A is better", "B is better", "Tie", "Both bad", "Skip"):
        box = await page.get_by_role("button", name=name, exact=True).bounding_box()
        assert box is not None and box["y"] + box["height"] <= height and box["x"] + box["width"] <= width
    await snap(page, f"12-laptop-{width}x{height}")
    button = page.get_by_role("button", name="B is better", exact=True)
    await button.focus()
    await page.keyboard.press("Shift+Tab")
    await page.keyboard.press("Tab")  # focus by keyboard: :focus-visible applies
    outline = await button.evaluate("b => getComputedStyle(b).outlineStyle + ' ' + getComputedStyle(b).outlineWidth")
    assert outline.startswith("solid") and not outline.endswith(" 0px")
    if width == 1024:
        await snap(page, "13-focus-visible")


async def test_a_task_outside_the_tokens_domains_now_is_refused_in_a_sentence(feedback: Feedback, page: Page) -> None:
    domain, elsewhere = new_domain(), new_domain()
    token = await feedback.issue("ann-moved", domain)
    body = compare_request(domain)
    await feedback.publish(body)
    await feedback.wait_queued(domain, 1)
    await sign_in(page, feedback.base_url, token)
    await wait_for_task(page, body["task_id"])
    await feedback.issue("ann-moved", elsewhere)  # the admin moves the annotator: its tokens open only that now
    await press(page, "1")
    await alert_text(page, r"does not open this domain or task")
    await expect(page.get_by_role("button", name="Get a task")).to_be_visible()
    assert await feedback.verdicts([body["task_id"]]) == {}


async def test_progress_shows_agreement_once_a_second_reviewer_judged(feedback: Feedback, page: Page) -> None:
    token = await feedback.issue("ann-agree", TWO_REVIEWERS)
    other = await feedback.issue("ann-second", TWO_REVIEWERS)
    body = compare_request(TWO_REVIEWERS)
    await feedback.publish(body)
    await feedback.wait_queued(TWO_REVIEWERS, 1)
    await sign_in(page, feedback.base_url, token)
    await wait_for_task(page, body["task_id"])
    left, _ = await answer_texts(page)
    await press(page, "1" if left == CAUTIOUS else "2")  # A, the cautious answer
    await expect(page.get_by_text("No task", exact=True)).to_be_visible()
    headers = {"Authorization": f"Bearer {other}"}
    leased = await feedback.client.post("/v1/tasks/lease", headers=headers)
    assert leased.status_code == 200 and leased.json()["task_id"] == body["task_id"]
    verdict = await feedback.client.post(f"/v1/tasks/{body['task_id']}/verdict", json={"verdict": "A"}, headers=headers)
    assert verdict.json()["task_status"] == "completed"
    await page.get_by_role("button", name="Check again", exact=True).click()  # also refreshes the progress
    await expect(page.locator("#agreement")).to_have_text("100%")
    await expect(page.locator("#done-today")).to_have_text("1")
