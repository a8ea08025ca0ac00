"""What a group's decision publishes, pure: pair and task messages, diffed against what was emitted.

A pair is published only when its state hash (its content without `event_id` and `updated_at`)
differs from the one stored when it was last published, so a replay publishes nothing new. A pair
published before and no longer supported is retracted: a tombstone (null value) under its pair_id.

Tasks go through the annotation budget (budget.py, at most a cap of open tasks per domain): a group's
plan only *offers* the tasks that are new or changed since last offered (priority: `task_priority`,
the expected value of an expert's answer) and *releases* those no longer needed (users settled it, or
an expert did). Which tasks are open is decided per domain by the shell (budget_store.py), and
`plan_task_emissions` turns that into messages: a task that is open and not published as it is now
is published; one that is no longer open (withdrawn by the budget, or released) but was published
gets a tombstone under its task_id. Event ids are uuid5(pair_id or task_id, state hash): the same
state always carries the same event_id.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from services.aggregator import routing, state_hashes
from services.aggregator.budget import task_priority
from services.aggregator.pairs import (
    EDIT_MODEL,
    EXPERT_MODEL,
    Answer,
    Group,
    PairDecision,
    PairSpec,
    TaskSpec,
)
from shared import topics
from shared.events import AnnotationRequest, Candidate, Message, PreferencePair

RETRACTED = "retracted"
_NAMESPACE = uuid.UUID("0b8f3c2d-5e0b-4f1c-8a52-1f0e9a394b8e")
_NIL = uuid.UUID(int=0)
SYNTHETIC_MODELS = (EDIT_MODEL, EXPERT_MODEL)


@dataclass(frozen=True)
class Emission:
    """One outgoing message: a topic constant of shared.topics, its key, its value (None = tombstone)."""

    topic: str
    key: str
    value: bytes | None


@dataclass(frozen=True)
class PairRow:
    pair_id: str
    state_hash: str
    pair: dict | None


@dataclass(frozen=True)
class TaskRow:
    task_id: str
    kind: str
    state_hash: str


@dataclass(frozen=True)
class TaskOffer:
    """A task the pair math asks for, new or changed since it was last offered (the budget decides if it opens)."""

    task_id: str
    prompt_key: str
    kind: str
    domain: str
    priority: float
    state_hash: str
    body: bytes
    """The AnnotationRequest as published when it is open."""


@dataclass(kw_only=True)
class OutputPlan:
    """The writes and messages of one group: stored pair rows, pair emissions, task offers and releases."""

    pair_rows: list[PairRow] = field(default_factory=list)
    emissions: list[Emission] = field(default_factory=list)
    first_pairs: list[PreferencePair] = field(default_factory=list)
    task_offers: list[TaskOffer] = field(default_factory=list)
    task_releases: list[str] = field(default_factory=list)


def group_domain(group: Group, rules: routing.RoutingRules) -> str:
    """The domain a group's pairs and tasks carry, and its leaderboard counts are under (routing.route_domain)."""
    return routing.route_domain((a.domain for a in group.answers), group.prompt, rules)


def _pair_message(group: Group, spec: PairSpec, domain: str, now: datetime) -> tuple[PreferencePair, str]:
    """The pair (its event_id still the nil UUID: `_with_event_id` once it is published) and its state hash."""
    pair = PreferencePair(
        event_id=_NIL,
        app_id=group.app_id,
        pair_id=spec.pair_id,
        prompt_key=group.prompt_key,
        prompt=list(group.prompt),
        chosen=spec.chosen,
        rejected=spec.rejected,
        confidence=spec.confidence,
        method=spec.method,  # type: ignore[arg-type]
        evidence=spec.evidence,
        domain=domain,
        occurred_at=spec.occurred_at,
        updated_at=now,
    )
    return pair, state_hashes.pair_hash(pair)


def _with_event_id(pair: PreferencePair, state_hash: str) -> PreferencePair:
    """A pair's event_id: uuid5 of its pair_id and state hash (made only for the pairs published: most
    batches find a group's pairs as they were)."""
    return pair.model_copy(update={"event_id": uuid.uuid5(_NAMESPACE, f"{pair.pair_id}:{state_hash}")})


@dataclass
class _Redacted:
    """What annotators may see of one group, redacted once per group: a group's tasks share its prompt and
    answers (up to max_answers - 1 tasks show the same answer), and redaction is the costly part of a task."""

    prompt: tuple[Message, ...]
    candidates: dict[str, Candidate] = field(default_factory=dict)
    _prompt: list[Message] | None = None

    def redacted_prompt(self) -> list[Message]:
        if self._prompt is None:
            self._prompt = routing.redacted_prompt(self.prompt)
        return list(self._prompt)

    def candidate(self, answer: Answer) -> Candidate:
        found = self.candidates.get(answer.interaction_id)
        if found is None:
            found = self.candidates[answer.interaction_id] = shown_candidate(answer)
        return found


def _shown_candidate(answer: Answer) -> Candidate:
    return routing.redacted_candidate(answer.candidate())


_shown_short_candidate = functools.lru_cache(maxsize=routing.REDACTION_CACHE_SIZE)(_shown_candidate)


def shown_candidate(answer: Answer) -> Candidate:
    """An answer as annotators see it in a task: redacted; short ones cached (a frozen candidate, by the answer:
    a hot group's answers are shown again by its tasks after every vote on it)."""
    if len(answer.content) <= routing.REDACTION_CACHE_MAX_CHARS:
        return _shown_short_candidate(answer)
    return _shown_candidate(answer)


