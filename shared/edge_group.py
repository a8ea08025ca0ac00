"""Group commit: concurrent callers' items carried together by one flush, each caller getting its own results.

A caller's items join the queue and the caller waits for the flush that carries them. When no
flush is running, one starts at once with everything queued (so a lone caller waits for nothing
more than its own flush); callers that arrive while it runs are queued and carried together by the
next one. A flush takes whole callers, up to `max_items` items (a caller with more goes alone).

A flush has two stages: `start` (judging and handing the records to the producer) runs for one
group at a time, in arrival order, so a group's start sees the items of earlier groups; it returns
the group's `finish` (waiting for the acknowledgement, recording), which runs in a task of its own.
With `depth` 2 the next group's start begins while the previous group's finish is in flight (at most
`depth` groups started and not finished); with depth 1 (`GroupCommit(flush, ...)`) a flush ends before
the next begins. Results are handed out when a group's finish returns: one per item, an exception
in place of a result fails that item's caller (a group's start that judged an item against an earlier
group in flight returns an error for it when that group failed). When start or finish raises, every
caller of the group gets that exception, as a lone caller would; the callers queued behind it are
carried by the next flush.

The flushes run in tasks of their own: a caller that is cancelled (its client went away) stops
waiting, but the flush carrying its items still completes for the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[list[T]], Awaitable[list[R]]]
Finish = Callable[[], Awaitable[Sequence[R | BaseException]]]
"""A started group's second stage: one result (or the exception failing its caller) per item, in order."""
Start = Callable[[list[T]], Awaitable[Finish[R]]]


@dataclass(slots=True)
class _Waiter(Generic[T, R]):
    items: Sequence[T]
    done: asyncio.Future[list[R]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def _retrieve(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


def take_group(sizes: Sequence[int], max_items: int) -> int:
    """How many of the queued callers (their item counts, in order) the next flush takes: at least one."""
    taken, total = 0, 0
    for size in sizes:
        if taken and total + size > max_items:
            break
        taken, total = taken + 1, total + size
    return taken


def one_stage(flush: Flush[T, R]) -> Start[T, R]:
    """A flush done in its start: the finish only hands out its results."""

    async def start(items: list[T]) -> Finish[R]:
        results = await flush(items)

        async def finish() -> Sequence[R | BaseException]:
            return results

        return finish

    return start


class GroupCommit(Generic[T, R]):
    """Carries concurrent `submit` calls through `flush` together; `flush` returns one result per item, in order."""

    def __init__(self, flush: Flush[T, R], *, max_items: int, name: str) -> None:
        self._init(one_stage(flush), max_items=max_items, name=name, depth=1)

    @classmethod
    def pipelined(cls, start: Start[T, R], *, max_items: int, name: str, depth: int = 2) -> GroupCommit[T, R]:
        """Two-stage flushes, up to `depth` groups in flight (see the module's docstring)."""
        group = cls.__new__(cls)
        group._init(start, max_items=max_items, name=name, depth=depth)
        return group

    def _init(self, start: Start[T, R], *, max_items: int, name: str, depth: int) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self._start = start
        self.max_items = max_items
        self.name = name
        self.depth = depth
        self._queue: list[_Waiter[T, R]] = []
        self._finishing: set[asyncio.Task[None]] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None

    async def submit(self, items: Sequence[T]) -> list[R]:
        """The results of `items` (one per item, in order), once the flush that carried them ended."""
        if not items:
            return []
        waiter: _Waiter[T, R] = _Waiter(items)
        # Read by a callback too: a cancelled caller's exception is never "never retrieved".
        waiter.done.add_done_callback(_retrieve)
        self._queue.append(waiter)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._run(), name=f"group_commit_{self.name}")
        elif self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        # Shielded: a cancelled caller stops waiting; the flush task (and the other callers) go on.
        return await asyncio.shield(waiter.done)

    async def _run(self) -> None:
        group: list[_Waiter[T, R]] = []
        try:
            while self._queue or self._finishing:
                if self._queue and len(self._finishing) < self.depth:
                    count = take_group([len(w.items) for w in self._queue], self.max_items)
                    group, self._queue = self._queue[:count], self._queue[count:]
                    await self._start_group(group)
                    group = []
                    continue
                self._wakeup = asyncio.get_running_loop().create_future()
                await asyncio.wait([*self._finishing, self._wakeup], return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            # The flush task itself was cancelled (shutdown): nobody may wait forever.
            for task in self._finishing:
                task.cancel()
            for waiter in [*group, *self._queue]:
                waiter.done.cancel()
            self._queue = []
            raise

    async def _start_group(self, group: list[_Waiter[T, R]]) -> None:
        items = [item for waiter in group for item in waiter.items]
        try:
            finish = await self._start(items)
        except Exception as exc:
            _fail(group, exc)
            return
        task = asyncio.create_task(self._finish_group(group, finish), name=f"group_commit_{self.name}_finish")
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _finish_group(self, group: list[_Waiter[T, R]], finish: Finish[R]) -> None:
        try:
            results = await finish()
            count = sum(len(waiter.items) for waiter in group)
            if len(results) != count:
                raise RuntimeError(f"flush returned {len(results)} results for {count} items")
        except Exception as exc:
            _fail(group, exc)
            return
        except BaseException:
            for waiter in group:
                waiter.done.cancel()
            raise
        start = 0
        for waiter in group:
            end = start + len(waiter.items)
            mine = results[start:end]
            error = next((r for r in mine if isinstance(r, BaseException)), None)
            if not waiter.done.done():
                if error is not None:
                    waiter.done.set_exception(error)
                else:
                    waiter.done.set_result(list(mine))  # type: ignore[arg-type]
            start = end


def _fail(group: Sequence[_Waiter[T, R]], exc: BaseException) -> None:
    """Every caller of the group gets what a lone caller would."""
    for waiter in group:
        if not waiter.done.done():
            waiter.done.set_exception(exc)
