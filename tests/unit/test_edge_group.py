"""The edge's group commit (shared.edge_group): grouping, arrival order, splitting, failure, cancellation.

No sockets: the flush functions are in-memory judges that record what each flush carried. The
judge mimics the edge's dedupe (one event_id, one body; first accepted, later duplicate or
conflict), with state kept across flushes as `published_events` keeps it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.edge_group import GroupCommit, take_group

Item = tuple[str, str]  # (event_id, body)


class Judge:
    """A flush: judges items in order against what earlier flushes published; records each flush's items."""

    def __init__(self, *, gate: asyncio.Event | None = None, fail_on: int | None = None) -> None:
        self.published: dict[str, str] = {}
        self.flushes: list[list[Item]] = []
        self.gate = gate
        self.fail_on = fail_on

    async def __call__(self, items: list[Item]) -> list[str]:
        self.flushes.append(list(items))
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)
        if self.fail_on == len(self.flushes):
            raise ConnectionError("broker away")
        results, fresh = [], dict(self.published)
        for event_id, body in items:
            if event_id not in fresh:
                fresh[event_id] = body
                results.append("accepted")
            else:
                results.append("duplicate" if fresh[event_id] == body else "conflict")
        self.published = fresh
        return results


def sequential(calls: list[list[Item]]) -> list[list[str]]:
    """What judging every call's items one after another, in order, gives."""
    published: dict[str, str] = {}
    out = []
    for call in calls:
        results = []
        for event_id, body in call:
            if event_id not in published:
                published[event_id] = body
                results.append("accepted")
            else:
                results.append("duplicate" if published[event_id] == body else "conflict")
        out.append(results)
    return out


async def test_a_lone_caller_is_flushed_at_once_with_its_own_items() -> None:
    judge = Judge()
    group = GroupCommit(judge, max_items=10, name="t")
    assert await group.submit([("a", "x"), ("b", "y")]) == ["accepted", "accepted"]
    assert judge.flushes == [[("a", "x"), ("b", "y")]]
    assert await group.submit([]) == []
    assert len(judge.flushes) == 1, "nothing to carry: no flush"


async def test_callers_arriving_during_a_flush_share_the_next_one_in_arrival_order() -> None:
    gate = asyncio.Event()
    judge = Judge(gate=gate)
    group = GroupCommit(judge, max_items=100, name="t")
    first = asyncio.create_task(group.submit([("a", "x")]))
    await asyncio.sleep(0.01)  # the first flush is running, held at the gate
    later = [asyncio.create_task(group.submit([(f"id{n}", "x")])) for n in range(5)]
    await asyncio.sleep(0.01)
    assert len(judge.flushes) == 1
    gate.set()
    results = await asyncio.gather(first, *later)
    assert results == [["accepted"]] * 6
    assert judge.flushes == [[("a", "x")], [(f"id{n}", "x") for n in range(5)]], "one flush for the five"


async def test_one_event_id_in_concurrent_calls_is_judged_in_arrival_order() -> None:
    gate = asyncio.Event()
    group = GroupCommit(Judge(gate=gate), max_items=100, name="t")
    calls = [[("warm", "x")], [("e", "body")], [("e", "body")], [("e", "other")], [("f", "x"), ("e", "body")]]
    tasks = []
    for call in calls:
        tasks.append(asyncio.create_task(group.submit(call)))
        await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*tasks) == [
        ["accepted"],
        ["accepted"],
        ["duplicate"],
        ["conflict"],
        ["accepted", "duplicate"],
    ]


# Calls of up to 4 (event_id, body) items over few ids and two bodies: duplicates and conflicts are common.
CALLS = st.lists(
    st.lists(st.tuples(st.sampled_from("abcdef"), st.sampled_from("xy")), min_size=0, max_size=4),
    min_size=1,
    max_size=12,
)


