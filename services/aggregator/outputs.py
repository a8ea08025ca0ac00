"""What a group's decision publishes, pure: pair and task messages, diffed against what was emitted.

A pair or task is published only when its state hash (its content without `event_id` and
`updated_at`) differs from the one stored when it was last published, so a replay publishes
nothing new. A pair published before and no longer supported is retracted: a tombstone (null
value) under its pair_id; likewise a task no longer needed is withdrawn with a tombstone under
its task_id. Event ids are uuid5(pair_id or task_id, state hash): the same state
always carries the same event_id.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from services.aggregator import routing
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


@dataclass(kw_only=True)
class OutputPlan:
    """The writes and messages of one group: stored state rows, emissions, and what is new (for stats)."""

    pair_rows: list[PairRow] = field(default_factory=list)
    task_rows: list[TaskRow] = field(default_factory=list)
    emissions: list[Emission] = field(default_factory=list)
    first_pairs: list[PreferencePair] = field(default_factory=list)
    first_tasks: list[AnnotationRequest] = field(default_factory=list)


def _hash(payload: object) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _pair_message(group: Group, spec: PairSpec, domain: str, now: datetime) -> tuple[PreferencePair, str]:
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
    state_hash = _hash(pair.model_dump(mode="json", exclude={"event_id", "updated_at"}))
    return pair.model_copy(update={"event_id": uuid.uuid5(_NAMESPACE, f"{spec.pair_id}:{state_hash}")}), state_hash


def _task_hash(spec: TaskSpec, domain: str, priority: float) -> str:
    candidates = [(a.interaction_id, a.content, a.model, a.model_version) for a in spec.candidates]
    return _hash([spec.kind, candidates, spec.reason, spec.evidence, spec.occurred_at, domain, priority])


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
            found = self.candidates[answer.interaction_id] = routing.redacted_candidate(answer.candidate())
        return found


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
    emitted_tasks: Mapping[str, str],
    rules: routing.RoutingRules,
    *,
    traffic: int,
    now: datetime,
) -> OutputPlan:
    """Diff the decision against the state hashes last published (pair_id / task_id -> hash)."""
    plan = OutputPlan()
    domain = routing.route_domain((a.domain for a in group.answers), group.prompt, rules)
    for spec in decision.pairs.values():
        pair, state_hash = _pair_message(group, spec, domain, now)
        if emitted_pairs.get(spec.pair_id) == state_hash:
            continue
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
        task_priority = routing.priority(traffic, spec.uncertainty, rules)
        state_hash = _task_hash(spec, domain, task_priority)
        if emitted_tasks.get(spec.task_id) == state_hash:
            continue
        request = _task_message(group, spec, domain, task_priority, state_hash, redacted, now)
        plan.task_rows.append(TaskRow(spec.task_id, spec.kind, state_hash))
        plan.emissions.append(Emission(topics.ANNOTATION_REQUESTS, spec.task_id, request.model_dump_json().encode()))
        if spec.task_id not in emitted_tasks:
            plan.first_tasks.append(request)
    for tid, state_hash in sorted(emitted_tasks.items()):
        if tid not in decision.tasks and state_hash != RETRACTED:
            # No longer needed (users settled it, or an expert did): a tombstone withdraws it from
            # the queue. The row exists, so its kind is kept by the upsert.
            plan.task_rows.append(TaskRow(tid, "withdrawn", RETRACTED))
            plan.emissions.append(Emission(topics.ANNOTATION_REQUESTS, tid, None))
    return plan
