"""The live leaderboard: debounced refits of the boards whose counts changed, published through the outbox.

Batches keep the counts and mark a board changed (leaderboard_store.record_changes). Every
instance looks every `poll` for boards due: changes not refitted yet, quiet for `debounce_s`, or
waiting longer than `max_delay_s` under constant change. A refit, per board:

1. a session advisory lock of the board (`pg_try_advisory_lock`): one refit per board at a time
   across instances; a board another instance holds is skipped (it is refitting it). Batches never
   take it, so they never wait for a refit;
2. one repeatable-read snapshot of the board's change counter, counts and release order (a board
   refitted meanwhile by another instance is left alone);
3. the fit, bootstrap, fragility and alarm checks, off the event loop (`asyncio.to_thread`, one
   BLAS thread);
4. one transaction: the body and the outbox row on `model-leaderboard` when the content changed
   (not on computed_at alone), the alarm's transitions on `model-alerts`, and the refit counter.

So boards never conflict: a board's refits are serialized, each from one snapshot, published in
commit order by the one outbox relay. The latest body is stored with the board, so every instance's
route serves the same one. Each instance's regression gauges follow the stored alarm state.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from threadpoolctl import ThreadpoolController

from services.aggregator import leaderboard_store as boards
from services.aggregator import store
from services.aggregator.evidence import collect_evidence
from services.aggregator.leaderboard_counts import WHOLE_APP, BoardChanges, BoardKey
from services.aggregator.leaderboard_outputs import (
    AlertId,
    BoardResult,
    BoardRules,
    alert_transitions,
    compute_board,
    empty_body,
)
from services.aggregator.pairs import Group
from services.aggregator.routing import RoutingRules
from shared import db, topics
from shared.errors import NotFoundError, TransientError
from shared.events import ModelAlert, ModelLeaderboard, utcnow
from shared.kafka import OutRecord
from shared.outbox import OutboxRelay, insert_outbox

log = structlog.get_logger(__name__)


@dataclass(kw_only=True, frozen=True)
class LeaderboardRules:
    """The refit worker's rules (from the settings: services/aggregator/rules.py)."""

    service: str
    topic_prefix: str
    board: BoardRules
    routing: RoutingRules
    debounce_s: float
    max_delay_s: float
    boards_per_run: int
    backfill_batch: int


