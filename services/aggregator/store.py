"""The aggregator's PostgreSQL state of groups, interactions and votes (sql/queries.sql), one function per named query.

Functions taking `conn` run on the caller's connection, inside the caller's transaction: a batch's
state change and its outbox rows commit together. Beside it, each with its own .sql file:
stats_store.py (feedback-stats windows), export_store.py (the exports' reads), budget_store.py,
leaderboard_store.py, voter_store.py and analytics_store.py.
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar
from uuid import UUID

import asyncpg
import orjson

from services.aggregator.admission import IssuedTask
from services.aggregator.evidence import vote_slot
from services.aggregator.leaderboard import VersionKey
from services.aggregator.leaderboard_counts import BattleKey
from services.aggregator.outputs import PairRow, TaskRow
from services.aggregator.pairs import Answer, SftExample
from services.aggregator.vote_quality import VoteMarks, VoterKey, vote_marks
from shared import db
from shared.events import Interaction, Message, Vote, parse_vote

SQL_DIR = Path(__file__).parent / "sql"
QUERIES = db.load_queries(SQL_DIR / "queries.sql")
MIGRATIONS_DIR = SQL_DIR / "migrations"


@dataclass(frozen=True, slots=True)
class BudgetedTask:
    """A task of a locked group as the budget holds it: its domain and the state hash last offered."""

    domain: str
    state_hash: str


@dataclass(kw_only=True)
class GroupRows:
    """The stored state of one locked group."""

    app_id: str
    prompt: tuple[Message, ...]
    answers: list[Answer] = field(default_factory=list)
    votes: dict[str, Vote] = field(default_factory=dict)
    marks: dict[str, VoteMarks] = field(default_factory=dict)
    emitted_pairs: dict[str, str] = field(default_factory=dict)
    emitted_tasks: dict[str, str] = field(default_factory=dict)
    budget: dict[str, BudgetedTask] = field(default_factory=dict)
    """task_id -> the group's tasks in the annotation budget (budget_store.py)."""
    battles: dict[str, BattleKey] = field(default_factory=dict)
    """pair_id -> the leaderboard battle the group's pair counts for now (leaderboard_store.record_changes)."""
    counted_domain: str | None = None
    """The domain the leaderboard counts the group's approval votes under (None: never counted)."""

    def counted_votes(self) -> dict[str, Vote]:
        """The latest votes that count (their voter is not flagged: vote_quality.py)."""
        return {slot: vote for slot, vote in self.votes.items() if self.marks.get(slot, VoteMarks()).is_counted}


@dataclass(kw_only=True, frozen=True, slots=True)
class StoredPair:
    """A pair as last published: `pair` is None once it was retracted."""

    pair_id: str
    prompt_key: str
    pair: dict[str, Any] | None
    updated_at: datetime


@dataclass(kw_only=True, frozen=True)
class ParkedVote:
    """A vote with where it was consumed from; `expires_at` once it was parked (the TTL runs from then)."""

    vote: Vote
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    expires_at: datetime | None = None


# A busy group is locked and loaded by every batch that touches it: its prompt was parsed again each time.
# Cached by its stored JSON text, at most PARSED_CACHE_SIZE prompts.
PARSED_CACHE_SIZE = 8192

K = TypeVar("K")
V = TypeVar("V")


class RecentlyUsed(Generic[K, V]):
    """The values last used, while their weights (`weigh`, 1 each by default) sum to at most `budget`."""

    def __init__(self, budget: int, weigh: Callable[[V], int] = lambda _: 1) -> None:
        self.budget, self._weigh = budget, weigh
        self._items: OrderedDict[K, V] = OrderedDict()
        self.weight = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        if (old := self._items.pop(key, None)) is not None:
            self.weight -= self._weigh(old)
        self._items[key] = value
        self.weight += self._weigh(value)
        while self.weight > self.budget and len(self._items) > 1:
            _, dropped = self._items.popitem(last=False)
            self.weight -= self._weigh(dropped)


