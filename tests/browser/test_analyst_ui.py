"""The analyst UI in Chromium against a running aggregator fed with a simulator run: every panel drawn from the
routes' data, the admin token required, text kept as text, nothing from another origin."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Page, expect

from shared.web_pages import CONTENT_SECURITY_POLICY
from tests.browser.analyst_page import (
    APP_ID,
    OTHER_LETTERS,
    POISON,
    SCRIPT_MODEL,
    Analyst,
    as_the_page_rounds,
    drawn_intervals,
    region,
    running_analyst,
    sign_in,
    wait_for_dashboard,
)
from tests.browser.annotator_page import alert_text, snap
from tests.browser.conftest import ADMIN, PageProblems
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
async def analyst(
    chromium_path: str, kafka_bootstrap: str, pg_server_url: str, template_db: str
) -> AsyncIterator[Analyst]:
    """One aggregator, one simulator run, for the whole module (the run takes most of its time)."""
    async with running_analyst(kafka_bootstrap, pg_server_url, template_db, ADMIN) as running:
        yield running


@pytest.fixture
async def requests_seen(page: Page) -> list[str]:
    """The URLs the page requests (async: Playwright subscribes on the running loop; a plain fixture has
    no loop in the main thread once another test closed its own, and failed so once in the suite)."""
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    return seen


async def test_the_leaderboard_is_drawn_as_the_route_serves_it(
    analyst: Analyst, page: Page, page_problems: PageProblems, requests_seen: list[str]
) -> None:
    response = await page.goto(f"{analyst.base_url}/ui/")
    assert response is not None and response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    await snap(page, "analyst-01-sign-in")
    await sign_in(page, analyst.base_url, ADMIN)
    await wait_for_dashboard(page)
    assert ADMIN not in page.url and "token" not in page.url

    async def drawn_as_served() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        body = await analyst.leaderboard()
        drawn = await drawn_intervals(page)
        ranked = [m for m in body["models"] if m["rank"] is not None]
        assert [(d["model"], d["version"]) for d in drawn] == [(m["model"], m["model_version"]) for m in ranked]
        return drawn, body

    drawn, body = await eventually(drawn_as_served, timeout=30, interval=1.0)
    ranked = [m for m in body["models"] if m["rank"] is not None]
    assert len(drawn) == len(ranked) >= 3
    assert [d["rank"] for d in drawn] == sorted(d["rank"] for d in drawn)  # top to bottom by rank
    for mark, entry in zip(drawn, ranked, strict=True):
        assert (mark["rank"], mark["rating"], mark["ci_low"], mark["ci_high"]) == (
            entry["rank"],
            entry["rating"],
            entry["ci_low"],
            entry["ci_high"],
        )
        assert f"rank {entry['rank']}, rating {as_the_page_rounds(entry['rating']):,}" in mark["title"]
    # The old version above the new, worse one, and the worse one's interval wholly below it.
    versions = [d["version"] for d in drawn]
    assert versions.index("v-old") < versions.index("v-new")
    board = region(page, "Leaderboard")
    fragility = board.locator("g.fragility")
    await expect(fragility).to_have_count(len(body["fragility"]))
    first = body["fragility"][0]
    await expect(fragility.first).to_contain_text(
        re.compile(rf"order rests on (at most )?{first['battles_to_swap']} battle")
    )
    await expect(board.locator("g.approval")).to_have_count(len(ranked))
    await expect(region(page, "Leaderboard").locator(".panel-meta")).to_contain_text(f"{body['battles']:,} battles")
    await snap(page, "analyst-02-dashboard")
    await snap(page, "analyst-03-dashboard-full-page", full_page=True)

    assert all(url.startswith(analyst.base_url) for url in requests_seen), requests_seen
    assert page_problems == []


async def test_a_domain_board_is_drawn_when_its_domain_is_picked(analyst: Analyst, page: Page) -> None:
    apps = (await analyst.api("apps"))["apps"]
    domains = next(a["domains"] for a in apps if a["app_id"] == APP_ID)
    assert domains, apps
    await sign_in(page, analyst.base_url, ADMIN)
    await wait_for_dashboard(page)
    domain = domains[0]
    await page.get_by_label("Domain", exact=True).select_option(domain)
    body = await analyst.leaderboard(domain)
    ranked = [m for m in body["models"] if m["rank"] is not None]
    marks = region(page, "Leaderboard").locator("g.interval")
    await expect(marks).to_have_count(len(ranked))
    if not ranked:
        await expect(region(page, "Leaderboard")).to_contain_text("No version is rated yet")
    await snap(page, "analyst-04-domain-board")


async def test_the_other_panels_draw_the_routes_numbers(
    analyst: Analyst, page: Page, page_problems: PageProblems
) -> None:
    await sign_in(page, analyst.base_url, ADMIN)
    await wait_for_dashboard(page)

    approval = await analyst.api("approval", app_id=APP_ID, range="1h")
    series = region(page, "Approval over time").locator("g.series")
    await expect(series).to_have_count(len(approval["series"]))
    assert len(approval["series"]) == 4 and all(len(s["points"]) >= 3 for s in approval["series"])
    points = region(page, "Approval over time").locator("circle.point")
    await expect(points).to_have_count(sum(len(s["points"]) for s in approval["series"]))
    series_0 = approval["series"][0]
    first = series_0["points"][0]
    drawn = region(page, "Approval over time").locator(
        f'g.series[data-version="{series_0["model_version"]}"] circle.point'
    )
    title = await drawn.first.locator("title").text_content()
    assert (
        title is not None
        and f"{as_the_page_rounds(first['rate'] * 100)}%" in title
        and f"{first['up']} up and {first['down']} down" in title
    )
    await expect(region(page, "Approval over time").locator("polygon.band").first).to_be_attached()

    flow = await analyst.api("flow", app_id=APP_ID, range="1h")
    pairs = sum(b["pairs"] for b in flow["buckets"])
    assert pairs > 0
    await expect(region(page, "Pairs and tasks")).to_contain_text(f"{pairs:,} pairs published")
    await expect(region(page, "Pairs and tasks").locator("rect.bar[data-series=pairs]").first).to_be_attached()

    queue = await analyst.api("queue", app_id=APP_ID)
    assert queue["open"] > 0, queue
    bars = region(page, "Queue per domain").locator("g.queue-bar")
    await expect(bars).to_have_count(len(queue["domains"]))
    assert [await b.get_attribute("data-domain") for b in await bars.all()] == [d["domain"] for d in queue["domains"]]
    await expect(region(page, "Queue per domain").locator(".panel-meta")).to_contain_text(f"{queue['open']:,} open")

    letters = await analyst.api("dead-letters", range="1h")
    by_reason = {(r["service"], r["error_code"]): r["letters"] for r in letters["reasons"]}
    assert by_reason == {**OTHER_LETTERS, ("aggregator", "contract_violation"): len(POISON)}
    reason_bars = region(page, "Dead letters").locator("rect.reason-bar")
    await expect(reason_bars).to_have_count(len(by_reason))
    await expect(region(page, "Dead letters")).to_contain_text("ingest · contract_violation")
    await expect(region(page, "Dead letters").locator(".panel-meta")).to_contain_text(
        f"{letters['total']:,} in the last"
    )

    alerts = (await analyst.api("alerts"))["alerts"]
    cards = region(page, "Alerts").locator("li.alert-card")
    await expect(cards).to_have_count(len(alerts))
    await expect(cards.first).to_have_attribute("data-state", "raised")
    await expect(cards.first).to_contain_text("acme-chat v-new below v-old")
    await expect(cards.first.locator("g.reading")).to_have_count(2)
    assert page_problems == []


async def test_a_script_in_a_model_name_shows_as_text(
    analyst: Analyst, page: Page, page_problems: PageProblems
) -> None:
    await sign_in(page, analyst.base_url, ADMIN)
    await wait_for_dashboard(page)
    board = region(page, "Leaderboard")
    await expect(board.locator("text", has_text=SCRIPT_MODEL)).to_have_count(1)
    await expect(region(page, "Approval over time").locator(".legend-label", has_text=SCRIPT_MODEL)).to_have_count(1)
    assert await page.locator("script").count() == 1  # the page's own module, nothing injected
    assert await page.evaluate("() => typeof window.x") == "undefined"
    assert page_problems == []


async def test_a_wrong_token_is_refused_with_a_sentence_and_nothing_is_shown(analyst: Analyst, page: Page) -> None:
    await sign_in(page, analyst.base_url, "not-the-admin-token")
    await alert_text(page, r"admin token was not accepted")
    await expect(page.get_by_role("region", name="Leaderboard")).to_be_hidden()
    await expect(page.get_by_label("Admin token", exact=True)).to_have_value("not-the-admin-token")
    assert await page.evaluate("() => sessionStorage.length") == 0
    await snap(page, "analyst-05-wrong-token")


async def test_the_token_stays_for_the_tab_and_sign_out_forgets_it(analyst: Analyst, page: Page) -> None:
    await sign_in(page, analyst.base_url, ADMIN)
    await wait_for_dashboard(page)
    await page.reload()
    await wait_for_dashboard(page)  # signed in again from sessionStorage
    await page.get_by_role("button", name="Sign out", exact=True).click()
    await expect(page.get_by_label("Admin token", exact=True)).to_be_visible()
    assert await page.evaluate("() => sessionStorage.length") == 0


async def test_a_narrow_window_stacks_the_panels(analyst: Analyst, page: Page, page_problems: PageProblems) -> None:
    await page.set_viewport_size({"width": 820, "height": 1000})
    await sign_in(page, analyst.base_url, ADMIN)
    await wait_for_dashboard(page)
    widths = await page.locator("section.panel").evaluate_all(
        "nodes => nodes.map(n => n.getBoundingClientRect().width)"
    )
    assert len(set(round(w) for w in widths)) == 1  # one column
    await snap(page, "analyst-06-narrow", full_page=True)
    assert page_problems == []
