"""App keys, the pure parts: which items a key covers, keys and their hashes, grants, the batch verdict, the OpenAPI."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.feedback.app import create_app as create_feedback
from services.feedback.settings import FeedbackSettings
from services.ingest import admin
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from shared.app_keys import (
    APP_NOT_ALLOWED,
    AppKey,
    grant_from,
    hash_key,
    new_key,
    new_key_id,
    parse_app_ids,
    refuse_app,
)
from shared.edge import ItemResult
from shared.edge_lane import batch_results_reply
from shared.errors import ContractError

KEY = AppKey(key_id="ak_0000000000000000", app_ids=frozenset({"helpdesk", "billing"}))


def test_an_item_of_a_covered_app_goes_on() -> None:
    assert refuse_app({"app_id": "helpdesk", "event_id": "x"}, KEY) is None
    assert refuse_app({"app_id": "billing"}, KEY) is None


def test_an_item_of_another_app_is_refused_naming_app_id() -> None:
    assert refuse_app({"app_id": "other"}, KEY) == {
        "loc": ["app_id"],
        "msg": "this app key may not write this app_id",
        "type": APP_NOT_ALLOWED,
    }


@pytest.mark.parametrize("item", [{}, {"app_id": None}, {"app_id": ["helpdesk"]}, {"app_id": 7}, [], "helpdesk", None])
def test_an_item_without_a_string_app_id_is_left_to_validation(item: Any) -> None:
    # Validation refuses it (422 naming app_id); nothing of it can be published.
    assert refuse_app(item, KEY) is None


@pytest.mark.parametrize("app_id", ["helpdesk ", "HELPDESK", "helpdesk\u200b", "help desk"])
def test_app_ids_are_compared_exactly(app_id: str) -> None:
    assert refuse_app({"app_id": app_id}, KEY) is not None


@given(covered=st.sets(st.text(min_size=1), min_size=1, max_size=5), app_id=st.text(min_size=1))
def test_refused_exactly_when_not_covered(covered: set[str], app_id: str) -> None:
    key = AppKey(key_id="ak_1", app_ids=frozenset(covered))
    assert (refuse_app({"app_id": app_id}, key) is None) == (app_id in covered)


def test_keys_are_long_random_and_stored_as_their_sha256() -> None:
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(len(k) >= 43 for k in keys), "256 random bits, url-safe base64"
    key = next(iter(keys))
    assert hash_key(key) == hashlib.sha256(key.encode()).digest()
    assert re.fullmatch(r"ak_[0-9a-f]{16}", new_key_id())
    assert new_key_id() != new_key_id()


def test_grants_name_what_is_wrong() -> None:
    assert grant_from(["b", "a"]).app_ids == ["b", "a"]
    assert parse_app_ids(" helpdesk, ,billing,") == ["helpdesk", "billing"]
    for bad in ([], ["ok", "bad\x00id"], ["x" * 300], [f"a{i}" for i in range(65)]):
        with pytest.raises(ContractError) as refused:
            grant_from(bad)
        assert all(e["loc"][0] == "app_ids" for e in refused.value.errors)


def result(index: int, status: str, errors: tuple[dict[str, Any], ...] = ()) -> ItemResult:
    return ItemResult(index=index, status=status, event_id=f"e{index}", errors=errors)  # type: ignore[arg-type]


FORBIDDEN = ({"loc": ["app_id"], "msg": "m", "type": APP_NOT_ALLOWED},)
REJECTED = ({"loc": ["kind"], "msg": "m", "type": "missing"},)


def test_a_batch_with_every_item_forbidden_is_403_naming_each_app_id() -> None:
    response = batch_results_reply([result(0, "forbidden", FORBIDDEN), result(1, "forbidden", FORBIDDEN)])
    body = response.body
    assert response.status_code == 403
    assert [e["loc"] for e in body["detail"]] == [["body", 0, "app_id"], ["body", 1, "app_id"]]
    assert [r["status"] for r in body["results"]] == ["forbidden", "forbidden"]
    assert len(body["forbidden"]) == 2 and body["accepted"] == []


def test_a_batch_with_anything_accepted_is_202_and_reports_the_forbidden() -> None:
    response = batch_results_reply([result(0, "forbidden", FORBIDDEN), result(1, "accepted"), result(2, "duplicate")])
    body = response.body
    assert response.status_code == 202
    assert body["accepted"] == ["e1", "e2"]
    assert body["forbidden"] == [{"index": 0, "status": "forbidden", "event_id": "e0", "errors": list(FORBIDDEN)}]


def test_with_nothing_accepted_forbidden_comes_before_rejected_and_conflict() -> None:
    assert batch_results_reply([result(0, "rejected", REJECTED), result(1, "forbidden", FORBIDDEN)]).status_code == 403
    assert batch_results_reply([result(0, "rejected", REJECTED), result(1, "conflict", REJECTED)]).status_code == 422
    assert batch_results_reply([result(0, "conflict", REJECTED)]).status_code == 409
    assert batch_results_reply([]).status_code == 202


@pytest.mark.parametrize("is_required", [True, False])
def test_the_write_routes_declare_the_app_key_scheme(is_required: bool) -> None:
    for app, path in (
        (create_ingest(IngestSettings(app_keys_required=is_required)), "/v1/interactions"),
        (create_feedback(FeedbackSettings(app_keys_required=is_required)), "/v1/votes"),
    ):
        document = app.openapi()
        assert document["components"]["securitySchemes"]["AppKey"] == {
            "type": "http",
            "scheme": "bearer",
            "description": "An app key (issued by POST {ingest}/v1/admin/apps); required when APP_KEYS_REQUIRED=true.",
        }
        for route in (path, f"{path}/batch"):
            operation = document["paths"][route]["post"]
            assert operation["security"] == [{"AppKey": []}]
            assert {"401", "403"} <= set(operation["responses"])
            assert ("App keys are required" in operation["description"]) is is_required


def test_the_admin_routes_of_app_keys_are_ingests_and_need_the_admin_token() -> None:
    paths = create_ingest(IngestSettings()).openapi()["paths"]
    for path, method in (("/v1/admin/apps", "post"), ("/v1/admin/apps", "get"), ("/v1/admin/apps/{key_id}", "delete")):
        assert paths[path][method]["security"] == [{"AdminToken": []}]
    assert not any(p.startswith("/v1/admin/apps") for p in create_feedback(FeedbackSettings()).openapi()["paths"])


def test_app_keys_required_is_a_shared_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not IngestSettings().app_keys_required
    monkeypatch.setenv("APP_KEYS_REQUIRED", "true")
    assert IngestSettings().app_keys_required and FeedbackSettings().app_keys_required


def test_the_cli_finds_the_database_of_make_up_unless_database_url_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = tmp_path / "stack.json"
    stack.write_text(json.dumps({"database_url": "postgresql://postgres@127.0.0.1:5999/postgres"}))
    assert admin.load_settings(stack).database_url == "postgresql://postgres@127.0.0.1:5999/postgres"
    assert admin.load_settings(tmp_path / "absent.json").database_url == IngestSettings().database_url
    monkeypatch.setenv("DATABASE_URL", "postgresql://pipeline@db:5432/pipeline")
    assert admin.load_settings(stack).database_url == "postgresql://pipeline@db:5432/pipeline"