# A stored answer's content and a stored vote's body never change: each is kept here by the event_id it came
# with (an event_id has one body: the edge refuses another as a conflict), so a busy group's answers and votes
# are read once, not by every batch that touches it (select_group_state sends neither; a transaction that
# rolled back leaves nothing wrong here: whichever event's row a later batch reads, it reads it by its own id).
# At most ANSWER_CACHE_CHARS characters of answers (~50 MB at worst) and VOTE_CACHE_SIZE parsed votes (~25 MB).
ANSWER_CACHE_CHARS = 16_000_000
VOTE_CACHE_SIZE = 16_384
# Keyed with where each was read too (its interaction_id, its slot): one key, one body, even for a caller that
# reuses an event_id against another database.
ANSWERS: RecentlyUsed[tuple[UUID, str], Answer] = RecentlyUsed(ANSWER_CACHE_CHARS, lambda a: len(a.content) + 200)
VOTES: RecentlyUsed[tuple[UUID, str], Vote] = RecentlyUsed(VOTE_CACHE_SIZE)


@functools.lru_cache(maxsize=PARSED_CACHE_SIZE)
def _parsed_prompt(text: str) -> tuple[Message, ...]:
    return tuple(Message.model_validate(m) for m in orjson.loads(text)["messages"])


def interaction_lock_key(app_id: str, interaction_id: str) -> int:
    """A signed 64-bit advisory-lock key for one interaction."""
    digest = hashlib.blake2b(f"{app_id}\x1f{interaction_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock_interaction_keys(conn: asyncpg.Connection, pairs: Iterable[tuple[str, str]]) -> None:
    """Advisory-lock these interactions, in sorted key order (every caller uses the same order)."""
    keys = sorted({interaction_lock_key(app_id, iid) for app_id, iid in pairs})
    if keys:
        await conn.execute(QUERIES["lock_interaction_keys"], keys)


async def insert_groups(conn: asyncpg.Connection, interactions: Sequence[Interaction]) -> None:
    first: dict[str, Interaction] = {}
    for interaction in interactions:
        first.setdefault(interaction.prompt_key or "", interaction)
    keys = sorted(first)
    if not keys:
        return
    # Wrapped in an object: asyncpg would read a list of lists as a two-dimensional jsonb[].
    prompts = [{"messages": [m.model_dump() for m in first[k].messages]} for k in keys]
    await conn.execute(QUERIES["insert_groups"], keys, [first[k].app_id for k in keys], prompts)


async def lock_groups(conn: asyncpg.Connection, prompt_keys: Iterable[str]) -> dict[str, GroupRows]:
    """Row-lock the groups in prompt_key order and return them (without answers and votes yet)."""
    rows = await conn.fetch(QUERIES["lock_groups"], sorted(set(prompt_keys)))
    return {r["prompt_key"]: GroupRows(app_id=r["app_id"], prompt=_parsed_prompt(r["prompt"])) for r in rows}


async def insert_interactions(conn: asyncpg.Connection, interactions: Sequence[Interaction]) -> set[tuple[str, str]]:
    """Insert interactions not seen before; return (app_id, interaction_id) of the new ones."""
    if not interactions:
        return set()
    rows = await conn.fetch(
        QUERIES["insert_interactions"],
        [i.app_id for i in interactions],
        [i.interaction_id for i in interactions],
        [i.prompt_key for i in interactions],
        [i.event_id for i in interactions],
        [i.response.content for i in interactions],
        [i.response.model for i in interactions],
        [i.response.model_version for i in interactions],
        [i.domain for i in interactions],
        [i.occurred_at for i in interactions],
    )
    return {(r["app_id"], r["interaction_id"]) for r in rows}


async def select_interaction_groups(
    conn: asyncpg.Connection, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str, str]]:
    """(app_id, interaction_id) -> (prompt_key, model_version) of the known ones."""
    wanted = sorted(set(pairs))
    if not wanted:
        return {}
    rows = await conn.fetch(QUERIES["select_interaction_groups"], [p[0] for p in wanted], [p[1] for p in wanted])
    return {(r["app_id"], r["interaction_id"]): (r["prompt_key"], r["model_version"]) for r in rows}


