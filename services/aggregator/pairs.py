"""Pair building, pure: deterministic ids and the judgement of one prompt group (win probabilities: beta.py).

Evidence, strongest first, per unordered pair of answers {a, b}:

1. An expert verdict on the task showing a and b: A or B gives the pair (method "expert") and is
   final (later end-user votes never overturn it); tie / both_bad retracts it, and a `rewrite` in
   the verdict gives rewrite-vs-candidate pairs instead.
2. End users' explicit comparisons: unanimous (at least `min_comparisons`) gives a pair with
   confidence P(theta > 1/2) for theta ~ Beta(1 + wins, 1 + losses); any disagreement is ambiguous,
   and so are unanimous comparisons contradicted by confident thumbs.
3. Thumbs and ratings (ratings 4-5 count as up, 1-2 as down, 3 is neutral): each answer's approval
   is Beta(1 + up, 1 + down) and P(a better than b) is computed exactly. At least
   `confidence_threshold` with `min_votes` votes on the two answers gives a pair; otherwise, from
   `min_votes_for_task` votes on, the pair is ambiguous and goes to annotators.

Edits are their own pairs (the edited text chosen, the original rejected, method "edit") and SFT
examples. A lone answer with more downs than ups (at least `rewrite_min_down`) and no alternative
becomes a rewrite task. Nothing here does I/O or reads settings: the rules come in as `PairRules`.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from dataclasses import dataclass, field, replace
from datetime import datetime

from services.aggregator.beta import prob_above_half, prob_better, uncertainty
from services.aggregator.evidence import Evidence
from shared.events import Candidate, EditVote, Message, VerdictVote

EXPERT_MODEL = "expert"
EXPERT_MODEL_VERSION = "annotator"
EDIT_MODEL = "human-edit"
EDIT_MODEL_VERSION = "end_user"


@dataclass(kw_only=True, frozen=True)
class PairRules:
    """Every threshold of the pair rules (built by `services.aggregator.rules.pair_rules` from the settings)."""

    confidence_threshold: float
    min_votes: int
    min_votes_per_answer: int
    min_votes_for_task: int
    min_comparisons: int
    rewrite_min_down: int
    edit_confidence: float
    max_answers: int


@dataclass(kw_only=True, frozen=True)
class Answer:
    """One interaction of a group, as the pair rules see it."""

    interaction_id: str
    content: str
    model: str
    model_version: str
    domain: str | None
    occurred_at: datetime

    def candidate(self) -> Candidate:
        return Candidate(
            interaction_id=self.interaction_id,
            content=self.content,
            model=self.model,
            model_version=self.model_version,
        )


@dataclass(kw_only=True, frozen=True)
class Group:
    """A prompt group: its prompt, its answers and the latest-per-slot evidence on them."""

    prompt_key: str
    app_id: str
    prompt: tuple[Message, ...]
    answers: tuple[Answer, ...]
    evidence: Evidence


@dataclass(kw_only=True, frozen=True)
class PairSpec:
    """A pair the evidence supports (before routing adds the domain and it becomes a PreferencePair)."""

    pair_id: str
    chosen: Candidate
    rejected: Candidate
    method: str
    confidence: float
    evidence: dict[str, int]
    occurred_at: datetime


@dataclass(kw_only=True, frozen=True)
class TaskSpec:
    """A question for annotators: which of A / B is better (compare), or write a better A (rewrite)."""

    task_id: str
    kind: str
    candidates: tuple[Answer, ...]
    reason: str
    uncertainty: float
    evidence: dict[str, int]
    occurred_at: datetime
    pair_id: str | None = None


@dataclass(kw_only=True, frozen=True)
class SftExample:
    """An end user's edit: the prompt and the answer as it should have been."""

    interaction_id: str
    voter: str
    event_id: str
    content: str


