"""One consumed batch in one PostgreSQL transaction: lock, load, decide (pure), write state and outbox rows.

Locks, always in this order so two instances never deadlock: advisory locks on the batch's
interaction ids and on every answer its votes name (sorted keys; they serialize a vote's lookup with
its answers' arrival, so a vote is either found or parked and then claimed, never lost), then the row
locks of the touched groups (sorted prompt_key), then advisory locks on the domains whose annotation
budget the groups' tasks touch (sorted keys; budget_store.admit_tasks: admission runs once per batch,
after every touched group was decided, and may withdraw or promote tasks of groups not locked here,
which only ever change under their domain's lock; budget_rebalance.py at start takes one domain lock
at a time and then stats rows, nothing before), then the voters of the outlier test (sorted (app_id,
user_ref); voter_store.lock_voters), then the leaderboard's shared rows (battle counts,
approval counts, boards: each sorted by key; leaderboard_store.record_changes), then stats rows (sorted
key), then model versions (sorted key; leaderboard_store.note_model_versions). One exception: the answers
named by parked votes claimed in this batch are locked after that first round (they are only known once
claimed); two instances crossing there is a deadlock PostgreSQL detects, and the aborted batch is
redelivered (a transient error). The caller commits the input offsets only after this transaction
committed, so everything here is idempotent: interactions by id, votes by event_id, outputs by state
hash, battles by pair_id, approval by the group's state. Votes refused here (admission.py) are
dead-lettered in the same transaction and their event ids forgotten, so a redriven copy is taken as new.

Vote quality (vote_quality.py): a quarantined vote is counted in the stats and folded into nothing; a
flagged voter's votes stay stored but do not count. A voter flagged here (or cleared by an admin) is
marked `redecide_pending`, and redecide.py decides the groups the voter touched again in its own
transactions (same lock order, no interaction locks: it adds no answer and no vote).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
import structlog

from services.aggregator import budget_store, leaderboard_store, stats_store, store, voter_store
from services.aggregator.admission import check_verdict, named_interactions, place_vote
from services.aggregator.leaderboard_counts import BoardChanges
from services.aggregator.outputs import (
    SYNTHETIC_MODELS,
    Emission,
    OutputPlan,
    TaskOffer,
    group_domain,
    plan_outputs,
)
from services.aggregator.pairs import Group, PairRules, decide
from services.aggregator.routing import RoutingRules
from services.aggregator.stats import StatsDeltas, model_versions
from services.aggregator.vote_quality import (
    CountedGroup,
    TestedGroup,
    VoterKey,
    count_group,
    fold_and_test,
    observations_by_voter,
    update_voter,
    voter_of,
)
from services.aggregator.voters import VoterRules
from shared import topics
from shared.errors import PipelineError
from shared.events import Interaction, VerdictVote, Vote
from shared.kafka import OutRecord, dead_letter_record
from shared.outbox import insert_outbox
from shared.settings import Limits

log = structlog.get_logger(__name__)


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
    max_open_tasks_per_domain: int
    voters: VoterRules


@dataclass
class BatchInput:
    interactions: list[Interaction] = field(default_factory=list)
    votes: list[store.ParkedVote] = field(default_factory=list)
    dead_letters: list[OutRecord] = field(default_factory=list)
    claims_parked: bool = True
    """Apply the votes parked for the batch's interactions with them (else they stay parked: intake.py)."""
    parked_ids: list[UUID] = field(default_factory=list)
    """Parked votes to apply by id, already admitted when they were parked (intake.py)."""


