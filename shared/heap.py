"""The garbage collector of a served process: long-lived objects are frozen out of its collections.

A service's startup leaves hundreds of thousands of long-lived objects (modules, pydantic schemas,
FastAPI/FastStream apps, the producer and pool). CPython's full (generation 2) collection walks all
of them: in the issue 15 profile of ingest under 32 clients such collections took 40-165 ms each,
stalling the event loop (every request in flight waits) and making most of the single posts' p99.
`gc.freeze()` once the service started moves them to the permanent generation, which collections
skip.

The aggregator then fills its caches (answers' contents, votes, parsed prompts, state hashes: some
150,000 tracked objects after 4,000 groups), and its full collections walked all of them again: under
`bench.load` at 1,000 events/s, up to 334 ms each, one every ~2 s. They found almost nothing to free
(`collected=0` in nearly every one). So the survivors of every generation 1 and 2 collection are frozen
too: a collection then walks only the objects made since the last one. An object frozen that way
and later dropped is still freed at once by its reference count; only cycles among frozen objects
would stay (a dropped connection's, say). So every `FULL_SCAN_INTERVAL_S` the frozen objects are
handed back, and the next full collection walks everything once and frees them.

Only for processes run by `shared.serve` (a test session starting many apps in one process would keep
each app's cycles alive for good).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger(__name__)
_settings = {"freeze_after_start": False}

OLDEST_GENERATION = 2  # CPython's full collection
FULL_SCAN_INTERVAL_S = 600.0
"""How often a full collection walks the frozen objects too (and frees the cycles among them)."""


class FreezeSurvivors:
    """A `gc.callbacks` entry: the survivors of every generation 1 and 2 collection are frozen.

    Once `interval_s` has passed since the last full scan, the frozen objects are handed back
    (`gc.unfreeze()`) and nothing is frozen until the next full collection has walked them all.
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s, self.clock = interval_s, clock
        self.scanned_at = clock()
        self.handed_back = False

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        generation = info["generation"]
        if phase != "stop" or generation == 0:
            return
        if self.handed_back:
            if generation == OLDEST_GENERATION:  # the full scan ran: freeze again from here
                self.handed_back, self.scanned_at = False, self.clock()
                gc.freeze()
        elif self.clock() - self.scanned_at >= self.interval_s:
            gc.unfreeze()
            self.handed_back = True
        else:
            gc.freeze()


def freeze_after_start() -> None:
    """Ask `settle_after_start` to freeze the heap (called by `shared.serve` before the app is built)."""
    _settings["freeze_after_start"] = True


def settle_after_start() -> None:
    """Collect once and freeze what survived; from then on, freeze the survivors of later collections
    (when `freeze_after_start` was asked)."""
    if not _settings["freeze_after_start"]:
        return
    gc.collect()
    gc.freeze()
    if not any(isinstance(c, FreezeSurvivors) for c in gc.callbacks):
        gc.callbacks.append(FreezeSurvivors(FULL_SCAN_INTERVAL_S))
    log.info("heap_frozen", objects=gc.get_freeze_count())
