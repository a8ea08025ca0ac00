"""The cached pair and task hashes, priorities and judgements give exactly what the plain code gave.

The plain code is kept here, verbatim from before the caches: a pair's state hash from the built
PreferencePair's `model_dump`, a task's priority from the uncached Beta sum. A hot group is followed vote by
vote (each prefix of a stream is one batch, its stored pairs and offered tasks the previous batch's
writes); each batch's decision and plan, computed with the caches as earlier examples left them, must
equal the plan computed with every cache empty, and every hash and priority in it the plain one.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.aggregator import beta, budget, pairs, state_hashes
from services.aggregator.budget import task_value
from services.aggregator.outputs import _NIL, plan_outputs
from services.aggregator.pairs import Group, PairSpec, TaskSpec, decide
from services.aggregator.rules import pair_rules, routing_rules
from services.aggregator.settings import AggregatorSettings
from shared.events import Candidate, Message, PreferencePair
from tests.strategies import T0, answer, answer_sets, evidence_streams, group_of, split_votes
from tests.unit.aggregator.test_output_fast_paths import reference_task_hash

RULES = pair_rules(AggregatorSettings())
ROUTING = routing_rules(AggregatorSettings())


def clear_caches() -> None:
    """Every cache of the pair math and the outputs: what follows is the plain computation."""
    state_hashes.clear_caches()
    getattr(beta._prob_better, "cache_clear", lambda: None)()
    budget._compare_priority.cache_clear()
    budget._rewrite_priority.cache_clear()
    pairs._digest.cache_clear()


def reference_pair_hash(group: Group, spec: PairSpec, domain: str) -> str:
    """The pair's state hash before the cache, verbatim: the model built, dumped, written by json.dumps."""
    pair = PreferencePair(
        event_id=_NIL,
        app_id=group.app_id,
        pair_id=spec.pair_id,
        prompt_key=group.prompt_key,
        prompt=list(group.prompt),
        chosen=spec.chosen,
        rejected=spec.rejected,
        confidence=spec.confidence,
        method=spec.method,  # type: ignore[arg-type]
        evidence=spec.evidence,
        domain=domain,
        occurred_at=spec.occurred_at,
        updated_at=T0,
    )
    payload = pair.model_dump(mode="json", exclude={"event_id", "updated_at"})
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return state_hashes.hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def reference_prob_better(a_up: int, a_down: int, b_up: int, b_down: int) -> float:
    """beta.prob_better before the cache, verbatim."""
    a1, b1, a2, b2 = 1 + b_up, 1 + b_down, 1 + a_up, 1 + a_down
    base = _log_beta(a1, b1)
    total = 0.0
    for i in range(a2):
        total += math.exp(_log_beta(a1 + i, b1 + b2) - math.log(b2 + i) - _log_beta(1 + i, b2) - base)
    return min(1.0, max(0.0, total))


def reference_priority(spec: TaskSpec, traffic: int, step: float) -> float:
    """budget.task_priority before the cache, verbatim but for the uncached Beta sum."""
    counts = spec.evidence
    if spec.kind == "rewrite":
        return task_value(traffic, beta.prob_above_half(counts.get("a_down", 0), counts.get("a_up", 0)), step)
    p = reference_prob_better(counts.get("a_up", 0), counts.get("a_down", 0), counts.get("b_up", 0),
                              counts.get("b_down", 0))  # fmt: skip
    log_odds = budget._logit(p) + budget._logit(
        beta.prob_above_half(counts.get("a_preferred", 0), counts.get("b_preferred", 0))
    )
    change = 1.0 / (1.0 + math.exp(-log_odds))
    return task_value(traffic, min(change, 1.0 - change), step)


def _plan(group: Group, emitted: dict[str, str], offered: dict[str, str], traffic: int):
    decision = decide(group, RULES)
    return decision, plan_outputs(group, decision, emitted, offered, {}, ROUTING, traffic=traffic, now=T0,
                                  domain="general")  # fmt: skip


