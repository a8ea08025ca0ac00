"""The admin token check of every service's admin routes (ADMIN_TOKEN): one policy, 403 when unset, 401 when wrong."""

from __future__ import annotations

import hashlib
import hmac

from shared.errors import AuthError, ForbiddenError


def is_admin_token(token: str, admin_token: str) -> bool:
    """Whether `token` is the admin token; hashes are compared, so the time taken says nothing of either length."""
    return hmac.compare_digest(hashlib.sha256(token.encode()).digest(), hashlib.sha256(admin_token.encode()).digest())


def check_admin(token: str | None, admin_token: str | None) -> None:
    """Admin routes are closed unless ADMIN_TOKEN is set (ForbiddenError: 403), and need exactly it (AuthError: 401)."""
    if not admin_token:
        raise ForbiddenError("admin endpoints are disabled: ADMIN_TOKEN is not set")
    if not token or not is_admin_token(token, admin_token):
        raise AuthError("the admin token is required")
