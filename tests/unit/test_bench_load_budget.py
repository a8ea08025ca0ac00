"""bench/load_budget.py's pure parts: the maximum over samples, the report rows, the quality.md row kept once."""

from __future__ import annotations

from pathlib import Path

from bench import load_budget

FINAL = {
    "cap": 3,
    "domains": {
        "general": {"asked": 9, "open": 3, "open_in_feedback": 3, "open_is_top_cap": True, "feedback_matches": True},
        "legal": {"asked": 2, "open": 2, "open_in_feedback": 1, "open_is_top_cap": True, "feedback_matches": False},
    },
    "open_is_top_cap": True,
    "feedback_matches": False,
}


def test_the_summary_takes_the_most_open_tasks_in_any_domain_on_each_side() -> None:
    samples = [
        {"open_tasks": {"aggregator": {"general": 2, "legal": 1}, "feedback": {"general": 1}}},
        {"open_tasks": {"aggregator": {"general": 3}, "feedback": {"general": 4, "legal": 2}, "feedback_held": {}}},
        {"open_tasks": {"aggregator": {"general": 3}, "feedback": {"general": 3}, "feedback_held": {"general": 2}}},
        {"t_s": 0.0},  # a sample from before the budget was sampled
    ]
    summary = load_budget.summary(samples, FINAL)
    assert (summary["max_open_aggregator"], summary["max_open_feedback"], summary["max_held_feedback"]) == (3, 4, 2)
    assert summary["domains"] == FINAL["domains"]


def test_the_rows_say_no_when_a_check_fails() -> None:
    rows = dict(load_budget.markdown_rows(load_budget.summary([], FINAL)))
    assert rows["open / asked-for tasks per domain at the end"] == "general 3/9, legal 2/2"
    assert rows["open tasks at the end = the top cap by priority / feedback's queue agrees"] == "yes / NO"


def test_the_quality_row_replaces_its_previous_version_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "quality.md"
    load_budget.write_quality_row(path, load_budget.quality_row(load_budget.summary([], FINAL), 60))
    assert path.read_text().count(load_budget.QUALITY_ROW_PREFIX) == 1
    path.write_text("# Quality\n\n| what | measured |\n|---|---|\n| flag latency | 12 votes |\n" + path.read_text())
    final = {**FINAL, "open_is_top_cap": False}
    load_budget.write_quality_row(path, load_budget.quality_row(load_budget.summary([], final), 60))
    lines = path.read_text().splitlines()
    assert lines[:5] == ["# Quality", "", "| what | measured |", "|---|---|", "| flag latency | 12 votes |"]
    assert len(lines) == 6 and lines[5].startswith(load_budget.QUALITY_ROW_PREFIX) and lines[5].endswith(": no |  |")
    path.write_text("\n".join([*lines[:5], "", "After the table."]) + "\n")
    path.write_text(path.read_text().replace("| flag latency | 12 votes |", "| flag latency | 12 votes |\n" + lines[5]))
    load_budget.write_quality_row(path, load_budget.quality_row(load_budget.summary([], FINAL), 60))
    assert path.read_text().splitlines()[5].endswith(": yes |  |")  # replaced where it stood, inside the table
    assert path.read_text().splitlines()[-1] == "After the table."
    assert load_budget.read_quality_row(path) == path.read_text().splitlines()[5]
    assert load_budget.read_quality_row(tmp_path / "absent.md") is None
