"""`python -m services.ops redrive --reason R [--since T] [--dry-run]`: send dead letters back to their origin topic.

What it does is shared.redrive (the aggregator's `POST /v1/admin/dead-letters/redrive` does the same):
read `dead-letter` from the beginning, take the letters of error_code R (failed at or after T), and
republish each one's original message to its origin topic with a `redriven_from` header, each at most
once. The broker, database and topic prefix come from the environment (KAFKA_BOOTSTRAP_SERVERS,
DATABASE_URL, TOPIC_PREFIX), else from a running `make up`'s `.run/stack.json` (or --stack).

Prints the report as JSON on stdout (each matched letter with its status); logs go to stderr.
Exit codes: 0 done (also when nothing matched); 2 bad arguments; 1 the broker or the database could
not be reached or failed (letters claimed by then are reported `unconfirmed` by later runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from aiokafka.errors import KafkaError
from pydantic import AwareDatetime, TypeAdapter, ValidationError

from services.ops.settings import OpsSettings, load_settings
from shared import db
from shared.errors import PipelineError
from shared.kafka import make_broker
from shared.logging import configure_logging
from shared.redrive import RedriveReport, RedriveRequest, redrive

_MOMENT = TypeAdapter(AwareDatetime)
_ERROR_CODE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def moment(text: str) -> datetime:
    """An ISO 8601 time with an offset (`2026-11-26T10:00:00Z`), or a date (midnight UTC)."""
    try:
        if len(text) == 10:
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        return _MOMENT.validate_python(text)
    except (ValueError, ValidationError) as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time with an offset, nor a date: {text!r}") from exc


def error_code(text: str) -> str:
    if not text or not set(text) <= _ERROR_CODE_CHARS:
        raise argparse.ArgumentTypeError(f"an error_code is lowercase letters, digits and _: {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.ops", description="Operator commands.")
    commands = parser.add_subparsers(dest="command", required=True)
    redrive_parser = commands.add_parser(
        "redrive",
        help="send dead letters of one reason back to their origin topic (each at most once)",
        description="Send dead letters back to their origin topic once their cause is fixed.",
    )
    redrive_parser.add_argument(
        "--reason", required=True, type=error_code, help="the error_code, e.g. parked_vote_expired"
    )
    redrive_parser.add_argument("--since", type=moment, help="only letters that failed at or after this time")
    redrive_parser.add_argument("--dry-run", action="store_true", help="list what would go, send nothing")
    redrive_parser.add_argument("--stack", type=Path, help="the stack file of a running `make up` (.run/stack.json)")
    return parser


async def run_redrive(settings: OpsSettings, request: RedriveRequest) -> RedriveReport:
    pool = await db.create_pool(settings)
    broker = make_broker(settings, client_id="ops")
    try:
        await broker.connect()
        return await redrive(pool=pool, broker=broker, settings=settings, request=request)
    finally:
        await broker.stop()
        await pool.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings(args.stack)
    configure_logging("console", "WARNING")
    request = RedriveRequest(reason=args.reason, since=args.since, dry_run=args.dry_run)
    try:
        report = asyncio.run(run_redrive(settings, request))
    except (PipelineError, KafkaError, OSError, TimeoutError) as exc:
        print(f"redrive failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.to_json(), indent=2))
    return 0
