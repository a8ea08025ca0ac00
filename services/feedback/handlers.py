"""feedback's end-user handlers: votes over HTTP and from feedback.raw, through the shared edge flow."""

from __future__ import annotations

from fastapi import APIRouter

from services.feedback.settings import FeedbackSettings
from services.feedback.votes import vote_json_schema, vote_stream
from shared import topics
from shared.edge_http import EdgeEndpoints, install_edge
from shared.events import DeadLetter, Vote
from shared.kafka import document_output
from shared.runtime import Runtime


def register(runtime: Runtime, settings: FeedbackSettings) -> APIRouter:
    """The feedback.raw consumer and the end-user HTTP routes; returns the routes."""
    document_output(runtime.broker, settings, topics.VOTES, Vote, key="interaction_id",
                    description="End-user votes (received_at stamped) and experts' combined verdicts.")  # fmt: skip
    document_output(runtime.broker, settings, topics.DEAD_LETTER, DeadLetter, key="source topic:partition:offset",
                    description="Messages that could not be processed, with their origin and the reason.")  # fmt: skip
    endpoints = EdgeEndpoints(
        raw_topic=topics.FEEDBACK_RAW, path="/v1/votes", noun="vote", tag="votes", item_schema=vote_json_schema()
    )
    return install_edge(
        runtime,
        stream=vote_stream(settings.topic_prefix),
        endpoints=endpoints,
        group_id=settings.group_id,
        settings=settings,
    )
