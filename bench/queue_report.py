"""The queue benchmark's results as markdown (bench/results/queue.md), from the dict bench/queue.py writes as JSON."""

from __future__ import annotations

import json
from typing import Any


def _cpu(row: dict[str, Any]) -> str:
    server = row["server_cpu_ms"]
    return f"{row['client_cpu_ms']} + {server}" if server is not None else f"{row['client_cpu_ms']} + ?"


def markdown(result: dict[str, Any]) -> str:
    trips, counts = result["round_trips"], result["counts_cost"]
    lines = [
        "# Annotation queue benchmark (`python -m bench.queue`)",
        "",
        f"{result['date']}, commit `{result['git_commit']}`, Python {result['python']}, {result['platform']}, "
        f"{result['cpus']} CPUs, load average (1 min) after the run {result['load_average_1m_after']}; "
        f"{result['database']}. Settings: `{json.dumps(result['settings'])}`.",
        "",
        f"Statements (= round trips) per lease: {trips['lease']}; per verdict: {trips['verdict']} on a task this "
        f"process leased, {trips['verdict_leased_elsewhere']} on one leased elsewhere. Both authenticate the token.",
        "",
        "## Throughput: lease + verdict against bare loops",
        "",
        "(a) the cheapest SKIP LOCKED queue (own table, same payload size): dequeue + complete; "
        "(b) the queue's own two statements (lease_next_task, record_verdict) with no logic. "
        "CPU ms per task: this process + the server (local server only).",
        "",
        "| annotators | tasks/s | CPU ms/task | (a) jobs/s | (a) CPU ms/job | × (a) | (b) jobs/s | (b) CPU ms/job "
        "| × (b) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["throughput"]:
        ours, minimal, own = r["queue"], r["bare_minimal"], r["bare_own"]
        lines.append(
            f"| {r['annotators']} | {ours['per_s']} | {_cpu(ours)} | {minimal['per_s']} | {_cpu(minimal)} | "
            f"{r['ratio_to_minimal']} | {own['per_s']} | {_cpu(own)} | {r['ratio_to_own']} |"
        )
    lines += [
        "",
        f"Keeping the counts (migration 0005's triggers), {counts['annotators']} annotators, runs alternated: "
        f"{counts['with_counts_per_s']} tasks/s with them, {counts['without_counts_per_s']} without "
        f"(ratio {counts['ratio']}).",
        "",
        "## Latency with the queue filled (tasks over 10 domains)",
        "",
        "| queued | fill s | GET /v1/tasks/stats admin p50 / p99 ms | GET /v1/tasks/stats annotator p50 / p99 ms "
        "| stats (admin) in process | stats (annotator) in process | lease p50 / p99 ms | verdict p50 / p99 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    keys = ("stats_http_admin", "stats_http_annotator", "stats_admin", "stats_annotator", "lease", "verdict")
    for r in result["scale"]:
        cells = [f"{r[k]['p50_ms']} / {r[k]['p99_ms']}" if k in r else "-" for k in keys]
        lines.append(f"| {r['queued']:,} | {r['fill_s']} | " + " | ".join(cells) + " |")
    notes = (
        "A task = a lease (one statement: authenticate the token, lease, return the request and what a verdict "
        "decides on; then the redacted task view) + a verdict (one statement: authenticate, write the task, the "
        "verdict and on completion the outbox row, if the task is as leased). GET /v1/tasks/stats = the route "
        "over HTTP (httpx, one client) of `python -m services.feedback` on the same database: the token check, "
        "the maintained counts' roll-up, JSON; in process = TaskQueue.stats alone; latencies are sequential calls "
        "of one client, each verdict right after its lease. The bulk fill goes through the count triggers (one "
        "count row per domain per 50,000 tasks) and is checked against COUNT(*). Client and server share the CPUs."
    )
    return "\n".join([*lines, "", notes, ""])
