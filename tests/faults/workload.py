"""A seeded, replayable workload for the fault tests: the same seed gives the same events, byte for byte.

Two phases. Phase 1 builds prompt groups (1-3 answers: regenerations share the messages) and votes
on them: clear thumbs splits and rating splits (-> pairs), 3-2 splits (-> compare tasks), explicit
comparisons, edits, lone bad answers (-> rewrite tasks), comments, and some votes sent before
their interaction (parked, then applied). Phase 2 flips votes (a later vote by the same user on
the same answer) so some phase-1 pairs reverse (same pair_id, chosen and rejected swapped) and
some turn ambiguous (tombstone + task): the retractions are real. Both phases hold exact
duplicates (the same event re-sent, sometimes through the other channel).

Event times are fixed (T0 is a constant) and span less than the stats allowed lateness, so no
stats window ever closes and the final state depends only on the set of events.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

# Where an event enters the pipeline: the HTTP batch APIs of ingest and feedback, or the raw topics.
Channel = Literal["ingest", "feedback", "interactions.raw", "feedback.raw"]

T0 = datetime(2025, 6, 2, 12, 0, 0, tzinfo=UTC)
PHASE_2_OFFSET_S = 15.0
RAW_SHARE = 0.15
DUPLICATE_SHARE = 0.04
EARLY_VOTE_GROUP_SHARE = 0.1
FLIP_SHARE = 0.5
APPS = ("fault-app-a", "fault-app-b")
MODEL_VERSIONS = ("2025-05-01", "2025-06-01")
RECIPES = ("clear", "clear", "clear", "split", "comparison", "edit", "ratings")


@dataclass(frozen=True)
class Send:
    """One event and the channel it goes through."""

    channel: Channel
    body: dict[str, Any]

    @property
    def event_id(self) -> str:
        return self.body["event_id"]

    @property
    def is_interaction(self) -> bool:
        return self.channel in ("ingest", "interactions.raw")


@dataclass
class Workload:
    """The sends of each phase, and what the aggregator must have taken in at the end of each."""

    seed: int
    groups: int
    phases: list[list[Send]] = field(default_factory=list)

    def interaction_keys(self, through_phase: int) -> set[tuple[str, str]]:
        sends = [s for phase in self.phases[:through_phase] for s in phase if s.is_interaction]
        return {(s.body["app_id"], s.body["interaction_id"]) for s in sends}

    def vote_ids(self, through_phase: int) -> set[str]:
        return {s.event_id for phase in self.phases[:through_phase] for s in phase if not s.is_interaction}

    @property
    def size(self) -> int:
        return sum(len(phase) for phase in self.phases)


class _Builder:
    """Draws one workload from a seeded random generator (nothing else is random)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)

    def event_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def moment(self, start_s: float, spread_s: float) -> str:
        offset = start_s + self.rng.randrange(int(spread_s * 1000)) / 1000
        return (T0 + timedelta(seconds=offset)).isoformat()

    def interaction(self, g: int, app: str, answer: int, version: str) -> dict[str, Any]:
        iid = f"s{self.seed}-g{g}-a{answer}"
        return {
            "event_id": self.event_id(),
            "app_id": app,
            "occurred_at": (T0 + timedelta(milliseconds=g * 10 + answer)).isoformat(),
            "interaction_id": iid,
            "conversation_id": f"s{self.seed}-conv{g}",
            "user_ref": f"asker-{g % 17}",
            "messages": [{"role": "user", "content": f"Question {g} of run {self.seed}: how do I tune setting {g}?"}],
            "response": {
                "content": f"Answer {answer} to question {g}.",
                "model": "acme-chat",
                "model_version": version,
            },
            "regenerated_from": f"s{self.seed}-g{g}-a0" if answer else None,
            "language": "en",
        }

    def vote(self, app: str, iid: str, user: str, at: str, kind: str, **body: Any) -> dict[str, Any]:
        return {
            "event_id": self.event_id(),
            "app_id": app,
            "occurred_at": at,
            "interaction_id": iid,
            "user_ref": user,
            "source": "end_user",
            "kind": kind,
            **body,
        }

    def channel(self, http: Channel, raw: Channel) -> Channel:
        return raw if self.rng.random() < RAW_SHARE else http


@dataclass
class _Group:
    g: int
    app: str
    answers: list[str]
    recipe: str
    thumbs: list[dict[str, Any]] = field(default_factory=list)


