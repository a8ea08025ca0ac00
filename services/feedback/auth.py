"""Annotator tokens: issued and revoked by an admin, stored as sha256 hashes, checked on every request.

A token is `secrets.token_urlsafe(32)` (256 random bits); only its sha256 is stored, and a request is
authenticated by looking that hash up, so no stored secret is ever compared byte by byte: here
(`authenticate`), or inside the lease and verdict statements (`bearer`, saving a round trip). Nothing
is cached: a revoked token is refused on the very next request.
"""

from __future__ import annotations

import hashlib
import secrets

import asyncpg
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.feedback import annotator_store, store
from shared.admin import check_admin, is_admin_token
from shared.errors import AuthError, ContractError
from shared.events import Domain, Id

log = structlog.get_logger(__name__)
# The admin token check is the one of every service (shared.admin); feedback's routes call it from here.
__all__ = ["AnnotatorGrant", "authenticate", "check_admin", "grant_from", "hash_token", "is_admin_token", "new_token"]

INVALID_TOKEN = "invalid or revoked token"


class AnnotatorGrant(BaseModel):
    """Body of `POST /v1/admin/annotators`: who, and which domains its token opens."""

    model_config = ConfigDict(extra="forbid")

    annotator_id: Id
    domains: list[Domain] = Field(min_length=1, max_length=64)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_domains(text: str) -> list[str]:
    """`medical,legal` -> ["medical", "legal"] (the CLI's spelling)."""
    return [d.strip() for d in text.split(",") if d.strip()]


async def issue_token(pool: asyncpg.Pool, grant: AnnotatorGrant) -> str:
    """Create (or re-enable) the annotator with these domains and return a new token for it."""
    token = new_token()
    async with store.transaction(pool) as conn:
        await annotator_store.upsert_annotator(conn, grant.annotator_id, sorted(set(grant.domains)))
        await annotator_store.insert_annotator_token(conn, hash_token(token), grant.annotator_id)
    log.info("annotator_token_issued", annotator_id=grant.annotator_id, domains=sorted(set(grant.domains)))
    return token


async def revoke_annotator(pool: asyncpg.Pool, annotator_id: str) -> bool:
    """Revoke every token of the annotator and give its leases back; False when it never existed."""
    async with store.transaction(pool) as conn:
        existed = await annotator_store.revoke_annotator(conn, annotator_id)
        if existed:
            await annotator_store.release_annotator_leases(conn, annotator_id)
    log.info("annotator_revoked", annotator_id=annotator_id, existed=existed)
    return existed


async def authenticate(pool: asyncpg.Pool, token: str | None) -> store.Annotator:
    """The annotator a bearer token belongs to; AuthError (401) when missing, unknown or revoked."""
    if not token:
        raise AuthError("a bearer token is required")
    annotator = await annotator_store.select_annotator_by_token(pool, hash_token(token))
    if annotator is None:
        raise AuthError(INVALID_TOKEN)
    return annotator


def bearer(token: str | None) -> store.Bearer:
    """A request's token for a statement that authenticates it itself; AuthError (401) when there is none."""
    if not token:
        raise AuthError("a bearer token is required")
    return store.Bearer(hash_token(token))


def grant_from(annotator_id: str, domains: list[str]) -> AnnotatorGrant:
    """Validate a grant given outside HTTP (the CLI); ContractError names the bad field."""
    try:
        return AnnotatorGrant(annotator_id=annotator_id, domains=domains)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise ContractError("invalid annotator or domains", errors=[dict(e) for e in errors]) from exc
