"""Group commit: concurrent callers' items carried together by one flush, each caller getting its own results.

A caller's items join the queue and the caller waits for the flush that carries them. When no
flush is running, one starts at once with everything queued (so a lone caller waits for nothing
more than its own flush); callers that arrive while it runs are queued and carried together by the
next one. One flush at a time, in arrival order: the flush function sees the items of earlier
callers before those of later ones, and a flush ends (results handed out) before the next begins,
so whatever one flush records is visible to the next. A flush takes whole callers, up to
`max_items` items (a caller with more goes alone). When the flush function raises, every caller
it carried gets that exception, as a lone caller would; the callers queued behind it are carried
by the next flush.

The flush runs in a task of its own: a caller that is cancelled (its client went away) stops
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


class GroupCommit(Generic[T, R]):
    """Carries concurrent `submit` calls through `flush` together; `flush` returns one result per item, in order."""

    def __init__(self, flush: Flush[T, R], *, max_items: int, name: str) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self._flush = flush
        self.max_items = max_items
        self.name = name
        self._queue: list[_Waiter[T, R]] = []
        self._flusher: asyncio.Task[None] | None = None

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
        # Shielded: a cancelled caller stops waiting; the flush task (and the other callers) go on.
        return await asyncio.shield(waiter.done)

    async def _run(self) -> None:
        group: list[_Waiter[T, R]] = []
        try:
            while self._queue:
                count = take_group([len(w.items) for w in self._queue], self.max_items)
                group, self._queue = self._queue[:count], self._queue[count:]
                await self._flush_group(group)
        except BaseException:
            # The flush task itself was cancelled (shutdown): nobody may wait forever.
            for waiter in [*group, *self._queue]:
                waiter.done.cancel()
            self._queue = []
            raise

    async def _flush_group(self, group: list[_Waiter[T, R]]) -> None:
        items = [item for waiter in group for item in waiter.items]
        try:
            results = await self._flush(items)
            if len(results) != len(items):
                raise RuntimeError(f"flush returned {len(results)} results for {len(items)} items")
        except Exception as exc:
            # Every caller of the group gets what a lone caller would.
            for waiter in group:
                if not waiter.done.done():
                    waiter.done.set_exception(exc)
            return
        start = 0
        for waiter in group:
            end = start + len(waiter.items)
            if not waiter.done.done():
                waiter.done.set_result(results[start:end])
            start = end