@settings(max_examples=120, deadline=None)
@given(answer_sets(), evidence_streams(), st.lists(st.integers(0, 40), min_size=1, max_size=6))
def test_a_hot_group_batch_by_batch_plans_as_with_every_cache_empty(answers, votes, cuts) -> None:
    emitted: dict[str, str] = {}
    offered: dict[str, str] = {}
    for cut in sorted(cuts):
        group = group_of(answers, votes[:cut])
        traffic = len(answers) + cut
        warm_decision, warm = _plan(group, emitted, offered, traffic)
        clear_caches()
        cold_decision, cold = _plan(group, emitted, offered, traffic)
        assert warm_decision == cold_decision
        assert warm == cold
        for spec in cold_decision.pairs.values():
            if spec.pair_id not in {row.pair_id for row in cold.pair_rows}:
                assert emitted[spec.pair_id] == reference_pair_hash(group, spec, "general")
        for row in cold.pair_rows:
            if row.pair is not None:
                assert row.state_hash == reference_pair_hash(group, cold_decision.pairs[row.pair_id], "general")
        for spec in cold_decision.tasks.values():
            priority = reference_priority(spec, traffic, ROUTING.priority_step)
            assert budget.task_priority(spec, traffic, ROUTING.priority_step) == priority
            expected = reference_task_hash(spec, "general", priority)
            assert {**offered, **{o.task_id: o.state_hash for o in cold.task_offers}}[spec.task_id] == expected
        emitted = {**emitted, **{row.pair_id: row.state_hash for row in cold.pair_rows}}
        offered = {t: h for t, h in {**offered, **{o.task_id: o.state_hash for o in cold.task_offers}}.items()
                   if t not in cold.task_releases}  # fmt: skip


ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cc",)), min_size=1, max_size=12)
texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
confidences = st.floats(0.0, 1.0) | st.sampled_from([0.0, -0.0, 5e-05, 1e-300, 0, 1])


@st.composite
def pair_inputs(draw: st.DrawFn) -> tuple[Group, PairSpec]:
    first, second = draw(st.lists(ids, min_size=2, max_size=2, unique=True))
    contents = draw(st.lists(texts, min_size=2, max_size=2, unique=True))
    chosen, rejected = (Candidate(interaction_id=i, content=c, model=draw(ids), model_version=draw(ids))
                        for i, c in zip((first, second), contents, strict=True))  # fmt: skip
    prompt = tuple(Message(role=draw(st.sampled_from(["user", "system"])), content=draw(texts)) for _ in range(2))
    group = Group(prompt_key=draw(ids), app_id=draw(ids), prompt=prompt, answers=(), evidence=pairs.Evidence())
    spec = PairSpec(
        pair_id=draw(ids),
        chosen=chosen,
        rejected=rejected,
        method=draw(st.sampled_from(["votes", "comparison", "edit", "expert"])),
        confidence=draw(confidences),
        evidence=draw(st.dictionaries(st.sampled_from(["chosen_up", "experts", "é"]), st.integers(-(2**70), 2**70))),
        occurred_at=draw(st.datetimes(timezones=offsets)),
    )
    return group, spec


def _published_hash(group: Group, spec: PairSpec, stored: str | None) -> str | None:
    """The hash plan_outputs stores for this pair, None when it finds the stored one (and publishes nothing)."""
    plan = plan_outputs(group, pairs.PairDecision(pairs={spec.pair_id: spec}), {} if stored is None else
                        {spec.pair_id: stored}, {}, {}, ROUTING, traffic=1, now=T0, domain="general")  # fmt: skip
    return plan.pair_rows[0].state_hash if plan.pair_rows else None


