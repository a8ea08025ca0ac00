"""Two aggregator instances in one consumer group give the same final pairs and requests as one instance."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI

from shared import topics
from shared.runtime import runtime_of
from tests.integration.aggregator.aggregator_flow import (
    Outputs,
    interaction,
    key_of,
    outputs,
    running,
    settings_for,
    thumbs,
)
from tests.support.isolation import isolated_pipeline
from tests.support.kafka import Record, committed_all, producing
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(150)
APP = "scale-app"
GROUPS = 24
PARTITIONS = 6


def workload() -> list[Record]:
    """Clear splits (alternating winners), 3-2 splits, and votes sent before their interactions."""
    early, answers, votes = [], [], []
    for g in range(GROUPS):
        prompt = f"Question number {g}?"
        pair = [interaction(APP, prompt, f"a{g}", f"Answer A{g}"), interaction(APP, prompt, f"b{g}", f"Answer B{g}")]
        if g % 3 == 0:
            group_votes = thumbs(APP, f"a{g}", 3, 2) + thumbs(APP, f"b{g}", 2, 3)
        elif g % 2:
            group_votes = thumbs(APP, f"a{g}", 5, 0) + thumbs(APP, f"b{g}", 0, 5)
        else:
            group_votes = thumbs(APP, f"a{g}", 1, 4) + thumbs(APP, f"b{g}", 4, 0)
        (early if g % 4 == 1 else votes).extend(group_votes)
        answers.extend(pair)
    random.Random(7).shuffle(votes)
    return early + answers + votes


def final_state(out: Outputs) -> tuple[dict[str, Any], dict[str, Any]]:
    pairs = {}
    for g in range(GROUPS):
        for pid, pair in out.live_pairs(key_of(APP, f"Question number {g}?")).items():
            pairs[pid] = (pair["chosen"]["interaction_id"], pair["rejected"]["interaction_id"], pair["evidence"])
    requests = {}
    # Only the three-two splits: a clear split may pass through an uncertain moment (and a request) on the way.
    for g in range(0, GROUPS, 3):
        for request in out.requests_of(key_of(APP, f"Question number {g}?")):
            requests[request["task_id"]] = request["evidence"]
    return pairs, requests


@asynccontextmanager
async def deployment(kafka_bootstrap: str, pg_server_url: str, template_db: str, instances: int) -> AsyncIterator[Any]:
    isolated = isolated_pipeline(kafka_bootstrap, pg_server_url, template_db, topic_partitions=PARTITIONS)
    async with isolated as (url, prefix), AsyncExitStack() as stack:
        group_id = f"aggregator-{prefix}"
        settings = settings_for(kafka_bootstrap, url, prefix, group_id)
        apps = [await stack.enter_async_context(running(settings)) for _ in range(instances)]
        out = await stack.enter_async_context(outputs(kafka_bootstrap, prefix))
        producer = await stack.enter_async_context(producing(kafka_bootstrap, prefix))
        yield apps, out, producer, group_id, prefix


def assigned(apps: list[FastAPI], prefix: str) -> bool:
    """Every instance consumes something, and together they cover every partition of both input topics."""
    covered: set[tuple[str, int]] = set()
    for app in apps:
        mine = set()
        for subscriber in runtime_of(app).broker.subscribers:
            if subscriber.consumer is not None:
                mine |= {(tp.topic, tp.partition) for tp in subscriber.consumer.assignment()}
        assert mine, "an instance has no partition yet"
        covered |= mine
    wanted = {
        (topics.topic(prefix, name), p) for name in (topics.INTERACTIONS, topics.VOTES) for p in range(PARTITIONS)
    }
    assert covered == wanted, sorted(wanted - covered)
    return True


async def run_workload(kafka_bootstrap: str, pg_server_url: str, template_db: str, instances: int) -> Any:
    async with deployment(kafka_bootstrap, pg_server_url, template_db, instances) as (apps, out, producer, gid, pfx):
        await eventually(lambda: assigned(apps, pfx), timeout=40, interval=0.2)
        await producer.send(workload())
        await eventually(lambda: committed_all(kafka_bootstrap, gid, producer), timeout=40, interval=0.2)

        async def settled() -> tuple[dict[str, Any], dict[str, Any]]:
            await out.poll()
            pairs, requests = final_state(out)
            # Every group is decided: 16 clear splits give a pair, 8 three-two splits a request.
            assert len(pairs) == GROUPS - GROUPS // 3 and len(requests) == GROUPS // 3, (len(pairs), len(requests))
            return pairs, requests

        return await eventually(settled, timeout=20)


async def test_two_instances_give_the_same_final_pairs_as_one(
    kafka_bootstrap: str, pg_server_url: str, template_db: str
) -> None:
    one = await run_workload(kafka_bootstrap, pg_server_url, template_db, instances=1)
    two = await run_workload(kafka_bootstrap, pg_server_url, template_db, instances=2)
    assert two == one
    pairs, _ = one
    assert all(chosen[0] in "ab" and chosen[0] != rejected[0] for chosen, rejected, _ in pairs.values())
