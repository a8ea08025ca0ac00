"""The annotation budget: value of an expert's answer, and admission under a cap of open tasks per domain."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.aggregator.beta import prob_better
from services.aggregator.budget import (
    Admission,
    DomainQueue,
    Ranked,
    admit,
    compare_change_probability,
    rebalance,
    release,
    rewrite_change_probability,
    task_priority,
    task_value,
)
from services.aggregator.evidence import Tally
from services.aggregator.pairs import TaskSpec
from tests.strategies import tallies

TASKS = [f"t{i:02d}" for i in range(12)]
offers = st.tuples(st.just("offer"), st.sampled_from(TASKS), st.integers(0, 40).map(float))
releases = st.tuples(st.just("release"), st.sampled_from(TASKS), st.just(0.0))
operations = st.lists(st.one_of(offers, offers, offers, releases), max_size=60)


def run(cap: int, ops: list[tuple[str, str, float]]) -> tuple[DomainQueue, list, dict[str, float]]:
    """Apply the operations; also return the latest priority of every offered, unreleased task."""
    queue = DomainQueue(cap)
    decisions = []
    alive: dict[str, float] = {}
    for op, task_id, priority in ops:
        if op == "offer":
            queue, decision = queue.offer(task_id, priority)
            alive[task_id] = priority
        else:
            queue, decision = queue.release(task_id)
            alive.pop(task_id, None)
        decisions.append(decision)
    return queue, decisions, alive


def top(alive: dict[str, float], cap: int) -> set[str]:
    return {r.task_id for r in sorted((Ranked(p, t) for t, p in alive.items()), reverse=True)[:cap]}


@given(st.integers(1, 5), operations)
def test_the_open_set_never_exceeds_the_cap_and_is_the_best_ranked(cap: int, ops: list) -> None:
    queue = DomainQueue(cap)
    alive: dict[str, float] = {}
    for op, task_id, priority in ops:
        before = queue
        if op == "offer":
            queue, decision = queue.offer(task_id, priority)
            alive[task_id] = priority
        else:
            queue, decision = queue.release(task_id)
            alive.pop(task_id, None)
        assert len(queue.open) <= cap
        assert not set(queue.open) & set(queue.waiting)
        assert set(queue.open) | set(queue.waiting) == set(alive)
        # Ties are broken by task_id, so "the top cap" is well defined even with equal priorities.
        assert set(queue.open) == top(alive, cap)
        if getattr(decision, "withdrawn", None):
            assert decision.withdrawn in before.open and decision.withdrawn in queue.waiting
        if decision.promoted:
            assert decision.promoted in before.waiting and decision.promoted in queue.open


@given(st.integers(1, 5), operations)
def test_decisions_are_deterministic(cap: int, ops: list) -> None:
    assert run(cap, ops)[:2] == run(cap, ops)[:2]


@given(st.integers(1, 4), st.lists(st.integers(0, 20), min_size=1, max_size=6), st.randoms())
def test_which_tasks_stay_open_does_not_depend_on_the_order_of_offers(cap: int, priorities: list, rnd) -> None:
    tasks = list(zip(TASKS, map(float, priorities), strict=False))
    shuffled = tasks[:]
    rnd.shuffle(shuffled)
    first, _, _ = run(cap, [("offer", t, p) for t, p in tasks])
    second, _, _ = run(cap, [("offer", t, p) for t, p in shuffled])
    assert first.open == second.open


def test_a_new_task_enters_at_the_cap_only_by_outranking_the_lowest_open_one() -> None:
    low, high = Ranked(1.0, "a"), Ranked(5.0, "b")
    kwargs = {"is_open": False, "best_waiting": None, "cap": 2}
    assert admit(Ranked(0.5, "n"), open_count=1, lowest_open=low, **kwargs) == Admission("n", "admitted")
    assert admit(Ranked(0.5, "n"), open_count=2, lowest_open=low, **kwargs) == Admission("n", "rejected")
    assert admit(Ranked(2.0, "n"), open_count=2, lowest_open=low, **kwargs) == Admission("n", "admitted", "a")
    # Equal priority: the greater task_id ranks higher, whichever came first.
    assert admit(Ranked(1.0, "b"), open_count=2, lowest_open=low, **kwargs).withdrawn == "a"
    assert admit(Ranked(1.0, "0"), open_count=2, lowest_open=low, **kwargs).outcome == "rejected"
    with pytest.raises(ValueError):
        admit(high, is_open=False, open_count=0, lowest_open=None, best_waiting=None, cap=0)


def test_a_re_request_updates_an_open_task_and_may_swap_it_with_the_best_waiting_one() -> None:
    queue = DomainQueue(2)
    for task_id, priority in (("a", 5.0), ("b", 4.0), ("c", 3.0)):
        queue, _ = queue.offer(task_id, priority)
    assert set(queue.open) == {"a", "b"} and queue.waiting == {"c": 3.0}
    queue, decision = queue.offer("b", 4.5)
    assert decision == Admission("b", "updated") and queue.open == {"a": 5.0, "b": 4.5}
    queue, decision = queue.offer("a", 1.0)
    assert decision == Admission("a", "demoted", withdrawn="a", promoted="c")
    assert queue.open == {"b": 4.5, "c": 3.0} and queue.waiting == {"a": 1.0}
    queue, decision = queue.release("b")
    assert decision.promoted == "a" and queue.open == {"c": 3.0, "a": 1.0} and not queue.waiting
    assert release("x", was_open=False, best_waiting=Ranked(9.0, "w")).promoted is None


def test_rebalance_after_the_cap_changes() -> None:
    open_tasks = [Ranked(5.0, "a"), Ranked(1.0, "b"), Ranked(3.0, "c")]
    waiting = [Ranked(4.0, "w"), Ranked(0.5, "z")]
    assert rebalance(open_tasks, waiting, 2) == (["b", "c"], ["w"])
    assert rebalance(open_tasks, waiting, 5) == ([], ["w", "z"])


@given(tallies, tallies)
def test_the_change_probability_is_symmetric_and_at_most_a_half(a: Tally, b: Tally) -> None:
    p = compare_change_probability(a, b)
    assert 0.0 <= p <= 0.5
    assert p == pytest.approx(compare_change_probability(b, a), abs=1e-9)
    assert p == pytest.approx(min(prob_better(a, b), 1 - prob_better(a, b)), abs=1e-9)


@given(tallies, tallies, st.integers(0, 20))
def test_agreeing_evidence_lowers_the_chance_a_verdict_changes_the_pair(a: Tally, b: Tally, n: int) -> None:
    """More users agreeing with the lean (more 👍 on the better side) never makes an expert more useful."""
    leader_is_a = prob_better(a, b) >= 0.5
    more = Tally(a.up + 1, a.down) if leader_is_a else a, Tally(b.up + 1, b.down) if not leader_is_a else b
    assert compare_change_probability(*more) <= compare_change_probability(a, b) + 1e-12
    with_comparisons = compare_change_probability(a, b, n if leader_is_a else 0, 0 if leader_is_a else n)
    assert with_comparisons <= compare_change_probability(a, b) + 1e-12


def test_change_probability_of_known_cases() -> None:
    assert compare_change_probability(Tally(), Tally()) == pytest.approx(0.5)
    assert compare_change_probability(Tally(), Tally(), 3, 0) == pytest.approx(1 / 16)  # P(phi < 1/2), Beta(4, 1)
    # A 👍 on a gives odds 2:1 for a (P = 2/3), one comparison for b odds 1:3: together 2:3, P(a) = 0.4.
    assert compare_change_probability(Tally(1, 0), Tally(0, 0), 0, 1) == pytest.approx(0.4)
    assert rewrite_change_probability(Tally(0, 3)) == pytest.approx(15 / 16)
    assert rewrite_change_probability(Tally(3, 0)) == pytest.approx(1 / 16)


def test_task_value_is_traffic_times_the_change_probability() -> None:
    assert task_value(40, 0.5) == 20.0
    assert task_value(40, 0.01) < task_value(3, 0.5)  # a busy but settled group is worth less
    assert task_value(10, 0.33, step=0.25) == round(math.expm1(1.5), 6)  # log1p(3.3) = 1.46 -> 1.5
    assert task_value(-1, 0.5) == 0.0
    values = [task_value(t, p) for t, p in itertools.product(range(0, 50, 7), (0.0, 0.1, 0.3, 0.5))]
    assert all(v >= 0 for v in values)


def window_of(queue: DomainQueue, touched: set[str], k: int) -> DomainQueue:
    """What the shell loads: the 2k + 1 lowest open and best waiting tasks, and the touched tasks."""
    lowest = sorted(Ranked(p, t) for t, p in queue.open.items())[: 2 * k + 1]
    best = sorted((Ranked(p, t) for t, p in queue.waiting.items()), reverse=True)[: 2 * k + 1]
    open_ = {r.task_id: r.priority for r in lowest} | {t: p for t, p in queue.open.items() if t in touched}
    waiting = {r.task_id: r.priority for r in best} | {t: p for t, p in queue.waiting.items() if t in touched}
    return DomainQueue(queue.cap, open_, waiting, hidden_open=len(queue.open) - len(open_))


many_tasks = [f"t{i:02d}" for i in range(40)]
batch_ops = st.lists(
    st.tuples(st.sampled_from(["offer", "offer", "release"]), st.sampled_from(many_tasks), st.integers(0, 30)),
    min_size=1,
    max_size=6,
    unique_by=lambda op: op[1],
)


@given(st.integers(1, 8), st.lists(st.tuples(st.sampled_from(many_tasks), st.integers(0, 30)), max_size=40), batch_ops)
def test_a_window_of_the_two_ends_decides_a_batch_as_the_whole_domain_does(cap: int, state: list, ops: list) -> None:
    """The shell loads only the ends of a domain (and the tasks it decides on), never the whole domain."""
    full = DomainQueue(cap)
    for task_id, priority in state:
        full, _ = full.offer(task_id, float(priority))
    window = window_of(full, {task_id for _, task_id, _ in ops}, len(ops))
    for op, task_id, priority in ops:
        if op == "offer":
            (full, expected), (window, got) = (
                full.offer(task_id, float(priority)),
                window.offer(task_id, float(priority)),
            )
        else:
            (full, expected), (window, got) = full.release(task_id), window.release(task_id)
        assert got == expected
        assert len(window.open) + window.hidden_open == len(full.open) <= cap
    assert set(window.open) <= set(full.open) and set(window.waiting) <= set(full.waiting)


@given(st.integers(0, 10_000), st.floats(0.0, 0.5), st.floats(0.05, 1.0))
def test_a_stepped_value_keeps_the_order_and_stays_within_a_step(traffic: int, change: float, step: float) -> None:
    exact, stepped = task_value(traffic, change), task_value(traffic, change, step)
    assert task_value(traffic + 1, change, step) >= stepped, "more traffic never lowers the priority"
    assert abs(math.log1p(stepped) - math.log1p(exact)) <= step / 2 + 1e-6


def test_one_more_vote_on_a_busy_group_rarely_moves_its_priority() -> None:
    """Stepped on a log scale: 1,000 votes on a coin-flip group move the priority a handful of times."""
    priorities = [task_value(traffic, 0.3, step=0.25) for traffic in range(1_000, 2_000)]
    changes = sum(1 for a, b in itertools.pairwise(priorities) if a != b)
    assert changes <= 3, changes


def test_task_priority_reads_the_tasks_own_counts() -> None:
    def spec(kind: str, **counts: int) -> TaskSpec:
        at = datetime(2026, 1, 1, tzinfo=UTC)
        return TaskSpec(
            task_id="t", kind=kind, candidates=(), reason="r", uncertainty=0, evidence=counts, occurred_at=at
        )

    even = spec("compare", a_up=3, a_down=2, b_up=2, b_down=3)
    assert task_priority(even, 10) == pytest.approx(10 * compare_change_probability(Tally(3, 2), Tally(2, 3)))
    split = spec("compare", a_preferred=1, b_preferred=1)
    assert task_priority(split, 10) == pytest.approx(5.0)  # a coin flip: half the traffic
    disliked = spec("rewrite", a_down=3)
    assert task_priority(disliked, 8) == pytest.approx(8 * rewrite_change_probability(Tally(0, 3)))


STEPS = st.lists(
    st.tuples(st.sampled_from([f"t{i}" for i in range(12)]), st.none() | st.sampled_from([0.1, 0.2, 0.5, 0.9, 1.0])),
    max_size=60,
)


@given(cap=st.integers(1, 6), steps=STEPS, start=STEPS, hidden=st.integers(0, 3))
def test_applying_a_batch_of_steps_decides_as_one_step_at_a_time(
    cap: int, steps: list[tuple[str, float | None]], start: list[tuple[str, float | None]], hidden: int
) -> None:
    # A queue some steps in (ties of priority included), then a window with open tasks hidden above it.
    queue = DomainQueue(cap)
    for task_id, priority in start:
        queue = queue.offer(task_id, priority)[0] if priority is not None else queue.release(task_id)[0]
    queue = DomainQueue(cap, queue.open, queue.waiting, hidden_open=hidden)
    one_at_a_time, decisions = queue, []
    for task_id, priority in steps:
        one_at_a_time, decision = (
            one_at_a_time.offer(task_id, priority) if priority is not None else one_at_a_time.release(task_id)
        )
        decisions.append(decision)
    applied, applied_decisions = queue.apply(steps)
    assert applied_decisions == decisions
    assert (dict(applied.open), dict(applied.waiting)) == (dict(one_at_a_time.open), dict(one_at_a_time.waiting))
