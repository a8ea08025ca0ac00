"""App keys: the app_ids a chat app may write; issued and revoked by an admin, stored hashed, checked per request.

With APP_KEYS_REQUIRED, every end-user write route (ingest's interactions, feedback's votes, single
and batch) asks for `Authorization: Bearer <app key>` (shared.edge_http):
- no key, or one unknown or revoked: 401, before the body is read;
- an item whose `app_id` the key does not cover: refused as `forbidden`, type `app_not_allowed`
  naming `app_id` (403 for a single post; per item in a batch, where the other items go on),
  before it is validated further, deduped or published: it never claims its event_id.

A key is `secrets.token_urlsafe(32)` (256 random bits), shown once when issued; only its sha256 is
stored, in the shared table `app_keys` (ingest issues keys, ingest and feedback check them, and
neither imports the other). A request is authenticated by looking the hash up, with no cache, so a
revoke takes effect on the very next request in every instance of both services; the price is one
indexed read per request (not per item of a batch). Without the database the key cannot be checked
and the request gets 503: closed, never open. Logs name a key by its `key_id`, never the key.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared import db
from shared.errors import AuthError, ContractError, TransientError
from shared.events import Id

log = structlog.get_logger(__name__)
QUERIES = db.SHARED_QUERIES

APP_NOT_ALLOWED = "app_not_allowed"
MAX_APP_IDS_PER_KEY = 64


class AppKeyGrant(BaseModel):
    """Body of `POST /v1/admin/apps`: the app_ids the new key may write."""

    model_config = ConfigDict(extra="forbid")

    app_ids: list[Id] = Field(
        min_length=1, max_length=MAX_APP_IDS_PER_KEY, description="The app_ids this key may write (at least one)."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class AppKey:
    """A live key, as a request presented it: its id and what it may write."""

    key_id: str
    app_ids: frozenset[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedKey:
    """A key just issued: the only moment the key itself exists outside its holder."""

    key_id: str
    key: str
    app_ids: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "key": self.key, "app_ids": list(self.app_ids)}


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRecord:
    """What is known of a key afterwards (never the key)."""

    key_id: str
    app_ids: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "app_ids": list(self.app_ids),
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def new_key() -> str:
    return secrets.token_urlsafe(32)


def new_key_id() -> str:
    """A key's public name (logs, revocation): `ak_` and 16 hex digits, unrelated to the key."""
    return f"ak_{secrets.token_hex(8)}"


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def refuse_app(item: Any, key: AppKey) -> dict[str, Any] | None:
    """The error of an item whose `app_id` the key does not cover, or None when the item may go on.

    An item with no string `app_id` goes on: validation refuses it (422 naming `app_id`). A string
    is compared as sent, which is what validation keeps: identifiers are never normalised.
    """
    app_id = item.get("app_id") if isinstance(item, dict) else None
    if not isinstance(app_id, str) or app_id in key.app_ids:
        return None
    return {"loc": ["app_id"], "msg": "this app key may not write this app_id", "type": APP_NOT_ALLOWED}


def parse_app_ids(text: str) -> list[str]:
    """`helpdesk,billing` -> ["helpdesk", "billing"] (the CLI's spelling)."""
    return [a.strip() for a in text.split(",") if a.strip()]


def grant_from(app_ids: list[str]) -> AppKeyGrant:
    """Validate a grant given outside HTTP (the CLI); ContractError names the bad field."""
    try:
        return AppKeyGrant(app_ids=app_ids)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise ContractError("invalid app_ids", errors=[dict(e) for e in errors]) from exc


async def issue_key(pool: asyncpg.Pool, grant: AppKeyGrant) -> IssuedKey:
    """Create a key for the grant's app_ids; the key is returned once and only its hash is kept."""
    key, key_id, app_ids = new_key(), new_key_id(), tuple(sorted(set(grant.app_ids)))
    async with db.translate_errors():
        await pool.execute(QUERIES["insert_app_key"], key_id, hash_key(key), list(app_ids))
    log.info("app_key_issued", key_id=key_id, app_ids=list(app_ids))
    return IssuedKey(key_id=key_id, key=key, app_ids=app_ids)


async def revoke_key(pool: asyncpg.Pool, key_id: str) -> bool:
    """Revoke a key (refused from the next request on); False when no key has this id."""
    async with db.translate_errors():
        existed = await pool.fetchval(QUERIES["revoke_app_key"], key_id) is not None
    log.info("app_key_revoked", key_id=key_id, existed=existed)
    return existed


async def list_keys(pool: asyncpg.Pool, app_id: str | None = None) -> list[KeyRecord]:
    """Every key, revoked ones included (optionally those covering `app_id`), oldest first."""
    async with db.translate_errors():
        rows = await pool.fetch(QUERIES["select_app_keys"], app_id)
    return [
        KeyRecord(
            key_id=row["key_id"],
            app_ids=tuple(row["app_ids"]),
            created_at=row["created_at"],
            revoked_at=row["revoked_at"],
        )
        for row in rows
    ]


async def authenticate_app(pool: asyncpg.Pool, key: str | None, *, timeout_s: float) -> AppKey:
    """The live key a bearer token is; AuthError (401) when missing, unknown or revoked.

    Raises TransientError (503) when the database does not answer within `timeout_s`.
    """
    if not key:
        log.info("app_key_refused", reason="missing")
        raise AuthError("an app key is required (Authorization: Bearer <app key>)")
    try:
        async with db.translate_errors(), asyncio.timeout(timeout_s):
            row = await pool.fetchrow(QUERIES["select_app_key_by_hash"], hash_key(key))
    except TimeoutError as exc:
        raise TransientError("app keys cannot be checked: the database did not answer") from exc
    if row is None:
        log.info("app_key_refused", reason="unknown_or_revoked")
        raise AuthError("invalid or revoked app key")
    log.debug("app_key_authenticated", key_id=row["key_id"])
    return AppKey(key_id=row["key_id"], app_ids=frozenset(row["app_ids"]))
