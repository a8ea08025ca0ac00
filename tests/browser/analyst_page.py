"""The analyst page under test: an aggregator on a real port fed with a simulator run, and the page driven by name.

The aggregator runs in-process (uvicorn on a loopback port) on a fresh database and topic prefix; the
simulator's events go to its input topics as ingest and feedback would publish them, a few poison records
make it dead-letter some, and dead letters of the other services are published as those would. The
fixture waits until everything is taken in, every board refitted and the regression alarm raised, so the
tests compare a still page with the routes.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from playwright.async_api import Page, expect

from bench.simulate import Scenario, Simulation, VersionSpec, generate
from services.aggregator.app import create_app
from services.aggregator.dead_letter_counter import dead_letter_group
from services.aggregator.settings import AggregatorSettings
from shared import topics
from shared.events import DeadLetter
from tests.browser.support import served
from tests.integration.aggregator.leaderboard_flow import LIVE, canonical, in_the_past
from tests.support.isolation import isolated_pipeline
from tests.support.kafka import Record, committed_all, producing
from tests.support.waiting import eventually

APP_ID = "sim-analyst"
SCRIPT_MODEL = "<script>x()</script>"
VERSIONS = (
    VersionSpec("acme-chat", "v-old", 0.85),
    VersionSpec("acme-chat", "v-new", 0.2, released_at_s=240.0),
    VersionSpec(SCRIPT_MODEL, "s1", 0.55),
    VersionSpec("acme-mini", "m1", 0.6),
)
# The other services' dead letters, as they would publish them: reason -> how many.
OTHER_LETTERS = {("ingest", "contract_violation"): 3, ("feedback", "forbidden_source"): 2}
POISON = (b"not json at all", b'{"schema_version": 9}', b"\xff\xfe\xfd")


@dataclass
class Analyst:
    base_url: str
    client: httpx.AsyncClient
    admin_token: str
    settings: AggregatorSettings

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    async def api(self, path: str, **params: Any) -> Any:
        response = await self.client.get(f"/ui/api/{path}", params=params, headers=self.auth())
        assert response.status_code == 200, response.text
        return response.json()

    async def leaderboard(self, domain: str | None = None) -> dict[str, Any]:
        params = {"app_id": APP_ID, **({"domain": domain} if domain else {})}
        response = await self.client.get("/v1/leaderboard", params=params)
        assert response.status_code == 200, response.text
        return response.json()


def simulation() -> Simulation:
    """Ten minutes of one app: four versions, the newest acme-chat much worse than the one it replaced."""
    return generate(
        Scenario(
            seed=14,
            tag="analyst-",
            apps=(APP_ID,),
            versions=VERSIONS,
            prompts=110,
            min_answers=2,
            max_answers=3,
            ab_share=1.0,
            popularity_skew=3.0,
            honest_users=60,
            honest_votes=1800,
            noise_min=0.05,
            noise_max=0.15,
            bots=1,
            contrarians=1,
            duration_s=600.0,
        )
    )


def other_letters() -> list[Record]:
    """The other services' dead letters (one sent twice: counted once), and a record that is no dead letter."""
    records = []
    for (service, code), count in OTHER_LETTERS.items():
        for n in range(count):
            letter = DeadLetter(
                event_id=uuid.uuid4(),
                failed_at=datetime.now(UTC),
                service=service,
                source_topic=f"{service}.raw",
                source_partition=0,
                source_offset=n,
                raw_value="{}",
                error_code=code,
                reason="refused by the test",
            )
            records.append(Record(topic=topics.DEAD_LETTER, key=b"k", value=letter.model_dump_json().encode()))
    return [*records, records[0], Record(topic=topics.DEAD_LETTER, key=b"k", value=b"no dead letter")]


