"""`make up` with a local (memory) broker starts from an empty local database as well."""

from __future__ import annotations

from pathlib import Path

from deploy.up import StackSettings, forget_local_state


def _run_dir(tmp_path: Path) -> Path:
    (tmp_path / "pgdata").mkdir()
    (tmp_path / "pgdata" / "PG_VERSION").write_text("18\n")
    return tmp_path


def test_local_broker_means_a_fresh_local_database(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    forget_local_state(StackSettings(run_dir=run_dir))
    assert not (run_dir / "pgdata").exists()
    forget_local_state(StackSettings(run_dir=run_dir))  # nothing to forget: no error


def test_external_broker_keeps_the_local_database(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    forget_local_state(StackSettings(run_dir=run_dir, kafka_bootstrap_servers="kafka:9092"))
    assert (run_dir / "pgdata" / "PG_VERSION").exists()
