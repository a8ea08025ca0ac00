"""ingest's settings (env prefix INGEST_), on top of the unprefixed shared ones."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import EdgeServiceSettings


class IngestSettings(EdgeServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_", populate_by_name=True, extra="ignore")

    http_port: int = Field(8001, description="Port of ingest's HTTP server.", ge=0, le=65535)
    group_id: str = Field("ingest", description="Consumer group of the interactions.raw consumer.")
