"""What a group's decision publishes: diffing, retraction tombstones, redaction, routing, stats windows."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from services.aggregator import routing, stats
from services.aggregator.budget import task_priority
from services.aggregator.outputs import RETRACTED, TaskState, plan_outputs, plan_task_emissions
from services.aggregator.pairs import decide
from services.aggregator.rules import pair_rules, routing_rules
from services.aggregator.settings import AggregatorSettings
from shared import topics
from shared.events import AnnotationRequest, Message, PreferencePair
from tests.strategies import T0, answer, group_of, split_votes, thumb

RULES = pair_rules(AggregatorSettings())
ROUTING = replace(
    routing_rules(AggregatorSettings()),
    domain_rules=routing.parse_domain_rules({"rules": [{"domain": "medical", "keywords": ["insulin"]}]}),
)
A, B = answer("int-a"), answer("int-b")


def _plan(votes, emitted_pairs=None, offered=None, emitted_tasks=None, prompt="Which is better?", answers=(A, B)):
    group = group_of(answers, votes, prompt=prompt)
    return plan_outputs(
        group,
        decide(group, RULES),
        emitted_pairs or {},
        offered or {},
        emitted_tasks or {},
        ROUTING,
        traffic=12,
        now=T0,
    )


def test_a_pair_is_published_once_then_only_when_its_state_changes() -> None:
    votes = split_votes("int-a", 5, 0) + split_votes("int-b", 0, 5)
    first = _plan(votes)
    (emission,) = first.emissions
    assert emission.topic == topics.PREFERENCE_PAIRS
    pair = PreferencePair.model_validate_json(emission.value)
    assert pair.chosen.interaction_id == "int-a" and len(first.first_pairs) == 1
    emitted = {row.pair_id: row.state_hash for row in first.pair_rows}
    assert _plan(votes, emitted).emissions == []
    again = _plan(votes)
    assert PreferencePair.model_validate_json(again.emissions[0].value).event_id == pair.event_id


def test_a_flip_updates_the_same_pair_id_and_a_retraction_is_a_tombstone() -> None:
    liked_a = split_votes("int-a", 5, 0) + split_votes("int-b", 0, 5)
    first = _plan(liked_a)
    emitted = {row.pair_id: row.state_hash for row in first.pair_rows}
    flipped = [thumb(v.user_ref, v.interaction_id, -v.value, T0 + timedelta(seconds=1)) for v in liked_a]
    second = _plan(liked_a + flipped, emitted)
    (update,) = second.emissions
    assert update.key == first.emissions[0].key
    assert PreferencePair.model_validate_json(update.value).chosen.interaction_id == "int-b"
    assert second.first_pairs == []
    split = split_votes("int-a", 3, 2, prefix="w") + split_votes("int-b", 2, 3, prefix="w")
    third = _plan(split, {update.key: "some-older-hash"})
    tombstones = [e for e in third.emissions if e.topic == topics.PREFERENCE_PAIRS]
    assert [(e.key, e.value) for e in tombstones] == [(update.key, None)]
    assert [r.state_hash for r in third.pair_rows] == [RETRACTED]
    assert _plan(split, {update.key: RETRACTED}).pair_rows == []


def test_annotation_requests_are_offered_redacted_routed_and_not_repeated() -> None:
    votes = split_votes("int-a", 3, 2) + split_votes("int-b", 2, 3)
    prompt = "My insulin dose? Mail me at jane.doe@example.com"
    plan = _plan(votes, prompt=prompt)
    assert plan.emissions == [], "tasks are published by the budget, not by the group's plan"
    (offer,) = plan.task_offers
    request = AnnotationRequest.model_validate_json(offer.body)
    assert offer.task_id == request.task_id and offer.prompt_key == request.prompt_key
    assert "jane.doe@example.com" not in json.dumps(request.model_dump(mode="json"))
    assert request.domain == offer.domain == "medical" and request.priority == offer.priority > 0
    assert set(request.candidates) == {"A", "B"}
    again = _plan(votes, offered={offer.task_id: offer.state_hash}, prompt=prompt)
    assert again.task_offers == [] and again.task_releases == []


def test_domain_comes_from_the_interaction_first_then_rules_then_general() -> None:
    prompt = [Message(role="user", content="How much INSULIN?")]
    assert routing.route_domain([None, "legal"], prompt, ROUTING) == "legal"
    assert routing.route_domain([None], prompt, ROUTING) == "medical"
    assert routing.route_domain([], [Message(role="user", content="insulinX")], ROUTING) == "general"


def test_bad_domain_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="bad pattern"):
        routing.parse_domain_rules({"rules": [{"domain": "x", "patterns": ["("]}]})


def test_priority_is_the_value_of_an_answer_and_moves_in_steps() -> None:
    split = split_votes("int-a", 3, 2) + split_votes("int-b", 2, 3)
    leaning = split_votes("int-a", 4, 2) + split_votes("int-b", 2, 4)

    def priority(votes, traffic: int, step: float = ROUTING.priority_step) -> float:
        group = group_of((A, B), votes)
        (spec,) = decide(group, RULES).tasks.values()
        return task_priority(spec, traffic, step)

    assert priority(split, 100) > priority(split, 10) > 0
    assert priority(split, 10) > priority(leaning, 10), "the surer the votes, the less an expert can change"
    assert priority(split, 0) == 0.0
    # One more vote on a busy group does not change its tasks' priority (so they are not re-sent).
    assert priority(split, 120) == priority(split, 121)
    assert priority(split, 120) < priority(split, 400)
    assert priority(split, 120, step=0) < priority(split, 121, step=0)


def test_tumbling_windows_and_their_closing() -> None:
    start, end = stats.window_of(T0 + timedelta(seconds=75), 60)
    assert (start, end) == (T0 + timedelta(seconds=60), T0 + timedelta(seconds=120))
    assert not stats.is_closed(end, end + timedelta(seconds=29), allowed_lateness_s=30)
    assert stats.is_closed(end, end + timedelta(seconds=30), allowed_lateness_s=30)
    assert stats.watermark_of(T0 + timedelta(days=1), now=T0) == T0


def test_stats_message_rates_and_deterministic_event_id() -> None:
    deltas = stats.StatsDeltas(length_s=60)
    deltas.add("app", "v1", T0, interactions=2)
    for value in (1, 1, -1):
        deltas.add_vote("app", "v1", thumb("u", "int-a", value, T0))
    ((key, end, counts, _),) = deltas.rows()
    row = {
        "app_id": key.app_id,
        "model_version": key.model_version,
        "window_start": key.window_start,
        "window_end": end,
        **counts.__dict__,
    }
    message = stats.stats_message(row, is_final=False, now=T0)
    assert (message.interactions, message.thumbs_up, message.thumbs_down) == (2, 2, 1)
    assert message.thumbs_up_rate == pytest.approx(2 / 3)
    assert stats.stats_message(row, is_final=False, now=T0 + timedelta(1)).event_id == message.event_id
    assert stats.stats_message(row, is_final=True, now=T0).event_id != message.event_id


def test_a_task_no_longer_needed_is_released() -> None:
    split = split_votes("int-a", 3, 2) + split_votes("int-b", 2, 3)
    (offer,) = _plan(split).task_offers
    settled = split + split_votes("int-a", 6, 0, prefix="late") + split_votes("int-b", 0, 6, prefix="late")
    after = _plan(settled, offered={offer.task_id: offer.state_hash})
    assert after.task_releases == [offer.task_id] and after.task_offers == []
    assert any(e.topic == topics.PREFERENCE_PAIRS and e.value for e in after.emissions)
    # Published before the budget existed (no offer recorded) and still live: released too.
    assert _plan(settled, emitted_tasks={offer.task_id: "older-hash"}).task_releases == [offer.task_id]
    assert _plan(settled, emitted_tasks={offer.task_id: RETRACTED}).task_releases == []


def _state(task_id: str, is_open: bool, published: str | None, state_hash: str = "h2") -> TaskState:
    return TaskState(task_id, "key", "compare", is_open, state_hash, f"body-{task_id}".encode(), published)


def test_what_the_budget_decided_is_published_or_tombstoned_once() -> None:
    plan = plan_task_emissions(
        [
            _state("new", True, None),  # opens: published, and counted as queued
            _state("changed", True, "h1"),  # open with a newer request: published again
            _state("same", True, "h2"),  # open as published: nothing
            _state("reopened", True, RETRACTED),  # promoted after a withdrawal: published, not new
            _state("withdrawn", False, "h1"),  # no longer open and live: a tombstone
            _state("gone", False, RETRACTED),  # tombstoned before: nothing
            _state("waiting", False, None),  # never published: nothing
        ]
    )
    assert [(e.topic, e.key, e.value) for e in plan.emissions] == [
        (topics.ANNOTATION_REQUESTS, "changed", b"body-changed"),
        (topics.ANNOTATION_REQUESTS, "new", b"body-new"),
        (topics.ANNOTATION_REQUESTS, "reopened", b"body-reopened"),
        (topics.ANNOTATION_REQUESTS, "withdrawn", None),
    ]
    assert [(key, row.task_id, row.state_hash) for key, row in plan.published_rows] == [
        ("key", "changed", "h2"),
        ("key", "new", "h2"),
        ("key", "reopened", "h2"),
        ("key", "withdrawn", RETRACTED),
    ]
    assert plan.first_published == [b"body-new"]


def test_tasks_sharing_answers_each_show_their_own_redacted_candidates() -> None:
    # Redaction is done once per answer of a group and shared by its tasks: each task must still
    # show its own two answers, redacted.
    answers = [answer(f"int-{n}", f"Answer {n}: write to person{n}@example.com") for n in range(4)]
    votes = [v for a in answers for v in split_votes(a.interaction_id, 3, 2, prefix=a.interaction_id)]
    plan = _plan(votes, answers=answers, prompt="Call me at +1 415 555 0100, please")
    requests = [AnnotationRequest.model_validate_json(offer.body) for offer in plan.task_offers]
    assert len(requests) == 6  # every pair of the four answers is uncertain
    for request in requests:
        for candidate in request.candidates.values():
            n = candidate.interaction_id.removeprefix("int-")
            assert candidate.content == f"Answer {n}: write to [EMAIL]"
        assert "555 0100" not in request.prompt[0].content


@pytest.mark.parametrize("filler", [0, routing.REDACTION_CACHE_MAX_CHARS])
def test_candidates_are_redacted_every_time_short_cached_or_long(filler: int) -> None:
    text = "x" * filler + " mail jane.doe@example.com"
    candidate = answer("int-a", text).candidate()
    for _ in range(2):  # the second time a short text comes from the cache
        assert routing.redacted_candidate(candidate).content == "x" * filler + " mail [EMAIL]"
