"""Waiting for asynchronous outcomes in tests: poll a check under a deadline, never sleep blindly."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(
    check: Callable[[], Any | Awaitable[Any]],
    timeout: float = 10.0,
    interval: float = 0.05,
) -> Any:
    """Call `check` (sync or async) until it returns something truthy without raising AssertionError.

    Returns that value. After `timeout` seconds, fails with the last value or AssertionError seen.
    Any other exception propagates at once.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_seen = "the check never finished"
    last_error: BaseException | None = None
    while True:
        try:
            # A check that hangs must not outlive the deadline.
            async with asyncio.timeout(max(deadline - loop.time(), interval)):
                result = check()
                if inspect.isawaitable(result):
                    result = await result
        except AssertionError as exc:
            last_seen, last_error = f"AssertionError: {exc}", exc
        except TimeoutError as exc:
            last_seen, last_error = "the check itself did not return in time", exc
        else:
            if result:
                return result
            last_seen, last_error = f"it returned {result!r}", None
        if loop.time() >= deadline:
            raise AssertionError(f"not true within {timeout} s; last time {last_seen}") from last_error
        await asyncio.sleep(interval)
