"""Bodies as clients send them: interactions and votes (HTTP or raw topics), annotation requests (the aggregator's);
and vote events as feedback stamps them (the voter budget's inputs)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from shared.events import ThumbVote, VerdictVote

REQUEST_TIME = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def interaction_body(**overrides: Any) -> dict[str, Any]:
    """A valid interaction (the README's example), with `overrides` applied; a new event_id each call."""
    body = {
        "event_id": str(uuid.uuid4()),
        "app_id": "helpdesk",
        "occurred_at": "2026-11-26T10:00:00Z",
        "interaction_id": "int-42",
        "conversation_id": "conv-7",
        "user_ref": "u-9f3",
        "messages": [{"role": "user", "content": "Can diabetic patients do intense exercise?"}],
        "response": {"content": "With care.", "model": "acme-chat", "model_version": "2026-11-01"},
        "regenerated_from": None,
        "domain": None,
        "language": "en",
        "tags": [],
        "metadata": {},
    }
    body.update(overrides)
    return body


def vote_body(**overrides: Any) -> dict[str, Any]:
    """A valid end-user thumb-up, with `overrides` applied (`value=None` drops the value, for other kinds)."""
    body = {
        "event_id": str(uuid.uuid4()),
        "app_id": "helpdesk",
        "occurred_at": "2026-11-26T10:00:00Z",
        "interaction_id": "int-42",
        "user_ref": "u-1",
        "source": "end_user",
        "kind": "thumb",
        "value": 1,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if not (k == "value" and v is None)}


def annotation_request_body(task_id: str, domain: str, **overrides: Any) -> dict[str, Any]:
    """An AnnotationRequest as the aggregator publishes it (compare, A and B)."""
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "app_id": "helpdesk",
        "task_id": task_id,
        "pair_id": f"pair-{task_id}",
        "prompt_key": f"pk-{task_id}",
        "kind": "compare",
        "domain": domain,
        "priority": 1.0,
        "prompt": [{"role": "user", "content": f"Question of {task_id}?"}],
        "candidates": {
            "A": {"interaction_id": f"{task_id}-a", "content": "Answer A", "model": "m", "model_version": "1"},
            "B": {"interaction_id": f"{task_id}-b", "content": "Answer B", "model": "m", "model_version": "2"},
        },
        "reason": "split_votes",
        "evidence": {"thumbs": 5},
        "occurred_at": REQUEST_TIME.isoformat(),
        "updated_at": REQUEST_TIME.isoformat(),
    }
    body.update(overrides)
    return body


def thumb_vote(
    user: str, received_at: datetime, occurred_at: datetime | None = None, app: str = "helpdesk"
) -> ThumbVote:
    """A 👍 of `user` on a fresh interaction, received at `received_at`."""
    return ThumbVote(
        event_id=uuid.uuid4(),
        app_id=app,
        occurred_at=occurred_at or received_at,
        received_at=received_at,
        interaction_id=f"int-{uuid.uuid4().hex[:6]}",
        user_ref=user,
        kind="thumb",
        value=1,
    )


def verdict_vote(received_at: datetime) -> VerdictVote:
    """An expert's verdict (never counted against a voter's budget)."""
    return VerdictVote(
        event_id=uuid.uuid4(),
        app_id="helpdesk",
        occurred_at=received_at,
        received_at=received_at,
        interaction_id="int-a",
        source="expert",
        annotator_id="dr-alice",
        kind="verdict",
        task_id="task-1",
        verdict="A",
    )
