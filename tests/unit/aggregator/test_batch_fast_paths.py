"""The batch's fast paths give exactly what the plain code gives: slots, vote order, stats windows, cached odds."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.aggregator.beta import prob_above_half
from services.aggregator.evidence import fold_votes, vote_slot
from services.aggregator.stats import StatsDeltas, WindowKey, window_of
from shared.events import ThumbVote

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def thumb(user: str, interaction_id: str, event_id: uuid.UUID, at: datetime = T0) -> ThumbVote:
    # model_construct: any characters, as a slot must be right for whatever the contract lets through.
    return ThumbVote.model_construct(
        event_id=event_id, app_id="app", occurred_at=at, received_at=at, interaction_id=interaction_id,
        user_ref=user, kind="thumb", value=1, source="end_user",
    )  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=12), st.text(min_size=1, max_size=12))
def test_a_slot_is_the_json_of_its_parts_whatever_characters_the_ids_hold(user: str, interaction_id: str) -> None:
    expected = json.dumps(["approval", f"user:{user}", interaction_id], ensure_ascii=False, separators=(",", ":"))
    assert vote_slot(thumb(user, interaction_id, uuid.uuid4())) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.uuids(), min_size=2, max_size=6, unique=True))
def test_votes_of_one_moment_fold_to_the_greatest_event_id_as_a_string(event_ids: list[uuid.UUID]) -> None:
    state, _ = fold_votes({}, [thumb("u", "a", event_id) for event_id in event_ids])
    assert state[vote_slot(thumb("u", "a", event_ids[0]))].event_id == max(event_ids, key=str)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=-(10**9), max_value=10**9), min_size=1, max_size=30),
    st.sampled_from([1.0, 60.0, 300.0, 3600.0]),
)
def test_stats_deltas_put_each_event_in_the_window_of_its_own_time(offsets_ms: list[int], length_s: float) -> None:
    deltas = StatsDeltas(length_s)
    moments = [T0 + timedelta(milliseconds=ms) for ms in offsets_ms]
    for moment in moments:
        deltas.add("app", "v1", moment, interactions=1)
    expected: dict[WindowKey, int] = {}
    for moment in moments:
        key = WindowKey("app", "v1", window_of(moment, length_s)[0])
        expected[key] = expected.get(key, 0) + 1
    assert {key: counts.interactions for key, counts in deltas.counts.items()} == expected
    assert all(deltas.newest_at[k] == max(m for m in moments if window_of(m, length_s)[0] == k.window_start)
               for k in expected)  # fmt: skip


@given(st.integers(min_value=0, max_value=300), st.integers(min_value=0, max_value=300))
def test_cached_odds_are_the_exact_sum(wins: int, losses: int) -> None:
    n = wins + losses + 1
    assert prob_above_half(wins, losses) == sum(math.comb(n, k) for k in range(wins + 1)) / 2**n
