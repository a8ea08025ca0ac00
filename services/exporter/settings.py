"""The exporter's settings (env prefix EXPORTER_): where the aggregator is, and how long to wait for it."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ExporterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXPORTER_", populate_by_name=True, extra="ignore")

    aggregator_url: str | None = Field(
        None, description="Base URL of the aggregator (e.g. http://127.0.0.1:8003); else read from the stack file."
    )
    stack_file: Path = Field(
        Path(".run/stack.json"), description="The file `make up` writes with every address (its `aggregator` key)."
    )
    timeout_s: float = Field(
        300.0,
        description=(
            "Deadline to connect, and for each read of the response: a selective filter may scan a long time"
            " before the first matching rows."
        ),
        gt=0,
    )
