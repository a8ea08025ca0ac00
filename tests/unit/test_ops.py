"""services/ops and shared.redrive without servers: arguments, settings from the stack file, which letters go where."""

from __future__ import annotations

import ast
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.ops.cli import build_parser
from services.ops.settings import load_settings
from shared import topics
from shared.events import DeadLetter
from shared.redrive import REDRIVEN_FROM, RedriveRequest, is_redrivable, is_selected, redriven_record

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
OPS = Path(__file__).resolve().parents[2] / "services" / "ops"


def letter(**overrides: object) -> DeadLetter:
    values: dict[str, object] = {
        "event_id": uuid.uuid4(),
        "failed_at": T0,
        "service": "aggregator",
        "source_topic": "p.votes",
        "source_partition": 2,
        "source_offset": 7,
        "source_key": "int-42",
        "raw_value": '{"kind": "thumb"}',
        "error_code": "parked_vote_expired",
        "reason": "interaction int-42 not seen within 3600 s",
    }
    return DeadLetter.model_validate({**values, **overrides})


def test_ops_imports_only_shared_and_itself() -> None:
    for path in OPS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in ("services", "deploy"):
                    assert name.startswith("services.ops"), f"{path.name} imports {name}"


def test_redrive_arguments() -> None:
    args = build_parser().parse_args(["redrive", "--reason", "conflict", "--since", "2026-11-26", "--dry-run"])
    assert (args.reason, args.since, args.dry_run) == ("conflict", T0.replace(hour=0), True)
    zulu = build_parser().parse_args(["redrive", "--reason", "conflict", "--since", "2026-11-26T10:00:00Z"])
    assert zulu.since == T0
    for bad in (["--since", "2026-11-26T10:00:00"], ["--since", "yesterday"]):
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args(["redrive", "--reason", "conflict", *bad])
        assert exited.value.code == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args(["redrive", "--reason", "'; DROP TABLE outbox; --"])


def test_settings_come_from_the_environment_first_then_the_stack_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = tmp_path / "stack.json"
    stack.write_text(json.dumps({"kafka": "k:1", "database_url": "postgresql://s/db", "topic_prefix": "dev."}))
    settings = load_settings(stack)
    assert (settings.kafka_bootstrap_servers, settings.database_url, settings.topic_prefix) == (
        "k:1",
        "postgresql://s/db",
        "dev.",
    )
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "prod:9092")
    assert load_settings(stack).kafka_bootstrap_servers == "prod:9092"
    assert load_settings(tmp_path / "none.json").database_url.startswith("postgresql://postgres@127.0.0.1")


def test_a_redrive_selects_by_reason_and_time() -> None:
    request = RedriveRequest(reason="parked_vote_expired", since=T0)
    assert is_selected(letter(), request)
    assert not is_selected(letter(error_code="conflict"), request)
    assert not is_selected(letter(failed_at=T0 - timedelta(seconds=1)), request)
    assert is_selected(letter(failed_at=T0 - timedelta(days=9)), RedriveRequest(reason="parked_vote_expired"))


def test_only_the_pipelines_input_topics_take_a_letter_back() -> None:
    for name in (topics.INTERACTIONS_RAW, topics.FEEDBACK_RAW, topics.INTERACTIONS, topics.VOTES):
        assert is_redrivable(letter(source_topic=f"p.{name}"), "p.")
    for origin in ("p.preference-pairs", "p.dead-letter", "votes", "q.votes", "p.model-alerts"):
        assert not is_redrivable(letter(source_topic=origin), "p."), origin
    assert not is_redrivable(letter(raw_value=None), "p.")


def test_a_redriven_record_is_the_original_message_naming_its_letter() -> None:
    binary = letter(raw_value="/w==", raw_encoding="base64")
    record = redriven_record(binary)
    assert (record.topic, record.key, record.value) == ("p.votes", b"int-42", b"\xff")
    assert record.headers == ((REDRIVEN_FROM, str(binary.event_id)),)
