"""Hypothesis strategies and builders shared by the property tests (aggregator math and vote folding)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from services.aggregator.evidence import Tally, collect_evidence, fold_votes
from services.aggregator.pairs import Answer, Group
from shared.events import ComparisonVote, Message, RatingVote, ThumbVote, Vote

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
APP = "helpdesk"
PROMPT_KEY = "pk-test"

counts = st.integers(min_value=0, max_value=60)
tallies = st.builds(Tally, up=counts, down=counts)
interaction_ids = st.sampled_from(["int-a", "int-b", "int-c"])
voters = st.sampled_from([f"u{i}" for i in range(6)])
moments = st.integers(min_value=0, max_value=3600).map(lambda s: T0 + timedelta(seconds=s))


def thumb(voter: str, interaction_id: str, value: int, at: datetime = T0, event_id: uuid.UUID | None = None) -> Vote:
    return ThumbVote(
        event_id=event_id or uuid.uuid4(),
        app_id=APP,
        occurred_at=at,
        interaction_id=interaction_id,
        user_ref=voter,
        kind="thumb",
        value=value,
    )


def rating(voter: str, interaction_id: str, value: int, at: datetime = T0) -> Vote:
    return RatingVote(
        event_id=uuid.uuid4(),
        app_id=APP,
        occurred_at=at,
        interaction_id=interaction_id,
        user_ref=voter,
        kind="rating",
        value=value,
    )


def comparison(voter: str, preferred: str, other: str, at: datetime = T0) -> Vote:
    return ComparisonVote(
        event_id=uuid.uuid4(),
        app_id=APP,
        occurred_at=at,
        interaction_id=preferred,
        user_ref=voter,
        kind="comparison",
        preferred_interaction_id=preferred,
        other_interaction_id=other,
    )


@st.composite
def approval_votes(draw: st.DrawFn) -> Vote:
    """A thumb or a rating by one of a few voters on one of a few answers, at some moment."""
    voter, interaction_id, at = draw(voters), draw(interaction_ids), draw(moments)
    if draw(st.booleans()):
        return thumb(voter, interaction_id, draw(st.sampled_from([1, -1])), at)
    return rating(voter, interaction_id, draw(st.integers(1, 5)), at)


@st.composite
def any_votes(draw: st.DrawFn) -> Vote:
    """An approval vote or an explicit comparison."""
    if draw(st.booleans()):
        return draw(approval_votes())
    first, second = draw(st.lists(interaction_ids, min_size=2, max_size=2, unique=True))
    return comparison(draw(voters), first, second, draw(moments))


vote_streams = st.lists(any_votes(), max_size=40)


def answer(interaction_id: str, content: str | None = None, model_version: str = "v1") -> Answer:
    return Answer(
        interaction_id=interaction_id,
        content=content or f"answer {interaction_id}",
        model="acme-chat",
        model_version=model_version,
        domain=None,
        occurred_at=T0,
    )


def group_of(answers: Iterable[Answer], votes: Iterable[Vote], prompt: str = "What is a good answer?") -> Group:
    """A group whose evidence is the latest-per-slot fold of `votes`."""
    state, _ = fold_votes({}, votes)
    return Group(
        prompt_key=PROMPT_KEY,
        app_id=APP,
        prompt=(Message(role="user", content=prompt),),
        answers=tuple(answers),
        evidence=collect_evidence(state.values()),
    )


def split_votes(interaction_id: str, up: int, down: int, prefix: str = "u") -> list[Vote]:
    """`up` thumbs-up and `down` thumbs-down on one answer, each by its own voter."""
    ups = [thumb(f"{prefix}{interaction_id}-up{i}", interaction_id, 1) for i in range(up)]
    return ups + [thumb(f"{prefix}{interaction_id}-down{i}", interaction_id, -1) for i in range(down)]
