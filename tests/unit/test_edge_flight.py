"""The edge's groups in flight (shared.edge_flight): what a later group is judged against, and when it leaves."""

from __future__ import annotations

import asyncio
import uuid

from shared.edge_flight import Flight, InFlight, dependency_failed
from shared.errors import TransientError


async def test_a_snapshot_keeps_the_ids_a_group_accepted_until_it_is_dropped() -> None:
    first, second = Flight(), Flight()
    ids = [uuid.uuid4() for _ in range(3)]
    flights = InFlight()
    flights.add(first, {ids[0]: b"a", ids[1]: b"b"})
    flights.add(second, {ids[2]: b"c"})
    before = flights.snapshot()
    flights.drop(first)
    assert before == {ids[0]: (b"a", first), ids[1]: (b"b", first), ids[2]: (b"c", second)}, "a copy"
    assert flights.snapshot() == {ids[2]: (b"c", second)}
    assert len(flights) == 1


async def test_a_flight_settles_once_and_its_waiters_see_the_outcome() -> None:
    flight = Flight()
    waiter = asyncio.create_task(flight.acknowledged())
    await asyncio.sleep(0)
    assert not waiter.done(), "waits until the group's acknowledgement is known"
    flight.settle(acknowledged=True)
    flight.settle(acknowledged=False)  # the finish's `finally`: no effect once settled
    assert await waiter is True
    failed = Flight()
    failed.settle(acknowledged=False)
    assert await failed.acknowledged() is False


async def test_a_cancelled_waiter_does_not_settle_the_flight() -> None:
    flight = Flight()
    waiter = asyncio.create_task(flight.acknowledged())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.sleep(0)
    assert not flight.outcome.done()
    flight.settle(acknowledged=True)
    assert await flight.acknowledged() is True


def test_a_dependent_item_gets_a_retryable_error_naming_its_event_id() -> None:
    event_id = uuid.uuid4()
    error = dependency_failed(event_id)
    assert isinstance(error, TransientError)
    assert error.to_log_context()["event_id"] == str(event_id)
