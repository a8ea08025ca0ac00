"""The fault table of the closing note, from the JSON lines the fault tests write (FAULT_REPORT).

.venv/bin/python -m tests.faults.table bench/results/faults.jsonl > bench/results/faults.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HEADER = """# Faults survived

`FAULT_REPORT=bench/results/faults.jsonl .venv/bin/python -m pytest tests/faults -rA`, then
`.venv/bin/python -m tests.faults.table bench/results/faults.jsonl > bench/results/faults.md`.
Each run sends the same seeded workload (two phases, duplicates included) through the stack's
separate OS processes and compares its final live state (pairs with chosen/rejected/method,
tombstones, live tasks, stats totals) with the fault-free reference run.

- lost: reference pairs/tasks/retractions missing or different, stats counts short, and events a
  client got a 2xx for that the aggregator never took in; duplicated: extra pairs/tasks, stats
  counts over.
- time to recover: from the kill (or from restarting the server) until the service answers
  /readyz 200 again; broker: until the traffic sent after the restart settled end to end; two
  aggregators: until the survivor had taken in every phase-1 vote.
- client retries: HTTP batches sent again (same event_ids) after no answer or a 5xx;
  redelivered: records on `interactions`/`votes` repeating an event_id (at-least-once, absorbed by
  the aggregator's dedupe); transient tombstones: retractions of pairs that were never live in the
  reference (batch boundaries moved by the crash), tolerated.

"""
COLUMNS = (
    "fault", "test", "events sent", "lost", "duplicated", "time to recover (s)", "settle (s)",
    "client retries", "redelivered", "transient tombstones",
)  # fmt: skip


def table(lines: list[dict]) -> str:
    rows = [
        f"| {r['fault']} | `{r['test']}` | {r['events_sent']} | {r['lost']} | {r['duplicated']} | "
        f"{'-' if r['recover_s'] is None else r['recover_s']} | {r['settle_s']} | {r['client_retries']} | "
        f"{r['redelivered']} | {r['transient_tombstones']} |"
        for r in lines
    ]
    head = ["| " + " | ".join(COLUMNS) + " |", "|---|---|" + "---:|" * (len(COLUMNS) - 2)]
    return HEADER + "\n".join(head + rows) + "\n"


def main(path: str) -> None:
    lines = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    sys.stdout.write(table(lines))


if __name__ == "__main__":
    main(sys.argv[1])