def _task_message(
    group: Group, spec: TaskSpec, domain: str, priority: float, state_hash: str, redacted: _Redacted, now: datetime
) -> AnnotationRequest:
    labels = ("A", "B")
    return AnnotationRequest(
        event_id=uuid.uuid5(_NAMESPACE, f"{spec.task_id}:{state_hash}"),
        app_id=group.app_id,
        task_id=spec.task_id,
        pair_id=spec.pair_id,
        prompt_key=group.prompt_key,
        kind=spec.kind,  # type: ignore[arg-type]
        domain=domain,
        priority=priority,
        prompt=redacted.redacted_prompt(),
        candidates={label: redacted.candidate(a) for label, a in zip(labels, spec.candidates, strict=False)},
        reason=spec.reason,
        evidence=spec.evidence,
        occurred_at=spec.occurred_at,
        updated_at=now,
    )


def plan_outputs(
    group: Group,
    decision: PairDecision,
    emitted_pairs: Mapping[str, str],
    offered_tasks: Mapping[str, str],
    emitted_tasks: Mapping[str, str],
    rules: routing.RoutingRules,
    *,
    traffic: int,
    now: datetime,
    domain: str | None = None,
) -> OutputPlan:
    """Diff the decision against what was published (pair_id / task_id -> hash) and last offered (task_id -> hash).

    `domain`: the group's routed domain if the caller has it (`group_domain`), else routed here.
    """
    plan = OutputPlan()
    if domain is None:
        domain = group_domain(group, rules)
    for spec in decision.pairs.values():
        key = state_hashes.pair_hash_key(group, spec, domain)
        known = state_hashes.PAIR_HASHES.get(key)
        if known is not None and emitted_pairs.get(spec.pair_id) == known:
            continue  # as published: the pair itself is not built
        pair, state_hash = _pair_message(group, spec, domain, now)
        state_hashes.PAIR_HASHES.put(key, state_hash)
        if emitted_pairs.get(spec.pair_id) == state_hash:
            continue
        pair = _with_event_id(pair, state_hash)
        body = pair.model_dump_json().encode()
        plan.pair_rows.append(PairRow(spec.pair_id, state_hash, json.loads(body)))
        plan.emissions.append(Emission(topics.PREFERENCE_PAIRS, spec.pair_id, body))
        if spec.pair_id not in emitted_pairs:
            plan.first_pairs.append(pair)
    for pid, state_hash in sorted(emitted_pairs.items()):
        if pid not in decision.pairs and state_hash != RETRACTED:
            plan.pair_rows.append(PairRow(pid, RETRACTED, None))
            plan.emissions.append(Emission(topics.PREFERENCE_PAIRS, pid, None))
    redacted = _Redacted(group.prompt)
    for spec in decision.tasks.values():
        priority = task_priority(spec, traffic, rules.priority_step)
        state_hash = state_hashes.task_hash(spec, domain, priority)
        if offered_tasks.get(spec.task_id) == state_hash:
            continue
        request = _task_message(group, spec, domain, priority, state_hash, redacted, now)
        plan.task_offers.append(
            TaskOffer(
                task_id=spec.task_id,
                prompt_key=group.prompt_key,
                kind=spec.kind,
                domain=domain,
                priority=priority,
                state_hash=state_hash,
                body=request.model_dump_json().encode(),
            )
        )
    # Offered before (open or waiting), or published before the budget existed and still live: no longer
    # needed, so the budget lets it go (and a published one gets its tombstone).
    live = {tid for tid, state_hash in emitted_tasks.items() if state_hash != RETRACTED}
    plan.task_releases = sorted((offered_tasks.keys() | live) - decision.tasks.keys())
    return plan


@dataclass(frozen=True)
class TaskState:
    """One task after the budget decided: open or not, its latest request, and what was published of it."""

    task_id: str
    prompt_key: str
    kind: str
    is_open: bool
    state_hash: str | None
    body: bytes | None
    published_hash: str | None
    """The state hash last published (RETRACTED after a tombstone), None if never published."""


@dataclass(kw_only=True)
class TaskEmissions:
    """What the budget's decisions publish: messages, the rows of what was published, and first publications."""

    emissions: list[Emission] = field(default_factory=list)
    published_rows: list[tuple[str, TaskRow]] = field(default_factory=list)
    first_published: list[bytes] = field(default_factory=list)


def plan_task_emissions(states: Iterable[TaskState]) -> TaskEmissions:
    """Publish what is open and not published as it is; a tombstone for what was published and is not open."""
    plan = TaskEmissions()
    for state in sorted(states, key=lambda s: s.task_id):
        is_live = state.published_hash not in (None, RETRACTED)
        if state.is_open and state.body is not None and state.published_hash != state.state_hash:
            plan.emissions.append(Emission(topics.ANNOTATION_REQUESTS, state.task_id, state.body))
            row = TaskRow(state.task_id, state.kind, state.state_hash or "")
            plan.published_rows.append((state.prompt_key, row))
            if state.published_hash is None:
                plan.first_published.append(state.body)
        elif not state.is_open and is_live:
            plan.emissions.append(Emission(topics.ANNOTATION_REQUESTS, state.task_id, None))
            # The row exists, so its kind is kept by the upsert.
            plan.published_rows.append((state.prompt_key, TaskRow(state.task_id, "withdrawn", RETRACTED)))
    return plan