async def insert_seen_votes(conn: asyncpg.Connection, event_ids: Sequence[UUID]) -> set[UUID]:
    """Record vote event ids; return those never seen before."""
    if not event_ids:
        return set()
    return {r["event_id"] for r in await conn.fetch(QUERIES["insert_seen_votes"], list(event_ids))}


async def delete_seen_votes_before(pool: asyncpg.Pool, moment: datetime) -> int:
    status = await pool.execute(QUERIES["delete_seen_votes_before"], moment)
    return int(status.split()[-1])


async def insert_parked_votes(
    conn: asyncpg.Connection, parked: Sequence[tuple[ParkedVote, str]], expires_at: datetime
) -> None:
    """Park (vote, the interaction_id it waits for); a vote parked before keeps its own expiry."""
    if not parked:
        return
    await conn.execute(
        QUERIES["insert_parked_votes"],
        [p.vote.event_id for p, _ in parked],
        [p.vote.app_id for p, _ in parked],
        [waiting_for for _, waiting_for in parked],
        [p.vote.model_dump(mode="json") for p, _ in parked],
        [p.source_topic for p, _ in parked],
        [p.source_partition for p, _ in parked],
        [p.source_offset for p, _ in parked],
        [p.expires_at or expires_at for p, _ in parked],
    )


async def claim_parked_votes(conn: asyncpg.Connection, pairs: Iterable[tuple[str, str]]) -> list[ParkedVote]:
    """Take (delete and return) the parked votes waiting for these interactions."""
    wanted = sorted(set(pairs))
    if not wanted:
        return []
    return _parked(await conn.fetch(QUERIES["claim_parked_votes"], [p[0] for p in wanted], [p[1] for p in wanted]))


async def claim_parked_votes_by_id(conn: asyncpg.Connection, event_ids: Sequence[UUID]) -> list[ParkedVote]:
    """Take (delete and return) these parked votes; one taken meanwhile (expired, claimed) is not returned."""
    if not event_ids:
        return []
    return _parked(await conn.fetch(QUERIES["claim_parked_votes_by_id"], list(event_ids)))


async def select_parked_vote_ids(conn: asyncpg.Connection, app_id: str, interaction_id: str) -> list[UUID]:
    """The parked votes waiting for one interaction, in the order they were parked."""
    return [r["event_id"] for r in await conn.fetch(QUERIES["select_parked_vote_ids"], app_id, interaction_id)]


def _parked(rows: Sequence[asyncpg.Record]) -> list[ParkedVote]:
    return [
        ParkedVote(
            vote=parse_vote(r["vote"]),
            source_topic=r["source_topic"],
            source_partition=r["source_partition"],
            source_offset=r["source_offset"],
            expires_at=r["expires_at"],
        )
        for r in rows
    ]


async def select_issued_tasks(conn: asyncpg.Connection, task_ids: Iterable[str]) -> dict[str, IssuedTask]:
    """The tasks the aggregator issued under these ids (withdrawn ones too)."""
    wanted = sorted(set(task_ids))
    if not wanted:
        return {}
    rows = await conn.fetch(QUERIES["select_issued_tasks"], wanted)
    return {r["task_id"]: IssuedTask(prompt_key=r["prompt_key"], kind=r["kind"]) for r in rows}


async def forget_seen_votes(conn: asyncpg.Connection, event_ids: Sequence[UUID]) -> None:
    """Forget dead-lettered votes' ids: they were never taken in, so a redriven copy is taken as new."""
    if event_ids:
        await conn.execute(QUERIES["delete_seen_votes"], list(event_ids))


