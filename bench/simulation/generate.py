"""The seeded generator: one random.Random(seed) draws every choice, ids are uuid5 of (tag, seed, serial).

Per app: prompt groups (first asked in the first `answer_window` of the run, with Pareto popularity),
each with 1..3 answers: the first from a random version, the others either A/B answers from another
version (shown together) or regenerations of the previous answer by the same version. Then votes:
honest users (Pareto activity, own noise) give thumbs, some ratings and some explicit comparisons, once
per answer (or pair); bots give 👍 to whatever they see; contrarians vote against the truth; a stuffer
posts the same 👍 many times with new event_ids; a brigade of fresh users pushes a bad answer over its
good rival. A few answers are sent late, so their first votes arrive before them.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bench.simulation.scenario import (
    AnswerTruth,
    Scenario,
    SimEvent,
    Simulation,
    Truth,
    VersionSpec,
    VoterKind,
    VoterTruth,
    iso,
    pareto_weights,
)

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/feedback-pipeline/bench/simulate")
_SYSTEM = "You are a careful, concise assistant for a helpdesk."
_TOPICS = [
    "Can I exercise hard while managing type 2 diabetes?",
    "Write a Python function that merges two sorted lists.",
    "Is it legal for my landlord to keep the deposit without notice?",
    "Explain the difference between TCP and UDP in plain words.",
    "Draft a polite email saying the release slips a week.",
    "Why does my Go code deadlock when I close the channel?",
    "Give me a weekly meal plan for someone with celiac disease.",
    "Summarize the incident report in five bullet points.",
]
_SENTENCES = [
    "Start with the simplest version that works and measure before optimising.",
    "It depends on the context, so here are the main cases to consider.",
    "Most guidelines recommend talking to a qualified professional first.",
    "The short answer is yes, with a few precautions explained below.",
    "Here is a step-by-step approach you can adapt to your situation.",
]
_MAX_TRIES = 20


@dataclass
class _Answer:
    interaction_id: str
    app_id: str
    group: int
    at_s: float
    truth: AnswerTruth


class _Builder:
    def __init__(self, scenario: Scenario) -> None:
        self.s = scenario
        self.rng = random.Random(scenario.seed)
        self.truth = Truth(versions={v.model_version: v.quality for v in scenario.versions})
        self.events: list[tuple[float, int, SimEvent]] = []
        self.serial = 0
        self.groups: dict[str, list[list[_Answer]]] = {app: [] for app in scenario.apps}
        self.popularity: dict[str, list[float]] = {}
        self.used_slots: set[tuple[str, ...]] = set()

    # ids and bookkeeping ---------------------------------------------------------------------------
    def next_id(self, what: str) -> str:
        self.serial += 1
        return str(uuid.uuid5(_NAMESPACE, f"{self.s.tag}/{self.s.seed}/{what}/{self.serial}"))

    def user_ref(self, app_id: str, kind: VoterKind, noise: float = 0.0) -> str:
        ref = "u-" + self.next_id("user").replace("-", "")[:12]
        self.truth.voters[(app_id, ref)] = VoterTruth(app_id, ref, kind, round(noise, 4))
        return ref

    def emit(self, kind: str, at_s: float, send_s: float, body: dict[str, Any]) -> None:
        # Votes due after the end are sent at the end; a late interaction may be sent up to its lag after it.
        at_s = round(min(at_s, self.s.duration_s), 6)
        send_s = at_s if kind == "vote" else round(max(at_s, send_s), 6)
        body["occurred_at"] = iso(self.s.start + timedelta(seconds=at_s))
        self.events.append((send_s, len(self.events), SimEvent(kind, at_s, send_s, body)))  # type: ignore[arg-type]

    # interactions ---------------------------------------------------------------------------------
    def released(self, at_s: float) -> list[VersionSpec]:
        """The versions answering at `at_s` (all of them when none is released yet)."""
        return [v for v in self.s.versions if v.released_at_s <= at_s] or list(self.s.versions)

    def build_groups(self) -> None:
        for app_id in self.s.apps:
            asker = self.user_ref(app_id, VoterKind.HONEST, self.rng.uniform(self.s.noise_min, self.s.noise_max))
            for _ in range(self.s.prompts):
                self.build_group(app_id, asker)
            self.popularity[app_id] = pareto_weights(len(self.groups[app_id]), self.s.popularity_skew, self.rng)

    def build_group(self, app_id: str, asker: str) -> None:
        group = len(self.truth.groups)
        prompt = f"{self.rng.choice(_TOPICS)} (ticket {app_id}/{self.s.tag}{self.s.seed}/{group})"
        at_s = self.rng.uniform(0, self.s.answer_window * self.s.duration_s)
        version = self.rng.choice(self.released(at_s))
        answers: list[_Answer] = []
        for k in range(self.rng.randint(self.s.min_answers, self.s.max_answers)):
            regenerated_from = None
            if k and self.rng.random() >= self.s.ab_share:
                regenerated_from = answers[-1].interaction_id  # a regeneration: same version, a bit later
                at_s += self.rng.uniform(2.0, 20.0)
            elif k:
                others = [v for v in self.released(at_s) if v != version] or [version]
                version = self.rng.choice(others)  # an A/B answer from another version, shown together
            answers.append(self.answer(app_id, asker, group, prompt, version, at_s, regenerated_from))
        self.groups[app_id].append(answers)
        self.truth.groups[group] = [a.interaction_id for a in answers]

    def answer(
        self, app_id: str, asker: str, group: int, prompt: str, version: VersionSpec, at_s: float, parent: str | None
    ) -> _Answer:
        interaction_id = "i-" + self.next_id("interaction")
        is_good = self.rng.random() < version.quality
        mean_noise = (self.s.noise_min + self.s.noise_max) / 2
        truth = AnswerTruth(app_id, group, version.model_version, is_good, 1 - mean_noise if is_good else mean_noise)
        self.truth.answers[interaction_id] = truth
        body = {
            "event_id": self.next_id("event"),
            "app_id": app_id,
            "occurred_at": "",
            "interaction_id": interaction_id,
            "conversation_id": f"c-{group}-{self.s.tag}{self.s.seed}",
            "user_ref": asker,
            "messages": [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": prompt}],
            "response": {
                "content": f"{self.rng.choice(_SENTENCES)} ({interaction_id})",
                "model": version.model,
                "model_version": version.model_version,
            },
            "regenerated_from": parent,
            "domain": None,
            "language": "en",
            "tags": [],
            "metadata": {},
        }
        at_s = min(at_s, self.s.duration_s)
        lag = self.rng.uniform(*self.s.early_lag_s) if self.rng.random() < self.s.early_share else 0.0
        self.emit("interaction", at_s, at_s + lag, body)
        return _Answer(interaction_id, app_id, group, round(at_s, 6), truth)

    # votes ----------------------------------------------------------------------------------------
    def pick_group(self, app_id: str, min_answers: int = 1) -> list[_Answer] | None:
        for _ in range(_MAX_TRIES):
            (group,) = self.rng.choices(self.groups[app_id], cum_weights=self.popularity[app_id])
            if len(group) >= min_answers:
                return group
        return None

    def claim(self, user_ref: str, *interaction_ids: str) -> bool:
        """One vote per user and answer (or pair of answers): an honest user does not vote twice."""
        slot = (user_ref, *sorted(interaction_ids))
        if slot in self.used_slots:
            return False
        self.used_slots.add(slot)
        return True

    def vote_time(self, *answers: _Answer) -> float:
        return max(a.at_s for a in answers) + self.rng.expovariate(1.0 / self.s.vote_delay_s)

    def vote(self, app_id: str, user_ref: str, at_s: float, interaction_id: str, **kind: Any) -> None:
        body = {
            "event_id": self.next_id("event"),
            "app_id": app_id,
            "occurred_at": "",
            "interaction_id": interaction_id,
            "user_ref": user_ref,
            "source": "end_user",
            **kind,
        }
        self.emit("vote", at_s, at_s, body)

    def approves(self, answer: _Answer, noise: float) -> bool:
        return self.rng.random() < (1 - noise if answer.truth.is_good else noise)

    def honest_comparison(self, app_id: str, user_ref: str, noise: float) -> bool:
        """Which of two answers is better: the good one with probability 1 - noise, a coin flip if alike."""
        group = self.pick_group(app_id, 2)
        if group is None:
            return False
        a, b = self.rng.sample(group, 2)
        if not self.claim(user_ref, a.interaction_id, b.interaction_id):
            return False
        if a.truth.is_good == b.truth.is_good:
            prefers_a = self.rng.random() < 0.5
        else:
            prefers_a = (self.rng.random() < 1 - noise) == a.truth.is_good
        won, lost = (a, b) if prefers_a else (b, a)
        self.vote(
            app_id,
            user_ref,
            self.vote_time(a, b),
            won.interaction_id,
            kind="comparison",
            preferred_interaction_id=won.interaction_id,
            other_interaction_id=lost.interaction_id,
        )
        return True

    def honest_vote(self, app_id: str, user_ref: str, noise: float) -> bool:
        """One vote of an honest user: a comparison, a rating or a thumb (False: found nothing new to vote on)."""
        draw = self.rng.random()
        if draw < self.s.comparison_share:
            return self.honest_comparison(app_id, user_ref, noise)
        group = self.pick_group(app_id)
        answer = self.rng.choice(group) if group else None
        if answer is None or not self.claim(user_ref, answer.interaction_id):
            return False
        approves = self.approves(answer, noise)
        if draw < self.s.comparison_share + self.s.rating_share:
            value = 3 if self.rng.random() < 0.1 else self.rng.choice((4, 5) if approves else (1, 2))
            self.vote(app_id, user_ref, self.vote_time(answer), answer.interaction_id, kind="rating", value=value)
        else:
            thumb = 1 if approves else -1
            self.vote(app_id, user_ref, self.vote_time(answer), answer.interaction_id, kind="thumb", value=thumb)
        return True

    def honest_votes(self) -> None:
        users = []
        for n in range(self.s.honest_users):
            app_id = self.s.apps[n % len(self.s.apps)]
            noise = self.rng.uniform(self.s.noise_min, self.s.noise_max)
            users.append((app_id, self.user_ref(app_id, VoterKind.HONEST, noise), noise))
        if not users:
            return
        activity = pareto_weights(len(users), self.s.activity_skew, self.rng)
        for _ in range(self.s.honest_votes):
            for _ in range(_MAX_TRIES):
                (user,) = self.rng.choices(users, cum_weights=activity)
                if self.honest_vote(*user):
                    break

    def thumbs_voter(self, kind: VoterKind, count: int, n: int) -> None:
        """A bot (👍 on everything) or a contrarian (against the truth), on `count` answers."""
        app_id = self.s.apps[n % len(self.s.apps)]
        noise = self.rng.uniform(self.s.noise_min, self.s.noise_max)
        user_ref = self.user_ref(app_id, kind, noise)
        for _ in range(count):
            for _ in range(_MAX_TRIES):
                group = self.pick_group(app_id)
                answer = self.rng.choice(group) if group else None
                if answer is not None and self.claim(user_ref, answer.interaction_id):
                    value = 1 if kind == VoterKind.BOT or not self.approves(answer, noise) else -1
                    at_s = self.vote_time(answer)
                    self.vote(app_id, user_ref, at_s, answer.interaction_id, kind="thumb", value=value)
                    break

    def target(self, app_id: str) -> tuple[_Answer, _Answer | None] | None:
        """A bad answer to push, with a good rival in its group when one exists."""
        groups = self.groups[app_id]
        paired = [g for g in groups if any(a.truth.is_good for a in g) and any(not a.truth.is_good for a in g)]
        lone = [g for g in groups if any(not a.truth.is_good for a in g)]
        if not (paired or lone):
            return None
        group = self.rng.choice(paired or lone)
        bad = self.rng.choice([a for a in group if not a.truth.is_good])
        good = [a for a in group if a.truth.is_good]
        return bad, (self.rng.choice(good) if good else None)

    def stuffer(self, n: int) -> None:
        app_id = self.s.apps[n % len(self.s.apps)]
        picked = self.target(app_id)
        if picked is None:
            return
        bad, _ = picked
        user_ref = self.user_ref(app_id, VoterKind.STUFFER)
        self.truth.targets.setdefault(VoterKind.STUFFER, []).append(bad.interaction_id)
        at_s = self.vote_time(bad)
        for _ in range(self.s.stuff_repeats):
            self.vote(app_id, user_ref, at_s, bad.interaction_id, kind="thumb", value=1)
            at_s += self.rng.uniform(0.2, 2.0)

    def brigade(self, n: int) -> None:
        app_id = self.s.apps[n % len(self.s.apps)]
        picked = self.target(app_id)
        if picked is None:
            return
        bad, good = picked
        self.truth.targets.setdefault(VoterKind.BRIGADE, []).append(bad.interaction_id)
        start = self.vote_time(bad, *([good] if good else []))
        for _ in range(self.s.brigade_size):
            user_ref = self.user_ref(app_id, VoterKind.BRIGADE)
            at_s = start + self.rng.uniform(0.0, 30.0)
            self.vote(app_id, user_ref, at_s, bad.interaction_id, kind="thumb", value=1)
            if good is not None:
                self.vote(
                    app_id, user_ref, at_s + self.rng.uniform(0.1, 3.0), good.interaction_id, kind="thumb", value=-1
                )

    def build(self) -> Simulation:
        self.build_groups()
        self.honest_votes()
        for n in range(self.s.bots):
            self.thumbs_voter(VoterKind.BOT, self.s.bot_votes, n)
        for n in range(self.s.contrarians):
            self.thumbs_voter(VoterKind.CONTRARIAN, self.s.contrarian_votes, n)
        for n in range(self.s.stuffers):
            self.stuffer(n)
        for n in range(self.s.brigades):
            self.brigade(n)
        events = tuple(event for _, _, event in sorted(self.events, key=lambda item: item[:2]))
        return Simulation(self.s, events, self.truth)


def generate(scenario: Scenario) -> Simulation:
    """Every event of the scenario, in send order, and the ground truth. Same scenario, same bytes."""
    return _Builder(scenario).build()
