"""The annotation budget, pure: which tasks experts see, at most `cap` open tasks per domain.

Priority is the expected value of an expert's answer: traffic of the group (its answers and votes: how
many people the pair speaks for) x the chance that the verdict changes the pair.

The chance comes from the posteriors the pair math already computes (all with uniform priors):
- compare task: thumbs give p_t = P(theta_a > theta_b), theta ~ Beta(1 + up, 1 + down) (`prob_better`);
  explicit comparisons give p_c = P(phi > 1/2), phi ~ Beta(1 + prefer a, 1 + prefer b)
  (`prob_above_half`). Two independent sources of evidence on the same question add in log-odds:
  logit p = logit p_t + logit p_c (a source with no votes has p = 1/2 and adds nothing). The pipeline's
  best guess is the likelier side, so the verdict goes the other way with probability min(p, 1 - p):
  0 when the votes are sure, 1/2 at a coin flip.
- rewrite task (a lone answer with more 👎 than 👍): the rewrite gives a pair where there was none when
  the answer is bad: P(theta < 1/2) for theta ~ Beta(1 + up, 1 + down).

Admission per domain, an invariant kept by every decision: the open tasks are the `cap` best by rank
among the tasks offered and not yet released; the others wait. Rank is (priority, task_id): the higher
priority first, and at equal priority the greater task_id, so ties never depend on arrival order.
- A new (or waiting) task opens while fewer than `cap` are open; at the cap it opens only by outranking
  the lowest open task, which is withdrawn (waits again); else it is rejected (waits).
- A re-offer of an open task updates its priority; if it now ranks below the best waiting task, the two
  swap (it is withdrawn, that one promoted). The number open never changes, so never exceeds the cap.
- A released task (verdict applied, or the pair math no longer asks) leaves; if it was open, the best
  waiting task is promoted into its place.
A decision needs only: is the task open, how many are open, the lowest open and the best waiting task
of the domain. `DomainQueue` applies the rules to whole sets (the reference model of what the shell's
table holds) or to a window of them: the shell (budget_store.admit_tasks) loads, under the domain's
lock, the few tasks at the two ends that a batch's decisions can reach, and decides on those.
"""

from __future__ import annotations

import functools
import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from services.aggregator.beta import prob_above_half, prob_better
from services.aggregator.evidence import Tally
from services.aggregator.pairs import TaskSpec

_EDGE = 1e-12  # keeps logit finite at p = 0 or 1


def _logit(p: float) -> float:
    p = min(max(p, _EDGE), 1.0 - _EDGE)
    return math.log(p / (1.0 - p))


def compare_change_probability(a: Tally, b: Tally, a_preferred: int = 0, b_preferred: int = 0) -> float:
    """The chance an expert's verdict on a vs b goes against the side the votes lean to, in [0, 1/2]."""
    log_odds = _logit(prob_better(a, b)) + _logit(prob_above_half(a_preferred, b_preferred))
    p = 1.0 / (1.0 + math.exp(-log_odds))
    return min(p, 1.0 - p)


def rewrite_change_probability(tally: Tally) -> float:
    """The chance a lone answer is bad (P(theta < 1/2)): a rewrite then gives a new pair."""
    return prob_above_half(tally.down, tally.up)


def task_value(traffic: int, change_probability: float, step: float = 0.0) -> float:
    """Priority: traffic x change probability, never negative, stepped on a log scale (if `step` > 0).

    Stepped: log1p(value) is rounded to a multiple of `step`, so a priority moves only when the value
    grew or shrank by a factor (e^0.25 = 1.28 at 0.25), not by an absolute amount: the value grows with
    traffic, and an absolute step would re-publish a busy group's tasks after every vote. The order of
    values is kept (ties aside: equal priorities are ranked by task_id).
    """
    value = max(traffic, 0) * min(max(change_probability, 0.0), 1.0)
    if step > 0:
        value = math.expm1(round(math.log1p(value) / step) * step)
    return round(value, 6)


def task_priority(spec: TaskSpec, traffic: int, step: float = 0.0) -> float:
    """A task's priority (`task_value`) from the counts its evidence holds (a_up, b_down, a_preferred, ...)."""
    counts = spec.evidence
    a_up, a_down = counts.get("a_up", 0), counts.get("a_down", 0)
    if spec.kind == "rewrite":
        return _rewrite_priority(a_up, a_down, traffic, step)
    b_up, b_down = counts.get("b_up", 0), counts.get("b_down", 0)
    return _compare_priority(
        a_up, a_down, b_up, b_down, counts.get("a_preferred", 0), counts.get("b_preferred", 0), traffic, step
    )


