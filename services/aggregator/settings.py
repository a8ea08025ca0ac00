"""aggregator's settings (env prefix AGGREGATOR_), on top of the unprefixed shared ones."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.aggregator.analytics_settings import AnalyticsSettings
from services.aggregator.leaderboard_settings import LeaderboardSettings
from shared.settings import ServiceSettings

DEFAULT_DOMAIN_RULES = Path(__file__).resolve().parent / "domain_rules.json"


class AggregatorSettings(ServiceSettings, LeaderboardSettings, AnalyticsSettings):
    model_config = SettingsConfigDict(env_prefix="AGGREGATOR_", populate_by_name=True, extra="ignore")

    http_port: int = Field(8003, description="Port of the aggregator's HTTP server.", ge=0, le=65535)
    group_id: str = Field("aggregator", description="Consumer group of the aggregator's consumers.")

    confidence_threshold: float = Field(
        0.9, description="P(a better than b) from thumbs at or above which a pair is published.", gt=0.5, le=1.0
    )
    min_votes: int = Field(4, description="Fewest thumbs/ratings on the two answers for a thumbs-based pair.", ge=1)
    min_votes_per_answer: int = Field(
        1, description="Fewest thumbs/ratings each answer needs before thumbs decide anything about it.", ge=0
    )
    min_votes_for_task: int = Field(
        4, description="Fewest thumbs/ratings on two answers before an uncertain pair goes to annotators.", ge=1
    )
    min_comparisons: int = Field(1, description="Fewest unanimous explicit comparisons giving a pair.", ge=1)
    rewrite_min_down: int = Field(
        1, description="Fewest thumbs-down (more than ups) on a lone answer before a rewrite task.", ge=1
    )
    edit_confidence: float = Field(1.0, description="Confidence given to an edit pair.", ge=0.0, le=1.0)
    max_answers_per_group: int = Field(
        16, description="Answers of a group the pair rules compare (those with the most votes).", ge=2
    )
    domain_rules_path: Path = Field(
        DEFAULT_DOMAIN_RULES, description="JSON file of domain rules (keywords/regexes per domain), in order."
    )
    priority_step: float = Field(
        0.25,
        description=(
            "A task's priority (group traffic x the chance an expert's verdict changes the pair) is stepped so"
            " that log1p(priority) is a multiple of this (0: exact); a task is re-sent only when its step changes."
        ),
        ge=0,
    )
    max_open_tasks_per_domain: int = Field(
        200,
        description=(
            "Most annotation tasks open (published, not withdrawn) per domain at once. A new task enters at the"
            " cap only by outranking the lowest open one, which is withdrawn (a tombstone) and waits; a task that"
            " leaves makes room for the best waiting one."
        ),
        ge=1,
    )

    parked_vote_ttl_s: float = Field(
        3600.0, description="How long a vote waits for its interaction before it is dead-lettered.", gt=0
    )
    parked_sweep_interval_s: float = Field(10.0, description="How often expired parked votes are swept.", gt=0)
    parked_sweep_batch: int = Field(500, description="Most parked votes expired by one sweep.", ge=1)
    vote_dedupe_window_s: float = Field(
        7 * 24 * 3600.0, description="How long a vote's event_id is remembered to drop redeliveries.", gt=0
    )
    vote_dedupe_prune_interval_s: float = Field(300.0, description="How often old vote event ids are pruned.", gt=0)

    stats_window_s: float = Field(60.0, description="Length of a feedback-stats tumbling window (event time).", gt=0)
    stats_allowed_lateness_s: float = Field(
        30.0, description="How long after its end (event time) a window still takes late events.", ge=0
    )
    stats_publish_interval_s: float = Field(
        1.0, description="How often changed and closed stats windows are published.", gt=0
    )
    stats_publish_batch: int = Field(500, description="Most windows published per run.", ge=1)

    # Outlier voters (ARCHITECTURE.md "Vote quality"; services/aggregator/voters.py): AGGREGATOR_OUTLIER_*.
    outlier_significance: float = Field(
        0.002, description="A voter is flagged when the outlier test's p-value is below this.", gt=0, lt=1
    )
    outlier_min_votes: int = Field(10, description="Fewest tested votes before a voter can be flagged.", ge=1)
    outlier_settle_confidence: float = Field(
        0.75, description="P(the others' consensus) at which a question counts as settled for the test.", gt=0.5, lt=1
    )
    outlier_alternative: float = Field(
        0.8, description="The disagreement rate of the bad voter the two-sided bet is against.", gt=0.5, lt=1
    )
    outlier_one_sided_alternative: float = Field(
        0.95, description="The same for the one-sided bets (always-up and always-down voters).", gt=0.5, lt=1
    )
    voter_redecide_interval_s: float = Field(
        1.0, description="How often the groups of newly flagged or cleared voters are decided again.", gt=0
    )
    voter_redecide_batch: int = Field(200, description="Most groups of one voter decided again per run.", ge=1)
    voter_gauge_interval_s: float = Field(15.0, description="How often the flagged-voters gauge is refreshed.", gt=0)

    outbox_relay_enabled: bool = Field(
        True,
        description=(
            "Operator switch: false pauses publishing (e.g. during a Kafka maintenance); outputs wait in the"
            " outbox table and are published once a process runs with it true again."
        ),
    )
    outbox_batch_size: int = Field(500, description="Most outbox rows relayed per publish.", ge=1)
    outbox_poll_interval_s: float = Field(
        0.5, description="How often the outbox relay looks for rows when nobody woke it.", gt=0
    )

    # Exports (issue 12): the env names are AGGREGATOR_EXPORT_*.
    export_kto_approval_threshold: float = Field(
        0.9,
        description=(
            "An answer with no live pair becomes a kto row when P(approval > 1/2), approval ~ Beta(1 + up, 1 + down)"
            " over its effective votes, is at least this (label true) or at most 1 minus this (label false)."
        ),
        gt=0.5,
        le=1.0,
    )
    export_fetch_rows: int = Field(
        1_000, description="Rows an export fetches from a server-side cursor at a time.", ge=1
    )
    export_batch_rows: int = Field(
        2_048, description="Rows an export gathers before encoding them: one Parquet row group of the response.", ge=1
    )
    export_max_concurrent: int = Field(
        2, description="Exports running at once; one more gets 503 (each holds a database connection).", ge=1
    )
    export_acquire_timeout_s: float = Field(
        10.0, description="Deadline for an export to get its database connection.", gt=0
    )