async def expire_parked_votes(conn: asyncpg.Connection, now: datetime, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(QUERIES["expire_parked_votes"], now, limit)


async def load_group_state(
    conn: asyncpg.Connection, groups: dict[str, GroupRows], new_voters: Iterable[VoterKey] = ()
) -> set[VoterKey]:
    """Fill the locked groups with their stored state; return the flagged voters among theirs and `new_voters`.

    The state: answers, latest votes, what was published (with the pairs' battles) and what the budget
    holds, and the domain the leaderboard counts the group under. Flagged voters are read without a lock
    (a voter flagged meanwhile is caught by its re-decide: batches.py).
    """
    voters = sorted(set(new_voters))
    rows = await conn.fetch(
        QUERIES["select_group_state"], sorted(groups), [v[0] for v in voters], [v[1] for v in voters]
    )
    flagged: set[VoterKey] = set()
    answers_to_read: list[tuple[GroupRows, int, Answer]] = []  # (group, index, the answer without its content)
    votes_to_read: list[tuple[str, str]] = []  # (prompt_key, slot)
    for r in rows:
        # Unpacked once, in the statement's column order: a hot group's thousands of rows are read by every
        # batch that touches it, and a look-up by column name per field was most of the reading.
        (kind, prompt_key, item, body, model, model_version, domain, occurred_at,
         state_hash, counted, tested, battle, event_id) = r  # fmt: skip
        if kind == "answer":
            group = groups[prompt_key]
            answer = ANSWERS.get((event_id, item))
            if answer is None:
                answer = Answer(
                    interaction_id=item,
                    content=body or "",
                    model=model,
                    model_version=model_version,
                    domain=domain,
                    occurred_at=occurred_at,
                )
                if body is None:  # the content is sent only for an answer this transaction stored
                    answers_to_read.append((group, len(group.answers), answer))
                else:
                    ANSWERS.put((event_id, item), answer)
            group.answers.append(answer)
        elif kind == "vote":
            group = groups[prompt_key]
            vote = VOTES.get((event_id, item))
            if vote is None:
                votes_to_read.append((prompt_key, item))
            group.votes[item] = vote  # type: ignore[assignment]  # read below when None
            group.marks[item] = vote_marks(counted, tested)
        elif kind == "pair":
            group = groups[prompt_key]
            group.emitted_pairs[item] = state_hash
            if battle is not None:
                app_id, battle_domain, winner_model, winner_version, loser_model, loser_version = battle
                winner, loser = VersionKey(winner_model, winner_version), VersionKey(loser_model, loser_version)
                group.battles[item] = BattleKey(app_id, battle_domain, winner, loser)
        elif kind == "request":
            groups[prompt_key].emitted_tasks[item] = state_hash
        elif kind == "budget":
            groups[prompt_key].budget[item] = BudgetedTask(domain, state_hash)
        elif kind == "counted":
            groups[prompt_key].counted_domain = domain
        else:  # flagged: no group; the voter's app_id in `body`, its user_ref in `item`
            flagged.add((body, item))
    await _read_answers(conn, answers_to_read)
    await _read_votes(conn, groups, votes_to_read)
    return flagged


async def _read_answers(conn: asyncpg.Connection, missing: list[tuple[GroupRows, int, Answer]]) -> None:
    """Fill in the content of the answers not kept in ANSWERS (and keep it)."""
    if not missing:
        return
    rows = await conn.fetch(
        QUERIES["select_answer_contents"],
        [group.app_id for group, _, _ in missing],
        [answer.interaction_id for _, _, answer in missing],
    )
    found = {(r["app_id"], r["interaction_id"]): (r["event_id"], r["content"]) for r in rows}
    for group, index, answer in missing:
        event_id, content = found[group.app_id, answer.interaction_id]
        group.answers[index] = replace(answer, content=content)
        ANSWERS.put((event_id, answer.interaction_id), group.answers[index])


async def _read_votes(conn: asyncpg.Connection, groups: dict[str, GroupRows], missing: list[tuple[str, str]]) -> None:
    """Read and parse the stored votes not kept in VOTES (and keep them)."""
    if not missing:
        return
    rows = await conn.fetch(QUERIES["select_vote_bodies"], [key for key, _ in missing], [slot for _, slot in missing])
    if len(rows) != len(missing):  # the groups are locked: their votes cannot have gone
        raise RuntimeError(f"{len(missing) - len(rows)} stored votes of locked groups were not found")
    for r in rows:
        vote = parse_vote(r["body"])
        groups[r["prompt_key"]].votes[r["slot"]] = vote
        VOTES.put((r["event_id"], r["slot"]), vote)


async def upsert_votes(conn: asyncpg.Connection, rows: Sequence[tuple[str, Vote, VoteMarks]]) -> None:
    """Store (prompt_key, vote, marks) as the latest vote of its slot."""
    if not rows:
        return
    slots = [vote_slot(v) for _, v, _ in rows]
    await conn.execute(
        QUERIES["upsert_votes"],
        [key for key, _, _ in rows],
        slots,
        [v.event_id for _, v, _ in rows],
        [v.occurred_at for _, v, _ in rows],
        [v.model_dump_json() for _, v, _ in rows],
        [v.app_id for _, v, _ in rows],
        [v.user_ref if v.source == "end_user" else None for _, v, _ in rows],
        [m.is_counted for _, _, m in rows],
        [m.is_tested for _, _, m in rows],
    )
    for (_, vote, _), slot in zip(rows, slots, strict=True):  # what a later batch reads of this slot
        VOTES.put((vote.event_id, slot), vote)


async def update_vote_marks(conn: asyncpg.Connection, rows: Sequence[tuple[str, str, VoteMarks]]) -> None:
    """(prompt_key, slot, marks) of stored votes that stay the latest of their slot."""
    if not rows:
        return
    await conn.execute(
        QUERIES["update_vote_marks"],
        [key for key, _, _ in rows],
        [slot for _, slot, _ in rows],
        [m.is_counted for _, _, m in rows],
        [m.is_tested for _, _, m in rows],
    )


async def upsert_pairs(conn: asyncpg.Connection, rows: Sequence[tuple[str, PairRow]]) -> None:
    if not rows:
        return
    await conn.execute(
        QUERIES["upsert_pairs"],
        [r.pair_id for _, r in rows],
        [key for key, _ in rows],
        [r.state_hash for _, r in rows],
        [r.pair for _, r in rows],
    )


async def upsert_requests(conn: asyncpg.Connection, rows: Sequence[tuple[str, TaskRow]]) -> None:
    if not rows:
        return
    await conn.execute(
        QUERIES["upsert_requests"],
        [r.task_id for _, r in rows],
        [key for key, _ in rows],
        [r.kind for _, r in rows],
        [r.state_hash for _, r in rows],
    )


async def upsert_sft_examples(conn: asyncpg.Connection, rows: Sequence[tuple[str, SftExample]]) -> None:
    if not rows:
        return
    await conn.execute(
        QUERIES["upsert_sft_examples"],
        [key for key, _ in rows],
        [s.interaction_id for _, s in rows],
        [s.voter for _, s in rows],
        [UUID(s.event_id) for _, s in rows],
        [s.content for _, s in rows],
    )


async def select_pair(pool: asyncpg.Pool, pair_id: str) -> StoredPair | None:
    async with db.translate_errors():
        row = await pool.fetchrow(QUERIES["select_pair"], pair_id)
    if row is None:
        return None
    return StoredPair(
        pair_id=row["pair_id"], prompt_key=row["prompt_key"], pair=row["pair"], updated_at=row["updated_at"]
    )
