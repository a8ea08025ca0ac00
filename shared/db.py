"""PostgreSQL plumbing: the pool, named-query loading, error translation, the migration runner."""

from __future__ import annotations

import asyncio
import hashlib
import re
import ssl
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import orjson
import structlog

from shared.errors import ConfigurationError, ConflictError, TransientError
from shared.settings import PipelineSettings

log = structlog.get_logger(__name__)

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
    # A connection caught mid-operation by a server shutdown ("cannot switch to state ...; another
    # operation is in progress"), raised when the pool resets it on release; the pool drops it.
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
)


@dataclass(frozen=True, slots=True)
class Migrations:
    """One component's numbered migrations (`NNNN_what.sql`, forward-only, never edited once merged).

    Each component keeps its SQL beside its code and names itself: the shared tables are "shared",
    a service's own are its service name. `schema_migrations` records what was applied per component.
    """

    component: str
    folder: Path


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


SHARED_SQL = Path(__file__).parent / "sql"
SHARED_QUERIES = load_queries(SHARED_SQL / "queries.sql")
# Every service needs these first: published event ids (edge dedupe) and the outbox.
SHARED_MIGRATIONS = Migrations("shared", SHARED_SQL / "migrations")


def encode_json(value: object) -> str:
    """json / jsonb parameters as text (orjson: several times json.dumps' speed; keys that are not str
    become str, as json.dumps does)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(typename, encoder=encode_json, decoder=orjson.loads, schema="pg_catalog")


def with_root_cert(url: str, root_cert: Path | None) -> str:
    """`url` with `root_cert` as its `sslrootcert` (asyncpg reads it from the DSN), or `url` when None."""
    if root_cert is None:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "sslrootcert"]
    query.append(("sslrootcert", str(root_cert)))
    return urlunsplit(parts._replace(query=urlencode(query)))


def database_dsn(settings: PipelineSettings) -> str:
    """The DSN every asyncpg connection of the project uses: DATABASE_URL, plus DATABASE_SSL_ROOT_CERT when set."""
    return with_root_cert(settings.database_url, settings.database_ssl_root_cert)


def _tls_refused(exc: ssl.SSLCertVerificationError) -> ConfigurationError:
    # A certificate that fails verification fails the same way on every retry: say so at once.
    return ConfigurationError(
        "PostgreSQL's TLS certificate was refused: check DATABASE_SSL_ROOT_CERT (or sslrootcert) and the host name "
        "in DATABASE_URL",
        reason=exc.verify_message,
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: asyncpg has rolled back an open transaction already; nothing else to undo.

    asyncpg's default reset sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;`,
    one more round trip on every release. No pooled connection changes its session (no SET, LISTEN or
    held cursor; the migration lock takes a connection of its own; the leaderboard worker's session lock
    is released in a `finally` that terminates the connection when the unlock fails), so that round trip
    would undo nothing.
    """


async def create_pool(settings: PipelineSettings, *, deadline_s: float | None = None) -> asyncpg.Pool:
    """Open the pool, retrying with capped backoff until `deadline_s` (default: connect timeout x 3).

    Raises ConfigurationError at once when the server's TLS certificate fails verification.
    """
    deadline = asyncio.get_running_loop().time() + (deadline_s or settings.db_connect_timeout_s * 3)
    backoff = settings.retry_initial_backoff_s
    while True:
        try:
            return await asyncpg.create_pool(
                database_dsn(settings),
                min_size=settings.db_pool_min_size,
                max_size=settings.db_pool_max_size,
                command_timeout=settings.db_command_timeout_s,
                timeout=settings.db_connect_timeout_s,
                init=_init_connection,
                reset=_keep_session,
            )
        except ssl.SSLCertVerificationError as exc:
            raise _tls_refused(exc) from exc
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


def _migration_files(migrations: Sequence[Migrations]) -> list[tuple[str, int, Path]]:
    files = []
    for component in migrations:
        if not component.folder.is_dir():
            continue
        for path in sorted(component.folder.iterdir()):
            match = _MIGRATION_NAME.match(path.name)
            if match:
                files.append((component.component, int(match.group(1)), path))
    return files


async def migrate(dsn: str, migrations: Sequence[Migrations]) -> list[str]:
    """Apply every pending migration of `migrations` (in that order), each in its own transaction.

    Returns those applied now. Safe to run from several processes at once (an advisory lock
    serializes them).
    """
    try:
        conn = await asyncpg.connect(dsn)
    except ssl.SSLCertVerificationError as exc:
        raise _tls_refused(exc) from exc
    applied_now: list[str] = []
    try:
        await conn.execute(SHARED_QUERIES["lock_migrations"], _MIGRATION_LOCK_ID)
        await conn.execute(SHARED_QUERIES["create_schema_migrations"])
        done = {(r["component"], r["version"]) for r in await conn.fetch(SHARED_QUERIES["select_schema_migrations"])}
        for component, version, path in _migration_files(migrations):
            if (component, version) in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute(SHARED_QUERIES["insert_schema_migration"], component, version, path.name)
            applied_now.append(f"{component}/{path.name}")
        if applied_now:
            log.info("migrations_applied", migrations=applied_now)
    finally:
        try:
            await conn.execute(SHARED_QUERIES["unlock_migrations"], _MIGRATION_LOCK_ID)
        finally:
            await conn.close()
    return applied_now


def advisory_lock_key(name: str) -> int:
    """A signed 32-bit key for a two-key advisory lock on `name` (blake2b; a collision only makes two names
    take turns)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "big", signed=True)


def advisory_lock_keys(names: Iterable[str]) -> list[int]:
    """The keys of these names, once each, sorted: the order every transaction takes several in."""
    return sorted({advisory_lock_key(name) for name in names})
