"""The garbage collector of a served process: the heap built at startup is frozen out of its full collections.

A service's startup leaves hundreds of thousands of long-lived objects (modules, pydantic schemas,
FastAPI/FastStream apps, the producer and pool). CPython's full (generation 2) collection walks all
of them: in the issue 15 profile of ingest under 32 clients such collections took 40-165 ms each,
stalling the event loop (every request in flight waits) and making most of the single posts' p99.
`gc.freeze()` once the service started moves them to the permanent generation, which collections
skip; objects made later are collected as before. Only for processes run by `shared.serve` (a test
session starting many apps in one process would keep each app's cycles alive for good).
"""

from __future__ import annotations

import gc

import structlog

log = structlog.get_logger(__name__)
_settings = {"freeze_after_start": False}


def freeze_after_start() -> None:
    """Ask `settle_after_start` to freeze the heap (called by `shared.serve` before the app is built)."""
    _settings["freeze_after_start"] = True


def settle_after_start() -> None:
    """Collect once, then freeze what survived out of later collections (when `freeze_after_start` was asked)."""
    if not _settings["freeze_after_start"]:
        return
    gc.collect()
    gc.freeze()
    log.info("heap_frozen", objects=gc.get_freeze_count())