@dataclass(frozen=True)
class PairDecision:
    """What a group's evidence supports now: pairs (by pair_id), tasks (by task_id) and SFT examples."""

    pairs: dict[str, PairSpec] = field(default_factory=dict)
    tasks: dict[str, TaskSpec] = field(default_factory=dict)
    sft: list[SftExample] = field(default_factory=list)


@functools.lru_cache(maxsize=1 << 16)
def _digest(*parts: str) -> str:
    """Cached: a hot group's pairs and tasks are named again every batch that touches the group."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def pair_id(prompt_key: str, a: str, b: str) -> str:
    """Deterministic and order-free: the same two answers of a group always have the same pair_id."""
    return _digest("pair", prompt_key, *sorted((a, b)))


def task_id(prompt_key: str, kind: str, interaction_ids: tuple[str, ...]) -> str:
    """Deterministic task id: hash of prompt_key, kind and the candidates (order-free)."""
    return _digest("task", prompt_key, kind, *sorted(interaction_ids))


def task_candidates(interaction_ids: tuple[str, ...]) -> tuple[str, ...]:
    """The order a task shows its candidates in (A, then B): by interaction_id, so it is the same every time."""
    return tuple(sorted(interaction_ids))


def _pair_evidence(chosen: str, rejected: str, ev: Evidence) -> dict[str, int]:
    c, r = ev.tally(chosen), ev.tally(rejected)
    wins, losses = ev.comparison_counts(chosen, rejected)
    counts = {
        "chosen_up": c.up,
        "chosen_down": c.down,
        "rejected_up": r.up,
        "rejected_down": r.down,
        "comparisons_for": wins,
        "comparisons_against": losses,
    }
    return {k: v for k, v in counts.items() if v}


def _task_evidence(a: str, b: str, ev: Evidence) -> dict[str, int]:
    ta, tb = ev.tally(a), ev.tally(b)
    a_preferred, b_preferred = ev.comparison_counts(a, b)
    counts = {
        "a_up": ta.up,
        "a_down": ta.down,
        "b_up": tb.up,
        "b_down": tb.down,
        "a_preferred": a_preferred,
        "b_preferred": b_preferred,
    }
    return {k: v for k, v in counts.items() if v}


def _when(group: Group, *answers: Answer) -> datetime:
    """Event time of the newest evidence on these answers (or of the newest answer).

    The first of equal times wins, answers' before evidence's, as `max` over them in that order: equal
    instants in two UTC offsets are written apart (`_when2`, for two answers, keeps that order).
    """
    newest = group.evidence.last_evidence_at(*(a.interaction_id for a in answers))
    return max([a.occurred_at for a in answers] + ([newest] if newest else []))


def _when2(group: Group, a: Answer, b: Answer) -> datetime:
    """`_when(group, a, b)` without the lists (every pair of every touched group asks it)."""
    newest_at = group.evidence.newest_at
    when = a.occurred_at
    if b.occurred_at > when:
        when = b.occurred_at
    newest = newest_at.get(a.interaction_id)
    b_newest = newest_at.get(b.interaction_id)
    if b_newest is not None and (newest is None or b_newest > newest):
        newest = b_newest
    if newest and newest > when:
        when = newest
    return when


def _pair(group: Group, chosen: Answer, rejected: Answer, method: str, confidence: float) -> PairSpec:
    return PairSpec(
        pair_id=pair_id(group.prompt_key, chosen.interaction_id, rejected.interaction_id),
        chosen=chosen.candidate(),
        rejected=rejected.candidate(),
        method=method,
        confidence=round(confidence, 6),
        evidence=_pair_evidence(chosen.interaction_id, rejected.interaction_id, group.evidence),
        occurred_at=_when2(group, chosen, rejected),
    )


def _compare_task(group: Group, a: Answer, b: Answer, reason: str, uncertainty: float) -> TaskSpec:
    ids = task_candidates((a.interaction_id, b.interaction_id))
    first, second = (a, b) if ids[0] == a.interaction_id else (b, a)
    evidence = _task_evidence(first.interaction_id, second.interaction_id, group.evidence)
    return TaskSpec(
        task_id=task_id(group.prompt_key, "compare", ids),
        kind="compare",
        candidates=(first, second),
        reason=reason,
        uncertainty=round(uncertainty, 6),
        evidence=evidence,
        occurred_at=_when2(group, a, b),
        pair_id=pair_id(group.prompt_key, *ids),
    )


def judge_pair(group: Group, a: Answer, b: Answer, rules: PairRules) -> PairSpec | TaskSpec | None:
    """End-user evidence on two answers: a pair, an ambiguous compare task, or not enough yet."""
    ev = group.evidence
    a_id, b_id = a.interaction_id, b.interaction_id
    ta, tb = ev.tally(a_id), ev.tally(b_id)
    has_thumbs = min(ta.total, tb.total) >= rules.min_votes_per_answer
    p = prob_better(ta, tb) if has_thumbs else 0.5
    thumbs_total = ta.total + tb.total
    wins, losses = ev.comparison_counts(a_id, b_id)
    if wins or losses:
        if wins and losses:
            return _compare_task(group, a, b, "split_comparisons", uncertainty(wins / (wins + losses)))
        winner, loser, count = (a, b, wins) if wins else (b, a, losses)
        p_winner = p if winner is a else 1.0 - p
        if has_thumbs and thumbs_total >= rules.min_votes and 1.0 - p_winner >= rules.confidence_threshold:
            return _compare_task(group, a, b, "evidence_disagrees", 1.0)
        if count >= rules.min_comparisons:
            return _pair(group, winner, loser, "comparison", prob_above_half(count, 0))
        return None
    if not has_thumbs:
        return None
    best = max(p, 1.0 - p)
    if best >= rules.confidence_threshold and thumbs_total >= rules.min_votes:
        chosen, rejected = (a, b) if p >= 0.5 else (b, a)
        return _pair(group, chosen, rejected, "votes", best)
    if thumbs_total >= rules.min_votes_for_task:
        return _compare_task(group, a, b, "uncertain_votes", uncertainty(p))
    return None


def _rewrite_candidate(verdict: VerdictVote) -> Candidate:
    return Candidate(
        interaction_id=f"rewrite:{verdict.task_id}",
        content=verdict.rewrite or "",
        model=EXPERT_MODEL,
        model_version=EXPERT_MODEL_VERSION,
    )


def _apply_verdict(group: Group, verdict: VerdictVote, answers: dict[str, Answer], out: dict[str, PairSpec]) -> None:
    """Turn one expert verdict into pairs (only when every answer it names is known)."""
    shown = [answers.get(i) for i in (verdict.a_interaction_id, verdict.b_interaction_id) if i]
    if not shown or any(a is None for a in shown):
        return
    confidence = verdict.agreement if verdict.agreement is not None else 1.0
    when = max(verdict.occurred_at, *(a.occurred_at for a in shown))
    counts = {"experts": max(1, len(verdict.reviewers))}
    if len(shown) == 2 and verdict.verdict in ("A", "B"):
        if shown[0].content == shown[1].content:
            return  # two answers with one text make no pair, whoever judged them
        chosen, rejected = shown if verdict.verdict == "A" else shown[::-1]
        spec = _pair(group, chosen, rejected, "expert", confidence)
        out[spec.pair_id] = replace(spec, evidence={**spec.evidence, **counts}, occurred_at=when)
        return
    if not verdict.rewrite or verdict.verdict in ("A", "B"):
        return
    rewrite = _rewrite_candidate(verdict)
    for answer in shown:
        if answer.content == rewrite.content:
            continue
        pid = pair_id(group.prompt_key, rewrite.interaction_id, answer.interaction_id)
        out[pid] = PairSpec(
            pair_id=pid,
            chosen=rewrite,
            rejected=answer.candidate(),
            method="expert",
            confidence=round(confidence, 6),
            evidence=counts,
            occurred_at=when,
        )


def _edit_pairs(group: Group, answer: Answer, edits: list[EditVote], rules: PairRules) -> list[PairSpec]:
    """Each voter's latest edit of an answer: the edit chosen over the original."""
    specs = []
    for edit in edits:
        if edit.edited_content == answer.content:
            continue
        chosen = Candidate(
            interaction_id=answer.interaction_id,
            content=edit.edited_content,
            model=EDIT_MODEL,
            model_version=EDIT_MODEL_VERSION,
        )
        pid = pair_id(group.prompt_key, answer.interaction_id, f"edit:{edit.voter}")
        when = max(edit.occurred_at, answer.occurred_at)
        specs.append(
            PairSpec(
                pair_id=pid,
                chosen=chosen,
                rejected=answer.candidate(),
                method="edit",
                confidence=rules.edit_confidence,
                evidence={"edits": 1},
                occurred_at=when,
            )
        )
    return specs


