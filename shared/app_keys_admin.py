"""The admins' routes for app keys (ingest mounts them; ADMIN_TOKEN, shared.admin): issue, list, revoke.

`POST /v1/admin/apps` with `{"app_ids": [...]}` -> 201 `{"key_id", "key", "app_ids"}`, the key shown
this once; `GET /v1/admin/apps[?app_id=...]` lists keys (never a key itself); `DELETE
/v1/admin/apps/{key_id}` revokes, effective on the next request in ingest and feedback alike.
`python -m services.ingest.admin` does the same from a shell.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

import asyncpg
from fastapi import APIRouter, Depends, Path, Query

from shared.admin import require_admin
from shared.app_keys import AppKeyGrant, issue_key, list_keys, revoke_key
from shared.errors import NotFoundError
from shared.events import Id
from shared.runtime import ContextDependency
from shared.security_settings import secret_value
from shared.settings import PipelineSettings

# Wider than what new_key_id makes, so a differently made id would still be revocable; never a control character.
KEY_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_REFUSED = {
    401: {"description": "Not the admin token"},
    403: {"description": "ADMIN_TOKEN is not set: admin routes are closed"},
}


class PoolContext(Protocol):
    """A service context holding the runtime's pool."""

    pool: asyncpg.Pool


def app_keys_admin_router(dependency: ContextDependency[PoolContext], settings: PipelineSettings) -> APIRouter:
    router = APIRouter(
        prefix="/v1/admin/apps",
        tags=["admin"],
        dependencies=[Depends(require_admin(secret_value(settings.admin_token)))],
        responses=_REFUSED,  # type: ignore[arg-type]
    )

    @router.post(
        "",
        status_code=201,
        summary="Issue an app key for these app_ids (the key is shown once, stored hashed)",
        responses={201: {"description": "`key` goes into the app's `Authorization: Bearer` header; `key_id` names "
                         "it in logs and revokes it"}},
    )  # fmt: skip
    async def issue(body: AppKeyGrant, context: PoolContext = Depends(dependency)) -> dict[str, Any]:
        return (await issue_key(context.pool, body)).to_json()

    @router.get("", summary="Every app key (never the key itself), revoked ones included")
    async def listing(
        app_id: Annotated[Id | None, Query(description="Only keys that cover this app_id.")] = None,
        context: PoolContext = Depends(dependency),
    ) -> dict[str, Any]:
        return {"keys": [record.to_json() for record in await list_keys(context.pool, app_id)]}

    @router.delete(
        "/{key_id}",
        summary="Revoke an app key: refused from the next request on, in ingest and feedback",
        responses={404: {"description": "No key has this id"}},
    )
    async def revoke(
        key_id: Annotated[str, Path(pattern=KEY_ID_PATTERN, description="The key's id, e.g. ak_0123456789abcdef.")],
        context: PoolContext = Depends(dependency),
    ) -> dict[str, Any]:
        if not await revoke_key(context.pool, key_id):
            raise NotFoundError("no such app key", key_id=key_id)
        return {"key_id": key_id, "revoked": True}

    return router
