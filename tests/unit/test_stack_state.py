"""`make up`'s local state: an empty local database with a memory broker; stack.json only while ready."""

from __future__ import annotations

import json
from pathlib import Path

from deploy.stack import Stack, write_atomically
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


def test_stack_json_is_written_whole_and_leaves_nothing_partial(tmp_path: Path) -> None:
    path = tmp_path / "stack.json"
    path.write_text('{"ingest": "http://127.0.0.1:1"}\n')
    write_atomically(path, '{"ingest": "http://127.0.0.1:2"}\n')
    assert json.loads(path.read_text()) == {"ingest": "http://127.0.0.1:2"}
    assert [p.name for p in tmp_path.iterdir()] == ["stack.json"]


async def test_a_stopped_stack_leaves_no_stack_json(tmp_path: Path) -> None:
    stack = Stack(tmp_path, kafka_bootstrap="127.0.0.1:9", database_url="postgresql://nobody@127.0.0.1:9/x")
    stack.stack_json_path.write_text('{"ingest": "http://127.0.0.1:1"}\n')  # a previous run's addresses
    await stack.stop()
    assert not stack.stack_json_path.exists()
