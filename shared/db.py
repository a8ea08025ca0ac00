"""PostgreSQL plumbing: the pool, named-query loading, error translation, the migration runner."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import structlog

from shared.errors import ConflictError, TransientError
from shared.settings import PipelineSettings

log = structlog.get_logger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
# Components whose migrations exist, in the order they are applied. Each keeps its SQL beside
# its code (`<dir>/sql/migrations/NNNN_what.sql`); migrations are forward-only, never edited.
MIGRATION_COMPONENTS: dict[str, Path] = {
    "shared": REPO_ROOT / "shared" / "sql" / "migrations",
    "ingest": REPO_ROOT / "services" / "ingest" / "sql" / "migrations",
    "feedback": REPO_ROOT / "services" / "feedback" / "sql" / "migrations",
    "aggregator": REPO_ROOT / "services" / "aggregator" / "sql" / "migrations",
}
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Any fixed number: it only has to be the same for every process running migrations.
_MIGRATION_LOCK_ID = 727_001

# Errors that mean "the server is not there right now": retry, never dead-letter.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
)


def load_queries(path: Path) -> dict[str, str]:
    """Parse a queries.sql of `-- name: verb_noun` blocks (then a `-- purpose` line) into a dict."""
    queries: dict[str, str] = {}
    name = None
    lines: list[str] = []
    for line in path.read_text().splitlines():
        match = re.match(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", line)
        if match:
            if name:
                queries[name] = "\n".join(lines).strip()
            name, lines = match.group(1), []
        elif name is not None and not line.startswith("--"):
            lines.append(line)
    if name:
        queries[name] = "\n".join(lines).strip()
    return queries


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(settings: PipelineSettings, *, deadline_s: float | None = None) -> asyncpg.Pool:
    """Open the pool, retrying with capped backoff until `deadline_s` (default: connect timeout x 3)."""
    deadline = asyncio.get_running_loop().time() + (deadline_s or settings.db_connect_timeout_s * 3)
    backoff = settings.retry_initial_backoff_s
    while True:
        try:
            return await asyncpg.create_pool(
                settings.database_url,
                min_size=settings.db_pool_min_size,
                max_size=settings.db_pool_max_size,
                command_timeout=settings.db_command_timeout_s,
                timeout=settings.db_connect_timeout_s,
                init=_init_connection,
            )
        except TRANSIENT_DB_ERRORS as exc:
            if asyncio.get_running_loop().time() + backoff > deadline:
                raise TransientError("database unreachable", error=type(exc).__name__) from exc
            log.warning("database_connect_retry", error=type(exc).__name__, backoff_s=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, settings.retry_max_backoff_s)


@asynccontextmanager
async def translate_errors() -> AsyncIterator[None]:
    """Turn asyncpg errors into the pipeline's: unique violation -> ConflictError, outage -> TransientError."""
    try:
        yield
    except asyncpg.exceptions.UniqueViolationError as exc:
        raise ConflictError("already exists", constraint=exc.constraint_name) from exc
    except TRANSIENT_DB_ERRORS as exc:
        raise TransientError("database unavailable", error=type(exc).__name__) from exc


async def ping(pool: asyncpg.Pool, timeout_s: float) -> bool:
    """True when a connection answers `SELECT 1` within the deadline."""
    try:
        async with asyncio.timeout(timeout_s):
            async with pool.acquire() as conn:
                return await conn.fetchval("SELECT 1") == 1
    except (Exception, TimeoutError):
        return False


def _migration_files(components: list[str]) -> list[tuple[str, int, Path]]:
    files = []
    for component in components:
        folder = MIGRATION_COMPONENTS[component]
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            match = _MIGRATION_NAME.match(path.name)
            if match:
                files.append((component, int(match.group(1)), path))
    return files


async def migrate(dsn: str, components: list[str] | None = None) -> list[str]:
    """Apply every pending numbered migration, each in its own transaction; return those applied.

    Safe to run from several processes at once (an advisory lock serializes them).
    """
    wanted = components or list(MIGRATION_COMPONENTS)
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   component text NOT NULL,
                   version integer NOT NULL,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now(),
                   PRIMARY KEY (component, version))"""
        )
        done = {
            (r["component"], r["version"]) for r in await conn.fetch("SELECT component, version FROM schema_migrations")
        }
        for component, version, path in _migration_files(wanted):
            if (component, version) in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute(
                    "INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)",
                    component,
                    version,
                    path.name,
                )
            applied_now.append(f"{component}/{path.name}")
        if applied_now:
            log.info("migrations_applied", migrations=applied_now)
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
        finally:
            await conn.close()
    return applied_now