def _variants(spec: PairSpec) -> list[PairSpec]:
    """Inputs that compare equal to the spec's (or nearly) and may write other JSON."""
    moment = spec.occurred_at
    shifted = moment.astimezone(timezone(moment.utcoffset() + timedelta(minutes=30)))  # type: ignore[operator]
    out = [replace(spec, occurred_at=shifted), replace(spec, confidence=-spec.confidence)]
    if spec.confidence in (0, 1):
        out.append(
            replace(spec, confidence=float(spec.confidence) if type(spec.confidence) is int else int(spec.confidence))
        )
    if spec.evidence:
        out.append(replace(spec, evidence={k: True if v == 1 else v for k, v in spec.evidence.items()}))
    return out


@settings(max_examples=300, deadline=None)
@given(pair_inputs())
def test_a_pair_is_stored_under_the_plain_hash_and_not_built_again_as_it_was(inputs) -> None:
    group, spec = inputs
    expected = reference_pair_hash(group, spec, "general")
    assert _published_hash(group, spec, None) == expected  # built, its hash remembered
    assert _published_hash(group, spec, expected) is None  # as stored: skipped (by the cache)
    for variant in _variants(spec):
        try:
            other = reference_pair_hash(group, variant, "general")
        except ValueError:  # -confidence out of range: the model refuses it, the cache must too
            with pytest.raises(ValueError):
                _published_hash(group, variant, expected)
            continue
        # Equal inputs that write other JSON must not be taken for the stored pair (a key that ignored
        # the offset, the sign of zero or bool-for-int would return None here).
        assert _published_hash(group, variant, expected) == (None if other == expected else other)


def test_equal_inputs_that_write_apart_hash_apart() -> None:
    """The keys keep apart what compares equal but writes otherwise (fails with a key of plain values)."""
    spec = TaskSpec(task_id="t", kind="compare", candidates=(), reason="r", uncertainty=0.5, evidence={"a": 1},
                    occurred_at=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
    east = replace(spec, occurred_at=spec.occurred_at.astimezone(timezone(timedelta(hours=2))))
    assert spec.occurred_at == east.occurred_at
    for a, b, pa, pb in [(spec, east, 1.0, 1.0), (spec, spec, 0.0, -0.0),
                         (spec, replace(spec, evidence={"a": True}), 1.0, 1.0)]:  # fmt: skip
        first, second = state_hashes.task_hash(a, "d", pa), state_hashes.task_hash(b, "d", pb)
        assert first == reference_task_hash(a, "d", pa)
        assert second == reference_task_hash(b, "d", pb)
        assert first != second


def test_the_hot_group_comparison_fails_when_a_cache_answers_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    """The property above can fail: a cached Beta sum that is not the plain one changes the plan."""
    answers = [answer("int-a", "first"), answer("int-b", "second")]
    group = group_of(answers, split_votes("int-a", 3, 2) + split_votes("int-b", 2, 3))
    clear_caches()
    _, plain = _plan(group, {}, {}, 20)
    monkeypatch.setattr(beta, "_prob_better", lambda *counts: 0.999)  # a cache entry that lies
    clear_caches()
    _, lying = _plan(group, {}, {}, 20)
    assert plain.task_offers and not plain.pair_rows
    assert lying != plain


moments = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 1, 2), timezones=offsets)


@settings(max_examples=300, deadline=None)
@given(st.lists(moments, min_size=2, max_size=2), st.lists(st.none() | moments, min_size=2, max_size=2))
def test_a_pairs_time_is_the_plain_max_also_among_equal_instants(answered, evidenced) -> None:
    """`_when2` picks what `max` picked: the first of equal instants (two offsets write two texts)."""
    a, b = (replace(answer(i), occurred_at=t) for i, t in zip(("int-a", "int-b"), answered, strict=True))
    newest_at = {i: t for i, t in zip(("int-a", "int-b"), evidenced, strict=True) if t is not None}
    group = Group(prompt_key="k", app_id="app", prompt=(), answers=(a, b), evidence=pairs.Evidence(newest_at=newest_at))
    plain, fast = pairs._when(group, a, b), pairs._when2(group, a, b)
    assert plain == fast and str(plain) == str(fast)
