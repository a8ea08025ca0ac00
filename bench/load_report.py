"""The sustained-load report (bench/results/load.md) from the report bench.load writes to load.json."""

from __future__ import annotations

import json
from typing import Any

from bench import load_budget


def markdown(report: dict[str, Any]) -> str:
    r = report["result"]
    latency = r["http_latency_ms"]
    rows = [
        ("offered", f"{r['offered_events_per_s']:,} events/s for {r['load_seconds']} s (interactions + thumbs votes)"),
        (
            "accepted (HTTP 202, fresh), steady state",
            f"{r['accepted_events_per_s_steady']:,} events/s ({r['accepted_events_per_s_overall']:,} whole run)",
        ),
        ("taken in by the aggregator, steady state", f"{r['processed_events_per_s_steady']:,} events/s"),
        ("accepted in total", f"{r['accepted']['interactions']:,} interactions, {r['accepted']['votes']:,} votes"),
        (
            "rejected / duplicate items, HTTP errors",
            f"{r['rejected_items']} / {r['duplicate_items']}, {r['http_errors']}",
        ),
        ("HTTP batch latency p50 / p99 / max", f"{latency['p50']} / {latency['p99']} / {latency['max']} ms"),
        ("largest send backlog", f"{r['send_backlog_max_batches']} batches"),
        (
            "lag (accepted - taken in): max during load / at load end",
            f"{r['lag_max_during_load']:,} / {r['lag_at_load_end']:,} events",
        ),
        ("lag back to zero after the load stopped", f"{r['drain_seconds_after_load']} s (final lag {r['lag_end']})"),
        (
            "loss: accepted event_ids without effect in the aggregator",
            f"{sum(r['missing_effects'].values())} ({r['missing_effects']})",
        ),
    ]
    outputs = {k.removeprefix("outputs_"): int(v) for k, v in r["aggregator_inputs_total"].items() if "outputs_" in k}
    rows.append(("aggregator outputs queued (whole run)", ", ".join(f"{k} {v:,}" for k, v in sorted(outputs.items()))))
    if "annotation_budget" in r:
        rows += load_budget.markdown_rows(r["annotation_budget"])
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    memory = "\n".join(
        f"| {name} | {m['start_mb']} | {m['peak_mb']} | {m['end_mb']} |" for name, m in r["rss_mb"].items()
    )
    return f"""# Sustained load

{report["date"]}, commit `{report["git_commit"]}`, Python {report["python"]}, {report["platform"]},
{report["cpus"]} CPUs (load average {report["load_average_1m_after"]} after the run). Broker, database, the
three services and this load generator all share those CPUs.

Settings: `{json.dumps(report["settings"])}`.

Workload: every tick a batch of interactions (`POST /v1/interactions/batch`) and a batch of thumbs votes
(`POST /v1/votes/batch`, `vote_share` of the events, on random interactions among the 5,000 last accepted
at least `vote_delay_s` before). Prompts (bench/ingest_load.py PromptMix): `regenerate` of the interactions
re-ask one of the 200 previous prompts (a regeneration, same prompt group), `popular` ask one of
`popular_prompts` exact prompts (hot groups, ~100 answers each by the end of a 60 s run), the rest ask a
prompt of their own (a template plus a per-conversation detail).

| | |
|---|---|
{table}

Resident memory per service process (MB, sampled every second from the start of the load to the
end of the drain):

| service | start | peak | end |
|---|---:|---:|---:|
{memory}

The lag is sent-minus-processed from the aggregator's Prometheus counters (`aggregator_inputs_total`:
interactions + votes applied) plus the votes parked at that moment (agg_parked_votes: a parked vote is
counted again in votes applied once its interaction arrives), not from the broker's end offsets (wrong
on Tansu after multi-record batches). Per-second samples are in load.json.

Open annotation tasks (bench/load_budget.py): sampled every second per domain in the aggregator's budget
(agg_task_budget, changed only in its batch transactions) and in feedback's offered queue (the tasks
annotators can lease: a request over the cap waits held until a tombstone or a verdict makes room, so a
request that arrives before the tombstone of the task it displaced is not offered early); at the end, whether
each domain's open tasks are exactly the cap best by priority among the tasks still asked for, and whether
feedback's open tasks are the same set.
"""
