"""`python -m services.feedback.admin`: issue and revoke annotator tokens (reads DATABASE_URL).

    python -m services.feedback.admin issue --annotator alice --domains medical,legal   # prints the token
    python -m services.feedback.admin revoke --annotator alice

The feedback migrations are applied first, so it also works before the service ever started.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from services.feedback import auth
from services.feedback.app import MIGRATIONS
from services.feedback.settings import FeedbackSettings
from shared import db
from shared.errors import PipelineError
from shared.logging import configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.feedback.admin", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    issue = commands.add_parser("issue", help="Issue a token for an annotator (printed once, stored hashed).")
    issue.add_argument("--annotator", required=True, help="The annotator's id.")
    issue.add_argument("--domains", required=True, help="Comma-separated domains, e.g. medical,legal.")
    revoke = commands.add_parser("revoke", help="Revoke every token of an annotator and release its leases.")
    revoke.add_argument("--annotator", required=True, help="The annotator's id.")
    return parser


async def run(args: argparse.Namespace, settings: FeedbackSettings) -> str:
    """Carry out one command; returns what to print."""
    if args.command == "issue":
        grant = auth.grant_from(args.annotator, auth.parse_domains(args.domains))
    await db.migrate(settings.database_url, MIGRATIONS)
    pool = await db.create_pool(settings)
    try:
        if args.command == "issue":
            return await auth.issue_token(pool, grant)
        if not await auth.revoke_annotator(pool, args.annotator):
            raise PipelineError("no such annotator", annotator_id=args.annotator)
        return f"revoked {args.annotator}"
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = FeedbackSettings()
    # Logs go to stderr, so stdout carries only the result (a token can be captured with $(...)).
    configure_logging(settings.log_format, settings.log_level)
    try:
        print(asyncio.run(run(args, settings)))
    except PipelineError as exc:
        print(f"error: {exc.to_log_context()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