def _considered(group: Group, rules: PairRules) -> list[Answer]:
    """The answers the pair rules look at: the `max_answers` with the most evidence (bounds the O(n^2) pairs)."""
    tallies = group.evidence.tallies  # read directly: a busy group sorts thousands of answers per batch

    def weight(answer: Answer) -> tuple[int, str]:
        tally = tallies.get(answer.interaction_id)
        return (-(tally.up + tally.down) if tally is not None else 0, answer.interaction_id)

    answers = sorted(group.answers, key=weight)
    return answers[: rules.max_answers]


def _rewrite_task(group: Group, answer: Answer, rules: PairRules) -> TaskSpec | None:
    tally = group.evidence.tally(answer.interaction_id)
    if tally.down < rules.rewrite_min_down or tally.down <= tally.up:
        return None
    return TaskSpec(
        task_id=task_id(group.prompt_key, "rewrite", (answer.interaction_id,)),
        kind="rewrite",
        candidates=(answer,),
        reason="lone_answer_disliked",
        uncertainty=round(tally.down / tally.total, 6),
        evidence={k: v for k, v in (("a_up", tally.up), ("a_down", tally.down)) if v},
        occurred_at=_when(group, answer),
    )


def decide(group: Group, rules: PairRules) -> PairDecision:
    """Everything the group's evidence supports now. The shell diffs it against what was emitted."""
    decision = PairDecision()
    answers = {a.interaction_id: a for a in group.answers}
    resolved: set[frozenset[str]] = set()
    for verdict in group.evidence.verdicts:
        ids = frozenset(i for i in (verdict.a_interaction_id, verdict.b_interaction_id) if i)
        if ids and ids <= answers.keys():
            resolved.add(ids)
            _apply_verdict(group, verdict, answers, decision.pairs)
    considered = _considered(group, rules)
    for a, b in itertools.combinations(considered, 2):
        if frozenset((a.interaction_id, b.interaction_id)) in resolved or a.content == b.content:
            continue
        outcome = judge_pair(group, a, b, rules)
        if isinstance(outcome, PairSpec):
            decision.pairs[outcome.pair_id] = outcome
        elif isinstance(outcome, TaskSpec):
            decision.tasks[outcome.task_id] = outcome
    if len(group.answers) == 1 and frozenset(answers) not in resolved:
        task = _rewrite_task(group, group.answers[0], rules)
        if task is not None:
            decision.tasks[task.task_id] = task
    for interaction_id, edits in group.evidence.edits.items():
        if interaction_id in answers:
            for spec in _edit_pairs(group, answers[interaction_id], edits, rules):
                decision.pairs[spec.pair_id] = spec
            decision.sft.extend(
                SftExample(
                    interaction_id=interaction_id, voter=e.voter, event_id=str(e.event_id), content=e.edited_content
                )
                for e in edits
            )
    return decision
