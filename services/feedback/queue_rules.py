"""The annotation queue's rules as pure functions: lease checks, verdict validation, combining, the task view.

Combining verdicts (N reviewers per task, N a per-domain setting):
- A task stays open until it has `reviewers_needed` verdicts.
- Then the combined verdict is the one a strict majority (more than half) of the reviewers gave.
  Its agreement is the share of reviewers who gave it; the deciding annotator is the first of them.
- Without a strict majority (a 1-1 split, or A/B/tie among three) one more reviewer is asked for,
  up to `max_reviewers` (never below the domain's own N). At the cap the task becomes `contested`:
  it publishes nothing and stays visible in the stats, for a lead to look at.

Verdicts by task kind:
- compare: "A" or "B" (that answer is better), "tie" (equally good), "both_bad".
- rewrite (a lone answer): "A" (the answer is fine as it is) or "both_bad" (it is bad), which then
  needs `rewrite` (the better answer).
- A `rewrite` is accepted only with "both_bad": it is the better answer when no candidate is good.
- `shown_left` (which task side the screen showed on the left) is "A" or "B" on a compare task; a
  rewrite task shows its one answer, so only "A" fits there.

The stats roll-up is in queue_stats.py, agreement in agreement.py, position bias in position_bias.py.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from shared import pii
from shared.errors import ConflictError, ContractError, ForbiddenError
from shared.events import AnnotationRequest, VerdictVote

VERDICTS: tuple[str, ...] = ("A", "B", "tie", "both_bad")
VERDICTS_BY_KIND: dict[str, frozenset[str]] = {
    "compare": frozenset(VERDICTS),
    "rewrite": frozenset(("A", "both_bad")),
}
# event_id of a task's expert vote: uuid5(namespace, task_id + "verdict"), so a replay repeats it.
VERDICT_EVENT_NAMESPACE = uuid.UUID("5f1f6f0e-2b8e-5c55-9f5e-6a0d0c4e7a11")

TaskStatus = Literal["open", "completed", "contested"]


@dataclass(kw_only=True, frozen=True, slots=True)
class TaskState:
    """A locked task's lease state, read with the database clock (`now`)."""

    task_id: str
    domain: str
    kind: str
    status: TaskStatus
    leases: Mapping[str, datetime]
    reviewed_by: Sequence[str]
    now: datetime


@dataclass(kw_only=True, frozen=True, slots=True)
class Judgement:
    """What an annotator submits on a task; the queue records it as that annotator's `Verdict`."""

    verdict: str
    rewrite: str | None = None
    comment: str | None = None
    # The task's own side the annotator's screen showed on the left ("A" | "B"), when the client says.
    shown_left: str | None = None


@dataclass(kw_only=True, frozen=True, slots=True)
class Verdict:
    """One annotator's recorded verdict on a task."""

    annotator_id: str
    verdict: str
    rewrite: str | None = None
    comment: str | None = None
    shown_left: str | None = None

    @classmethod
    def of(cls, annotator_id: str, judgement: Judgement) -> Verdict:
        return cls(
            annotator_id=annotator_id,
            verdict=judgement.verdict,
            rewrite=judgement.rewrite,
            comment=judgement.comment,
            shown_left=judgement.shown_left,
        )


@dataclass(kw_only=True, frozen=True, slots=True)
class Outcome:
    """What a task becomes after a verdict: still open (maybe escalated), completed, or contested."""

    status: TaskStatus
    reviewers_needed: int
    verdict: str | None = None
    agreement: float | None = None
    decided_by: str | None = None
    reviewers: tuple[str, ...] = ()
    rewrite: str | None = None
    comment: str | None = None
    is_escalated: bool = False

    def to_result(self) -> dict[str, Any] | None:
        """The `result` column: what was decided (None while open)."""
        if self.status == "open":
            return None
        return {
            "verdict": self.verdict,
            "agreement": self.agreement,
            "decided_by": self.decided_by,
            "reviewers": list(self.reviewers),
        }


def reviewers_for(domain: str, per_domain: Mapping[str, int], default: int) -> int:
    """How many verdicts a new task of `domain` needs."""
    return max(1, per_domain.get(domain, default))


def check_domain(domain: str, domains: Iterable[str]) -> None:
    """Raises ForbiddenError when `domain` is outside the token's domains."""
    if domain not in set(domains):
        raise ForbiddenError("task or domain outside the token's domains", domain=domain)


def check_lease(task: TaskState, annotator_id: str, domains: Iterable[str]) -> datetime:
    """The expiry of `annotator_id`'s live lease on `task`, or the reason there is none.

    Raises ForbiddenError (another domain, or only someone else holds it) or ConflictError
    (already judged, task closed, lease expired or never taken).
    """
    check_domain(task.domain, domains)
    if annotator_id in task.reviewed_by:
        raise ConflictError("this annotator already judged the task", task_id=task.task_id)
    if task.status != "open":
        raise ConflictError(f"task is {task.status}", task_id=task.task_id)
    expires_at = task.leases.get(annotator_id)
    if expires_at is not None and expires_at > task.now:
        return expires_at
    if expires_at is not None:
        raise ConflictError("lease expired", task_id=task.task_id)
    if any(expiry > task.now for expiry in task.leases.values()):
        raise ForbiddenError("task is leased to another annotator", task_id=task.task_id)
    raise ConflictError("no lease on this task", task_id=task.task_id)


