"""The aggregator's export settings (env prefix AGGREGATOR_EXPORT_), beside AggregatorSettings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ExportSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGGREGATOR_EXPORT_", populate_by_name=True, extra="ignore")

    kto_approval_threshold: float = Field(
        0.9,
        description=(
            "An answer with no live pair becomes a kto row when P(approval > 1/2), approval ~ Beta(1 + up, 1 + down)"
            " over its effective votes, is at least this (label true) or at most 1 minus this (label false)."
        ),
        gt=0.5,
        le=1.0,
    )
    fetch_rows: int = Field(1_000, description="Rows fetched from a server-side cursor at a time.", ge=1)
    batch_rows: int = Field(
        2_048, description="Rows gathered before they are encoded: one Parquet row group of the response.", ge=1
    )
    max_concurrent: int = Field(
        2, description="Exports running at once; one more gets 503 (each holds a database connection).", ge=1
    )
    acquire_timeout_s: float = Field(10.0, description="Deadline to get a database connection for an export.", gt=0)