@dataclass(kw_only=True)
class BatchOutcome:
    """What one batch did (for metrics and logs)."""

    interactions: int = 0
    votes_applied: int = 0
    votes_parked: int = 0
    votes_quarantined: int = 0
    duplicates: int = 0
    pairs: int = 0
    tombstones: int = 0
    requests: int = 0
    withdrawals: int = 0
    dead_letters: int = 0
    budget: Counter[str] = field(default_factory=Counter)
    """The annotation budget's decisions by kind (admitted, rejected, withdrawn, promoted, released, ...)."""
    voters_flagged: int = 0


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
        [(i.app_id, i.interaction_id) for i in interactions]
        + [(p.vote.app_id, name) for p in votes for name in named_interactions(p.vote)],
    )
    fresh_votes = await store.insert_seen_votes(conn, [p.vote.event_id for p in votes])
    outcome.duplicates = len(batch.votes) - len(fresh_votes)
    votes = [p for p in votes if p.vote.event_id in fresh_votes]
    await store.insert_groups(conn, interactions)
    new_keys = await store.insert_interactions(conn, interactions)
    new_interactions = [i for i in interactions if (i.app_id, i.interaction_id) in new_keys]
    # Every interaction of the batch, not only the new ones: a redelivered interaction whose parked votes
    # were left parked (intake.py) takes them then.
    claims = {(i.app_id, i.interaction_id) for i in interactions} if batch.claims_parked else set()
    claimed = await store.claim_parked_votes(conn, claims) + await store.claim_parked_votes_by_id(
        conn, batch.parked_ids
    )
    applied, parked, refused = await _admit_votes(conn, claimed, votes, rules, now)
    deltas = StatsDeltas(rules.stats_window_s)
    for interaction in new_interactions:
        deltas.add(interaction.app_id, interaction.response.model_version, interaction.occurred_at, interactions=1)
    for votes_of_group in applied.values():
        for vote, model_version in votes_of_group:
            deltas.add_vote(vote.app_id, model_version, vote)
    new_groups = {i.prompt_key or "" for i in new_interactions}
    # Quarantined votes are in the stats (raw and quarantined) and move nothing.
    by_group = {
        key: kept
        for key, group_votes in applied.items()
        if (kept := [vote for vote, _ in group_votes if vote.quarantine_reason is None])
    }
    outcome.votes_quarantined = sum(len(v) for v in applied.values()) - sum(len(v) for v in by_group.values())
    records = await decide_groups(conn, new_groups, by_group, deltas, rules, now, outcome)
    await stats_store.add_stats(conn, deltas)
    await leaderboard_store.note_model_versions(conn, new_interactions)
    letters = await refuse_votes(conn, refused, rules)
    await insert_outbox(conn, rules.service, [*records, *batch.dead_letters, *letters])
    outcome.interactions, outcome.votes_parked = len(new_interactions), len(parked)
    outcome.votes_applied = sum(len(v) for v in applied.values())
    outcome.dead_letters += len(letters)
    return outcome


Refused = list[tuple[store.ParkedVote, PipelineError]]


async def _admit_votes(
    conn: asyncpg.Connection,
    claimed: list[store.ParkedVote],
    votes: list[store.ParkedVote],
    rules: BatchRules,
    now: datetime,
) -> tuple[dict[str, list[tuple[Vote, str]]], list[tuple[store.ParkedVote, str]], Refused]:
    """Votes to apply per group (with their answer's model_version), parked ones claimed now included.

    The others are parked until the answer they wait for arrives, or refused (admission.py).
    """
    # Locks already held are taken again at no cost; see the module docstring for the order.
    await store.lock_interaction_keys(conn, [(p.vote.app_id, n) for p in claimed for n in named_interactions(p.vote)])
    incoming, refused = await _check_verdicts(conn, [*claimed, *votes])
    located = await store.select_interaction_groups(
        conn, [(p.vote.app_id, name) for p in incoming for name in named_interactions(p.vote)]
    )
    groups = {key: prompt_key for key, (prompt_key, _) in located.items()}
    applied: dict[str, list[tuple[Vote, str]]] = defaultdict(list)
    parked: list[tuple[store.ParkedVote, str]] = []
    for parked_vote in incoming:
        vote = parked_vote.vote
        placement = place_vote(vote, groups)
        if placement.refusal is not None:
            refused.append((parked_vote, placement.refusal))
        elif placement.waiting_for is not None:
            parked.append((parked_vote, placement.waiting_for))
        else:
            applied[placement.prompt_key or ""].append((vote, located[(vote.app_id, vote.interaction_id)][1]))
    await store.insert_parked_votes(conn, parked, now + timedelta(seconds=rules.parked_vote_ttl_s))
    return applied, parked, refused


