"""A group's outputs with the fast paths are exactly the plain code's: task state hashes, one routing per group.

The plain code is kept here as the reference: a task's state hash is sha256 of `json.dumps` of
`[kind, candidates, reason, evidence, occurred_at, domain, priority]` (every stored hash was written so),
and a group's domain is `routing.route_domain` of its answers and prompt.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.aggregator import outputs, routing
from services.aggregator.budget import task_priority
from services.aggregator.leaderboard_counts import BoardChanges
from services.aggregator.outputs import group_domain, plan_outputs
from services.aggregator.pairs import Answer, TaskSpec, decide
from services.aggregator.rules import pair_rules, routing_rules
from services.aggregator.settings import AggregatorSettings
from services.aggregator.state_hashes import task_hash as _task_hash
from shared.events import Message
from shared.pii import redact
from tests.strategies import T0, answer_sets, evidence_streams, group_of

RULES = pair_rules(AggregatorSettings())
ROUTING = replace(
    routing_rules(AggregatorSettings()),
    domain_rules=routing.parse_domain_rules(
        {"rules": [{"domain": "medical", "keywords": ["insulin"]}, {"domain": "legal", "patterns": ["tort"]}]}
    ),
)
# Any text the contract lets through, and some it does not: escapes, quotes, controls, astral planes.
texts = st.text(st.characters(codec="utf-8"), max_size=40)
any_floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([5e-05, -5.96e-08, 1e16, 0.0, -0.0])


def reference_task_hash(spec: TaskSpec, domain: str, priority: float) -> str:
    """The task hash before its fast paths (orjson, the cache), verbatim."""
    candidates = [(a.interaction_id, a.content, a.model, a.model_version) for a in spec.candidates]
    payload = [spec.kind, candidates, spec.reason, spec.evidence, spec.occurred_at, domain, priority]
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    return Answer(
        interaction_id=draw(texts),
        content=draw(texts),
        model=draw(texts),
        model_version=draw(texts),
        domain=None,
        occurred_at=T0,
    )


@st.composite
def task_specs(draw: st.DrawFn) -> TaskSpec:
    return TaskSpec(
        task_id=draw(texts),
        kind=draw(st.sampled_from(["compare", "rewrite"]) | texts),
        candidates=tuple(draw(st.lists(answers(), max_size=3))),
        reason=draw(texts),
        uncertainty=draw(any_floats),
        evidence=draw(st.dictionaries(texts, st.integers(-(2**40), 2**40), max_size=5)),
        occurred_at=draw(st.datetimes(timezones=st.just(UTC)) | st.datetimes()),
    )


@settings(max_examples=400, deadline=None)
@given(task_specs(), texts, any_floats)
def test_a_task_hash_is_the_plain_json_hash_whatever_the_inputs(spec: TaskSpec, domain: str, priority: float) -> None:
    assert _task_hash(spec, domain, priority) == reference_task_hash(spec, domain, priority)


def test_the_hash_of_inputs_orjson_writes_otherwise_is_still_the_plain_one() -> None:
    spec = TaskSpec(task_id="t", kind="compare", candidates=(), reason="r", uncertainty=0.5,
                    evidence={"a": 2**70, "b": True}, occurred_at=T0)  # fmt: skip
    for priority in (9.99e-05, 1e16, float("nan"), float("inf"), 1):
        assert _task_hash(spec, "d", priority) == reference_task_hash(spec, "d", priority)


def _event_id(key: str, state_hash: str) -> str:
    return str(uuid.uuid5(outputs._NAMESPACE, f"{key}:{state_hash}"))


def _offered_hashes(group, decision, domain: str) -> dict[str, str]:
    traffic = 12
    return {
        spec.task_id: reference_task_hash(spec, domain, task_priority(spec, traffic, ROUTING.priority_step))
        for spec in decision.tasks.values()
    }


@settings(max_examples=150, deadline=None)
@given(
    answer_sets(),
    evidence_streams(),
    st.sampled_from(["Which is better?", "my insulin dose", "a tort case", "Insulin and torts"]),
    st.integers(0, 3),
)
def test_a_plan_is_the_plain_plan_and_the_same_with_the_domain_passed(answers_, votes, prompt, seen: int) -> None:
    group = group_of(answers_, votes, prompt=prompt)
    decision = decide(group, RULES)
    domain = routing.route_domain((a.domain for a in group.answers), group.prompt, ROUTING)
    assert group_domain(group, ROUTING) == domain
    reference = _offered_hashes(group, decision, domain)
    # What was offered before: some tasks as they are now (not offered again), the others stale.
    offered = {t: (h if i < seen else "stale") for i, (t, h) in enumerate(sorted(reference.items()))}
    args = (group, decision, {}, offered, {}, ROUTING)
    routed_here = plan_outputs(*args, traffic=12, now=T0)
    passed = plan_outputs(*args, traffic=12, now=T0, domain=domain)
    assert routed_here == passed
    assert {o.task_id: o.state_hash for o in passed.task_offers} == {
        t: h for t, h in reference.items() if offered.get(t) != h
    }
    for row, emission in zip(passed.pair_rows, passed.emissions, strict=True):
        pair = json.loads(emission.value) if emission.value is not None else None
        assert row.pair == pair and (pair is None or pair["event_id"] == _event_id(row.pair_id, row.state_hash))
    for offer in passed.task_offers:
        assert json.loads(offer.body)["domain"] == domain == offer.domain
        assert json.loads(offer.body)["event_id"] == _event_id(offer.task_id, offer.state_hash)


@settings(max_examples=100, deadline=None)
@given(answer_sets(), evidence_streams(), st.sampled_from(["Which is better?", "insulin", "tort"]))
def test_board_changes_are_the_same_with_the_domain_passed(answers_, votes, prompt) -> None:
    group = group_of(answers_, votes, prompt=prompt)
    after = {str(i): vote for i, vote in enumerate(votes)}
    routed, passed = BoardChanges(), BoardChanges()
    routed.add_group(group, {}, after, ROUTING)
    passed.add_group(group, {}, after, ROUTING, domain=group_domain(group, ROUTING))
    assert routed.groups == passed.groups


def test_naive_datetimes_and_later_moments_hash_apart() -> None:
    spec = TaskSpec(task_id="t", kind="compare", candidates=(), reason="r", uncertainty=0.5, evidence={"a": 1},
                    occurred_at=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
    later = replace(spec, occurred_at=spec.occurred_at + timedelta(microseconds=1))
    assert _task_hash(spec, "d", 1.0) != _task_hash(later, "d", 1.0)
    assert _task_hash(later, "d", 1.0) == reference_task_hash(later, "d", 1.0)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(["mail me at a@b.example", "call +1 415 555 0100", "plain", "é\u2028\x7f"]) | texts,
             min_size=1, max_size=4)
)  # fmt: skip
def test_cached_redaction_shows_what_redacting_each_text_shows(contents: list[str]) -> None:
    _check_redaction(contents, filler=0)


def test_long_texts_are_redacted_without_the_cache() -> None:
    _check_redaction(["mail me at a@b.example"], filler=routing.REDACTION_CACHE_MAX_CHARS)


def _check_redaction(contents: list[str], filler: int) -> None:
    prompt = tuple(Message.model_construct(role="user", content="x" * filler + c) for c in contents)
    plain = [m.model_copy(update={"content": redact(m.content)}) for m in prompt]
    assert routing.redacted_prompt(prompt) == plain == routing.redacted_prompt(prompt)  # missed, then cached
    for content in contents:
        a = Answer(interaction_id="i", content="y" * filler + content, model="m", model_version="v", domain=None,
                   occurred_at=T0)  # fmt: skip
        expected = a.candidate().model_copy(update={"content": redact(a.content)})
        assert outputs.shown_candidate(a) == expected == outputs.shown_candidate(a)
