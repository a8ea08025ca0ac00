"""Streaming one export: a consistent snapshot read in chunks, shaped and encoded off the event loop.

Order of effects: take an export slot (503 when all are busy) -> acquire a connection -> BEGIN
ISOLATION LEVEL REPEATABLE READ READ ONLY -> the first statement fixes the snapshot and records it
(now(), pg_current_snapshot()) -> each source's server-side cursor in turn (pairs; for kto also the
answers judged on their approval; for sft the edits, then the expert rewrites), one chunk fetched
ahead while the previous one is shaped -> COMMIT -> release the connection and the slot. Every
source reads the same snapshot, so every row was live at one moment; a retracted pair (NULL) is
never read, and each source yields a key once.
Memory stays flat: two chunks of `fetch_rows` records, one chunk's shaped rows, and `batch_rows`
rows as Arrow (one row group) at most. Shaping and encoding (CPU) run in the export's one worker
thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import structlog

from services.aggregator import export_columns, export_store, exports, routing
from services.aggregator.evidence import RATING_DOWN_MAX, RATING_UP_MIN
from services.aggregator.pairs import EXPERT_MODEL
from shared.errors import TransientError
from shared.events import Message
from shared.export_files import encoder_for, rows_to_batch
from shared.export_schema import schema_of
from shared.exports import SPLIT_COLUMN, ExportRequest

log = structlog.get_logger(__name__)
T = TypeVar("T")


@dataclass(kw_only=True, frozen=True, slots=True)
class ExportRules:
    """What an export reads and decides with (built by `services.aggregator.rules.export_rules`)."""

    kto_approval_threshold: float
    fetch_rows: int
    batch_rows: int
    max_concurrent: int
    acquire_timeout_s: float
    routing: routing.RoutingRules


@dataclass(kw_only=True, frozen=True, slots=True)
class ExportContext:
    """The exports' part of the aggregator's context: the pool, the rules, the slots (one per running export)."""

    pool: asyncpg.Pool
    rules: ExportRules
    slots: asyncio.Semaphore

    @classmethod
    def create(cls, *, pool: asyncpg.Pool, rules: ExportRules) -> ExportContext:
        return cls(pool=pool, rules=rules, slots=asyncio.Semaphore(rules.max_concurrent))


def _prompt(text: str) -> list[dict[str, Any]]:
    return orjson.loads(text)["messages"]


def _domain(record: Any, prompt: list[dict[str, Any]], rules: routing.RoutingRules) -> str:
    """The group's domain as the pair rules route it (own domain, else the domain rules, else general)."""
    pair_domain = record.get("pair_domain")
    if pair_domain:
        return pair_domain
    messages = [Message.model_construct(role=m["role"], content=m["content"]) for m in prompt]
    return routing.route_domain([record["group_domain"]], messages, rules)


def approval_record(record: Any, rules: routing.RoutingRules) -> exports.ApprovalRecord:
    prompt = _prompt(record["prompt"])
    return exports.ApprovalRecord(
        app_id=record["app_id"],
        prompt_key=record["prompt_key"],
        prompt=prompt,
        interaction_id=record["interaction_id"],
        content=record["content"],
        model=record["model"],
        model_version=record["model_version"],
        domain=_domain(record, prompt, rules),
        up=record["up"],
        down=record["down"],
        newest_vote_at=record["newest_vote_at"],
    )


def edit_record(record: Any, rules: routing.RoutingRules) -> exports.EditRecord:
    prompt = _prompt(record["prompt"])
    return exports.EditRecord(
        app_id=record["app_id"],
        prompt_key=record["prompt_key"],
        prompt=prompt,
        event_id=record["event_id"],
        content=record["content"],
        interaction_id=record["interaction_id"],
        model=record["model"],
        model_version=record["model_version"],
        domain=_domain(record, prompt, rules),
        updated_at=record["updated_at"],
        pair_id=record["pair_id"],
        confidence=record["confidence"],
        occurred_at=record["occurred_at"],
    )


@dataclass(frozen=True)
class Shaper:
    """Turns one source's records into a typed batch with a `split` column (runs in a worker thread).

    Live pairs, the bulk of any export, are shaped column-wise (export_columns); answers judged on
    their approval and edits row by row (exports), then typed.
    """

    kind: str
    selection: exports.Selection
    approval_threshold: float
    rules: routing.RoutingRules

    def batch(self, source: str, records: list[Any]) -> pa.RecordBatch:
        if source == "pairs":
            return export_columns.records_batch(self.kind, records, self.selection)
        rows: list[exports.Row] = []
        if source == "approvals":
            for record in records:
                approval = approval_record(record, self.rules)
                rows += exports.row_from_approval(approval, self.approval_threshold, self.selection)
        else:
            for record in records:
                rows += exports.row_from_edit(edit_record(record, self.rules), self.selection)
        return rows_to_batch(rows, schema_of(self.kind, with_split=True))


