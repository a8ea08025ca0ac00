"""LeaseMemory: what a verdict may decide on without reading its task again, per caller, bounded."""

from __future__ import annotations

from datetime import UTC, datetime

from services.feedback import store
from services.feedback.queue import LeaseMemory
from services.feedback.queue_rules import TaskState, Verdict

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
ALICE = store.Annotator("alice", ("medical",))


def read(task_id: str, verdicts: tuple[Verdict, ...] = (), reviewed_by: tuple[str, ...] = ()) -> store.TaskRead:
    state = TaskState(task_id=task_id, domain="medical", kind="compare", status="open",
                      leases={"alice": NOW}, reviewed_by=reviewed_by, now=NOW)  # fmt: skip
    return store.TaskRead(state=state, app_id="app", reviewers_needed=2, request={}, request_updated_at=NOW,
                          verdicts=verdicts)  # fmt: skip


def test_a_remembered_lease_is_taken_once_and_only_by_its_caller() -> None:
    memory = LeaseMemory(8)
    bearer = store.Bearer(b"hash")
    memory.remember(bearer, ALICE, read("t1"))
    assert memory.take(store.Bearer(b"other"), "t1") is None
    assert memory.take(ALICE, "t1") is None, "the same annotator by another credential is another caller"
    assert memory.take(bearer, "t1") == (ALICE, read("t1"))
    assert memory.take(bearer, "t1") is None


def test_the_oldest_entries_go_first_and_size_zero_keeps_nothing() -> None:
    memory = LeaseMemory(2)
    for task_id in ("t1", "t2", "t3"):
        memory.remember(ALICE, ALICE, read(task_id))
    assert [memory.take(ALICE, t) is not None for t in ("t1", "t2", "t3")] == [False, True, True]
    off = LeaseMemory(0)
    off.remember(ALICE, ALICE, read("t1"))
    assert off.take(ALICE, "t1") is None


def test_a_read_whose_verdicts_miss_a_reviewer_is_not_consistent() -> None:
    bob = Verdict(annotator_id="bob", verdict="A")
    assert read("t1", (bob,), ("bob",)).is_consistent
    assert not read("t1", (), ("bob",)).is_consistent
