"""evidence.collect_evidence against a plain reading of its rules: tallies, comparisons and each answer's newest
evidence, whatever mix of votes (its thumbs take a path of their own)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from services.aggregator.evidence import Tally, approval_of, collect_evidence
from shared.events import ComparisonVote, VerdictVote, Vote
from tests.strategies import evidence_votes


def touched(vote: Vote) -> list[str]:
    if isinstance(vote, ComparisonVote):
        return [vote.preferred_interaction_id, vote.other_interaction_id]
    if isinstance(vote, VerdictVote):
        return [i for i in (vote.a_interaction_id, vote.b_interaction_id) if i]
    return [vote.interaction_id]


@settings(max_examples=300, deadline=None)
@given(st.lists(evidence_votes, max_size=30))
def test_the_index_says_what_the_votes_say(votes: list[Vote]) -> None:
    evidence = collect_evidence(votes)
    ups = Counter(v.interaction_id for v in votes if approval_of(v) > 0)
    downs = Counter(v.interaction_id for v in votes if approval_of(v) < 0)
    assert evidence.tallies == {i: Tally(ups[i], downs[i]) for i in ups.keys() | downs.keys()}
    newest: dict[str, object] = {}
    for vote in votes:
        for interaction_id in touched(vote):
            newest[interaction_id] = max(newest.get(interaction_id, vote.occurred_at), vote.occurred_at)
    assert evidence.newest_at == newest
    compared = Counter(
        (v.preferred_interaction_id, v.other_interaction_id) for v in votes if isinstance(v, ComparisonVote)
    )
    assert evidence.comparisons == dict(compared)