@given(
    calls=CALLS,
    max_items=st.integers(1, 6),
)
@settings(max_examples=60, deadline=None)
def test_grouped_results_equal_judging_every_call_in_turn(calls: list[list[Item]], max_items: int) -> None:
    async def run() -> tuple[list[list[str]], Judge]:
        judge = Judge()
        group = GroupCommit(judge, max_items=max_items, name="t")
        return list(await asyncio.gather(*(group.submit(call) for call in calls))), judge

    results, judge = asyncio.run(run())
    assert results == sequential(calls)
    carried = [item for flush in judge.flushes for item in flush]
    assert carried == [item for call in calls for item in call], "every item carried once, in arrival order"
    sizes = [len(call) for call in calls if call]
    assert all(len(f) <= max_items or len(f) in sizes for f in judge.flushes), "only a call alone passes the cap"


@pytest.mark.parametrize(
    ("sizes", "max_items", "taken"),
    [([1, 1, 1], 2, 2), ([3], 2, 1), ([1, 3], 3, 1), ([2, 1, 5], 8, 3), ([5, 1], 4, 1), ([1] * 10, 100, 10)],
)
def test_a_flush_takes_whole_callers_up_to_the_cap(sizes: list[int], max_items: int, taken: int) -> None:
    assert take_group(sizes, max_items) == taken


async def test_a_failed_flush_fails_each_of_its_callers_and_not_the_next_group() -> None:
    gate = asyncio.Event()
    judge = Judge(gate=gate, fail_on=2)
    group = GroupCommit(judge, max_items=3, name="t")
    first = asyncio.create_task(group.submit([("a", "x")]))
    await asyncio.sleep(0.01)
    failing = [asyncio.create_task(group.submit([(f"f{n}", "x")])) for n in range(3)]
    after = asyncio.create_task(group.submit([("g", "x")]))  # past the cap: the third flush
    await asyncio.sleep(0)
    gate.set()
    assert await first == ["accepted"]
    for task in failing:
        with pytest.raises(ConnectionError, match="broker away"):
            await task
    assert await after == ["accepted"]
    assert [len(f) for f in judge.flushes] == [1, 3, 1]
    assert "f0" not in judge.published, "the failed flush recorded nothing"


async def test_a_flush_returning_the_wrong_count_fails_its_callers() -> None:
    async def short(items: list[Item]) -> list[str]:
        return ["accepted"] * (len(items) - 1)

    group = GroupCommit(short, max_items=10, name="t")
    with pytest.raises(RuntimeError, match="2 items"):
        await group.submit([("a", "x"), ("b", "x")])


async def test_a_cancelled_caller_stops_waiting_and_its_flush_still_carries_the_others() -> None:
    gate = asyncio.Event()
    judge = Judge(gate=gate)
    group = GroupCommit(judge, max_items=10, name="t")
    gone = asyncio.create_task(group.submit([("a", "x")]))
    stays = asyncio.create_task(group.submit([("b", "x")]))
    await asyncio.sleep(0.01)
    gone.cancel()
    gate.set()
    assert await stays == ["accepted"]
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert set(judge.published) == {"a", "b"}, "the cancelled caller's items were carried all the same"
    assert await group.submit([("a", "x")]) == ["duplicate"], "and later calls see them"


def test_max_items_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        GroupCommit(Judge(), max_items=0, name="t")


