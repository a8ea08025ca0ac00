"""The annotation queue's I/O shell: requests in, leases out, verdicts in, combined expert votes out.

Each operation has the same shape: read, lock or lease in PostgreSQL -> decide with `queue_rules`
(pure) -> write the task and its outbox rows atomically -> wake the outbox relay. A completed task's
vote reaches `votes` through the outbox, so a crash after the commit still publishes it, and its
deterministic event_id makes a replay harmless.

Round trips on the annotators' hot path (the pool's release sends nothing, shared/db.py):
- lease: one statement authenticates the token, leases and returns the payload;
- verdict: the rules decide on the task as its lease returned it (remembered per caller, `LeaseMemory`),
  and one statement authenticates the token and writes the task, the verdict and the vote's outbox
  row only if the task is still as decided on (optimistic: the row lock is held for that statement,
  not across the decision). When it changed in between (another reviewer's verdict, a re-request, the
  lease ended), or the lease was taken elsewhere, one statement reads the task and its verdicts and
  the verdict decides again: each retry means another write went through.
The stats read the counts the database keeps in step with the tables (migration 0005), never the
tables themselves, and roll them up with `queue_stats` (pure). Requests over the per-domain cap wait
held until a tombstone or a closing verdict makes room (task_cap.py).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from aiokafka import ConsumerRecord
from pydantic import ValidationError

from services.feedback import auth, store, task_cap
from services.feedback import queue_rules as rules
from services.feedback.queue_metrics import QueueMetrics
from services.feedback.queue_stats import STATES, AnnotatorProgress, QueueStats, queue_stats, start_of_day
from services.feedback.settings import FeedbackSettings
from shared import topics
from shared.errors import AuthError, ConflictError, ContractError, NotFoundError, PipelineError
from shared.events import AnnotationRequest
from shared.kafka import OutRecord, dead_letter_for
from shared.outbox import OutboxRelay, insert_outbox
from shared.settings import Limits, limits_from

log = structlog.get_logger(__name__)

# Reads and decisions a verdict may take when its task keeps changing under it; every retry means
# another write to the task went through, and a task takes a handful of verdicts at most.
VERDICT_ATTEMPTS = 5


def _parse_request(record: ConsumerRecord, limits: Limits) -> AnnotationRequest | str:
    """The request, or for a tombstone (null value) the task_id the aggregator withdraws."""
    if record.value is None:
        if not record.key:
            raise ContractError("annotation request tombstone without a key")
        return record.key.decode("utf-8", "replace")
    try:
        return AnnotationRequest.model_validate_json(record.value, context={"limits": limits})
    except ValidationError as exc:
        errors = [dict(e) for e in exc.errors(include_url=False, include_input=False, include_context=False)]
        raise ContractError("invalid annotation request", errors=errors) from exc


@dataclass(kw_only=True, frozen=True, slots=True)
class Lease:
    """A task leased to an annotator: the request as queued, until when, at which priority, and to whom."""

    request: AnnotationRequest
    lease_expires_at: datetime
    priority: float
    annotator_id: str


@dataclass(kw_only=True, frozen=True, slots=True)
class Decision:
    """A verdict decided on a task as read: what to record, and the expert vote's outbox row (service, record)."""

    verdict: rules.Verdict
    outcome: rules.Outcome
    decided_at: datetime
    vote: tuple[str, OutRecord] | None