def validate_verdict(kind: str, verdict: str, rewrite: str | None, shown_left: str | None = None) -> None:
    """Raises ContractError when a verdict does not fit the task kind (see the module docstring)."""
    if kind == "rewrite" and shown_left not in (None, "A"):
        raise ContractError(
            "a rewrite task shows one answer, A",
            errors=[{"loc": ["body", "shown_left"], "msg": "a rewrite task takes only 'A'", "type": "shown_left"}],
        )
    if verdict not in VERDICTS_BY_KIND[kind]:
        allowed = sorted(VERDICTS_BY_KIND[kind])
        raise ContractError(
            f"verdict {verdict!r} does not fit a {kind} task",
            errors=[{"loc": ["body", "verdict"], "msg": f"a {kind} task takes one of {allowed}", "type": "verdict"}],
        )
    if rewrite is not None and verdict != "both_bad":
        raise ContractError(
            "a rewrite goes with both_bad",
            errors=[{"loc": ["body", "rewrite"], "msg": "rewrite is accepted only with both_bad", "type": "rewrite"}],
        )
    if kind == "rewrite" and verdict == "both_bad" and not rewrite:
        raise ContractError(
            "a rewrite task judged both_bad needs the better answer",
            errors=[{"loc": ["body", "rewrite"], "msg": "required with both_bad on a rewrite task", "type": "missing"}],
        )


def combine_verdicts(verdicts: Sequence[Verdict], reviewers_needed: int, max_reviewers: int) -> Outcome:
    """The task's outcome given its verdicts (oldest first); see the module docstring for the rule."""
    if len(verdicts) < reviewers_needed:
        return Outcome(status="open", reviewers_needed=reviewers_needed)
    reviewers = tuple(v.annotator_id for v in verdicts)
    counts = Counter(v.verdict for v in verdicts)
    winner, votes = counts.most_common(1)[0]
    if votes * 2 > len(verdicts):
        side = [v for v in verdicts if v.verdict == winner]
        return Outcome(
            status="completed",
            reviewers_needed=reviewers_needed,
            verdict=winner,
            agreement=votes / len(verdicts),
            decided_by=side[0].annotator_id,
            reviewers=reviewers,
            rewrite=next((v.rewrite for v in side if v.rewrite), None),
            comment=next((v.comment for v in side if v.comment), None),
        )
    if len(verdicts) < max(max_reviewers, reviewers_needed):
        return Outcome(status="open", reviewers_needed=len(verdicts) + 1, is_escalated=True)
    return Outcome(status="contested", reviewers_needed=reviewers_needed, reviewers=reviewers)


def verdict_event_id(task_id: str) -> uuid.UUID:
    return uuid.uuid5(VERDICT_EVENT_NAMESPACE, task_id + "verdict")


def expert_vote(request: AnnotationRequest, outcome: Outcome, completed_at: datetime) -> VerdictVote:
    """The one combined expert vote a completed task publishes to `votes` (keyed by A's interaction_id)."""
    assert outcome.status == "completed" and outcome.verdict is not None and outcome.decided_by is not None
    a = request.candidates["A"]
    b = request.candidates.get("B")
    return VerdictVote(
        event_id=verdict_event_id(request.task_id),
        occurred_at=completed_at,
        received_at=completed_at,
        app_id=request.app_id,
        interaction_id=a.interaction_id,
        source="expert",
        annotator_id=outcome.decided_by,
        kind="verdict",
        task_id=request.task_id,
        verdict=outcome.verdict,  # type: ignore[arg-type]
        rewrite=outcome.rewrite,
        comment=outcome.comment,
        a_interaction_id=a.interaction_id,
        b_interaction_id=b.interaction_id if b is not None else None,
        reviewers=list(outcome.reviewers),
        agreement=outcome.agreement,
    )


def task_view(request: AnnotationRequest, lease_expires_at: datetime, priority: float) -> dict[str, Any]:
    """The leased task as an annotator sees it; text is redacted again here (defense in depth)."""
    return {
        "task_id": request.task_id,
        "app_id": request.app_id,
        "pair_id": request.pair_id,
        "kind": request.kind,
        "domain": request.domain,
        "priority": priority,
        "reason": request.reason,
        "prompt": [m.model_dump(mode="json") for m in pii.redact_messages(request.prompt)],
        "candidates": {
            label: {
                "content": pii.redact(candidate.content),
                "interaction_id": candidate.interaction_id,
                "model": candidate.model,
                "model_version": candidate.model_version,
            }
            for label, candidate in sorted(request.candidates.items())
        },
        "lease_expires_at": lease_expires_at.isoformat(),
    }
