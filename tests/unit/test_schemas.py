"""The JSON Schemas in shared/schemas/ are generated from the contracts and kept current."""

from __future__ import annotations

import json

from shared.schemas import SCHEMA_DIR, contract_schemas, render


def test_committed_schemas_match_the_models() -> None:
    for name, schema in contract_schemas().items():
        path = SCHEMA_DIR / name
        assert path.exists(), f"{name} missing: run `make schemas`"
        assert path.read_text() == render(schema), f"{name} is stale: run `make schemas`"


def test_vote_schema_lists_every_kind() -> None:
    schema = json.loads((SCHEMA_DIR / "vote.v1.json").read_text())
    kinds = set(schema["discriminator"]["mapping"])
    assert kinds == {"thumb", "rating", "comparison", "edit", "comment", "verdict"}


def test_the_end_user_vote_schema_offers_no_expert_evidence() -> None:
    schema = json.loads((SCHEMA_DIR / "end_user_vote.v1.json").read_text())
    assert set(schema["discriminator"]["mapping"]) == {"thumb", "rating", "comparison", "edit", "comment"}
    for name, branch in schema["$defs"].items():
        assert branch["properties"]["source"]["const"] == "end_user", name
        assert not set(branch["properties"]) & {"annotator_id", "task_id", "verdict", "rewrite", "reviewers"}, name
        assert "user_ref" in branch["required"], name
