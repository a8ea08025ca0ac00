"""The traffic simulator against the three services in-process: honest traffic over HTTP and over the raw topics.

The pipeline must end where its own pure core ends on the whole stream (the same pairs, same winners),
and with clear quality gaps most scored pairs must pick the truly better answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bench.simulate import (
    Scenario,
    Simulation,
    VersionSpec,
    drive_http,
    drive_raw,
    generate,
    latest_per_key,
    score_pairs,
)
from bench.simulation.offline import offline_pairs
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.settings import AggregatorSettings
from services.feedback.app import create_app as create_feedback
from services.feedback.settings import FeedbackSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from shared import topics
from tests.support.apps import running_apps
from tests.support.kafka import TopicReader, reading
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(240)
CLEAR_GAPS = (
    VersionSpec("acme-chat", "2026-11-01", 0.9),
    VersionSpec("acme-chat", "2026-10-15", 0.5),
    VersionSpec("acme-mini", "2026-09-30", 0.1),
)


@dataclass
class Stack:
    ingest: httpx.AsyncClient
    feedback: httpx.AsyncClient
    bootstrap: str
    prefix: str


@pytest.fixture
async def stack(kafka_bootstrap: str, database_url: str, topics: str) -> AsyncIterator[Stack]:
    common: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "database_url": database_url,
        "topic_prefix": topics,
        "http_port": 0,
        "log_level": "WARNING",
    }
    apps = [
        create_ingest(IngestSettings(**common, group_id=f"ingest-{topics}")),
        create_feedback(
            FeedbackSettings(
                **common,
                group_id=f"feedback-{topics}",
                tasks_group_id=f"tasks-{topics}",
                outbox_poll_interval_s=0.1,
                # The offline pair math has no hourly budget: the busiest simulated user sends 64 votes.
                max_votes_per_voter_per_hour=10_000,
            )
        ),
        create_aggregator(AggregatorSettings(**common, group_id=f"aggregator-{topics}", outbox_poll_interval_s=0.1)),
    ]
    async with running_apps(*apps) as (ingest, feedback, _aggregator):
        yield Stack(ingest, feedback, kafka_bootstrap, topics)


def honest_traffic(app_id: str, seed: int) -> Simulation:
    return generate(
        Scenario(
            seed=seed,
            apps=(app_id,),
            versions=CLEAR_GAPS,
            prompts=30,
            min_answers=2,
            honest_users=40,
            honest_votes=450,
            noise_min=0.05,
            noise_max=0.15,
            duration_s=30.0,
        )
    )


def in_the_past(sim: Simulation) -> list:
    """Sent as fast as the stack takes them, so every occurred_at must already be past."""
    return list(sim.rebased(datetime.now(UTC) - timedelta(seconds=sim.span_s() + 1)))


def live_pairs(reader: TopicReader, sim: Simulation) -> dict[str, dict]:
    live = latest_per_key((r.key, r.value) for r in reader.records)
    return {k: v for k, v in live.items() if v["chosen"]["interaction_id"] in sim.truth.answers}


def winners(pairs: dict[str, dict]) -> dict[str, str]:
    return {pair_id: pair["chosen"]["interaction_id"] for pair_id, pair in pairs.items()}


async def test_simulated_honest_traffic_becomes_pairs_that_mostly_agree_with_the_truth(stack: Stack) -> None:
    over_http, over_raw = honest_traffic("sim-http", seed=5), honest_traffic("sim-raw", seed=6)
    async with reading(stack.bootstrap, stack.prefix, topics.PREFERENCE_PAIRS) as reader:
        report = await drive_http(in_the_past(over_http), stack.ingest, stack.feedback, time_scale=0)
        assert report.http_errors == 0
        assert set(report.statuses) == {"interaction:accepted", "vote:accepted"}, report.statuses
        assert report.sent == len(over_http.events)
        raw = await drive_raw(in_the_past(over_raw), stack.bootstrap, stack.prefix, time_scale=0)
        assert raw.sent == len(over_raw.events)

        for sim in (over_http, over_raw):
            expected = winners(offline_pairs(sim))
            assert len(expected) >= 10

            async def converged(sim: Simulation = sim, expected: dict = expected) -> dict[str, dict]:
                await reader.poll()
                live = live_pairs(reader, sim)
                assert winners(live) == expected, f"{len(live)} live pairs, {len(expected)} expected"
                return live

            live = await eventually(converged, timeout=120, interval=0.5)
            score = score_pairs(live, sim.truth)
            assert score.overall.scored >= 8
            assert score.overall.accuracy >= 0.8, score.as_dict()
            assert score.foreign == 0