class LeaseMemory:
    """Leased tasks as their lease returned them, per caller, so that a verdict decides without reading again.

    Only a shortcut: the verdict's write checks that the task is unchanged and that the caller still holds
    its lease, so a stale entry costs one read, never a wrong verdict; a missing one (another instance
    leased the task, or the entry was pushed out) costs the same. At most `size` entries, oldest out first.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[store.Caller, str], tuple[store.Annotator, store.TaskRead]] = OrderedDict()

    def remember(self, caller: store.Caller, annotator: store.Annotator, task: store.TaskRead) -> None:
        if self.size <= 0:
            return
        self._entries[(caller, task.state.task_id)] = (annotator, task)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def take(self, caller: store.Caller, task_id: str) -> tuple[store.Annotator, store.TaskRead] | None:
        return self._entries.pop((caller, task_id), None)


@dataclass(kw_only=True, frozen=True, slots=True)
class VerdictRecorded:
    """What a verdict did to its task, and how many verdicts the task has now."""

    outcome: rules.Outcome
    verdicts: int


class TaskQueue:
    """The queue's operations, as the HTTP routes and the annotation-requests consumer call them."""

    def __init__(
        self, *, service: str, pool: asyncpg.Pool, settings: FeedbackSettings, relay: OutboxRelay, metrics: QueueMetrics
    ) -> None:
        self.service = service
        self.pool = pool
        self.settings = settings
        self.relay = relay
        self.metrics = metrics
        self.limits = limits_from(settings)
        self.leased = LeaseMemory(settings.leased_tasks_remembered)

    def _latest(self, records: Sequence[ConsumerRecord]) -> tuple[dict[str, AnnotationRequest | str], list[OutRecord]]:
        """The latest request (or tombstone: the task_id) per task_id, and the dead letters of the invalid ones."""
        latest: dict[str, AnnotationRequest | str] = {}
        dead: list[OutRecord] = []
        for record in records:
            try:
                request = _parse_request(record, self.limits)
            except ContractError as exc:
                log.warning("annotation_request_dead_lettered", **exc.to_log_context(), offset=record.offset)
                dead.append(dead_letter_for(self.settings.topic_prefix, self.service, record, exc))
                continue
            if isinstance(request, str):
                # A tombstone follows the requests of its task on the same partition: it wins.
                latest[request] = request
                continue
            seen = latest.get(request.task_id)
            if not isinstance(seen, AnnotationRequest) or request.updated_at >= seen.updated_at:
                latest[request.task_id] = request
        return latest, dead

    async def ingest(self, records: Sequence[ConsumerRecord]) -> None:
        """Upsert a batch of requests (latest per task_id wins), held over the cap and offered as room allows
        (task_cap.py); dead-letter the invalid ones; one transaction."""
        latest, dead = self._latest(records)
        rows = [self.task_row(r) for r in latest.values() if isinstance(r, AnnotationRequest)]
        withdrawn = [task_id for task_id, r in latest.items() if isinstance(r, str)]
        async with store.transaction(self.pool) as conn:
            # The domains where this batch may make room or add tasks, locked before any task row (task_cap.py).
            domains = {row.domain for row in rows} | await task_cap.select_task_domains(conn, sorted(latest))
            await task_cap.lock_domains(conn, domains)
            await store.withdraw_tasks(conn, withdrawn)
            await store.upsert_tasks(conn, rows)
            opened = await task_cap.offer_held_tasks(conn, domains, self.settings.max_open_tasks_per_domain)
            await insert_outbox(conn, self.service, dead)
        if dead:
            self.relay.notify()
        self.metrics.requests.labels("queued").inc(len(rows))
        self.metrics.held_opened.inc(len(opened))
        self.metrics.requests.labels("withdrawn").inc(len(withdrawn))
        self.metrics.requests.labels("dead_lettered").inc(len(dead))
        log.debug("annotation_requests_queued", tasks=len(rows), dead_lettered=len(dead))

    def task_row(self, request: AnnotationRequest) -> store.NewTask:
        settings = self.settings
        return store.NewTask(
            task_id=request.task_id,
            app_id=request.app_id,
            kind=request.kind,
            domain=request.domain,
            priority=request.priority,
            request=request.model_dump(mode="json"),
            request_updated_at=request.updated_at,
            reviewers_needed=rules.reviewers_for(
                request.domain, settings.reviewers_per_domain, settings.reviewers_default
            ),
        )

    async def lease(self, caller: store.Caller, domain: str | None) -> Lease | None:
        """The next task for this caller (in `domain`, or any of its domains), or None."""
        result = await store.lease_next_task(self.pool, caller, domain, self.settings.lease_seconds)
        if result is None:
            raise AuthError(auth.INVALID_TOKEN)
        annotator_id = result.annotator.annotator_id
        if domain is not None:
            # The statement leased only within the caller's domains: outside them it leased nothing.
            rules.check_domain(domain, result.annotator.domains)
        leased = result.task
        if leased is None:
            return None
        if result.read is not None and result.read.is_consistent:
            self.leased.remember(caller, result.annotator, result.read)
        self.metrics.leases.labels(leased.domain).inc()
        log.info("task_leased", task_id=leased.task_id, annotator_id=annotator_id, domain=leased.domain)
        request = AnnotationRequest.model_validate(leased.request)
        expires_at, priority = leased.lease_expires_at, leased.priority
        return Lease(request=request, lease_expires_at=expires_at, priority=priority, annotator_id=annotator_id)

    async def _locked(self, conn: Any, task_id: str, annotator: store.Annotator) -> store.LockedTask:
        locked = await store.select_task_for_update(conn, task_id)
        if locked is None:
            raise NotFoundError("no such task", task_id=task_id)
        rules.check_lease(locked.state, annotator.annotator_id, annotator.domains)
        return locked

    async def extend(self, annotator: store.Annotator, task_id: str) -> datetime:
        """Extend the annotator's lease by the lease duration from now; the new expiry."""
        async with store.transaction(self.pool) as conn:
            await self._locked(conn, task_id, annotator)
            expires_at = await store.extend_lease(conn, task_id, annotator.annotator_id, self.settings.lease_seconds)
        log.info("task_lease_extended", task_id=task_id, annotator_id=annotator.annotator_id)
        return expires_at

    async def release(self, annotator: store.Annotator, task_id: str) -> None:
        async with store.transaction(self.pool) as conn:
            await self._locked(conn, task_id, annotator)
            await store.release_lease(conn, task_id, annotator.annotator_id)
        log.info("task_released", task_id=task_id, annotator_id=annotator.annotator_id)

    async def skip(self, annotator: store.Annotator, task_id: str) -> None:
        async with store.transaction(self.pool) as conn:
            await self._locked(conn, task_id, annotator)
            await store.skip_task(conn, task_id, annotator.annotator_id)
        log.info("task_skipped", task_id=task_id, annotator_id=annotator.annotator_id)

    async def submit_verdict(self, caller: store.Caller, task_id: str, judgement: rules.Judgement) -> VerdictRecorded:
        """Record the caller's verdict; when it completes the task, its expert vote goes out in the same statement."""
        remembered = self.leased.take(caller, task_id)
        async with store.connection(self.pool) as conn:
            for _ in range(VERDICT_ATTEMPTS):
                annotator, task = remembered or await self._read_for_verdict(conn, caller, task_id)
                remembered = None
                decision = self._decide(annotator, task, judgement)
                written = await store.record_verdict(
                    conn, caller, task, decision.verdict, decision.outcome, decision.decided_at, decision.vote
                )
                if written is not None:
                    break
            else:
                raise ConflictError("the task kept changing while the verdict was recorded; retry", task_id=task_id)
        if written.held_waiting:  # the closed task made room: offer the best held one now (task_cap.py)
            await self.offer_held([task.state.domain])
        outcome = decision.outcome
        self._observe_verdict(task.state.domain, outcome)
        log.info(
            "verdict_recorded",
            task_id=task_id,
            annotator_id=annotator.annotator_id,
            task_status=outcome.status,
            is_escalated=outcome.is_escalated,
        )
        if decision.vote is not None:
            self.relay.notify()
        return VerdictRecorded(outcome=outcome, verdicts=len(task.verdicts) + 1)

    async def _read_for_verdict(
        self, conn: Any, caller: store.Caller, task_id: str
    ) -> tuple[store.Annotator, store.TaskRead]:
        read = await store.select_task_for_verdict(conn, caller, task_id)
        if read is None:
            raise AuthError(auth.INVALID_TOKEN)
        if read.task is None:
            raise NotFoundError("no such task", task_id=task_id)
        return read.annotator, read.task

    def _decide(self, annotator: store.Annotator, task: store.TaskRead, judgement: rules.Judgement) -> Decision:
        """The verdict's outcome on `task` as given, and the expert vote when it completes the task."""
        rules.check_lease(task.state, annotator.annotator_id, annotator.domains)
        rules.validate_verdict(task.state.kind, judgement.verdict, judgement.rewrite, judgement.shown_left)
        verdict = rules.Verdict.of(annotator.annotator_id, judgement)
        outcome = rules.combine_verdicts([*task.verdicts, verdict], task.reviewers_needed, self.settings.max_reviewers)
        decided_at = datetime.now(UTC)
        if outcome.status != "completed":
            return Decision(verdict=verdict, outcome=outcome, decided_at=decided_at, vote=None)
        vote = rules.expert_vote(AnnotationRequest.model_validate(task.request), outcome, decided_at)
        record = OutRecord(
            topic=topics.topic(self.settings.topic_prefix, topics.VOTES),
            key=vote.interaction_id.encode(),
            value=vote.model_dump_json().encode(),
        )
        return Decision(verdict=verdict, outcome=outcome, decided_at=decided_at, vote=(self.service, record))

    def _observe_verdict(self, domain: str, outcome: rules.Outcome) -> None:
        self.metrics.verdicts.labels(domain).inc()
        if outcome.status != "open":
            self.metrics.closed.labels(domain, outcome.status).inc()
        if outcome.is_escalated:
            self.metrics.escalations.labels(domain).inc()

    async def stats(
        self, domains: Sequence[str] | None, annotator_id: str | None = None, day_start: datetime | None = None
    ) -> QueueStats:
        """Queue depth, outcomes, agreement and position bias per domain (`domains` None: all).

        Agreement per annotator: everyone's, or with `annotator_id` only its own, and then also its
        verdicts since `day_start` (default: midnight UTC today). Reads only maintained counts.
        """
        async with store.connection(self.pool) as conn:
            counts = await store.count_tasks_by_domain(conn, domains)
            leases = await store.count_live_leases(conn, domains)
            cells = await store.sum_coincidences(conn, domains, annotator_id)
            agreement = await store.sum_agreement_counts(conn, domains, annotator_id)
            positions = await store.count_position_verdicts(conn, domains)
            progress = None
            if annotator_id is not None:
                since = day_start or start_of_day(datetime.now(UTC))
                done = await store.count_annotator_verdicts_since(conn, annotator_id, since)
                progress = AnnotatorProgress(annotator_id=annotator_id, day_start=since, verdicts_today=done)
        return queue_stats(
            counts,
            leases,
            domains=domains,
            cells=cells,
            agreement_counts=agreement,
            position_rows=positions,
            progress=progress,
        )

    async def offer_held(self, domains: Sequence[str] | None = None) -> int:
        """Open held tasks of `domains` (None: every domain holding some) while there is room; how many opened.

        The periodic pass and a verdict that closed a task call it; the annotation-requests consumer fills
        its batch's domains in its own transaction (task_cap.py).
        """
        async with store.transaction(self.pool) as conn:
            if domains is None:
                domains = sorted(await task_cap.select_held_domains(conn))
            await task_cap.lock_domains(conn, domains)
            opened = await task_cap.offer_held_tasks(conn, domains, self.settings.max_open_tasks_per_domain)
        self.metrics.held_opened.inc(len(opened))
        if opened:
            log.info("held_tasks_opened", tasks=len(opened))
        return len(opened)

    async def compact_counts(self) -> None:
        """Fold the maintained counts (a background job: reading them costs the rows appended since)."""
        folded = await store.compact_queue_counts(self.pool)
        log.debug("queue_counts_compacted", rows=folded)

    async def refresh_gauges(self) -> None:
        """Recompute the queue depth, agreement and position gauges behind /metrics."""
        try:
            stats = await self.stats(None)
        except PipelineError as exc:
            log.warning("queue_gauges_not_refreshed", **exc.to_log_context())
            return
        for domain, entry in stats.domains.items():
            for state in STATES:
                self.metrics.depth.labels(domain, state).set(getattr(entry, state))
            self.metrics.leased.labels(domain).set(entry.leased)
            if entry.agreement is not None and entry.agreement.alpha is not None:
                self.metrics.domain_alpha.labels(domain).set(entry.agreement.alpha)
            if entry.position is not None and entry.position.left_share is not None:
                self.metrics.position_left_share.labels(domain).set(entry.position.left_share)
        for annotator, agreement in stats.annotators.items():
            if agreement.alpha is not None:
                self.metrics.annotator_alpha.labels(annotator).set(agreement.alpha)
            if agreement.pairwise is not None:
                self.metrics.annotator_pairwise.labels(annotator).set(agreement.pairwise)
