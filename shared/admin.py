"""The admin token: one check for every service's admin routes (the ADMIN_TOKEN setting, a bearer token).

Admin routes are closed while ADMIN_TOKEN is unset (403, never open) and need exactly it (401 with
`WWW-Authenticate: Bearer` otherwise). Tokens are compared through their sha256, in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.errors import AuthError, ForbiddenError

admin_bearer = HTTPBearer(auto_error=False, scheme_name="AdminToken", description="The ADMIN_TOKEN.")


def is_admin_token(token: str, admin_token: str) -> bool:
    # Comparing hashes keeps the comparison constant-time whatever the lengths.
    return hmac.compare_digest(hashlib.sha256(token.encode()).digest(), hashlib.sha256(admin_token.encode()).digest())


def check_admin(token: str | None, admin_token: str | None) -> None:
    """Admin endpoints are closed unless ADMIN_TOKEN is set (403), and need exactly it (401)."""
    if not admin_token:
        raise ForbiddenError("admin endpoints are disabled: ADMIN_TOKEN is not set")
    if not token or not is_admin_token(token, admin_token):
        raise AuthError("the admin token is required")


def require_admin(admin_token: str | None) -> Callable[..., Awaitable[None]]:
    """A route dependency that lets only the admin token through."""

    async def dependency(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)],
    ) -> None:
        check_admin(credentials.credentials if credentials is not None else None, admin_token)

    return dependency
