"""Annotators and their tokens in PostgreSQL: one function per named query in sql/queries.sql (auth.py's store).

Tokens are stored as hashes only; revoking an annotator revokes every token and releases its leases.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from services.feedback.store import QUERIES, Annotator
from shared import db


async def upsert_annotator(conn: asyncpg.Connection, annotator_id: str, domains: Sequence[str]) -> None:
    await conn.execute(QUERIES["upsert_annotator"], annotator_id, list(domains))


async def insert_annotator_token(conn: asyncpg.Connection, token_hash: bytes, annotator_id: str) -> None:
    await conn.execute(QUERIES["insert_annotator_token"], token_hash, annotator_id)


async def select_annotator_by_token(pool: asyncpg.Pool, token_hash: bytes) -> Annotator | None:
    async with db.translate_errors():
        row = await pool.fetchrow(QUERIES["select_annotator_by_token"], token_hash)
    return None if row is None else Annotator(row["annotator_id"], tuple(row["domains"]))


async def revoke_annotator(conn: asyncpg.Connection, annotator_id: str) -> bool:
    """True when the annotator existed (it is revoked now, with every token)."""
    return await conn.fetchval(QUERIES["revoke_annotator"], annotator_id) is not None


async def release_annotator_leases(conn: asyncpg.Connection, annotator_id: str) -> None:
    await conn.execute(QUERIES["release_annotator_leases"], annotator_id)
