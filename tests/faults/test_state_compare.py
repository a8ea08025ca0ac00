"""The comparison itself, without I/O: it must see every kind of loss and duplication, and tolerate
only transients. Also: the workload is replayable (same seed, same events)."""

from __future__ import annotations

from dataclasses import replace

from tests.faults.state import FinalState, compare
from tests.faults.workload import build_workload

REFERENCE = FinalState(
    pairs={"p1": ("a", "b", "votes"), "p2": ("c", "d", "edit")},
    tombstones=frozenset({"p3", "p9"}),
    tasks=frozenset({"t1"}),
    stats={("app", "v1"): (10, 4, 3)},
    published=frozenset({"p1", "p2", "p3", "p9"}),
)


def test_equal_states_compare_equal_and_transients_are_tolerated() -> None:
    # p9 never published here (a transient of the reference); p7 a transient tombstone of this run.
    run = replace(REFERENCE, tombstones=frozenset({"p3", "p7"}), published=frozenset({"p1", "p2", "p3", "p7"}))
    result = compare(REFERENCE, run)
    assert result.is_equal, result.explain()
    assert result.transient_tombstones == ["p7"]


def test_every_difference_is_lost_or_duplicated() -> None:
    run = FinalState(
        pairs={"p1": ("b", "a", "votes"), "p3": ("x", "y", "votes"), "p4": ("e", "f", "comparison")},
        tombstones=frozenset(),
        tasks=frozenset({"t2"}),
        stats={("app", "v1"): (9, 5, 3)},
        published=frozenset({"p1", "p3", "p4"}),
    )
    result = compare(REFERENCE, run, {"e-1"})
    assert result.missing_pairs == ["p1", "p2"]  # p1 reversed, p2 absent
    assert result.missing_tombstones == ["p3"]  # published here, never retracted
    assert result.extra_pairs == ["p4"]
    assert (result.missing_tasks, result.extra_tasks) == (["t1"], ["t2"])
    assert result.stats_deficit == {"app/v1/interactions": 1} and result.stats_surplus == {"app/v1/thumbs_up": 1}
    assert result.lost == 2 + 1 + 1 + 1 + 1 and result.duplicated == 1 + 1 + 1
    assert not result.is_equal


def test_the_workload_is_replayable_and_differs_by_seed() -> None:
    first, again, other = build_workload(5, 40), build_workload(5, 40), build_workload(6, 40)
    assert first.phases == again.phases
    assert [s.event_id for s in first.phases[0]] != [s.event_id for s in other.phases[0]]
    assert first.vote_ids(1) < first.vote_ids(2)
