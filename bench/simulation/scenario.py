"""What a simulated run is made of: the scenario (its knobs), the ground truth it knows, and its event stream.

A *version* has a quality: the chance that one of its answers is good. An honest user approves a good
answer with probability 1 - noise and a bad one with probability noise (each user has their own noise),
so an answer's true approval is 1 - mean noise or mean noise. Of two answers of a prompt group the good
one is truly better; two good or two bad answers have no ground truth (pairs between them are unscored).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

import orjson

# Past, so every generated event validates whenever the generator runs; drivers rebase it onto the wall clock.
DEFAULT_START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class VoterKind(StrEnum):
    HONEST = "honest"
    BOT = "bot"  # always 👍
    CONTRARIAN = "contrarian"  # votes against the truth
    STUFFER = "stuffer"  # many votes of one user on one answer
    BRIGADE = "brigade"  # one of many fresh users pushing one answer


@dataclass(frozen=True)
class VersionSpec:
    """A model version and its quality: the chance that one of its answers is good.

    `released_at_s`: the version answers only prompts first asked this long after the run's start (a
    release during the run; the regression alarm orders a model's versions by when each was first seen).
    """

    model: str
    model_version: str
    quality: float
    released_at_s: float = 0.0


DEFAULT_VERSIONS = (
    VersionSpec("acme-chat", "2026-11-01", 0.8),
    VersionSpec("acme-chat", "2026-10-15", 0.55),
    VersionSpec("acme-mini", "2026-09-30", 0.3),
)


@dataclass(frozen=True)
class Scenario:
    """Every knob of a simulated run. Same scenario, same events, byte for byte."""

    seed: int = 1
    tag: str = ""  # goes into every id: the same seed under another tag is fresh traffic for a running stack
    apps: tuple[str, ...] = ("sim-helpdesk",)
    versions: tuple[VersionSpec, ...] = DEFAULT_VERSIONS
    prompts: int = 200  # prompt groups per app
    min_answers: int = 1
    max_answers: int = 3
    ab_share: float = 0.5  # of the extra answers of a group: from another version (A/B), else a regeneration
    popularity_skew: float = 1.1  # Pareto shape of prompt popularity (smaller: a few hot prompts)
    honest_users: int = 200
    honest_votes: int = 2_000  # spread over the users with a heavy-tailed activity
    activity_skew: float = 1.5  # Pareto shape of user activity
    noise_min: float = 0.05
    noise_max: float = 0.25
    rating_share: float = 0.1
    comparison_share: float = 0.1
    bots: int = 0
    bot_votes: int = 40
    contrarians: int = 0
    contrarian_votes: int = 40
    stuffers: int = 0
    stuff_repeats: int = 30
    brigades: int = 0
    brigade_size: int = 20
    duration_s: float = 60.0
    answer_window: float = 0.8  # prompts are first asked in the first this-share of the run
    vote_delay_s: float = 3.0  # mean delay of a vote after the answer (exponential)
    early_share: float = 0.05  # answers sent late, so their first votes arrive before them
    early_lag_s: tuple[float, float] = (2.0, 8.0)
    start: datetime = DEFAULT_START

    @classmethod
    def for_rate(cls, rate: float, seconds: float, interaction_share: float = 0.3, **knobs: Any) -> Scenario:
        """A scenario of about `rate * seconds` events over `seconds` (knobs override the rest)."""
        base = replace(cls(), duration_s=seconds, **knobs)
        total = rate * seconds
        mean_answers = (base.min_answers + base.max_answers) / 2
        prompts = max(1, round(total * interaction_share / mean_answers / len(base.apps)))
        bad = base.bots * base.bot_votes + base.contrarians * base.contrarian_votes
        bad += base.stuffers * base.stuff_repeats + base.brigades * base.brigade_size * 2
        honest = max(0, round(total * (1 - interaction_share)) - bad)
        return replace(base, prompts=knobs.get("prompts", prompts), honest_votes=knobs.get("honest_votes", honest))


@dataclass(frozen=True)
class AnswerTruth:
    app_id: str
    group: int
    model_version: str
    is_good: bool
    approval: float  # the chance an honest user approves it


@dataclass(frozen=True)
class VoterTruth:
    app_id: str
    user_ref: str
    kind: VoterKind
    noise: float = 0.0


@dataclass
class Truth:
    """What the simulator knows and the pipeline has to find out."""

    answers: dict[str, AnswerTruth] = field(default_factory=dict)
    groups: dict[int, list[str]] = field(default_factory=dict)
    voters: dict[tuple[str, str], VoterTruth] = field(default_factory=dict)
    versions: dict[str, float] = field(default_factory=dict)
    targets: dict[str, list[str]] = field(default_factory=dict)  # voter kind -> answers it pushed

    def better(self, a: str, b: str) -> str | None:
        """The truly better of two answers of one group, or None (same class, unknown, or two groups)."""
        ta, tb = self.answers.get(a), self.answers.get(b)
        if ta is None or tb is None or ta.group != tb.group or ta.is_good == tb.is_good:
            return None
        return a if ta.is_good else b

    def version_ranking(self) -> list[str]:
        """Model versions, best first (by quality)."""
        return sorted(self.versions, key=lambda v: (-self.versions[v], v))

    def voters_of(self, kind: VoterKind) -> list[VoterTruth]:
        return [v for v in self.voters.values() if v.kind == kind]


@dataclass(frozen=True)
class SimEvent:
    """One event of the stream: its body (the v1 wire shape) and when it happens (seconds from the start)."""

    kind: Literal["interaction", "vote"]
    at_s: float  # occurred_at - start
    send_s: float  # when a driver sends it (>= at_s: an app never reports the future)
    body: dict[str, Any]

    def rebased(self, start: datetime) -> SimEvent:
        """The same event with occurred_at moved onto a new start (drivers put it onto the wall clock)."""
        return replace(self, body={**self.body, "occurred_at": iso(start + timedelta(seconds=self.at_s))})


@dataclass(frozen=True)
class Simulation:
    """A generated run: the events in send order and the truth behind them."""

    scenario: Scenario
    events: tuple[SimEvent, ...]
    truth: Truth

    def stream_bytes(self) -> bytes:
        """The stream as JSON lines (what determinism is checked on)."""
        return b"".join(orjson.dumps(e.body, option=orjson.OPT_SORT_KEYS) + b"\n" for e in self.events)

    def counts(self) -> dict[str, int]:
        """Events by kind, and votes by the kind of their voter."""
        counts: Counter[str] = Counter(e.kind + "s" for e in self.events)
        for event in self.events:
            if event.kind == "vote":
                voter = self.truth.voters[(event.body["app_id"], event.body["user_ref"])]
                counts[f"votes_{voter.kind}"] += 1
        return dict(sorted(counts.items()))

    def span_s(self) -> float:
        return max((e.send_s for e in self.events), default=0.0)

    def rebased(self, start: datetime) -> tuple[SimEvent, ...]:
        return tuple(e.rebased(start) for e in self.events)


def iso(moment: datetime) -> str:
    """UTC, microseconds, "Z": one spelling, so the stream is byte-identical."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def pareto_weights(count: int, shape: float, rng: Any) -> list[float]:
    """Heavy-tailed weights (a few large, most small), cumulative for rng.choices(cum_weights=...)."""
    total, cumulative = 0.0, []
    for _ in range(count):
        total += min(rng.paretovariate(shape), 100.0)  # capped: one prompt or user must not swallow the rest
        cumulative.append(total)
    return cumulative
