"""The reference run alone: a fault-free run of the workload reaches a rich, settled final state."""

from __future__ import annotations

import pytest

from tests.faults.harness import Reference

pytestmark = pytest.mark.timeout(300)


async def test_reference_run_settles_with_pairs_retractions_and_tasks(reference: Reference) -> None:
    assert len(reference.state.pairs) > 50
    assert sum(i for i, _, _ in reference.state.stats.values()) == len(reference.workload.interaction_keys(2))
