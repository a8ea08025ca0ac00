"""Test plumbing for the live leaderboard: an aggregator with short debounces, simulated traffic as canonical
records, recounts of battles and approval straight from the stored pairs and votes, and board readers."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from bench.simulate import SimEvent, Simulation
from services.aggregator.context import AggregatorContext
from services.aggregator.evidence import approval_of
from services.aggregator.settings import AggregatorSettings
from shared import topics
from shared.events import Interaction, Message, Response, parse_interaction, parse_vote
from shared.prompt_key import prompt_key
from shared.runtime import runtime_of
from tests.integration.aggregator.aggregator_flow import app_for, settings_for, vote
from tests.support.apps import running_app
from tests.support.kafka import Producer, Record, TopicReader, producing, reading

# Human sides of a pair (outputs.SYNTHETIC_MODELS), spelled out: the recount must not share the code it checks.
HUMAN_MODELS = ("human-edit", "expert")
LIVE = {
    "leaderboard_debounce_s": 0.1,
    "leaderboard_max_delay_s": 1.0,
    "leaderboard_poll_interval_s": 0.05,
    "leaderboard_min_battles": 5,
    "leaderboard_bootstrap_rounds": 100,
    "leaderboard_gauge_sync_interval_s": 0.2,
    "alarm_min_votes": 20,
}


@dataclass
class Board:
    """A running aggregator, its HTTP client, its database, a producer and readers of the leaderboard topics."""

    http: httpx.AsyncClient
    settings: AggregatorSettings
    context: AggregatorContext
    producer: Producer
    boards: TopicReader
    alerts: TopicReader

    async def send(self, records: Sequence[Record]) -> None:
        await self.producer.send(records)

    async def leaderboard(self, app_id: str, domain: str | None = None) -> httpx.Response:
        params = {"app_id": app_id, **({"domain": domain} if domain is not None else {})}
        return await self.http.get("/v1/leaderboard", params=params)

    async def published(self, key: str) -> dict[str, Any] | None:
        """The latest body on `model-leaderboard` under `key` (compaction applied by hand)."""
        latest = None
        for record in await self.boards.poll():
            if record.key == key.encode():
                latest = None if record.value is None else json.loads(record.value)
        return latest

    async def alert_events(self, app_id: str) -> list[dict[str, Any]]:
        return [json.loads(r.value) for r in await self.alerts.poll() if r.key == app_id.encode()]

    async def gauge(self, app_id: str, model: str, versions: str, metric: str) -> float | None:
        text = (await self.http.get("/metrics")).text
        wanted = f'app_id="{app_id}",domain="",metric="{metric}",model="{model}",versions="{versions}"'
        for line in text.splitlines():
            if line.startswith("aggregator_model_regression{") and wanted in line:
                return float(line.rsplit(" ", 1)[1])
        return None

    async def connect(self) -> asyncpg.Connection:
        """A connection of the test's own to the service's database (jsonb as Python values)."""
        conn = await asyncpg.connect(self.settings.database_url)
        await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
        return conn

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await self.connect()
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()


@asynccontextmanager
async def running_board(bootstrap: str, database_url: str, prefix: str, **extra: Any) -> AsyncIterator[Board]:
    settings = settings_for(bootstrap, database_url, prefix, f"aggregator-{prefix}", **{**LIVE, **extra})
    app = app_for(settings)
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(running_app(app))
        producer = await stack.enter_async_context(producing(bootstrap, prefix))
        boards = await stack.enter_async_context(reading(bootstrap, prefix, topics.MODEL_LEADERBOARD))
        alerts = await stack.enter_async_context(reading(bootstrap, prefix, topics.MODEL_ALERTS))
        context = await runtime_of(app).context()
        yield Board(http, settings, context, producer, boards, alerts)


def canonical(events: Iterable[SimEvent], now: datetime) -> list[Record]:
    """Simulated bodies as ingest and feedback publish them: stamped, keyed by prompt_key / interaction_id."""
    records = []
    for event in events:
        if event.kind == "interaction":
            interaction = parse_interaction(event.body)
            stamped = interaction.model_copy(
                update={"received_at": now, "prompt_key": prompt_key(interaction.app_id, interaction.messages)}
            )
            records.append(Record(topic=topics.INTERACTIONS, key=stamped.prompt_key.encode(), value=_json(stamped)))
        else:
            vote = parse_vote(event.body).model_copy(update={"received_at": now})
            records.append(Record(topic=topics.VOTES, key=vote.interaction_id.encode(), value=_json(vote)))
    return records


def _json(event: Any) -> bytes:
    return event.model_dump_json().encode()


def in_the_past(sim: Simulation, ends_s_ago: float) -> list[SimEvent]:
    """The events rebased so the last ends `ends_s_ago` seconds ago (sent at once: nothing may be in the future)."""
    return list(sim.rebased(datetime.now(UTC) - timedelta(seconds=sim.span_s() + ends_s_ago)))


BattleCell = tuple[str, str, str, str, str, str]  # app, domain, winner model/version, loser model/version


async def live_battles(board: Board) -> dict[str, BattleCell]:
    """pair_id -> the battle it is by definition, for the live pairs as stored that are one: two real answers of
    two different versions."""
    battles = {}
    for r in await board.fetch("SELECT pair_id, pair FROM agg_pairs WHERE pair IS NOT NULL"):
        pair = r["pair"]
        chosen, rejected = pair["chosen"], pair["rejected"]
        winner, loser = (chosen["model"], chosen["model_version"]), (rejected["model"], rejected["model_version"])
        if winner != loser and chosen["model"] not in HUMAN_MODELS and rejected["model"] not in HUMAN_MODELS:
            battles[r["pair_id"]] = (pair["app_id"], pair["domain"], *winner, *loser)
    return battles


async def battle_recount(board: Board) -> Counter[BattleCell]:
    """Battles by definition, counted from the live pairs as stored."""
    return Counter((await live_battles(board)).values())


async def stored_pair_battles(board: Board) -> dict[str, BattleCell]:
    """pair_id -> the battle the aggregator holds it counts for (agg_pair_battles)."""
    rows = await board.fetch(
        "SELECT pair_id, app_id, domain, winner_model, winner_version, loser_model, loser_version FROM agg_pair_battles"
    )
    return {r["pair_id"]: tuple(r.values())[1:] for r in rows}


async def stored_battles(board: Board) -> Counter[BattleCell]:
    rows = await board.fetch(
        "SELECT app_id, domain, winner_model, winner_version, loser_model, loser_version, battles"
        " FROM agg_battle_counts WHERE battles <> 0"
    )
    return Counter({tuple(r.values())[:6]: r["battles"] for r in rows})


ApprovalCell = tuple[str, str, str]  # app, model, version


async def approval_recount(board: Board) -> Counter[tuple[ApprovalCell, str]]:
    """Effective approval votes per app and version, from the stored latest vote of each slot that counts."""
    rows = await board.fetch(
        "SELECT g.app_id, v.vote, i.model, i.model_version FROM agg_votes v JOIN agg_groups g USING (prompt_key)"
        " JOIN agg_interactions i ON i.app_id = g.app_id AND i.interaction_id = v.vote->>'interaction_id'"
        " WHERE v.is_counted"  # flagged voters' votes do not count (vote_quality.py)
    )
    recount: Counter[tuple[ApprovalCell, str]] = Counter()
    for r in rows:
        sign = approval_of(parse_vote(r["vote"]))
        if sign:
            recount[((r["app_id"], r["model"], r["model_version"]), "up" if sign > 0 else "down")] += 1
    return recount


async def stored_approvals(board: Board) -> Counter[tuple[ApprovalCell, str]]:
    rows = await board.fetch(
        "SELECT app_id, model, model_version, sum(up) AS up, sum(down) AS down FROM agg_approval_counts"
        " GROUP BY app_id, model, model_version"
    )
    stored: Counter[tuple[ApprovalCell, str]] = Counter()
    for r in rows:
        stored[((r["app_id"], r["model"], r["model_version"]), "up")] += r["up"]
        stored[((r["app_id"], r["model"], r["model_version"]), "down")] += r["down"]
    return +stored


async def settled(board: Board, app_id: str, domain: str | None = None) -> dict[str, Any]:
    """The route's body once every change of the board was refitted and the battles match the recount."""
    rows = await board.fetch(
        "SELECT change_seq, refitted_seq FROM agg_boards WHERE app_id = $1 AND domain = $2", app_id, domain or ""
    )
    assert rows and rows[0]["change_seq"] == rows[0]["refitted_seq"], rows
    recount = await battle_recount(board)
    expected = sum(n for cell, n in recount.items() if cell[0] == app_id and domain in (None, cell[1]))
    response = await board.leaderboard(app_id, domain)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["battles"] == expected, (body["battles"], expected)
    return body


def standings(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["model_version"]: m for m in body["models"]}


def answer(app_id: str, prompt: str, interaction_id: str, version: str, at: datetime, model: str = "chat") -> Record:
    """A canonical interaction: an answer of `model` `version` to `prompt`."""
    messages = [Message(role="user", content=prompt)]
    event = Interaction(
        event_id=uuid.uuid4(),
        occurred_at=at,
        received_at=at,
        app_id=app_id,
        interaction_id=interaction_id,
        conversation_id=f"conv-{interaction_id}",
        user_ref="u-asker",
        messages=messages,
        response=Response(content=f"Answer {interaction_id}.", model=model, model_version=version),
        prompt_key=prompt_key(app_id, messages),
    )
    return Record(topic=topics.INTERACTIONS, key=event.prompt_key.encode(), value=_json(event))


def thumbs_of(app_id: str, interaction_id: str, values: dict[str, int], at: datetime) -> list[Record]:
    """One thumb per voter (voter -> +1 / -1): sent again later with other values, they replace the earlier ones."""
    return [vote(app_id, interaction_id, voter, at, kind="thumb", value=v) for voter, v in values.items()]
