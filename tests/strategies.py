"""Hypothesis strategies and builders shared by the property tests (aggregator math and vote folding).

Strategies draw every id, including event ids, from Hypothesis (`st.uuids()`), so a failure shrinks
and replays; the builders below take an `event_id` and default to a random one only for plain tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from services.aggregator.evidence import Tally, collect_evidence, fold_votes
from services.aggregator.pairs import Answer, Group
from shared.events import CommentVote, ComparisonVote, EditVote, Message, RatingVote, ThumbVote, VerdictVote, Vote

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
APP = "helpdesk"
PROMPT_KEY = "pk-test"
INTERACTION_IDS = ("int-a", "int-b", "int-c")

counts = st.integers(min_value=0, max_value=60)
tallies = st.builds(Tally, up=counts, down=counts)
interaction_ids = st.sampled_from(INTERACTION_IDS)
voters = st.sampled_from([f"u{i}" for i in range(6)])
experts = st.sampled_from([f"e{i}" for i in range(3)])
moments = st.integers(min_value=0, max_value=3600).map(lambda s: T0 + timedelta(seconds=s))
# A few texts, shared by answers, edits and rewrites: an edit or a rewrite may repeat an answer word for word.
texts = st.sampled_from(["answer int-a", "answer int-b", "Same answer.", "A better answer."])


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


def rating(voter: str, interaction_id: str, value: int, at: datetime = T0, event_id: uuid.UUID | None = None) -> Vote:
    return RatingVote(
        event_id=event_id or uuid.uuid4(),
        app_id=APP,
        occurred_at=at,
        interaction_id=interaction_id,
        user_ref=voter,
        kind="rating",
        value=value,
    )


def comparison(voter: str, preferred: str, other: str, at: datetime = T0, event_id: uuid.UUID | None = None) -> Vote:
    return ComparisonVote(
        event_id=event_id or uuid.uuid4(),
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
    voter, interaction_id, at, event_id = draw(voters), draw(interaction_ids), draw(moments), draw(st.uuids())
    if draw(st.booleans()):
        return thumb(voter, interaction_id, draw(st.sampled_from([1, -1])), at, event_id)
    return rating(voter, interaction_id, draw(st.integers(1, 5)), at, event_id)


@st.composite
def comparison_votes(draw: st.DrawFn) -> Vote:
    first, second = draw(st.lists(interaction_ids, min_size=2, max_size=2, unique=True))
    return comparison(draw(voters), first, second, draw(moments), draw(st.uuids()))


@st.composite
def any_votes(draw: st.DrawFn) -> Vote:
    """An approval vote or an explicit comparison."""
    return draw(st.one_of(approval_votes(), comparison_votes()))


vote_streams = st.lists(any_votes(), max_size=40)


@st.composite
def edit_votes(draw: st.DrawFn) -> Vote:
    return EditVote(
        event_id=draw(st.uuids()),
        app_id=APP,
        occurred_at=draw(moments),
        interaction_id=draw(interaction_ids),
        user_ref=draw(voters),
        kind="edit",
        edited_content=draw(texts),
    )


@st.composite
def comment_votes(draw: st.DrawFn) -> Vote:
    return CommentVote(
        event_id=draw(st.uuids()),
        app_id=APP,
        occurred_at=draw(moments),
        interaction_id=draw(interaction_ids),
        user_ref=draw(voters),
        kind="comment",
        text="a comment",
    )


@st.composite
def verdict_votes(draw: st.DrawFn) -> Vote:
    """Any verdict the contract allows: on a pair or on a lone answer, with or without a rewrite."""
    shown = draw(st.lists(interaction_ids, min_size=1, max_size=2, unique=True))
    reviewers = draw(st.lists(experts, min_size=1, max_size=3, unique=True))
    return VerdictVote(
        event_id=draw(st.uuids()),
        app_id=APP,
        occurred_at=draw(moments),
        interaction_id=shown[0],
        source="expert",
        annotator_id=reviewers[0],
        kind="verdict",
        task_id=draw(st.sampled_from(["task-1", "task-2"])),
        verdict=draw(st.sampled_from(["A", "B", "tie", "both_bad"])),
        rewrite=draw(st.none() | texts),
        a_interaction_id=shown[0],
        b_interaction_id=shown[1] if len(shown) > 1 else None,
        reviewers=reviewers,
        agreement=draw(st.none() | st.floats(0.0, 1.0)),
    )


# Every kind of evidence the pair rules read: thumbs, ratings, comparisons, edits, comments, verdicts.
evidence_votes = st.one_of(approval_votes(), comparison_votes(), edit_votes(), comment_votes(), verdict_votes())


@st.composite
def thumb_blocks(draw: st.DrawFn) -> list[Vote]:
    """Up to eight ups and eight downs per answer, each by its own voter: enough for a confident split."""
    votes = []
    for interaction_id in INTERACTION_IDS:
        up, down = draw(st.integers(0, 8)), draw(st.integers(0, 8))
        for i, value in enumerate([1] * up + [-1] * down):
            votes.append(thumb(f"crowd-{interaction_id}-{i}", interaction_id, value, draw(moments), draw(st.uuids())))
    return votes


@st.composite
def evidence_streams(draw: st.DrawFn) -> list[Vote]:
    """A stream of mixed evidence, sometimes with a crowd of thumbs, in any order."""
    votes = draw(st.lists(evidence_votes, max_size=30))
    if draw(st.booleans()):
        votes += draw(thumb_blocks())
    return draw(st.permutations(votes))


def answer(interaction_id: str, content: str | None = None, model_version: str = "v1") -> Answer:
    return Answer(
        interaction_id=interaction_id,
        content=content or f"answer {interaction_id}",
        model="acme-chat",
        model_version=model_version,
        domain=None,
        occurred_at=T0,
    )


@st.composite
def answer_sets(draw: st.DrawFn) -> list[Answer]:
    """One to three answers of a group; two of them may say the same thing."""
    ids = draw(st.lists(interaction_ids, min_size=1, max_size=3, unique=True))
    return [answer(i, draw(texts)) for i in sorted(ids)]


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
