"""One consumed batch in one PostgreSQL transaction: lock, load, decide (pure), write state and outbox rows.

Locks, always in this order so two instances never deadlock: advisory locks on the batch's
interaction ids (sorted keys; they serialize a vote's lookup with its interaction's arrival, so a
vote is either found or parked and then claimed, never lost), then the row locks of the touched
groups (sorted prompt_key), then stats rows (sorted key). The caller commits the input offsets only
after this transaction committed, so everything here is idempotent: interactions by id, votes by
event_id, outputs by state hash.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from services.aggregator import store
from services.aggregator.evidence import collect_evidence, fold_votes
from services.aggregator.outputs import SYNTHETIC_MODELS, Emission, OutputPlan, plan_outputs
from services.aggregator.pairs import Group, PairRules, decide
from services.aggregator.routing import RoutingRules
from services.aggregator.stats import StatsDeltas, model_versions
from shared import topics
from shared.events import Interaction, Vote
from shared.kafka import OutRecord
from shared.outbox import insert_outbox
from shared.settings import Limits


@dataclass(kw_only=True, frozen=True)
class BatchRules:
    """What a batch needs besides its input (from the settings)."""

    service: str
    topic_prefix: str
    limits: Limits
    pairs: PairRules
    routing: RoutingRules
    stats_window_s: float
    parked_vote_ttl_s: float


@dataclass
class BatchInput:
    interactions: list[Interaction] = field(default_factory=list)
    votes: list[store.ParkedVote] = field(default_factory=list)
    dead_letters: list[OutRecord] = field(default_factory=list)


@dataclass(kw_only=True)
class BatchOutcome:
    """What one batch did (for metrics and logs)."""

    interactions: int = 0
    votes_applied: int = 0
    votes_parked: int = 0
    duplicates: int = 0
    pairs: int = 0
    tombstones: int = 0
    requests: int = 0
    dead_letters: int = 0


def _unique_interactions(interactions: Sequence[Interaction]) -> list[Interaction]:
    seen: dict[tuple[str, str], Interaction] = {}
    for interaction in interactions:
        seen.setdefault((interaction.app_id, interaction.interaction_id), interaction)
    return list(seen.values())


def _unique_votes(votes: Sequence[store.ParkedVote]) -> list[store.ParkedVote]:
    return list({p.vote.event_id: p for p in votes}.values())


def _record(prefix: str, emission: Emission) -> OutRecord:
    return OutRecord(topic=topics.topic(prefix, emission.topic), key=emission.key.encode(), value=emission.value)


async def apply_batch(conn: asyncpg.Connection, batch: BatchInput, rules: BatchRules, now: datetime) -> BatchOutcome:
    """Take a batch of interactions and votes in; call inside a transaction."""
    interactions, votes = _unique_interactions(batch.interactions), _unique_votes(batch.votes)
    outcome = BatchOutcome(dead_letters=len(batch.dead_letters))
    await store.lock_interaction_keys(
        conn,
        [(i.app_id, i.interaction_id) for i in interactions] + [(p.vote.app_id, p.vote.interaction_id) for p in votes],
    )
    fresh_votes = await store.insert_seen_votes(conn, [p.vote.event_id for p in votes])
    outcome.duplicates = len(batch.votes) - len(fresh_votes)
    votes = [p for p in votes if p.vote.event_id in fresh_votes]
    await store.insert_groups(conn, interactions)
    new_keys = await store.insert_interactions(conn, interactions)
    new_interactions = [i for i in interactions if (i.app_id, i.interaction_id) in new_keys]
    applied, parked = await _locate_votes(conn, new_keys, votes, rules, now)
    deltas = StatsDeltas(rules.stats_window_s)
    for interaction in new_interactions:
        deltas.add(interaction.app_id, interaction.response.model_version, interaction.occurred_at, interactions=1)
    for votes_of_group in applied.values():
        for vote, model_version in votes_of_group:
            deltas.add_vote(vote.app_id, model_version, vote)
    new_groups = {i.prompt_key or "" for i in new_interactions}
    by_group = {key: [vote for vote, _ in group_votes] for key, group_votes in applied.items()}
    records = await _decide_groups(conn, new_groups, by_group, deltas, rules, now, outcome)
    await store.add_stats(conn, deltas)
    await insert_outbox(conn, rules.service, [*records, *batch.dead_letters])
    outcome.interactions, outcome.votes_parked = len(new_interactions), len(parked)
    outcome.votes_applied = sum(len(v) for v in applied.values())
    return outcome


async def _locate_votes(
    conn: asyncpg.Connection,
    new_keys: set[tuple[str, str]],
    votes: list[store.ParkedVote],
    rules: BatchRules,
    now: datetime,
) -> tuple[dict[str, list[tuple[Vote, str]]], list[store.ParkedVote]]:
    """Votes to apply per group (with their answer's model_version), counting parked ones now claimed; park the rest."""
    claimed = await store.claim_parked_votes(conn, new_keys)
    incoming = [*claimed, *(p.vote for p in votes)]
    located = await store.select_interaction_groups(conn, [(v.app_id, v.interaction_id) for v in incoming])
    parked = [p for p in votes if (p.vote.app_id, p.vote.interaction_id) not in located]
    await store.insert_parked_votes(conn, parked, now + timedelta(seconds=rules.parked_vote_ttl_s))
    applied: dict[str, list[tuple[Vote, str]]] = defaultdict(list)
    for vote in incoming:
        if (vote.app_id, vote.interaction_id) in located:
            prompt_key, model_version = located[(vote.app_id, vote.interaction_id)]
            applied[prompt_key].append((vote, model_version))
    return applied, parked


async def _decide_groups(
    conn: asyncpg.Connection,
    new_groups: set[str],
    applied: dict[str, list[Vote]],
    deltas: StatsDeltas,
    rules: BatchRules,
    now: datetime,
    outcome: BatchOutcome,
) -> list[OutRecord]:
    """Lock and load the touched groups, decide each whose evidence changed, and write the results."""
    groups = await store.lock_groups(conn, new_groups | applied.keys())
    await store.load_group_state(conn, groups)
    vote_rows, pair_rows, task_rows, sft_rows, records = [], [], [], [], []
    for prompt_key in sorted(groups):
        rows = groups[prompt_key]
        state, changed = fold_votes(rows.votes, applied.get(prompt_key, ()))
        if not changed and prompt_key not in new_groups:
            continue  # replayed or outdated votes: nothing to decide again
        vote_rows += [(prompt_key, state[slot]) for slot in sorted(changed)]
        group = Group(
            prompt_key=prompt_key,
            app_id=rows.app_id,
            prompt=rows.prompt,
            answers=tuple(rows.answers),
            evidence=collect_evidence(state.values()),
        )
        decision = decide(group, rules.pairs)
        plan = plan_outputs(
            group,
            decision,
            rows.emitted_pairs,
            rows.emitted_tasks,
            rules.routing,
            traffic=len(rows.answers) + len(state),
            now=now,
        )
        pair_rows += [(prompt_key, row) for row in plan.pair_rows]
        task_rows += [(prompt_key, row) for row in plan.task_rows]
        sft_rows += [(prompt_key, example) for example in decision.sft]
        records += [_record(rules.topic_prefix, e) for e in plan.emissions]
        _count_outputs(plan, group.app_id, deltas, outcome)
    await store.upsert_votes(conn, vote_rows)
    await store.upsert_pairs(conn, pair_rows)
    await store.upsert_requests(conn, task_rows)
    await store.upsert_sft_examples(conn, sft_rows)
    return records


def _count_outputs(plan: OutputPlan, app_id: str, deltas: StatsDeltas, outcome: BatchOutcome) -> None:
    for emission in plan.emissions:
        if emission.topic == topics.ANNOTATION_REQUESTS:
            outcome.requests += 1
        elif emission.value is None:
            outcome.tombstones += 1
        else:
            outcome.pairs += 1
    for pair in plan.first_pairs:
        for version in model_versions((pair.chosen, pair.rejected), SYNTHETIC_MODELS):
            deltas.add(app_id, version, pair.occurred_at, pairs_emitted=1)
    for request in plan.first_tasks:
        for version in model_versions(request.candidates.values(), SYNTHETIC_MODELS):
            deltas.add(app_id, version, request.occurred_at, tasks_queued=1)
