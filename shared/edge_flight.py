"""The edge's groups in flight: ids a started HTTP group accepted, until its publish is acknowledged and recorded.

With a pipelined group commit (shared.edge_group, depth 2) group N+1 is judged while group N's
acknowledgement or recording is still in flight: N's accepted ids are not in `published_events`
yet, so N+1 sees them here (a copy taken before its dedupe query, so an id is always in the copy or,
recorded before the query ran, in the table). An item of N+1 judged a duplicate or a conflict of an id
N accepted depends on N: when N's publish fails, that judgement was wrong, and its caller gets a
retryable error (`dependency_failed`, 503) instead of a 202 or a 409. Entries leave when their group's
recording ended (written or failed: a failed recording forgets the ids, as without the pipeline).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from uuid import UUID

from shared.errors import TransientError


@dataclass(eq=False, slots=True)
class Flight:
    """One started group: whether the broker acknowledged its publish (awaited by the groups judged against it)."""

    outcome: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def settle(self, *, acknowledged: bool) -> None:
        if not self.outcome.done():
            self.outcome.set_result(acknowledged)

    async def acknowledged(self) -> bool:
        return await asyncio.shield(self.outcome)


class InFlight:
    """event_id -> (body hash, the group in flight that accepted it)."""

    def __init__(self) -> None:
        self._entries: dict[UUID, tuple[bytes, Flight]] = {}

    def snapshot(self) -> dict[UUID, tuple[bytes, Flight]]:
        return dict(self._entries)

    def add(self, flight: Flight, accepted: Mapping[UUID, bytes]) -> None:
        for event_id, digest in accepted.items():
            self._entries[event_id] = (digest, flight)

    def drop(self, flight: Flight) -> None:
        """Forget the ids `flight` accepted (its recording ended, or it failed)."""
        self._entries = {k: v for k, v in self._entries.items() if v[1] is not flight}

    def __len__(self) -> int:
        return len(self._entries)


def dependency_failed(event_id: UUID) -> TransientError:
    """The error of an item judged against a group whose publish then failed: retry it."""
    return TransientError(
        "judged against a concurrent post of this event_id whose publish failed; retry", event_id=str(event_id)
    )
