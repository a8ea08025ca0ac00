"""The model leaderboard's settings: part of AggregatorSettings (env AGGREGATOR_LEADERBOARD_DEBOUNCE_S, ...)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class LeaderboardSettings(BaseSettings):
    """Mixed into AggregatorSettings, whose model_config (prefix, aliases) applies to these fields."""

    leaderboard_bootstrap_rounds: int = Field(
        100, description="Bootstrap rounds (resampled battles) behind each board's intervals and ranks.", ge=100
    )
    leaderboard_min_battles: int = Field(
        20, description="Battles a model version needs to be rated and ranked (fewer: listed with its count).", ge=1
    )
    leaderboard_debounce_s: float = Field(
        1.0, description="A board is refitted once its counts have been quiet this long.", gt=0
    )
    leaderboard_max_delay_s: float = Field(
        5.0, description="Under constant change, a board is refitted at least this often anyway.", gt=0
    )
    leaderboard_poll_interval_s: float = Field(
        0.25, description="How often each instance looks for boards due for a refit.", gt=0
    )
    leaderboard_boards_per_run: int = Field(20, description="Most boards one instance refits per look.", ge=1)
    leaderboard_fragility_budget: int = Field(
        200,
        description=(
            "Refits one fragility count may spend to be exact; beyond it the count is an upper bound (is_exact false)."
        ),
        ge=0,
    )
    leaderboard_fragility_max_pairs: int = Field(
        20, description="Adjacent pairs of the ranking, from the top, whose fragility is computed.", ge=0
    )
    leaderboard_backfill_batch: int = Field(
        200, description="Groups per transaction when approval of state from before the leaderboard is counted.", ge=1
    )
    leaderboard_gauge_sync_interval_s: float = Field(
        5.0, description="How often each instance sets its regression gauges from the alarm's stored state.", gt=0
    )
    alarm_min_votes: int = Field(
        30, description="Effective votes each of two versions needs before approval can raise the alarm.", ge=1
    )
