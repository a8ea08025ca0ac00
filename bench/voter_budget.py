"""The per-voter hourly budget's statement by batch size, against the two writes it cannot avoid.

`python -m bench.voter_budget [--sizes 10 50 200 500] [--rounds 7]` starts its own PostgreSQL (embedded,
fsync off), applies feedback's migrations, and times, for each batch size and each of two shapes of batch
(every vote from its own voter, or ten votes per voter), the median of `--rounds` calls of:

- floor: the statement's two writes and nothing else, in one statement (each bucket's count upserted,
  each vote's decision inserted);
- statement: `decide_budget_votes` (services/feedback/sql/queries.sql), as feedback's edge runs it on
  every batch of fresh thumbs votes.

The ratio statement / floor should stay flat as batches grow: a statement whose cost grows faster than
its batch shows here first (the CTEs joined as nested loops took 87 ms for 500 votes of 500 voters).
Results: bench/results/voter_budget.json and voter_budget.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.provenance import run_header, run_sentence, write_results
from deploy.local_database import start_database
from services.feedback.app import MIGRATIONS
from services.feedback.budget_store import QUERIES
from shared import db

RESULTS = Path(__file__).parent / "results"
MAX_VOTES_PER_HOUR = 60
VOTES_PER_VOTER = {"one vote per voter": 1, "ten votes per voter": 10}

# The writes every decision needs, with no decision: the buckets' counts and one row per vote.
FLOOR = """
WITH given AS (
    SELECT g.event_id, g.app_id, g.voter_hash, date_trunc('hour', g.received_at, 'UTC') AS hour
    FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::timestamptz[]) AS g(event_id, app_id, voter_hash, received_at)
),
totals AS (
    INSERT INTO voter_budget_hours AS h (app_id, voter_hash, hour, votes)
    SELECT app_id, voter_hash, hour, count(*) FROM given GROUP BY app_id, voter_hash, hour
    ON CONFLICT (app_id, voter_hash, hour) DO UPDATE SET votes = h.votes + excluded.votes
)
INSERT INTO voter_budget_votes (event_id, hour, ordinal, quarantine_reason)
SELECT event_id, hour, 1, NULL FROM given
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.voter_budget", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 200, 500], help="votes per batch")
    parser.add_argument("--rounds", type=int, default=7, help="calls per size, mode and shape (median)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def batch(size: int, per_voter: int, now: datetime) -> tuple[Any, ...]:
    """A batch of `size` fresh votes of one app, `per_voter` of them from each (new) voter."""
    voters = [uuid.uuid4().bytes for _ in range(-(-size // per_voter))]
    return (
        [uuid.uuid4() for _ in range(size)],
        ["helpdesk"] * size,
        [voters[i // per_voter] for i in range(size)],
        [now] * size,
    )


async def timed_ms(conn: asyncpg.Connection, statement: str, args: tuple[Any, ...]) -> float:
    started = time.perf_counter()
    await conn.execute(statement, *args)
    return (time.perf_counter() - started) * 1000


async def measure(dsn: str, sizes: list[int], rounds: int) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    statement = QUERIES["decide_budget_votes"]
    rows = []
    try:
        for shape, per_voter in VOTES_PER_VOTER.items():
            for size in sizes:
                times: dict[str, list[float]] = {"floor": [], "statement": []}
                for _ in range(rounds + 1):  # the first round of each warms the plans and is left out
                    now = datetime.now(UTC)
                    floor = await timed_ms(conn, FLOOR, batch(size, per_voter, now))
                    decided = await timed_ms(
                        conn, statement, (*batch(size, per_voter, now), MAX_VOTES_PER_HOUR, "voter_budget")
                    )
                    times["floor"].append(floor)
                    times["statement"].append(decided)
                floor_ms = statistics.median(times["floor"][1:])
                statement_ms = statistics.median(times["statement"][1:])
                rows.append(
                    {
                        "shape": shape,
                        "votes": size,
                        "floor_ms": round(floor_ms, 2),
                        "statement_ms": round(statement_ms, 2),
                        "statement_us_per_vote": round(statement_ms * 1000 / size, 1),
                        "ratio": round(statement_ms / floor_ms, 2),
                    }
                )
                print(rows[-1], flush=True)
    finally:
        await conn.close()
    return rows


def report(result: dict[str, Any]) -> str:
    header = result["run"]
    lines = [
        "# The per-voter budget's statement by batch size (bench/voter_budget.py)",
        "",
        f"{run_sentence(header)} Median of {result['rounds']} calls each, on an embedded PostgreSQL "
        "(fsync off) with feedback's tables. Floor: the statement's two writes alone (buckets' counts upserted, "
        "one decision row per vote) in one statement; statement: `decide_budget_votes`. Every vote is fresh.",
        "",
        "| batch | votes | floor ms | statement ms | statement µs/vote | × floor |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {r['shape']} | {r['votes']} | {r['floor_ms']:.2f} | {r['statement_ms']:.2f} | "
            f"{r['statement_us_per_vote']:.1f} | {r['ratio']:.2f} |"
            for r in result["rows"]
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-voter-budget-") as tmp:
        with start_database(Path(tmp) / "pgdata", fast_unsafe=True) as database:
            asyncio.run(db.migrate(database.url, MIGRATIONS))
            rows = asyncio.run(measure(database.url, args.sizes, args.rounds))
    result = {"rounds": args.rounds, "rows": rows, "run": run_header("voter_budget")}
    text = report(result)
    write_results(args.out, "voter_budget", result, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
