"""shared.heap: a served process freezes its startup heap once started, then the survivors of its later
collections, handing them back to a full scan once per interval; anything else (a test session) does not.

Run in child interpreters: freezing this test process's heap would outlive the test.
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


SURVIVORS = """
import gc, weakref
from shared import heap

class Node:
    pass

clock = [0.0]
heap.freeze_after_start()
heap.settle_after_start()
policy = next(c for c in gc.callbacks if isinstance(c, heap.FreezeSurvivors))
policy.clock, policy.interval_s, policy.scanned_at = (lambda: clock[0]), 100.0, 0.0
print("registered once", sum(isinstance(c, heap.FreezeSurvivors) for c in gc.callbacks) == 1)

# A cycle that outlives one collection is frozen with the other survivors, then dropped.
before = gc.get_freeze_count()
cycle = Node()
cycle.me = cycle
gone = weakref.ref(cycle)
kept = [Node() for _ in range(50_000)]
gc.collect(1)
print("survivors frozen", gc.get_freeze_count() - before >= 50_000)
del cycle
gc.collect()
print("frozen cycle kept by a full collection", gone() is not None)

# Once the interval has passed, the frozen objects are handed back and the next full collection frees it.
clock[0] = 100.0
gc.collect(1)
print("handed back", gc.get_freeze_count() == 0 and policy.handed_back)
gc.collect(1)
print("nothing frozen before the full scan", gc.get_freeze_count() == 0)
gc.collect()
print("freed by the full scan", gone() is None)
print("frozen again after it", gc.get_freeze_count() >= 50_000 and not policy.handed_back)
print("scan time kept", policy.scanned_at == 100.0)
"""


def test_survivors_are_frozen_and_handed_back_to_a_full_scan_once_per_interval() -> None:
    out = subprocess.run([sys.executable, "-c", SURVIVORS], cwd=REPO, capture_output=True, text=True, check=True)
    checks = dict(line.rsplit(" ", 1) for line in out.stdout.splitlines() if line.endswith(("True", "False")))
    assert checks == {
        "registered once": "True",
        "survivors frozen": "True",
        "frozen cycle kept by a full collection": "True",
        "handed back": "True",
        "nothing frozen before the full scan": "True",
        "freed by the full scan": "True",
        "frozen again after it": "True",
        "scan time kept": "True",
    }, out.stdout + out.stderr


def test_an_unasked_process_registers_no_collector_policy() -> None:
    probe = "import gc\nfrom shared import heap\nheap.settle_after_start()\nprint(len(gc.callbacks))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "0"
