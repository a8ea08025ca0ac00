"""bench/leaderboard.py runs at its small size and writes its results with the run header."""

from __future__ import annotations

import json
from pathlib import Path

from bench.leaderboard import main


def test_small_leaderboard_bench_writes_its_table(tmp_path: Path) -> None:
    main(["--small", "--results-dir", str(tmp_path)])
    report = json.loads((tmp_path / "leaderboard.json").read_text())
    assert report["benchmark"] == "leaderboard" and report["git_commit"] is not None
    assert [r["versions"] for r in report["results"]] == [10, 30]
    for r in report["results"]:
        assert r["battles"] == 20_000 and r["fit_and_bootstrap_s"] > 0 and r["fragility_pairs"] == r["versions"] - 1
        assert r["kendall_tau_vs_truth"] > 0.8  # the fit recovers the simulated order
    assert report["latency"] is None
    table = (tmp_path / "leaderboard.md").read_text()
    assert table.startswith("# Leaderboard refit time") and "| 30 |" in table and "Not measured" in table
