"""aggregator's handlers: the batch consumer of `interactions` and `votes` and the read-only HTTP routes.

Each batch goes to the context's `BatchIntake` (decode -> one transaction -> return, so the offsets
are committed only after the commit). The routes read the stored state and shape their JSON from
the store's typed rows.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from faststream import Depends as SubscriberDepends

from services.aggregator import stats_store, store
from services.aggregator.admin import admin_router
from services.aggregator.analyst_ui import analyst_router
from services.aggregator.context import AggregatorContext
from services.aggregator.decoders import decode_inputs
from services.aggregator.export_routes import export_router
from services.aggregator.intake import INPUTS
from services.aggregator.leaderboard_routes import leaderboard_router
from services.aggregator.settings import AggregatorSettings
from shared import topics
from shared.errors import NotFoundError
from shared.events import AnnotationRequest, DeadLetter, FeedbackStats, ModelAlert, ModelLeaderboard, PreferencePair
from shared.kafka import batch_log_scope, batch_subscriber, document_output
from shared.runtime import ContextDependency, Runtime


def register(runtime: Runtime[AggregatorContext], settings: AggregatorSettings) -> list[APIRouter]:
    """The input consumers and the outputs' AsyncAPI entries; returns the routes (exports: export_routes.py)."""
    register_subscribers(runtime, settings)
    document_outputs(runtime, settings)
    return [
        http_router(runtime.context),
        leaderboard_router(runtime.context),
        export_router(runtime.context),
        admin_router(runtime.context, settings),
        analyst_router(runtime.context, settings),
    ]


def register_subscribers(runtime: Runtime[AggregatorContext], settings: AggregatorSettings) -> None:
    """Consume `interactions` and `votes` in batches, one transaction per batch.

    One consumer reads both topics, so a group's answers and votes consumed together are applied in one
    transaction: with a consumer per topic, votes that came before their answers' batch were parked by
    one transaction and taken again by the next (at 1,000 events/s, half the event -> pair latency).
    """
    dependency = runtime.context

    @batch_subscriber(
        runtime.broker,
        settings,
        topics.INTERACTIONS,
        topics.VOTES,
        group_id=settings.group_id,
        title=INPUTS,
        raw_records=True,
        description="Canonical interactions (keyed by prompt_key) from ingest, and end-user votes and expert "
        "verdicts (keyed by interaction_id) from feedback, in one consumer. A verdict counts only for a task the "
        "aggregator issued, with its candidates (else dead letter unknown_task / candidates_mismatch); a vote "
        "waits for every answer it names until the parked-vote TTL (then parked_vote_expired); a comparison of "
        "answers to two prompts is dead-lettered cross_group_comparison.",
    )
    async def on_inputs(records: Any, context: AggregatorContext = SubscriberDepends(dependency, cast=False)) -> None:
        with batch_log_scope(records):
            await context.intake.take(records, decode_inputs)


def document_outputs(runtime: Runtime[AggregatorContext], settings: AggregatorSettings) -> None:
    """The output topics in the AsyncAPI document (they are written through the outbox)."""
    for name, model, key, description in (
        (topics.PREFERENCE_PAIRS, PreferencePair, "pair_id", "Chosen/rejected pairs; compacted, null = retracted."),
        (topics.ANNOTATION_REQUESTS, AnnotationRequest, "task_id", "Ambiguous cases for experts; null = withdrawn."),
        (topics.FEEDBACK_STATS, FeedbackStats, "stats_id", "Counts per app, model version and window."),
        (
            topics.DEAD_LETTER,
            DeadLetter,
            "source topic:partition:offset",
            "What could not be processed, and why; POST /v1/admin/dead-letters/redrive sends letters back home.",
        ),
        (
            topics.MODEL_LEADERBOARD,
            ModelLeaderboard,
            "app_id, or app_id/domain",
            "Model versions ranked by Bradley-Terry rating with intervals; compacted, the latest per board.",
        ),
        (
            topics.MODEL_ALERTS,
            ModelAlert,
            "app_id",
            "Regression alarm transitions: a model's newest version below its predecessor (raised, cleared).",
        ),
    ):
        document_output(runtime.broker, settings, name, model, key=key, description=description)


def http_router(dependency: ContextDependency[AggregatorContext]) -> APIRouter:
    """Read-only debugging routes."""
    router = APIRouter(prefix="/v1", tags=["aggregator"])

    @router.get("/pairs/{pair_id}", summary="A pair as last published (null pair: retracted)")
    async def get_pair(pair_id: str, context: AggregatorContext = Depends(dependency)) -> dict[str, Any]:
        stored = await store.select_pair(context.pool, pair_id)
        if stored is None:
            raise NotFoundError("no such pair", pair_id=pair_id)
        return {
            "pair_id": stored.pair_id,
            "prompt_key": stored.prompt_key,
            "is_retracted": stored.pair is None,
            "pair": stored.pair,
            "updated_at": stored.updated_at.isoformat(),
        }

    @router.get("/stats", summary="Recent feedback-stats windows: raw vote events, effective votes, quarantined votes")
    async def get_stats(
        app_id: str | None = None,
        limit: int = Query(50, ge=1, le=1000),
        context: AggregatorContext = Depends(dependency),
    ) -> list[dict[str, Any]]:
        windows = await stats_store.select_stats(context.pool, app_id, limit)
        return [
            {
                "app_id": w.app_id,
                "model_version": w.model_version,
                "window_start": w.window_start.isoformat(),
                "window_end": w.window_end.isoformat(),
                "interactions": w.interactions,
                "thumbs_up": w.thumbs_up,
                "thumbs_down": w.thumbs_down,
                "ratings": w.ratings,
                "rating_sum": w.rating_sum,
                "effective_thumbs_up": max(0, w.effective_thumbs_up),
                "effective_thumbs_down": max(0, w.effective_thumbs_down),
                "effective_ratings": max(0, w.effective_ratings),
                "effective_rating_sum": w.effective_rating_sum,
                "quarantined_votes": w.quarantined_votes,
                "pairs_emitted": w.pairs_emitted,
                "tasks_queued": w.tasks_queued,
                "is_final": w.is_final,
            }
            for w in windows
        ]

    return router
