"""aggregator's settings (env prefix AGGREGATOR_), on top of the unprefixed shared ones."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class AggregatorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AGGREGATOR_", populate_by_name=True, extra="ignore")

    http_port: int = Field(8003, description="Port of the aggregator's HTTP server.", ge=0, le=65535)
    group_id: str = Field("aggregator", description="Consumer group of the aggregator's consumers.")
