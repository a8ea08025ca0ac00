"""The queue benchmark's data: the bare baseline queue, bulk fills of the task table, and latency summaries.

The bulk fill inserts straight into `tasks` with INSERT ... SELECT over generate_series, 50,000
tasks a statement: the statement-level count triggers of migration 0005 add one count row per
domain per statement, so the counts are right without a rebuild (`check_counts` proves it against
COUNT(*) after each fill). The requests are built in SQL in the shape the aggregator publishes
(validated as AnnotationRequest when leased), with a phone number in the prompt for the redaction.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import asyncpg

FILL_BATCH = 50_000
PROMPT = "Is it safe to take ibuprofen with coffee? Call me at [PHONE]."
ANSWER_CHARS = 400

# The baseline's own table: the cheapest correct SKIP LOCKED queue, with a payload of the same size as a
# task's request, dequeued (leased) then completed by two bare statements.
BASELINE_SETUP = """
CREATE TABLE bench_jobs (
    id bigserial PRIMARY KEY,
    priority double precision NOT NULL,
    payload jsonb NOT NULL,
    leased boolean NOT NULL DEFAULT false,
    done boolean NOT NULL DEFAULT false
);
CREATE INDEX bench_jobs_queued ON bench_jobs (priority DESC, id) WHERE NOT leased;
"""
BASELINE_FILL = """
INSERT INTO bench_jobs (priority, payload)
SELECT random(), jsonb_build_object('prompt', $2::text, 'a', repeat('A', $3), 'b', repeat('B', $3))
FROM generate_series(1, $1)
"""
BASELINE_DEQUEUE = """
UPDATE bench_jobs SET leased = true
WHERE id = (SELECT id FROM bench_jobs WHERE NOT leased ORDER BY priority DESC, id FOR UPDATE SKIP LOCKED LIMIT 1)
RETURNING id, payload
"""
BASELINE_COMPLETE = "UPDATE bench_jobs SET done = true WHERE id = $1"

TASK_FILL = """
INSERT INTO tasks (task_id, app_id, kind, domain, priority, request, request_updated_at, reviewers_needed)
SELECT r.task_id, 'bench', 'compare', r.domain, r.priority,
       jsonb_build_object(
           'event_id', gen_random_uuid(), 'app_id', 'bench', 'task_id', r.task_id, 'pair_id', 'pair-' || r.task_id,
           'prompt_key', 'pk-' || r.task_id, 'kind', 'compare', 'domain', r.domain, 'priority', r.priority,
           'prompt', jsonb_build_array(jsonb_build_object('role', 'user', 'content', $5::text)),
           'candidates', jsonb_build_object(
               'A', jsonb_build_object('interaction_id', r.task_id || '-A', 'content', repeat('Answer A. ', $6 / 10),
                                       'model', 'm', 'model_version', '1'),
               'B', jsonb_build_object('interaction_id', r.task_id || '-B', 'content', repeat('Answer B. ', $6 / 10),
                                       'model', 'm', 'model_version', '2')
           ),
           'reason', 'split_votes', 'occurred_at', now(), 'updated_at', now()
       ),
       now(), 1
FROM (
    SELECT $1::text || '-' || i AS task_id, $4::text || (i % $3) AS domain, ((i * 7919) % 1000) / 100.0 AS priority
    FROM generate_series($2::bigint, $2::bigint + $7 - 1) AS i
) AS r
"""
COUNTS_CHECK = """
SELECT (
           SELECT coalesce(jsonb_object_agg(domain || '/' || status, n), '{}')
           FROM (SELECT domain, status, sum(tasks) AS n FROM task_counts GROUP BY 1, 2 HAVING sum(tasks) <> 0) AS c
       ) AS counted,
       (
           SELECT coalesce(jsonb_object_agg(domain || '/' || status, n), '{}')
           FROM (SELECT domain, status, count(*) AS n FROM tasks GROUP BY 1, 2) AS t
       ) AS actual
"""


async def fill_tasks(
    pool: asyncpg.Pool, prefix: str, start: int, count: int, *, domains: int, domain_prefix: str
) -> None:
    """Queue `count` open tasks named `prefix-<i>` (i from `start`) over `domains` domains, 50,000 a statement."""
    done = 0
    while done < count:
        batch = min(FILL_BATCH, count - done)
        await pool.execute(TASK_FILL, prefix, start + done, domains, domain_prefix, PROMPT, ANSWER_CHARS, batch)
        done += batch


async def check_counts(pool: asyncpg.Pool) -> None:
    """The maintained counts equal COUNT(*) per domain and status (raises AssertionError otherwise)."""
    row = await pool.fetchrow(COUNTS_CHECK)
    if row["counted"] != row["actual"]:
        raise AssertionError(f"counts drifted: {row['counted']} != {row['actual']}")


async def fill_baseline(pool: asyncpg.Pool, jobs: int) -> None:
    await pool.execute("TRUNCATE bench_jobs")
    await pool.execute(BASELINE_FILL, jobs, PROMPT, ANSWER_CHARS)


def percentiles_ms(seconds: list[float]) -> dict[str, Any]:
    """p50 and p99 in milliseconds of latencies in seconds (p99: the nearest rank)."""
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * len(ordered)) - 1)]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2), "p99_ms": round(p99 * 1000, 2), "n": len(ordered)}


class CpuMeter:
    """CPU seconds spent so far by this process (the client: the queue's code) and by a local PostgreSQL.

    The server's share is read from /proc for the postmaster's children, so only for a server this
    machine runs (`postmaster_pid`); None otherwise. CPU per task does not depend on what else runs on
    the machine the way tasks per second do.
    """

    def __init__(self, postmaster_pid: int | None) -> None:
        self.postmaster_pid = postmaster_pid
        self.ticks = os.sysconf("SC_CLK_TCK")

    def client_s(self) -> float:
        return time.process_time()

    def server_s(self) -> float | None:
        if self.postmaster_pid is None:
            return None
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            if int(entry.name) == self.postmaster_pid or int(fields[1]) == self.postmaster_pid:
                total += int(fields[11]) + int(fields[12])  # utime + stime
        return total / self.ticks
