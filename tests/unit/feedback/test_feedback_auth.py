"""Annotator tokens and the admin guard, without a database."""

from __future__ import annotations

import pytest

from services.feedback import auth
from shared.errors import AuthError, ContractError, ForbiddenError


def test_tokens_are_random_and_stored_as_sha256() -> None:
    first, second = auth.new_token(), auth.new_token()
    assert first != second and len(first) >= 43
    assert auth.hash_token(first) == auth.hash_token(first) != auth.hash_token(second)
    assert len(auth.hash_token(first)) == 32


@pytest.mark.parametrize("token", [None, "", "wrong", "admin-secret "])
def test_admin_guard_refuses_anything_but_the_admin_token(token: str | None) -> None:
    with pytest.raises(AuthError):
        auth.check_admin(token, "admin-secret")
    auth.check_admin("admin-secret", "admin-secret")


@pytest.mark.parametrize("admin_token", [None, ""])
def test_admin_routes_closed_while_no_admin_token_is_set(admin_token: str | None) -> None:
    for token in (None, "", "anything"):
        with pytest.raises(ForbiddenError):
            auth.check_admin(token, admin_token)


def test_cli_domains_are_validated() -> None:
    assert auth.parse_domains(" medical, legal,,") == ["medical", "legal"]
    assert auth.grant_from("alice", ["medical", "legal"]).domains == ["medical", "legal"]
    with pytest.raises(ContractError) as exc:
        auth.grant_from("alice", ["Medical Stuff"])
    assert exc.value.errors[0]["loc"] == ("domains", 0)
    with pytest.raises(ContractError):
        auth.grant_from("alice", [])
