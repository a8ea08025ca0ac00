"""JSON Schemas of the v1 contracts, generated from the pydantic models into shared/schemas/.

`python -m shared.schemas` (or `make schemas`) rewrites them; a unit test fails when they are stale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from shared.events import (
    END_USER_VOTE_ADAPTER,
    AnnotationRequest,
    DeadLetter,
    FeedbackStats,
    Interaction,
    ModelAlert,
    ModelLeaderboard,
    PreferencePair,
    Vote,
)

SCHEMA_DIR = Path(__file__).parent / "schemas"


def contract_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema of every v1 contract."""
    return {
        "interaction.v1.json": Interaction.model_json_schema(mode="validation"),
        # The `votes` topic: end users' votes and experts' verdicts.
        "vote.v1.json": TypeAdapter(Vote).json_schema(mode="validation"),
        # What apps may send (POST /v1/votes*, feedback.raw): end-user evidence only.
        "end_user_vote.v1.json": END_USER_VOTE_ADAPTER.json_schema(mode="validation"),
        "preference_pair.v1.json": PreferencePair.model_json_schema(mode="serialization"),
        "annotation_request.v1.json": AnnotationRequest.model_json_schema(mode="serialization"),
        "feedback_stats.v1.json": FeedbackStats.model_json_schema(mode="serialization"),
        "dead_letter.v1.json": DeadLetter.model_json_schema(mode="serialization"),
        "model_leaderboard.v1.json": ModelLeaderboard.model_json_schema(mode="serialization"),
        "model_alert.v1.json": ModelAlert.model_json_schema(mode="serialization"),
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(folder: Path = SCHEMA_DIR) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in contract_schemas().items():
        path = folder / name
        path.write_text(render(schema))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_schemas():
        print(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)
