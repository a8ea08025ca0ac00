"""bench.provenance.write_results: a run rewrites its results and keeps the notes written below their marker."""

from __future__ import annotations

import json
from pathlib import Path

from bench.provenance import notes_marker, write_results


def test_a_run_replaces_the_table_and_keeps_the_notes(tmp_path: Path) -> None:
    write_results(tmp_path, "thing", {"n": 1}, "# Thing\n\n| n |\n| 1 |\n")
    md = tmp_path / "thing.md"
    md.write_text(md.read_text() + "\n" + notes_marker("thing") + "\n## Before / after\n\nkept\n")
    write_results(tmp_path, "thing", {"n": 2}, "# Thing\n\n| n |\n| 2 |\n")
    text = md.read_text()
    assert text.startswith("# Thing\n\n| n |\n| 2 |\n") and "| 1 |" not in text
    assert text.endswith(notes_marker("thing") + "\n## Before / after\n\nkept\n")
    assert json.loads((tmp_path / "thing.json").read_text()) == {"n": 2}
