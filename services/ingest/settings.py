"""ingest's settings (env prefix INGEST_), on top of the unprefixed shared ones."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_", populate_by_name=True, extra="ignore")

    http_port: int = Field(8001, description="Port of ingest's HTTP server.", ge=0, le=65535)
    group_id: str = Field("ingest", description="Consumer group of the interactions.raw consumer.")
    dedupe_window_s: float = Field(
        7 * 24 * 3600.0, description="How long a published event_id is remembered to drop re-posts.", gt=0
    )
    dedupe_prune_interval_s: float = Field(300.0, description="How often old event ids are pruned.", gt=0)