# Cached on the counts: every batch that touches a hot group prices its tasks again, mostly as they were.
@functools.lru_cache(maxsize=1 << 16)
def _rewrite_priority(up: int, down: int, traffic: int, step: float) -> float:
    return task_value(traffic, rewrite_change_probability(Tally(up, down)), step)


@functools.lru_cache(maxsize=1 << 16)
def _compare_priority(
    a_up: int, a_down: int, b_up: int, b_down: int, a_preferred: int, b_preferred: int, traffic: int, step: float
) -> float:
    change = compare_change_probability(Tally(a_up, a_down), Tally(b_up, b_down), a_preferred, b_preferred)
    return task_value(traffic, change, step)


@dataclass(frozen=True, order=True)
class Ranked:
    """A task's rank: by priority, then task_id (the greater first at equal priority)."""

    priority: float
    task_id: str


Outcome = Literal["admitted", "updated", "demoted", "rejected"]


@dataclass(frozen=True)
class Admission:
    """What to do with an offered task: open it (and withdraw another), update it, or let it wait."""

    task_id: str
    outcome: Outcome
    withdrawn: str | None = None  # an open task leaving the queue: publish its tombstone
    promoted: str | None = None  # a waiting task entering the queue: publish it

    @property
    def is_open(self) -> bool:
        return self.outcome in ("admitted", "updated")


@dataclass(frozen=True)
class Release:
    """A task left for good; `promoted` is the waiting task that takes its place, if any."""

    task_id: str
    was_open: bool
    promoted: str | None = None


def admit(
    offer: Ranked,
    *,
    is_open: bool,
    open_count: int,
    lowest_open: Ranked | None,
    best_waiting: Ranked | None,
    cap: int,
) -> Admission:
    """Decide an offer (new task or new priority) from the domain's state. `lowest_open` / `best_waiting`
    exclude the offered task itself."""
    if cap < 1:
        raise ValueError("cap must be at least 1")
    if is_open:
        if best_waiting is not None and best_waiting > offer:
            return Admission(offer.task_id, "demoted", withdrawn=offer.task_id, promoted=best_waiting.task_id)
        return Admission(offer.task_id, "updated")
    if open_count < cap:
        return Admission(offer.task_id, "admitted")
    if lowest_open is not None and offer > lowest_open:
        return Admission(offer.task_id, "admitted", withdrawn=lowest_open.task_id)
    return Admission(offer.task_id, "rejected")


def release(task_id: str, *, was_open: bool, best_waiting: Ranked | None) -> Release:
    """A task leaves (resolved or no longer asked for): an open one makes room for the best waiting task."""
    promoted = best_waiting.task_id if was_open and best_waiting is not None else None
    return Release(task_id, was_open, promoted)


def rebalance(open_tasks: Sequence[Ranked], waiting: Sequence[Ranked], cap: int) -> tuple[list[str], list[str]]:
    """(to withdraw, to promote) so the open tasks are the top `cap` again: after the cap setting changed."""
    ranked = sorted([*open_tasks, *waiting], reverse=True)
    keep = {r.task_id for r in ranked[:cap]}
    withdraw = [r.task_id for r in sorted(open_tasks) if r.task_id not in keep]
    promote = [r.task_id for r in sorted(waiting, reverse=True) if r.task_id in keep]
    return withdraw, promote