async def _check_verdicts(
    conn: asyncpg.Connection, votes: list[store.ParkedVote]
) -> tuple[list[store.ParkedVote], Refused]:
    """Split off the verdicts that are not about a task the aggregator issued, as issued."""
    issued = await store.select_issued_tasks(conn, [p.vote.task_id for p in votes if isinstance(p.vote, VerdictVote)])
    kept: list[store.ParkedVote] = []
    refused: Refused = []
    for parked_vote in votes:
        vote = parked_vote.vote
        refusal = check_verdict(vote, issued.get(vote.task_id)) if isinstance(vote, VerdictVote) else None
        if refusal is None:
            kept.append(parked_vote)
        else:
            refused.append((parked_vote, refusal))
    return kept, refused


async def refuse_votes(conn: asyncpg.Connection, refused: Refused, rules: BatchRules) -> list[OutRecord]:
    """Dead letters of refused votes; their ids are forgotten, so a redriven copy is not taken for a duplicate."""
    if not refused:
        return []
    await store.forget_seen_votes(conn, [p.vote.event_id for p, _ in refused])
    for code in sorted({error.code for _, error in refused}):
        log.warning("votes_refused", error_code=code, count=sum(1 for _, e in refused if e.code == code))
    return [
        dead_letter_record(
            rules.topic_prefix,
            service=rules.service,
            error=error,
            raw_value=p.vote.model_dump_json().encode(),
            source_topic=p.source_topic,
            source_partition=p.source_partition,
            source_offset=p.source_offset,
            source_key=p.vote.interaction_id.encode(),
        )
        for p, error in refused
    ]


async def decide_groups(
    conn: asyncpg.Connection,
    new_groups: set[str],
    applied: dict[str, list[Vote]],
    deltas: StatsDeltas,
    rules: BatchRules,
    now: datetime,
    outcome: BatchOutcome,
    *,
    redecide: frozenset[str] = frozenset(),
    also_lock: Sequence[VoterKey] = (),
) -> list[OutRecord]:
    """Lock and load the touched groups, decide each whose counted evidence changed, and write the results.

    `redecide`: groups to look at again without new input (a voter's flag changed: redecide.py), with
    `also_lock` the voters whose rows that caller writes after this (locked here, in the voters' turn).
    """
    groups = await store.lock_groups(conn, new_groups | applied.keys() | redecide)
    new_voters = {voter for votes in applied.values() for v in votes if (voter := voter_of(v)) is not None}
    flagged = await store.load_group_state(conn, groups, new_voters)
    held = {prompt_key: rows.budget for prompt_key, rows in groups.items()}
    vote_rows, mark_rows, pair_rows, sft_rows, records = [], [], [], [], []
    offers: list[TaskOffer] = []
    releases: list[str] = []
    board_changes, tested_groups = BoardChanges(), []
    for prompt_key in sorted(groups):
        rows = groups[prompt_key]
        tested = fold_and_test(rows.votes, rows.marks, applied.get(prompt_key, ()), flagged, rules.voters)
        counted = count_group(rows.votes, rows.marks, tested, flagged)
        if not counted.is_changed and prompt_key not in new_groups:
            continue  # replayed or outdated votes, no flag changed: nothing to decide again
        tested_groups.append(tested)
        vote_rows += [(prompt_key, counted.state[slot], counted.marks[slot]) for slot in counted.written]
        mark_rows += [(prompt_key, slot, counted.marks[slot]) for slot in counted.remarked]
        _count_effective(rows, counted, deltas)
        group = Group(
            prompt_key=prompt_key,
            app_id=rows.app_id,
            prompt=rows.prompt,
            answers=tuple(rows.answers),
            evidence=tested.evidence,  # collect_evidence(counted.after.values()), already collected
        )
        decision = decide(group, rules.pairs)
        domain = group_domain(group, rules.routing)  # routed once: its pairs, tasks and counts carry it
        # Counted under the domain it stays in, a group's approval moves only by the slots this batch changed.
        before, after = counted.changed_counts() if rows.counted_domain == domain else (counted.before, counted.after)
        board_changes.add_group(group, before, after, rules.routing, domain=domain)
        plan = plan_outputs(
            group,
            decision,
            rows.emitted_pairs,
            {task_id: task.state_hash for task_id, task in held.get(prompt_key, {}).items()},
            rows.emitted_tasks,
            rules.routing,
            traffic=len(rows.answers) + len(counted.state),
            now=now,
            domain=domain,
        )
        pair_rows += [(prompt_key, row) for row in plan.pair_rows]
        sft_rows += [(prompt_key, example) for example in decision.sft]
        records += [_record(rules.topic_prefix, e) for e in plan.emissions]
        offers += plan.task_offers
        releases += plan.task_releases
        _count_outputs(plan, group.app_id, deltas, outcome)
    budget = await budget_store.admit_tasks(
        conn,
        offers,
        releases,
        {t: b for tasks in held.values() for t, b in tasks.items()},
        rules.max_open_tasks_per_domain,
    )
    records += [_record(rules.topic_prefix, e) for e in budget.emissions]
    _count_tasks(budget, deltas, outcome)
    await store.upsert_votes(conn, vote_rows)
    await store.update_vote_marks(conn, mark_rows)
    await _update_voters(conn, applied, tested_groups, also_lock, rules, now, outcome)
    await store.upsert_pairs(conn, pair_rows)
    await leaderboard_store.record_changes(conn, board_changes, [row for _, row in pair_rows], groups)
    await store.upsert_sft_examples(conn, sft_rows)
    return records