class PipelinedJudge:
    """Two-stage flushes: start judges against what is published and what earlier groups in flight accepted;
    finish (held by `gate` when given) publishes, or fails for the group numbered `fail_on`."""

    def __init__(self, *, gate: asyncio.Event | None = None, fail_on: int | None = None) -> None:
        self.published: dict[str, str] = {}
        self.in_flight: dict[str, tuple[str, int]] = {}
        self.outcomes: dict[int, asyncio.Future[bool]] = {}
        self.events: list[str] = []
        self.gate = gate
        self.fail_on = fail_on

    async def start(self, items: list[Item]) -> Callable[[], Awaitable[list[str | BaseException]]]:
        number = len(self.outcomes) + 1
        self.outcomes[number] = asyncio.get_running_loop().create_future()
        self.events.append(f"start {number}")
        await asyncio.sleep(0)
        known = {k: (body, None) for k, body in self.published.items()} | {
            k: (body, n) for k, (body, n) in self.in_flight.items()
        }
        results: list[tuple[str, int | None]] = []
        for event_id, body in items:
            if event_id not in known:
                known[event_id] = (body, None)
                self.in_flight[event_id] = (body, number)
                results.append(("accepted", None))
            else:
                prior, after = known[event_id]
                results.append(("duplicate" if prior == body else "conflict", after))

        async def finish() -> list[str | BaseException]:
            if self.gate is not None:
                await self.gate.wait()
            ok = number != self.fail_on
            self.outcomes[number].set_result(ok)
            mine = {k: v for k, v in self.in_flight.items() if v[1] == number}
            self.in_flight = {k: v for k, v in self.in_flight.items() if v[1] != number}
            self.events.append(f"finish {number}")
            if not ok:
                raise ConnectionError("broker away")
            self.published.update({k: body for k, (body, _) in mine.items()})
            return [
                status if after is None or await self.outcomes[after] else TimeoutError(f"after {after}")
                for status, after in results
            ]

        return finish


async def test_pipelined_the_next_group_starts_while_the_previous_finishes_and_at_most_depth_are_in_flight() -> None:
    gate = asyncio.Event()
    judge = PipelinedJudge(gate=gate)
    group = GroupCommit.pipelined(judge.start, max_items=1, name="t", depth=2)
    tasks = [asyncio.create_task(group.submit([(f"id{n}", "x")])) for n in range(4)]
    await asyncio.sleep(0.05)
    assert judge.events == ["start 1", "start 2"], "two groups in flight, the third waits"
    gate.set()
    assert await asyncio.gather(*tasks) == [["accepted"]] * 4
    assert judge.events.index("start 3") > judge.events.index("finish 1")


async def test_pipelined_one_event_id_in_two_groups_in_flight_is_judged_once() -> None:
    gate = asyncio.Event()
    judge = PipelinedJudge(gate=gate)
    group = GroupCommit.pipelined(judge.start, max_items=1, name="t", depth=2)
    first = asyncio.create_task(group.submit([("e", "body")]))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(group.submit([("e", "body"), ("e", "other")]))  # past the cap: alone, group 2
    await asyncio.sleep(0.01)
    gate.set()
    assert await first == ["accepted"]
    assert await second == ["duplicate", "conflict"]


async def test_pipelined_a_failed_group_fails_its_callers_and_those_judged_against_it_only() -> None:
    gate = asyncio.Event()
    judge = PipelinedJudge(gate=gate, fail_on=1)
    group = GroupCommit.pipelined(judge.start, max_items=2, name="t", depth=2)
    first = asyncio.create_task(group.submit([("e", "body")]))
    await asyncio.sleep(0.01)
    dependent = asyncio.create_task(group.submit([("e", "body")]))
    independent = asyncio.create_task(group.submit([("f", "x")]))
    await asyncio.sleep(0.01)
    assert judge.events == ["start 1", "start 2"]
    gate.set()
    with pytest.raises(ConnectionError):
        await first
    with pytest.raises(TimeoutError, match="after 1"):
        await dependent
    assert await independent == ["accepted"], "its group-mate did not depend on the failed group"
    assert await group.submit([("e", "body")]) == ["accepted"], "the failed group published nothing"


@given(
    calls=CALLS,
    max_items=st.integers(1, 6),
    depth=st.integers(1, 3),
)
@settings(max_examples=60, deadline=None)
def test_pipelined_results_equal_judging_every_call_in_turn(
    calls: list[list[Item]], max_items: int, depth: int
) -> None:
    async def run() -> list[list[str]]:
        judge = PipelinedJudge()
        group = GroupCommit.pipelined(judge.start, max_items=max_items, name="t", depth=depth)
        return list(await asyncio.gather(*(group.submit(call) for call in calls)))

    assert asyncio.run(run()) == sequential(calls)


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="depth"):
        GroupCommit.pipelined(PipelinedJudge().start, max_items=1, name="t", depth=0)
