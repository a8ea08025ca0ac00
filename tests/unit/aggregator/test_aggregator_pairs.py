"""Pair math and pair rules of the aggregator: properties (Hypothesis) and the decisive cases."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from services.aggregator.evidence import Tally, approval_of, fold_votes, vote_slot
from services.aggregator.outputs import plan_outputs
from services.aggregator.pairs import (
    PairSpec,
    TaskSpec,
    decide,
    judge_pair,
    pair_id,
    prob_above_half,
    prob_better,
    task_id,
)
from services.aggregator.rules import pair_rules, routing_rules
from services.aggregator.settings import AggregatorSettings
from shared.events import AnnotationRequest, EditVote, VerdictVote
from tests.strategies import (
    APP,
    T0,
    answer,
    answer_sets,
    comparison,
    evidence_streams,
    group_of,
    rating,
    split_votes,
    tallies,
    thumb,
    vote_streams,
)

RULES = pair_rules(AggregatorSettings())
ROUTING = routing_rules(AggregatorSettings())
A, B = answer("int-a"), answer("int-b")


@given(tallies, tallies)
def test_win_probabilities_of_two_answers_sum_to_one(a: Tally, b: Tally) -> None:
    assert prob_better(a, b) + prob_better(b, a) == pytest.approx(1.0, abs=1e-9)


@given(tallies, tallies)
def test_confidence_rises_with_agreeing_votes(a: Tally, b: Tally) -> None:
    p = prob_better(a, b)
    assert prob_better(Tally(a.up + 1, a.down), b) > p or p > 1 - 1e-12
    assert prob_better(a, Tally(b.up, b.down + 1)) > p or p > 1 - 1e-12


@pytest.mark.parametrize(
    ("a", "b"), [(Tally(5, 0), Tally(0, 5)), (Tally(3, 2), Tally(2, 3)), (Tally(7, 9), Tally(4, 1))]
)
def test_exact_win_probability_matches_monte_carlo(a: Tally, b: Tally) -> None:
    rng = random.Random(20261126)
    draws = 200_000
    wins = sum(rng.betavariate(1 + a.up, 1 + a.down) > rng.betavariate(1 + b.up, 1 + b.down) for _ in range(draws))
    assert prob_better(a, b) == pytest.approx(wins / draws, abs=0.005)


def test_prob_above_half_of_a_single_comparison_is_three_quarters() -> None:
    assert prob_above_half(1, 0) == pytest.approx(0.75)
    assert prob_above_half(0, 0) == pytest.approx(0.5)


@given(st.text(min_size=1), st.text(min_size=1), st.text(min_size=1))
def test_pair_id_is_order_free_and_task_id_too(key: str, a: str, b: str) -> None:
    assert pair_id(key, a, b) == pair_id(key, b, a)
    assert task_id(key, "compare", (a, b)) == task_id(key, "compare", (b, a))
    assert pair_id(key, a, b) != pair_id(key + "x", a, b)


@given(vote_streams, st.randoms(use_true_random=False))
def test_duplicates_and_reordering_give_the_same_state(votes, rnd: random.Random) -> None:
    once, _ = fold_votes({}, votes)
    shuffled = votes * 2
    rnd.shuffle(shuffled)
    twice, _ = fold_votes({}, shuffled)
    assert twice == once


@given(vote_streams)
def test_the_latest_vote_in_a_slot_wins(votes) -> None:
    state, _ = fold_votes({}, votes)
    for vote in votes:
        held = state[vote_slot(vote)]
        assert (held.occurred_at, str(held.event_id)) >= (vote.occurred_at, str(vote.event_id))


@settings(max_examples=300)
@given(answer_sets(), evidence_streams())
def test_every_pair_is_two_different_texts_and_a_valid_contract(answers, votes) -> None:
    """Whatever the evidence (thumbs, ratings, comparisons, edits, comments, verdicts), each pair is publishable:
    chosen and rejected differ in content, and they are different answers unless the pair is an edit (the
    edited text over the original of the same answer)."""
    group = group_of(answers, votes)
    decision = decide(group, RULES)
    for spec in decision.pairs.values():
        assert spec.chosen.content != spec.rejected.content
        if spec.method == "edit":
            assert spec.chosen.interaction_id == spec.rejected.interaction_id
        else:
            assert spec.chosen.interaction_id != spec.rejected.interaction_id
        assert 0.0 <= spec.confidence <= 1.0
    # What the shell publishes: every pair becomes a PreferencePair message (the contract validates it).
    plan = plan_outputs(group, decision, {}, {}, {}, ROUTING, traffic=len(votes), now=T0)
    assert len(plan.first_pairs) == len(decision.pairs)
    # Every task becomes an offer whose body is a valid AnnotationRequest with the offer's priority.
    assert {offer.task_id for offer in plan.task_offers} == decision.tasks.keys()
    for offer in plan.task_offers:
        assert AnnotationRequest.model_validate_json(offer.body).priority == offer.priority >= 0


@pytest.mark.parametrize("method", ["votes", "comparison", "edit", "expert"])
def test_the_evidence_strategy_reaches_every_kind_of_pair(method: str) -> None:
    """The property above is only as good as its strategy: it must produce pairs of every method."""

    def has_method(example: tuple[list, list]) -> bool:
        answers, votes = example
        return any(spec.method == method for spec in decide(group_of(answers, votes), RULES).pairs.values())

    find(
        st.tuples(answer_sets(), evidence_streams()),
        has_method,
        settings=settings(max_examples=2000, database=None, phases=[Phase.generate]),
    )


def test_a_vote_flip_replaces_the_earlier_vote() -> None:
    first = thumb("u1", "int-a", 1, T0)
    flipped = thumb("u1", "int-a", -1, T0 + timedelta(seconds=5))
    state, changed = fold_votes({}, [flipped, first])
    assert list(state.values()) == [flipped]
    _, changed_again = fold_votes(state, [first])
    assert changed and not changed_again


def test_ratings_map_to_approval() -> None:
    assert [approval_of(rating("u", "int-a", v)) for v in (1, 2, 3, 4, 5)] == [-1, -1, 0, 1, 1]


def test_clear_thumbs_split_gives_a_pair_with_the_liked_answer_chosen() -> None:
    group = group_of([A, B], split_votes("int-a", 0, 5) + split_votes("int-b", 5, 0))
    outcome = judge_pair(group, A, B, RULES)
    assert isinstance(outcome, PairSpec)
    assert (outcome.chosen.interaction_id, outcome.rejected.interaction_id, outcome.method) == (
        "int-b",
        "int-a",
        "votes",
    )
    assert outcome.confidence >= RULES.confidence_threshold
    assert outcome.evidence == {"chosen_up": 5, "rejected_down": 5}


def test_three_two_split_is_ambiguous_not_a_pair() -> None:
    group = group_of([A, B], split_votes("int-a", 3, 2) + split_votes("int-b", 2, 3))
    decision = decide(group, RULES)
    assert not decision.pairs
    (task,) = decision.tasks.values()
    assert (task.kind, task.reason) == ("compare", "uncertain_votes")
    assert task.task_id == task_id(group.prompt_key, "compare", ("int-b", "int-a"))


def test_too_few_votes_decide_nothing_yet() -> None:
    group = group_of([A, B], split_votes("int-a", 1, 0) + split_votes("int-b", 0, 1))
    assert judge_pair(group, A, B, RULES) is None


def test_a_lone_disliked_answer_becomes_a_rewrite_task() -> None:
    decision = decide(group_of([A], split_votes("int-a", 0, 2)), RULES)
    (task,) = decision.tasks.values()
    assert (task.kind, [c.interaction_id for c in task.candidates]) == ("rewrite", ["int-a"])
    assert not decide(group_of([A], split_votes("int-a", 2, 1)), RULES).tasks


def test_an_explicit_comparison_gives_a_comparison_pair() -> None:
    group = group_of([A, B], [comparison("u1", "int-b", "int-a")])
    outcome = judge_pair(group, A, B, RULES)
    assert isinstance(outcome, PairSpec)
    assert (outcome.chosen.interaction_id, outcome.method) == ("int-b", "comparison")


def test_split_comparisons_and_disagreeing_evidence_are_ambiguous() -> None:
    split = group_of([A, B], [comparison("u1", "int-b", "int-a"), comparison("u2", "int-a", "int-b")])
    assert isinstance(judge_pair(split, A, B, RULES), TaskSpec)
    against = [comparison("u1", "int-b", "int-a"), *split_votes("int-a", 5, 0), *split_votes("int-b", 0, 5)]
    outcome = judge_pair(group_of([A, B], against), A, B, RULES)
    assert isinstance(outcome, TaskSpec) and outcome.reason == "evidence_disagrees"


def _edit(voter: str, interaction_id: str, text: str) -> EditVote:
    return EditVote(
        event_id=uuid.uuid4(),
        app_id=APP,
        occurred_at=T0,
        interaction_id=interaction_id,
        user_ref=voter,
        kind="edit",
        edited_content=text,
    )


def test_an_edit_gives_an_edit_pair_and_an_sft_example() -> None:
    decision = decide(group_of([A], [_edit("u1", "int-a", "A better answer.")]), RULES)
    (spec,) = decision.pairs.values()
    assert (spec.method, spec.chosen.content, spec.rejected.content) == ("edit", "A better answer.", A.content)
    assert [(s.interaction_id, s.content) for s in decision.sft] == [("int-a", "A better answer.")]


def _verdict(verdict: str, b: str | None = "int-b", rewrite: str | None = None, at_s: int = 60) -> VerdictVote:
    return VerdictVote(
        event_id=uuid.uuid4(),
        app_id=APP,
        occurred_at=T0 + timedelta(seconds=at_s),
        interaction_id="int-a",
        source="expert",
        annotator_id="e1",
        kind="verdict",
        task_id="task-1",
        verdict=verdict,
        a_interaction_id="int-a",
        b_interaction_id=b,
        rewrite=rewrite,
        reviewers=["e1", "e2"],
        agreement=1.0,
    )


def test_an_expert_verdict_wins_over_end_user_thumbs() -> None:
    votes = [*split_votes("int-a", 0, 9), *split_votes("int-b", 9, 0), _verdict("A")]
    (spec,) = decide(group_of([A, B], votes), RULES).pairs.values()
    assert (spec.chosen.interaction_id, spec.method, spec.evidence["experts"]) == ("int-a", "expert", 2)


def test_a_tie_retracts_and_a_rewrite_pairs_against_both() -> None:
    votes = [*split_votes("int-a", 0, 9), *split_votes("int-b", 9, 0)]
    assert not decide(group_of([A, B], [*votes, _verdict("tie")]), RULES).pairs
    pairs = decide(group_of([A, B], [*votes, _verdict("both_bad", rewrite="Much better.")]), RULES).pairs
    assert sorted(p.rejected.interaction_id for p in pairs.values()) == ["int-a", "int-b"]
    assert {p.chosen.interaction_id for p in pairs.values()} == {"rewrite:task-1"}


def test_a_rewrite_task_verdict_gives_the_rewrite_pair() -> None:
    votes = [*split_votes("int-a", 0, 3), _verdict("both_bad", b=None, rewrite="Fixed.")]
    decision = decide(group_of([A], votes), RULES)
    (spec,) = decision.pairs.values()
    assert (spec.chosen.model, spec.rejected.interaction_id) == ("expert", "int-a")
    assert not decision.tasks


def test_a_verdict_between_two_answers_with_one_text_makes_no_pair() -> None:
    """Found by the evidence property: such a pair would break the contract (chosen and rejected the same text)."""
    twins = [answer("int-a", "Same answer."), answer("int-b", "Same answer.")]
    assert not decide(group_of(twins, [_verdict("A")]), RULES).pairs