def _phase_1_votes(b: _Builder, group: _Group) -> list[dict[str, Any]]:
    """The group's votes by recipe; thumbs are remembered so phase 2 can flip them."""
    g, app, answers, rng = group.g, group.app, group.answers, b.rng
    at = lambda: b.moment(2.0, 8.0)  # noqa: E731 - a short local alias keeps the recipes readable
    user = lambda k: f"u{b.seed}-{g}-{k}"  # noqa: E731
    votes: list[dict[str, Any]] = []
    if len(answers) == 1:
        downs = rng.randint(0, 2)
        votes += [b.vote(app, answers[0], user(k), at(), "thumb", value=-1) for k in range(downs)]
        votes += [b.vote(app, answers[0], user(9), at(), "thumb", value=1)] if rng.random() < 0.3 else []
    elif group.recipe in ("clear", "ratings"):
        winner, loser = rng.sample(answers, 2)
        ups, downs = rng.randint(4, 5), rng.randint(4, 5)
        if group.recipe == "ratings":
            votes += [b.vote(app, winner, user(k), at(), "rating", value=rng.choice((4, 5))) for k in range(ups)]
            votes += [b.vote(app, loser, user(10 + k), at(), "rating", value=rng.choice((1, 2))) for k in range(downs)]
        else:
            group.thumbs += [b.vote(app, winner, user(k), at(), "thumb", value=1) for k in range(ups)]
            group.thumbs += [b.vote(app, loser, user(10 + k), at(), "thumb", value=-1) for k in range(downs)]
    elif group.recipe == "split":
        a, c = answers[0], answers[1]
        for k, (iid, value) in enumerate([(a, 1)] * 3 + [(a, -1)] * 2 + [(c, 1)] * 2 + [(c, -1)] * 3):
            group.thumbs.append(b.vote(app, iid, user(k), at(), "thumb", value=value))
    elif group.recipe == "comparison":
        preferred, other = rng.sample(answers, 2)
        for k in range(rng.randint(1, 2)):
            votes.append(
                b.vote(app, preferred, user(k), at(), "comparison", preferred_interaction_id=preferred,
                       other_interaction_id=other)
            )  # fmt: skip
    else:  # edit
        votes.append(b.vote(app, answers[0], user(0), at(), "edit", edited_content=f"A better answer to {g}."))
        votes.append(b.vote(app, answers[-1], user(1), at(), "thumb", value=rng.choice((1, -1))))
    if rng.random() < 0.2:
        votes.append(b.vote(app, answers[0], user(20), at(), "comment", text="Thanks, that helped."))
    return votes + group.thumbs


def _phase_2_votes(b: _Builder, group: _Group) -> list[dict[str, Any]]:
    """Flips: reverse a clear split (same pair_id, swapped) or make it ambiguous (retraction + task)."""
    if group.recipe != "clear" or not group.thumbs or b.rng.random() >= FLIP_SHARE:
        return []
    at = lambda: b.moment(PHASE_2_OFFSET_S, 8.0)  # noqa: E731
    reverse = b.rng.random() < 0.5
    flips = []
    for k, thumb in enumerate(group.thumbs):
        if reverse or k % 3 == 0:
            flips.append(b.vote(group.app, thumb["interaction_id"], thumb["user_ref"], at(), "thumb",
                                value=-thumb["value"]))  # fmt: skip
    return flips


def _with_duplicates(b: _Builder, sends: list[Send]) -> list[Send]:
    """Re-send a few events exactly, later in the phase, sometimes through the other channel."""
    out = list(sends)
    other: dict[Channel, Channel] = {
        "ingest": "interactions.raw",
        "interactions.raw": "ingest",
        "feedback": "feedback.raw",
        "feedback.raw": "feedback",
    }
    for send in sends:
        if b.rng.random() < DUPLICATE_SHARE:
            channel = other[send.channel] if b.rng.random() < 0.3 else send.channel
            out.insert(b.rng.randrange(out.index(send) + 1, len(out) + 1), Send(channel, send.body))
    return out


def build_workload(seed: int, groups: int) -> Workload:
    """`groups` prompt groups over two apps and two model versions, in two phases."""
    b = _Builder(seed)
    early, interactions, votes, flips = [], [], [], []
    for g in range(groups):
        app, version = b.rng.choice(APPS), b.rng.choice(MODEL_VERSIONS)
        n = b.rng.choices((1, 2, 3), weights=(2, 5, 3))[0]
        group = _Group(g, app, [f"s{seed}-g{g}-a{i}" for i in range(n)], b.rng.choice(RECIPES))
        interactions += [
            Send(b.channel("ingest", "interactions.raw"), b.interaction(g, app, i, version)) for i in range(n)
        ]
        group_votes = [Send(b.channel("feedback", "feedback.raw"), v) for v in _phase_1_votes(b, group)]
        (early if b.rng.random() < EARLY_VOTE_GROUP_SHARE else votes).extend(group_votes)
        flips += [Send(b.channel("feedback", "feedback.raw"), v) for v in _phase_2_votes(b, group)]
    b.rng.shuffle(votes)
    b.rng.shuffle(flips)
    phase_1 = _with_duplicates(b, early + interactions + votes)
    return Workload(seed, groups, [phase_1, _with_duplicates(b, flips)])