@dataclass(frozen=True)
class DomainQueue:
    """One domain's tasks (task_id -> priority): the reference model of the shell's state, or a window on it.

    Whole sets: `hidden_open` is 0. A window (what the shell loads under the domain's lock): `open` holds
    the lowest-ranked open tasks and `waiting` the best-ranked waiting ones, plus the tasks decided on
    wherever they rank; `hidden_open` counts the open tasks not loaded, each ranking above the loaded
    lowest ones, and the waiting tasks not loaded rank below the loaded best ones. A decision uses up at
    most two loaded tasks at each end (the one offered or released, the one withdrawn or promoted), so a
    window of the 2k + 1 lowest open and 2k + 1 best waiting tasks decides k offers and releases exactly
    as the whole sets do.
    """

    cap: int
    open: Mapping[str, float] = field(default_factory=dict)
    waiting: Mapping[str, float] = field(default_factory=dict)
    hidden_open: int = 0

    def _lowest_open(self, without: str) -> Ranked | None:
        return min((Ranked(p, t) for t, p in self.open.items() if t != without), default=None)

    def _best_waiting(self, without: str) -> Ranked | None:
        return max((Ranked(p, t) for t, p in self.waiting.items() if t != without), default=None)

    def offer(self, task_id: str, priority: float) -> tuple[DomainQueue, Admission]:
        is_open = task_id in self.open
        decision = admit(
            Ranked(priority, task_id),
            is_open=is_open,
            open_count=len(self.open) + self.hidden_open - is_open,
            lowest_open=self._lowest_open(task_id),
            best_waiting=self._best_waiting(task_id),
            cap=self.cap,
        )
        open_, waiting = dict(self.open), dict(self.waiting)
        open_.pop(task_id, None)
        waiting.pop(task_id, None)
        (open_ if decision.is_open else waiting)[task_id] = priority
        if decision.withdrawn is not None and decision.withdrawn != task_id:
            waiting[decision.withdrawn] = open_.pop(decision.withdrawn)
        if decision.promoted is not None:
            open_[decision.promoted] = waiting.pop(decision.promoted)
        return replace(self, open=open_, waiting=waiting), decision

    def release(self, task_id: str) -> tuple[DomainQueue, Release]:
        was_open = task_id in self.open
        decision = release(task_id, was_open=was_open, best_waiting=self._best_waiting(task_id))
        open_, waiting = dict(self.open), dict(self.waiting)
        open_.pop(task_id, None)
        waiting.pop(task_id, None)
        if decision.promoted is not None:
            open_[decision.promoted] = waiting.pop(decision.promoted)
        return replace(self, open=open_, waiting=waiting), decision

    def apply(self, steps: Sequence[tuple[str, float | None]]) -> tuple[DomainQueue, list[Admission | Release]]:
        """Offers (`(task_id, priority)`) and releases (`(task_id, None)`) in order, with their decisions.

        The same decisions as `offer` and `release` one at a time, in O(log n) each: one copy of the sets
        and heaps with lazy deletion (an entry counts while its task holds that priority on that side),
        where a step at a time copies both sets and scans them (quadratic in a batch's offers per domain).
        """
        open_, waiting = dict(self.open), dict(self.waiting)
        lowest = _Ends(open_, largest=False)
        best = _Ends(waiting, largest=True)
        decisions: list[Admission | Release] = []
        for task_id, priority in steps:
            is_open = task_id in open_
            if priority is None:
                decision: Admission | Release = release(task_id, was_open=is_open, best_waiting=best.top(task_id))
            else:
                decision = admit(
                    Ranked(priority, task_id),
                    is_open=is_open,
                    open_count=len(open_) + self.hidden_open - is_open,
                    lowest_open=lowest.top(task_id),
                    best_waiting=best.top(task_id),
                    cap=self.cap,
                )
            open_.pop(task_id, None)
            waiting.pop(task_id, None)
            if isinstance(decision, Admission):
                (lowest if decision.is_open else best).put(task_id, priority)
                if decision.withdrawn is not None and decision.withdrawn != task_id:
                    best.put(decision.withdrawn, open_.pop(decision.withdrawn))
            if decision.promoted is not None:
                lowest.put(decision.promoted, waiting.pop(decision.promoted))
            decisions.append(decision)
        return replace(self, open=open_, waiting=waiting), decisions


class _Ends:
    """One side's tasks (the caller's dict, kept in step) and a heap of them: the lowest, or the best, first."""

    def __init__(self, tasks: dict[str, float], *, largest: bool) -> None:
        self.tasks = tasks
        self.sign = -1 if largest else 1
        self.heap = [self._entry(task_id, priority) for task_id, priority in tasks.items()]
        heapq.heapify(self.heap)

    def _entry(self, task_id: str, priority: float) -> tuple[float, _Key, str]:
        return (self.sign * priority, _Key(task_id, reverse=self.sign < 0), task_id)

    def put(self, task_id: str, priority: float | None) -> None:
        assert priority is not None
        self.tasks[task_id] = priority
        heapq.heappush(self.heap, self._entry(task_id, priority))

    def top(self, without: str) -> Ranked | None:
        """The first task at this end other than `without` (stale entries dropped on the way)."""
        held = []
        while self.heap:
            signed, _, task_id = self.heap[0]
            if self.tasks.get(task_id) != self.sign * signed:
                heapq.heappop(self.heap)  # that task left this side, or holds another priority now
            elif task_id == without:
                held.append(heapq.heappop(self.heap))
            else:
                break
        found = Ranked(self.sign * self.heap[0][0], self.heap[0][2]) if self.heap else None
        for entry in held:
            heapq.heappush(self.heap, entry)
        return found


@dataclass(frozen=True)
class _Key:
    """A task_id ordered as a rank orders it at equal priority: the greater first at the best end."""

    task_id: str
    reverse: bool

    def __lt__(self, other: _Key) -> bool:
        return self.task_id > other.task_id if self.reverse else self.task_id < other.task_id
