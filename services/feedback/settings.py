"""feedback's settings (env prefix FEEDBACK_), on top of the unprefixed shared ones."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from shared.settings import EdgeServiceSettings


class FeedbackSettings(EdgeServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FEEDBACK_", populate_by_name=True, extra="ignore")

    http_port: int = Field(8002, description="Port of feedback's HTTP server.", ge=0, le=65535)
    group_id: str = Field("feedback", description="Consumer group of feedback's consumers.")

    tasks_group_id: str = Field(
        "feedback-tasks", description="Consumer group of the annotation-requests consumer (the queue's input)."
    )
    lease_seconds: float = Field(
        600.0, description="How long a leased task stays with its annotator unless extended or judged.", gt=0
    )
    reviewers_default: int = Field(1, description="Verdicts a task needs in a domain not listed below.", ge=1)
    reviewers_per_domain: dict[str, int] = Field(
        default_factory=dict,
        description="Verdicts a task needs per domain, as JSON: FEEDBACK_REVIEWERS_PER_DOMAIN='{\"medical\": 2}'.",
    )
    max_reviewers: int = Field(
        3,
        description="Cap on reviewers when verdicts disagree: a split adds one reviewer up to this, then the "
        "task is contested (never below the domain's own count).",
        ge=1,
    )
    max_open_tasks_per_domain: int = Field(
        200,
        description="Most tasks offered to annotators (open) per domain at once; a request beyond it is kept, held, "
        "and offered when a withdrawal or a closed task makes room (services/feedback/task_cap.py). The "
        "aggregator's cap, read from the same variable unless FEEDBACK_MAX_OPEN_TASKS_PER_DOMAIN is set: "
        "set it where feedback runs too. Lower than the aggregator's: annotators see the best this many of what "
        "the aggregator opened, the rest wait held. Higher: a displaced task and its replacement may both be "
        "offered for a moment, as without this cap.",
        validation_alias=AliasChoices("FEEDBACK_MAX_OPEN_TASKS_PER_DOMAIN", "AGGREGATOR_MAX_OPEN_TASKS_PER_DOMAIN"),
        ge=1,
    )
    held_tasks_interval_s: float = Field(
        5.0,
        description="How often held tasks are opened wherever their domain has room without a tombstone saying so "
        "(a contested task, or a cap lower than the aggregator's); tombstones fill their domain at once.",
        gt=0,
    )
    outbox_batch_size: int = Field(500, description="Most outbox rows the relay publishes at once.", ge=1)
    outbox_poll_interval_s: float = Field(
        1.0, description="How often the outbox relay looks for rows when nobody woke it.", gt=0
    )
    stats_refresh_interval_s: float = Field(
        15.0, description="How often queue depth and agreement gauges are recomputed for /metrics.", gt=0
    )
    leased_tasks_remembered: int = Field(
        4096,
        description="Leased tasks this process keeps as their lease returned them, so the verdict on each "
        "is decided and written in one statement; a verdict on a task not kept (leased by another instance, "
        "or pushed out) reads it first. 0 turns this off.",
        ge=0,
    )
    counts_compaction_interval_s: float = Field(
        5.0,
        description="How often the queue's maintained counts (stats, gauges) are folded into one row per key; "
        "a stats call reads the rows appended since.",
        gt=0,
    )
    max_votes_per_voter_per_hour: int = Field(
        60,
        description="Votes one end user (app_id, user_ref) may give per hour (by the time feedback received them) "
        "before the next ones are quarantined: accepted and kept, marked with quarantine_reason voter_hourly_budget, "
        "counted apart in the stats, moving no pair.",
        ge=1,
    )
    voter_budget_prune_interval_s: float = Field(
        300.0, description="How often the per-voter budget's counts of past hours are pruned.", gt=0
    )
    guidelines_dir: Path = Field(
        Path(__file__).parent / "guidelines",
        description="Folder of the annotation guidelines the web UI shows: one markdown file per domain "
        "(`medical.md`), and `general.md` for domains without their own.",
    )