class LeaderboardMetrics:
    """The alarm's gauge and the refits' figures, in the service's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.regression = Gauge(
            "aggregator_model_regression",
            "1 while a model's newest version is below its predecessor with non-overlapping intervals, else 0",
            ["app_id", "domain", "model", "versions", "metric"],
            registry=registry,
        )
        self.refits = Counter(
            "aggregator_leaderboard_refits", "Board refits by outcome", ["outcome"], registry=registry
        )
        self.refit_seconds = Histogram(
            "aggregator_leaderboard_refit_seconds",
            "One board's refit: snapshot, fit and bootstrap, write",
            registry=registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    def set_alarm(self, board: BoardKey, alert_id: AlertId, is_raised: bool) -> None:
        model, previous_version, new_version, metric = alert_id
        labels = (board.app_id, board.domain, model, f"{previous_version}->{new_version}", metric)
        self.regression.labels(*labels).set(1 if is_raised else 0)


@dataclass(kw_only=True)
class LeaderboardWorker:
    """Refits due boards (run by the runtime's jobs), serves the latest body, and backfills old state."""

    pool: asyncpg.Pool
    relay: OutboxRelay
    rules: LeaderboardRules
    metrics: LeaderboardMetrics
    blas: ThreadpoolController = field(default_factory=ThreadpoolController)

    async def run_once(self) -> int:
        """Refit the boards due now (at most `boards_per_run`); how many were refitted here."""
        rules = self.rules
        due = await boards.select_due_boards(self.pool, rules.debounce_s, rules.max_delay_s, rules.boards_per_run)
        refitted = 0
        for board in due:
            try:
                refitted += await self.refit(board)
            except TransientError:
                raise  # the database is away: the next run retries every board
            except Exception:
                # One board's bug must not hold up the others (it stays due and is retried next run).
                self.metrics.refits.labels("failed").inc()
                log.exception("leaderboard_refit_failed", board=board.topic_key)
        return refitted

    async def refit(self, board: BoardKey) -> bool:
        """Refit one board if no other instance is at it and it has changes; True when it did."""
        with self.metrics.refit_seconds.time():
            async with db.translate_errors(), self.pool.acquire() as conn:
                if not await boards.try_lock_board(conn, board):
                    self.metrics.refits.labels("skipped").inc()
                    return False
                try:
                    return await self._refit_locked(conn, board)
                finally:
                    if not conn.is_closed():
                        try:
                            await boards.unlock_board(conn, board)
                        except BaseException:
                            # The pool's release does not unlock (shared/db.py): a connection still holding
                            # the board's lock never goes back to it.
                            conn.terminate()
                            raise

    async def _refit_locked(self, conn: asyncpg.Connection, board: BoardKey) -> bool:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await boards.load_board_input(conn, board)
        if snapshot is None or snapshot.change_seq <= snapshot.refitted_seq:
            return False  # another instance refitted it between the look and the lock
        now = utcnow()
        result = await asyncio.to_thread(self._compute, board, snapshot, now)
        is_new = result.content_hash != snapshot.body_hash
        async with conn.transaction():
            stored = await boards.select_board_alerts(conn, board)
            alerts, states = alert_transitions(board, result, stored, self.rules.board.alarm_min_votes, now)
            records = [self._alert_record(alert) for alert in alerts]
            if is_new:
                await boards.update_board_body(conn, board, result.body, result.content_hash, now)
                records.insert(0, self._board_record(board, result.body))
            await boards.upsert_board_alerts(conn, board, states)
            await boards.mark_board_refitted(conn, board, snapshot.change_seq, snapshot.snapshot_at)
            await insert_outbox(conn, self.rules.service, records)
        if records:
            self.relay.notify()
        for alert_id, state in states.items():
            self.metrics.set_alarm(board, alert_id, state.is_raised)
        self._log(board, result.body, is_new, alerts)
        return True

    def _compute(self, board: BoardKey, snapshot: boards.BoardInput, now: datetime) -> BoardResult:
        """The refit's CPU part, in a worker thread with one BLAS thread: on small matrices OpenBLAS's
        own threads only add contention (ten times the wall time on a busy 2-core machine)."""
        with self.blas.limit(limits=1, user_api="blas"):
            return compute_board(
                board, snapshot.battles, snapshot.approvals, snapshot.release_order, self.rules.board, now
            )

    def _board_record(self, board: BoardKey, body: dict) -> OutRecord:
        name = topics.topic(self.rules.topic_prefix, topics.MODEL_LEADERBOARD)
        value = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        return OutRecord(topic=name, key=board.topic_key.encode(), value=value)

    def _alert_record(self, alert: ModelAlert) -> OutRecord:
        name = topics.topic(self.rules.topic_prefix, topics.MODEL_ALERTS)
        return OutRecord(topic=name, key=alert.app_id.encode(), value=alert.model_dump_json().encode())

    def _log(self, board: BoardKey, body: dict, is_new: bool, alerts: list[ModelAlert]) -> None:
        self.metrics.refits.labels("published" if is_new else "unchanged").inc()
        if is_new:
            versions = len(body["models"])
            log.info("leaderboard_published", board=board.topic_key, battles=body["battles"], versions=versions)
        for alert in alerts:
            log.info(
                "model_alert",
                status=alert.status,
                board=board.topic_key,
                model=alert.model,
                previous_version=alert.previous_version,
                new_version=alert.new_version,
                metric=alert.metric,
            )

    async def sync_gauges(self) -> int:
        """Set this instance's regression gauges from the stored alarm state (another instance may have moved it)."""
        rows = await boards.select_alert_states(self.pool)
        for r in rows:
            alert_id = (r["model"], r["previous_version"], r["new_version"], r["metric"])
            self.metrics.set_alarm(BoardKey(r["app_id"], r["domain"]), alert_id, r["is_raised"])
        return len(rows)

    async def body_for(self, app_id: str, domain: str | None) -> dict:
        """The latest body of a board; before its first refit (or for a domain with nothing), an empty one."""
        board = BoardKey(app_id, domain or WHOLE_APP)
        exists, body = await boards.select_board_body(self.pool, board)
        if body is not None:
            # jsonb keeps no key order: the contract puts the fields back in the order the topic has them.
            return ModelLeaderboard.model_validate(body).model_dump(mode="json")
        if not await boards.is_known_app(self.pool, app_id):
            raise NotFoundError(f"unknown app_id {app_id!r}: no interaction of this app was taken in", app_id=app_id)
        reason = "the first leaderboard of this board is being computed (within seconds)" if exists else None
        return empty_body(board, self.rules.board, utcnow(), reason)

    async def backfill(self) -> int:
        """Count the approval of groups taken in before the leaderboard existed; how many groups were counted.

        A batch of groups per transaction, locked like a batch locks them (then the counts), so a
        concurrent batch or another instance's backfill never counts a group twice.
        """
        counted, after = 0, ""
        while True:
            async with db.translate_errors(), self.pool.acquire() as conn, conn.transaction():
                keys = await boards.select_uncounted_groups(conn, after, self.rules.backfill_batch)
                if not keys:
                    return counted
                groups = await store.lock_groups(conn, keys)
                await store.load_group_state(conn, groups)
                changes = BoardChanges()
                for key, rows in sorted(groups.items()):
                    group = Group(
                        prompt_key=key,
                        app_id=rows.app_id,
                        prompt=rows.prompt,
                        answers=tuple(rows.answers),
                        evidence=collect_evidence(()),
                    )
                    # Before = after: a group counted meanwhile (by a batch) moves by nothing.
                    changes.add_group(group, rows.counted_votes(), rows.counted_votes(), self.rules.routing)
                await boards.record_changes(conn, changes, [], groups)
            counted, after = counted + len(keys), keys[-1]

    async def backfill_until_done(self, retry_s: float) -> None:
        """Run `backfill` once at start, retrying through database outages."""
        while True:
            try:
                counted = await self.backfill()
            except TransientError:
                await asyncio.sleep(retry_s)
                continue
            if counted:
                log.info("leaderboard_backfilled", groups=counted)
            return
