"""`python -m services.ingest.admin`: issue, list and revoke app keys (what ingest's /v1/admin/apps does).

    python -m services.ingest.admin issue --app-ids helpdesk,billing   # the key, shown this once
    python -m services.ingest.admin list [--app-id helpdesk]
    python -m services.ingest.admin revoke --key-id ak_0123456789abcdef

Prints the same JSON as the HTTP routes on stdout (`{"key_id", "key", "app_ids"}`, `{"keys": [...]}`,
`{"key_id", "revoked"}`); logs go to stderr. Reads DATABASE_URL (or DATABASE_URL_FILE), else the
database of a running `make up` (`.run/stack.json`, or --stack). The shared migrations are applied
first, so it works before ingest ever started. Exit codes: 0 done; 1 refused or failed (no such key,
bad app_ids, the database away); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from services.ingest.app import MIGRATIONS
from services.ingest.settings import IngestSettings
from shared import app_keys, db
from shared.errors import NotFoundError, PipelineError
from shared.logging import configure_logging

STACK_FILE = Path(".run/stack.json")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.ingest.admin", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", type=Path, default=STACK_FILE, help="make up's stack file, read when DATABASE_URL "
                        "is unset (default .run/stack.json)")  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    issue = commands.add_parser("issue", help="Issue an app key (printed once, stored hashed).")
    issue.add_argument("--app-ids", required=True, help="Comma-separated app_ids the key may write, e.g. helpdesk.")
    listing = commands.add_parser("list", help="List app keys (never a key itself), revoked ones included.")
    listing.add_argument("--app-id", help="Only keys that cover this app_id.")
    revoke = commands.add_parser("revoke", help="Revoke an app key: refused from the next request on.")
    revoke.add_argument("--key-id", required=True, help="The key's id, as issue printed it.")
    return parser


def load_settings(stack_file: Path) -> IngestSettings:
    """The environment's settings; without DATABASE_URL, the database of the stack file when there is one."""
    settings = IngestSettings()
    if "database_url" in settings.model_fields_set or not stack_file.is_file():
        return settings
    url = json.loads(stack_file.read_text()).get("database_url")
    return settings.model_copy(update={"database_url": url}) if url else settings


async def run(args: argparse.Namespace, settings: IngestSettings) -> dict[str, Any]:
    """Carry out one command; returns what to print."""
    if args.command == "issue":
        grant = app_keys.grant_from(app_keys.parse_app_ids(args.app_ids))
    await db.migrate(db.database_dsn(settings), MIGRATIONS)
    pool = await db.create_pool(settings)
    try:
        if args.command == "issue":
            return (await app_keys.issue_key(pool, grant)).to_json()
        if args.command == "list":
            return {"keys": [record.to_json() for record in await app_keys.list_keys(pool, args.app_id)]}
        if not await app_keys.revoke_key(pool, args.key_id):
            raise NotFoundError("no such app key", key_id=args.key_id)
        return {"key_id": args.key_id, "revoked": True}
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = load_settings(args.stack)
    # Logs go to stderr, so stdout carries only the result (the key can be captured with $(...) | jq).
    configure_logging(settings.log_format, settings.log_level)
    try:
        print(json.dumps(asyncio.run(run(args, settings))))
    except PipelineError as exc:
        print(f"error: {exc.to_log_context()}", file=sys.stderr)
        return 1
    except (OSError, TimeoutError) as exc:
        print(f"error: the database could not be reached: {type(exc).__name__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
