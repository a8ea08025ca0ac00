"""ops' settings: the shared ones (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, TOPIC_PREFIX, ...), else the stack file.

A running `make up` writes its addresses to `.run/stack.json`; what the environment does not give
(the broker, the database, the topic prefix) is read from there when the file exists.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from shared.settings import PipelineSettings

# The stack file's keys for the settings it can give.
_FROM_STACK = {"kafka_bootstrap_servers": "kafka", "database_url": "database_url", "topic_prefix": "topic_prefix"}


class OpsSettings(PipelineSettings):
    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore")

    stack_file: Path = Field(
        Path(".run/stack.json"),
        description="The file `make up` writes with every address; read for what the environment does not set.",
        validation_alias=AliasChoices("ops_stack_file", "OPS_STACK_FILE"),
    )


def load_settings(stack_file: Path | None = None) -> OpsSettings:
    """The environment's settings, completed from the stack file (`stack_file`, else OPS_STACK_FILE)."""
    settings = OpsSettings()
    path = stack_file or settings.stack_file
    if not path.is_file():
        return settings
    stack = json.loads(path.read_text())
    given = settings.model_fields_set
    missing = {name: stack[key] for name, key in _FROM_STACK.items() if name not in given and key in stack}
    return settings.model_copy(update=missing)
