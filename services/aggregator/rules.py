"""The aggregator's rule objects, built from its settings: the one place each default comes from.

The pure core (`pairs.py`, `routing.py`, `batches.py`, `jobs.py`) and the exports take their rules as
arguments and have no defaults of their own; the service and the tests build them here, from
`AggregatorSettings`.
"""

from __future__ import annotations

import json

from services.aggregator.batches import BatchRules
from services.aggregator.export_stream import ExportRules
from services.aggregator.jobs import JobRules
from services.aggregator.leaderboard_outputs import BoardRules
from services.aggregator.leaderboard_worker import LeaderboardRules
from services.aggregator.pairs import PairRules
from services.aggregator.routing import RoutingRules, parse_domain_rules
from services.aggregator.settings import AggregatorSettings
from services.aggregator.voters import VoterRules
from shared.settings import limits_from


def pair_rules(settings: AggregatorSettings) -> PairRules:
    return PairRules(
        confidence_threshold=settings.confidence_threshold,
        min_votes=settings.min_votes,
        min_votes_per_answer=settings.min_votes_per_answer,
        min_votes_for_task=settings.min_votes_for_task,
        min_comparisons=settings.min_comparisons,
        rewrite_min_down=settings.rewrite_min_down,
        edit_confidence=settings.edit_confidence,
        max_answers=settings.max_answers_per_group,
    )


def routing_rules(settings: AggregatorSettings) -> RoutingRules:
    """Reads the domain rules file: a bad one raises ValueError, which stops the service at start."""
    return RoutingRules(
        domain_rules=parse_domain_rules(json.loads(settings.domain_rules_path.read_text())),
        priority_step=settings.priority_step,
    )


def batch_rules(settings: AggregatorSettings, service: str) -> BatchRules:
    """What a consumed batch needs besides its records; `service` names the outbox and dead letters."""
    return BatchRules(
        service=service,
        topic_prefix=settings.topic_prefix,
        limits=limits_from(settings),
        pairs=pair_rules(settings),
        routing=routing_rules(settings),
        stats_window_s=settings.stats_window_s,
        parked_vote_ttl_s=settings.parked_vote_ttl_s,
        max_open_tasks_per_domain=settings.max_open_tasks_per_domain,
        voters=voter_rules(settings),
    )


def voter_rules(settings: AggregatorSettings) -> VoterRules:
    """The outlier test's rules (AGGREGATOR_OUTLIER_*)."""
    return VoterRules(
        significance=settings.outlier_significance,
        min_votes=settings.outlier_min_votes,
        settle_confidence=settings.outlier_settle_confidence,
        alternative=settings.outlier_alternative,
        one_sided_alternative=settings.outlier_one_sided_alternative,
    )


def job_rules(settings: AggregatorSettings, service: str) -> JobRules:
    return JobRules(
        service=service,
        topic_prefix=settings.topic_prefix,
        stats_allowed_lateness_s=settings.stats_allowed_lateness_s,
        stats_publish_batch=settings.stats_publish_batch,
        parked_vote_ttl_s=settings.parked_vote_ttl_s,
        parked_sweep_batch=settings.parked_sweep_batch,
        vote_dedupe_window_s=settings.vote_dedupe_window_s,
    )


def leaderboard_rules(settings: AggregatorSettings, service: str, routing: RoutingRules) -> LeaderboardRules:
    """The refit worker's rules; `service` names the outbox it writes to, `routing` is the batches' own."""
    return LeaderboardRules(
        service=service,
        topic_prefix=settings.topic_prefix,
        board=BoardRules(
            bootstrap_rounds=settings.leaderboard_bootstrap_rounds,
            min_battles=settings.leaderboard_min_battles,
            alarm_min_votes=settings.alarm_min_votes,
            fragility_refit_budget=settings.leaderboard_fragility_budget,
            fragility_max_pairs=settings.leaderboard_fragility_max_pairs,
        ),
        routing=routing,
        debounce_s=settings.leaderboard_debounce_s,
        max_delay_s=settings.leaderboard_max_delay_s,
        boards_per_run=settings.leaderboard_boards_per_run,
        backfill_batch=settings.leaderboard_backfill_batch,
    )


def export_rules(settings: AggregatorSettings, routing: RoutingRules) -> ExportRules:
    """`routing`: the rules the batches route with (built once, so an export names domains as the pairs do)."""
    return ExportRules(
        kto_approval_threshold=settings.export_kto_approval_threshold,
        fetch_rows=settings.export_fetch_rows,
        batch_rows=settings.export_batch_rows,
        max_concurrent=settings.export_max_concurrent,
        acquire_timeout_s=settings.export_acquire_timeout_s,
        routing=routing,
    )
