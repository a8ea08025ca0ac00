"""Annotation requests for the browser tests: realistic text, so the screenshots show what annotators see."""

from __future__ import annotations

import uuid
from typing import Any

from services.feedback.ui_view import shown_left
from tests.support.builders import annotation_request_body

PROMPT = [
    {"role": "system", "content": "You are a careful health assistant. Say when a doctor is needed."},
    {"role": "user", "content": "I have type 1 diabetes. Can I start interval training?"},
    {"role": "assistant", "content": "Yes, many people with type 1 diabetes train hard. What insulin do you use?"},
    {
        "role": "user",
        "content": "A pump. My last session my sugar dropped to 3.4 mmol/L afterwards. "
        "Is intense exercise safe for me? Write to me at jane.doe@example.com",
    },
]
CAUTIOUS = (
    "Intense exercise can be safe with type 1 diabetes, but a drop to 3.4 mmol/L is a hypo, so adjust "
    "before the next session:\n\n"
    "1. Check your glucose before training; start only above about 7 mmol/L, and carry fast sugar.\n"
    "2. Ask your diabetes team about a temporary basal reduction on the pump 60-90 minutes before.\n"
    "3. Check again during and for several hours after: intervals can lower glucose late, even overnight.\n\n"
    "If you had symptoms such as confusion or shaking, talk to your doctor before training hard again."
)
CARELESS = (
    "Intense exercise is safe for you. A value of 3.4 mmol/L after training is normal and nothing to worry "
    "about, so keep your pump settings as they are and just train harder next time.\n\n"
    "1. Check your glucose only if you feel unwell.\n"
    "2. Eat a normal meal afterwards."
)


def compare_request(domain: str, task_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    task_id = task_id or f"task-{uuid.uuid4().hex[:10]}"
    body = annotation_request_body(task_id, domain, prompt=PROMPT, reason="split_comparisons")
    body["candidates"]["A"]["content"] = CAUTIOUS
    body["candidates"]["B"]["content"] = CARELESS
    body.update(overrides)
    return body


def rewrite_request(domain: str, task_id: str | None = None) -> dict[str, Any]:
    body = compare_request(domain, task_id, kind="rewrite", reason="lone_downvoted_answer")
    del body["candidates"]["B"]
    body["candidates"]["A"]["content"] = CARELESS
    return body


def task_ids_with_both_sides(annotator: str, count: int) -> list[str]:
    """`count` fresh task ids whose left side for `annotator` alternates A, B, A, ... (both orders occur)."""
    ids: list[str] = []
    while len(ids) < count:
        candidate = f"task-{uuid.uuid4().hex[:10]}"
        wanted = "A" if len(ids) % 2 == 0 else "B"
        if shown_left(candidate, annotator, "compare") == wanted:
            ids.append(candidate)
    return ids