def analyst_settings(bootstrap: str, url: str, prefix: str, admin_token: str | None) -> AggregatorSettings:
    return AggregatorSettings(
        kafka_bootstrap_servers=bootstrap,
        database_url=url,
        topic_prefix=prefix,
        group_id=f"aggregator-{prefix}",
        admin_token=admin_token,
        http_port=0,
        log_level="WARNING",
        stats_publish_interval_s=0.2,
        # The run is replayed in seconds: its ten minutes of windows must stay open for the votes behind.
        stats_allowed_lateness_s=3600.0,
        outbox_poll_interval_s=0.1,
        **LIVE,
    )


async def _board_settled(analyst: Analyst) -> dict[str, Any]:
    body = await analyst.leaderboard()
    ranked = [m for m in body["models"] if m["rank"] is not None]
    assert len(ranked) >= 3, body
    alerts = (await analyst.api("alerts"))["alerts"]
    assert any(a["state"] == "raised" and a["domain"] is None for a in alerts), alerts
    later = await analyst.leaderboard()
    assert later == body, "the board is still being refitted"
    return body


@asynccontextmanager
async def running_analyst(bootstrap: str, pg_server_url: str, template_db: str, admin: str) -> AsyncIterator[Analyst]:
    async with isolated_pipeline(bootstrap, pg_server_url, template_db) as (url, prefix):
        settings = analyst_settings(bootstrap, url, prefix, admin)
        async with (
            served(create_app(settings)) as base_url,
            httpx.AsyncClient(base_url=base_url, timeout=30) as client,
            producing(bootstrap, prefix) as pipeline,
            producing(bootstrap, prefix) as letters,
        ):
            analyst = Analyst(base_url, client, admin, settings)
            await pipeline.send(canonical(in_the_past(simulation(), 1.0), datetime.now(UTC)))
            await pipeline.send([Record(topic=topics.INTERACTIONS, key=b"poison", value=value) for value in POISON])
            await letters.send(other_letters())

            async def consumed() -> bool:
                return await committed_all(bootstrap, settings.group_id, pipeline) and await committed_all(
                    bootstrap, dead_letter_group(settings), letters
                )

            await eventually(consumed, timeout=150, interval=0.5)
            await eventually(lambda: _board_settled(analyst), timeout=60, interval=1.0)
            yield analyst


async def sign_in(page: Page, base_url: str, token: str) -> None:
    await page.goto(f"{base_url}/ui/")
    await page.get_by_label("Admin token", exact=True).fill(token)
    await page.get_by_role("button", name="Sign in", exact=True).click()


def as_the_page_rounds(value: float) -> int:
    """`Math.round`, which the page's formats use: halves go up (Python's `round` sends them to the even
    number, so a rating served as 1030.5 reads 1,031 on the page and 1,030 from `round`)."""
    return math.floor(value + 0.5)


def region(page: Page, name: str) -> Any:
    return page.get_by_role("region", name=name, exact=True)


async def wait_for_dashboard(page: Page) -> None:
    """Until every panel drew its data (the leaderboard's intervals, the approval lines, the alerts)."""
    await expect(region(page, "Leaderboard").locator("g.interval").first).to_be_visible(timeout=20_000)
    await expect(region(page, "Approval over time").locator("g.series").first).to_be_attached()
    await expect(region(page, "Alerts").locator("li.alert-card").first).to_be_visible()
    await expect(page.locator("#updated")).to_contain_text("Updated")


async def drawn_intervals(page: Page) -> list[dict[str, Any]]:
    """The leaderboard's drawn intervals, top to bottom, as their data attributes and titles say."""
    return (
        await region(page, "Leaderboard")
        .locator("g.interval")
        .evaluate_all(
            """nodes => nodes
            .map(n => ({ model: n.dataset.model, version: n.dataset.version, rank: Number(n.dataset.rank),
                         rating: Number(n.dataset.rating), ci_low: Number(n.dataset.ciLow),
                         ci_high: Number(n.dataset.ciHigh), title: n.querySelector("title").textContent,
                         y: n.getBoundingClientRect().top }))
            .sort((a, b) => a.y - b.y)"""
        )
    )
