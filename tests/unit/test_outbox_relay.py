"""The outbox relay's loop: a notify() made while a poll runs is not lost, and a poll that drained the outbox waits."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from prometheus_client import CollectorRegistry

from shared.outbox import OutboxRelay
from tests.support.waiting import eventually

POLL_S = 5.0


class ScriptedRelay(OutboxRelay):
    """A relay whose polls follow a script (rows relayed, whether a notify() comes during the poll)."""

    def __init__(self, script: list[tuple[int, bool]]) -> None:
        super().__init__(
            service="svc", pool=None, broker=None, registry=CollectorRegistry(), batch_size=10,  # type: ignore[arg-type]
            poll_interval_s=POLL_S, publish_timeout_s=1.0, max_backoff_s=1.0,
        )  # fmt: skip
        self.script = script
        self.polled_at: list[float] = []
        self.counts = 0

    async def relay_once(self) -> int:
        self.polled_at.append(time.monotonic())
        relayed, notified = self.script.pop(0) if self.script else (0, False)
        await asyncio.sleep(0)
        if notified:
            self.notify()  # a batch committed outbox rows while this poll ran
        return relayed

    async def count_pending(self) -> int:
        self.counts += 1
        return 0


@contextlib.asynccontextmanager
async def running(relay: ScriptedRelay) -> AsyncIterator[None]:
    task = asyncio.create_task(relay.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_notify_during_an_empty_poll_is_not_lost() -> None:
    relay = ScriptedRelay([(0, True), (3, False)])
    async with running(relay):
        # Well within the poll interval: the wake-up set during the first poll is still set after it.
        await eventually(lambda: len(relay.polled_at) >= 2, timeout=1.0, interval=0.01)


async def test_a_full_batch_polls_again_at_once_and_a_drained_outbox_waits() -> None:
    relay = ScriptedRelay([(10, False), (4, False), (2, False)])
    async with running(relay):
        await eventually(lambda: len(relay.polled_at) >= 2, timeout=1.0, interval=0.01)
        await asyncio.sleep(0.3)
    assert len(relay.polled_at) == 2, "full batch: again at once; 4 < 10 rows: drained, wait for a notify"
    assert relay.counts == 1, "the gauge recounted once per poll interval, not after every poll"
