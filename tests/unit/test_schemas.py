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