def _sources(request: ExportRequest, conn: Any, fetch_rows: int) -> list[tuple[str, Callable[[], AsyncIterator]]]:
    """The cursors an export reads, in order, as (source, opener): each is opened when the previous is done."""
    filters, method = request.filters, request.filters.method
    if request.kind == "sft":
        return [
            ("edits", lambda: export_store.select_export_edits(conn, filters, fetch_rows)),
            ("pairs", lambda: export_store.select_export_rewrites(conn, filters, fetch_rows, EXPERT_MODEL)),
        ]
    sources: list[tuple[str, Callable[[], AsyncIterator]]] = []
    if method != "approval":
        sources.append(("pairs", lambda: export_store.select_export_pairs(conn, filters, fetch_rows)))
    if request.kind == "kto" and method in (None, "approval"):
        opener = lambda: export_store.select_export_approvals(  # noqa: E731
            conn, filters, fetch_rows, RATING_UP_MIN, RATING_DOWN_MAX
        )
        sources.append(("approvals", opener))
    return sources


async def _ahead(chunks: AsyncIterator[list]) -> AsyncIterator[list]:
    """The same chunks, the next one fetched while the caller shapes this one (PostgreSQL and Python overlap)."""

    async def fetch() -> list | None:
        return await anext(chunks, None)

    pending = asyncio.ensure_future(fetch())
    try:
        while (chunk := await pending) is not None:
            pending = asyncio.ensure_future(fetch())
            yield chunk
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
        await chunks.aclose()  # type: ignore[attr-defined]


@dataclass
class ExportStream:
    """One export from open to close: `open()`, then iterate `chunks()`, then `aclose()` (always)."""

    context: ExportContext
    request: ExportRequest
    point: export_store.ExportPoint | None = None
    rows: int = 0
    rows_by_split: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)
    # One worker thread per export: its allocations stay in one malloc arena (a pool of threads would
    # spread them over several, and RSS would grow with each arena the export touched).
    _worker: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="export"))
    _conn: Any = None
    _started: float = field(default_factory=time.monotonic)

    @property
    def schema(self) -> pa.Schema:
        return schema_of(self.request.kind, with_split=self.request.split == "all")

    async def open(self) -> export_store.ExportPoint:
        """Take a slot and open the snapshot. Raises TransientError when every slot is busy."""
        self._stack.callback(self._worker.shutdown, wait=False)
        slots = self.context.slots
        if slots.locked():
            raise TransientError("too many exports running; retry later", limit=self.context.rules.max_concurrent)
        await slots.acquire()
        self._stack.callback(slots.release)
        self._conn, self.point = await self._stack.enter_async_context(
            export_store.export_snapshot(self.context.pool, self.context.rules.acquire_timeout_s)
        )
        log.info("export_started", kind=self.request.kind, format=self.request.format, split=self.request.split)
        return self.point

    def _shaped(self, shaper: Shaper, source: str, records: list[Any]) -> pa.RecordBatch:
        """One chunk of records as a typed batch in the response's schema (counted per split)."""
        batch = shaper.batch(source, records)
        for split in ("train", "test"):
            self.rows_by_split[split] += pc.sum(pc.equal(batch.column(SPLIT_COLUMN), split)).as_py() or 0
        self.rows += batch.num_rows
        return batch if self.request.split == "all" else batch.drop_columns([SPLIT_COLUMN])

    async def _row_groups(self) -> AsyncIterator[pa.Table]:
        """Tables of about `batch_rows` rows (one Parquet row group each), chunk by chunk from each source."""
        rules = self.context.rules
        shaper = Shaper(
            self.request.kind,
            exports.Selection(self.request.filters, self.request.test_size, self.request.split),
            rules.kto_approval_threshold,
            rules.routing,
        )
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        for source, opener in _sources(self.request, self._conn, rules.fetch_rows):
            async for records in _ahead(opener()):
                batch = await self._off_loop(self._shaped, shaper, source, records)
                if batch.num_rows:
                    pending.append(batch)
                    pending_rows += batch.num_rows
                if pending_rows >= rules.batch_rows:
                    yield pa.Table.from_batches(pending)
                    pending, pending_rows = [], 0
        if pending:
            yield pa.Table.from_batches(pending)

    async def _off_loop(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, function, *args)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The export's bytes in the request's format: one chunk per row group, then the end of the file."""
        encoder = encoder_for(self.request.format, self.schema)
        async for table in self._row_groups():
            yield await self._off_loop(encoder.write, table)
        yield await self._off_loop(encoder.finish)
        log.info(
            "export_finished",
            kind=self.request.kind,
            format=self.request.format,
            rows=self.rows,
            train=self.rows_by_split["train"],
            test=self.rows_by_split["test"],
            seconds=round(time.monotonic() - self._started, 3),
        )

    async def aclose(self) -> None:
        """End the transaction and give back the connection and the slot (safe to call twice)."""
        await self._stack.aclose()
