"""The analyst UI's settings: part of AggregatorSettings (env AGGREGATOR_DEAD_LETTER_GROUP_ID, ...)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class AnalyticsSettings(BaseSettings):
    """Mixed into AggregatorSettings, whose model_config (prefix, aliases) applies to these fields."""

    dead_letter_group_id: str | None = Field(
        None,
        description=(
            "Consumer group of the aggregator's dead-letter counter (the analyst UI's dead letters by reason);"
            " default: the aggregator's group id followed by '-dead-letters'."
        ),
    )
    dead_letters_counted: bool = Field(
        True, description="Count every service's dead letters for the analyst UI (false: the counter does not run)."
    )