def _count_effective(rows: store.GroupRows, counted: CountedGroup, deltas: StatsDeltas) -> None:
    """Effective votes gained and lost, under the model_version of the answer each is about."""
    versions = {a.interaction_id: a.model_version for a in rows.answers}
    for vote, sign in counted.effective:
        deltas.add_effective(vote.app_id, versions.get(vote.interaction_id, ""), vote, sign)


async def _update_voters(
    conn: asyncpg.Connection,
    applied: dict[str, list[Vote]],
    tested_groups: list[TestedGroup],
    also_lock: Sequence[VoterKey],
    rules: BatchRules,
    now: datetime,
    outcome: BatchOutcome,
) -> None:
    """Lock the voters (new votes, new observations) in key order and add what this batch saw of each."""
    seen: dict[VoterKey, list[Vote]] = defaultdict(list)
    for vote in (v for votes in applied.values() for v in votes):
        if (voter := voter_of(vote)) is not None:
            seen[voter].append(vote)
    observations = observations_by_voter(tested_groups)
    states = await voter_store.lock_voters(conn, [*seen, *observations, *also_lock])
    updated = [
        update_voter(states[key], observations.get(key, []), seen.get(key, []), rules.voters, now)
        for key in sorted(seen.keys() | observations.keys())
    ]
    await voter_store.update_voters(conn, updated)
    outcome.voters_flagged += sum(1 for state in updated if state.flagged and not states[state.key].flagged)
    if outcome.voters_flagged:
        log.info("voters_flagged", count=outcome.voters_flagged)


def _count_outputs(plan: OutputPlan, app_id: str, deltas: StatsDeltas, outcome: BatchOutcome) -> None:
    for emission in plan.emissions:
        if emission.value is None:
            outcome.tombstones += 1
        else:
            outcome.pairs += 1
    for pair in plan.first_pairs:
        for version in model_versions((pair.chosen, pair.rejected), SYNTHETIC_MODELS):
            deltas.add(app_id, version, pair.occurred_at, pairs_emitted=1)


def _count_tasks(budget: budget_store.BudgetOutcome, deltas: StatsDeltas, outcome: BatchOutcome) -> None:
    """A task counts as queued (feedback-stats) when first published, whichever group's batch opened it."""
    for emission in budget.emissions:
        if emission.value is None:
            outcome.withdrawals += 1
        else:
            outcome.requests += 1
    outcome.budget.update(budget.decisions)
    for request in budget.first_published:
        for version in model_versions(request.candidates.values(), SYNTHETIC_MODELS):
            deltas.add(request.app_id, version, request.occurred_at, tasks_queued=1)
