"""shared.heap: a served process freezes its startup heap once started; anything else (a test session) does not.

Run in a child interpreter: freezing this test process's heap would outlive the test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import gc
from shared import heap
heap.settle_after_start()
print(gc.get_freeze_count(), flush=True)
heap.freeze_after_start()
heap.settle_after_start()
print(gc.get_freeze_count(), flush=True)
"""


def test_the_heap_is_frozen_only_when_a_served_process_asked_for_it() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True)
    unasked, asked = (int(line) for line in out.stdout.splitlines() if line.strip().isdigit())
    assert unasked == 0, "not asked (a test session, a CLI): nothing frozen"
    assert asked > 1000, "asked (shared.serve): the startup heap is out of the full collections"


def test_serve_asks_for_it_before_the_app_is_built(monkeypatch: object) -> None:
    import uvicorn

    from shared import heap, serve
    from shared.settings import ServiceSettings

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: seen.update(asked=heap._settings["freeze_after_start"]))  # type: ignore[attr-defined]
    monkeypatch.setitem(heap._settings, "freeze_after_start", False)  # type: ignore[attr-defined]
    serve.serve("services.ingest.app:create_app", ServiceSettings())
    assert seen == {"asked": True}
