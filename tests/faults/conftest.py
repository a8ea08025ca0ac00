"""Fixtures of the fault tests: the fault-free reference run (once per session) and the fault report.

The default workload is WORKLOAD_GROUPS prompt groups (about 1,900 events); FAULT_REPORT names the
JSON-lines file the figures go to (default: faults.jsonl in the pytest temporary directory).
"""

from __future__ import annotations

import pytest

from tests.faults.harness import FaultReport, Reference, figures, pipeline, report_path
from tests.faults.state import Comparison
from tests.faults.workload import build_workload
from tests.support.isolation import fresh_database

SEED = 20250602
WORKLOAD_GROUPS = 200


@pytest.fixture(scope="session")
def fault_report(tmp_path_factory: pytest.TempPathFactory) -> FaultReport:
    return FaultReport(report_path(tmp_path_factory.getbasetemp()))


@pytest.fixture(scope="session")
async def reference(
    kafka_bootstrap: str,
    pg_server_url: str,
    template_db: str,
    tmp_path_factory: pytest.TempPathFactory,
    fault_report: FaultReport,
) -> Reference:
    """The workload without faults, phase by phase, each phase run to quiescence."""
    workload = build_workload(SEED, WORKLOAD_GROUPS)
    run_dir = tmp_path_factory.mktemp("reference")
    async with (
        fresh_database(pg_server_url, template_db) as database_url,
        pipeline(run_dir, workload, kafka_bootstrap=kafka_bootstrap, database_url=database_url) as run,
    ):
        await run.send_phase(0)
        after_phase_1 = await run.settle(1)
        await run.send_phase(1)
        state = await run.settle(2)
        # The reference is what faulted runs are compared with; for itself only lost events can differ.
        comparison = Comparison(lost_events=sorted(await run.lost_events()))
        fault_report.write(figures("none (reference)", "reference", run, state, comparison, None))
    # The workload must exercise what the comparison is about: retractions, reversals, tasks, methods.
    reversed_pairs = [
        p for p, (c, r, _) in after_phase_1.pairs.items() if state.pairs.get(p, ("", "", ""))[:2] == (r, c)
    ]
    assert reversed_pairs, "phase 2 reversed no pair"
    assert state.tombstones & set(after_phase_1.pairs), "phase 2 retracted no pair"
    assert len(state.tasks) >= 5 and not comparison.lost_events
    assert {m for _, _, m in state.pairs.values()} >= {"votes", "comparison", "edit"}
    return Reference(workload, state)
