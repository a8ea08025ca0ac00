"""Export row shaping: each kind in TRL's format, provenance beside it, approval labels, filters, the split."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.aggregator import exports
from services.aggregator.evidence import collect_evidence, fold_votes
from services.aggregator.pairs import EDIT_MODEL, EXPERT_MODEL, Group, decide
from services.aggregator.rules import export_rules, pair_rules, routing_rules
from services.aggregator.settings import AggregatorSettings
from shared.events import Candidate, EditVote, Message, PreferencePair, VerdictVote
from shared.export_files import JsonlEncoder, rows_to_batch
from shared.export_schema import EVIDENCE_FIELDS, schema_of
from shared.exports import ExportFilters, split_of
from tests.strategies import APP, PROMPT_KEY, T0, answer, comparison, split_votes

TURNS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "What is 2 + 2?"},
]
EVERYTHING = exports.Selection(ExportFilters(), test_size=0.0)


def pair_json(
    method: str = "votes",
    chosen_model: str = "acme-chat",
    confidence: float = 0.97,
    evidence: dict[str, int] | None = None,
    prompt: list[dict[str, str]] | None = None,
    prompt_key: str = PROMPT_KEY,
    updated_at: datetime = T0,
) -> dict:
    """A PreferencePair as the aggregator stores and publishes it (its JSON)."""
    pair = PreferencePair(
        event_id=uuid.uuid4(),
        app_id=APP,
        pair_id=f"pair-{prompt_key}",
        prompt_key=prompt_key,
        prompt=[Message(**m) for m in (prompt or TURNS)],
        chosen=Candidate(interaction_id="int-a", content="4", model=chosen_model, model_version="v2"),
        rejected=Candidate(interaction_id="int-b", content="5", model="acme-chat", model_version="v1"),
        confidence=confidence,
        method=method,  # type: ignore[arg-type]
        evidence=evidence if evidence is not None else {"chosen_up": 4, "rejected_down": 3},
        domain="general",
        occurred_at=T0,
        updated_at=updated_at,
    )
    return json.loads(pair.model_dump_json())


def test_dpo_is_conversational_preference_with_every_turn_in_order() -> None:
    row = exports.dpo_row(pair_json())
    assert row["prompt"] == TURNS
    assert row["chosen"] == [{"role": "assistant", "content": "4"}]
    assert row["rejected"] == [{"role": "assistant", "content": "5"}]
    assert (row["chosen_model_version"], row["rejected_model_version"]) == ("v2", "v1")
    assert row["evidence"] == {name: {"chosen_up": 4, "rejected_down": 3}.get(name, 0) for name in EVIDENCE_FIELDS}
    assert row["updated_at"] == T0 and row["updated_at"].utcoffset() == timedelta(0)


def test_reward_has_an_implicit_prompt_and_no_prompt_column() -> None:
    row = exports.reward_row(pair_json())
    assert "prompt" not in row
    assert row["chosen"] == [*TURNS, {"role": "assistant", "content": "4"}]
    assert row["rejected"] == [*TURNS, {"role": "assistant", "content": "5"}]


def test_openai_dpo_lines_carry_exactly_the_three_keys() -> None:
    row = exports.openai_dpo_row(pair_json())
    assert row == {
        "input": {"messages": TURNS},
        "preferred_output": [{"role": "assistant", "content": "4"}],
        "non_preferred_output": [{"role": "assistant", "content": "5"}],
    }


def test_kto_unpairs_a_pair_into_a_desirable_and_an_undesirable_row() -> None:
    chosen, rejected = exports.kto_rows_from_pair(pair_json())
    assert (chosen["label"], rejected["label"]) == (True, False)
    assert type(chosen["label"]) is bool
    assert chosen["completion"] == [{"role": "assistant", "content": "4"}] and chosen["prompt"] == TURNS
    assert (chosen["votes_up"], chosen["votes_down"], rejected["votes_up"], rejected["votes_down"]) == (4, 0, 0, 3)
    assert (chosen["side"], rejected["side"], chosen["origin"]) == ("chosen", "rejected", "pair")


@pytest.mark.parametrize(
    ("up", "down", "expected"),
    [(4, 0, (True, 31 / 32)), (0, 4, (False, 31 / 32)), (3, 0, (True, 15 / 16)), (2, 0, None), (5, 5, None)],
)
def test_an_answer_alone_is_labelled_only_when_its_approval_is_confident(up, down, expected) -> None:
    assert exports.approval_label(up, down, 0.9) == (pytest.approx(expected) if expected else None)


@given(st.integers(0, 40), st.integers(0, 40), st.floats(0.51, 1.0))
def test_approval_labels_are_symmetric_and_never_both(up: int, down: int, threshold: float) -> None:
    judged, mirrored = exports.approval_label(up, down, threshold), exports.approval_label(down, up, threshold)
    assert (judged is None) == (mirrored is None)
    if judged is not None:
        assert judged[0] is not mirrored[0] and judged[1] == pytest.approx(mirrored[1])
        assert judged[1] >= threshold


def _approval(up: int, down: int) -> exports.ApprovalRecord:
    return exports.ApprovalRecord(APP, PROMPT_KEY, TURNS, "int-c", "Fine.", "acme-chat", "v3", "general", up, down, T0)


def test_an_approval_row_is_kto_shaped_and_says_where_it_came_from() -> None:
    row = exports.kto_row_from_approval(_approval(0, 5), 0.9)
    assert row is not None and row["label"] is False and row["origin"] == "approval"
    assert row["pair_id"] is None and row["side"] is None and row["method"] == "approval"
    assert exports.kto_row_from_approval(_approval(1, 1), 0.9) is None


def test_sft_rows_come_from_edits_and_expert_rewrites_only() -> None:
    edit = exports.EditRecord(APP, PROMPT_KEY, TURNS, "ev-1", "Four.", "int-a", "acme-chat", "v2", "general", T0)
    row = exports.sft_row_from_edit(edit)
    assert row["messages"] == [*TURNS, {"role": "assistant", "content": "Four."}]
    assert (row["example_id"], row["confidence"], row["pair_id"]) == ("edit:ev-1", 1.0, None)
    rewrite = pair_json(method="expert", chosen_model=EXPERT_MODEL)
    row = exports.sft_row_from_rewrite(rewrite)
    assert row is not None and row["messages"][-1] == {"role": "assistant", "content": "4"}
    assert row["interaction_id"] == "int-b" and row["origin"] == "rewrite"
    assert exports.sft_row_from_rewrite(pair_json(method="expert")) is None, "an expert's choice is no rewrite"
    assert exports.sft_row_from_rewrite(pair_json(method="edit", chosen_model=EDIT_MODEL)) is None


def test_every_evidence_count_the_pair_rules_give_is_a_fixed_field() -> None:
    a, b = answer("int-a"), answer("int-b")
    edit = EditVote(
        event_id=uuid.uuid4(), app_id=APP, occurred_at=T0, interaction_id="int-a", user_ref="u9",
        kind="edit", edited_content="better",
    )  # fmt: skip
    verdict = VerdictVote(
        event_id=uuid.uuid4(), app_id=APP, occurred_at=T0, interaction_id="int-a", annotator_id="x",
        source="expert", kind="verdict", task_id="t", verdict="A", a_interaction_id="int-a", b_interaction_id="int-c",
    )  # fmt: skip
    c = answer("int-c")
    votes = [*split_votes("int-a", 5, 1), *split_votes("int-b", 1, 5), comparison("u1", "int-a", "int-b")]
    votes += [edit, verdict]
    state, _ = fold_votes({}, votes)
    group = Group(
        prompt_key=PROMPT_KEY,
        app_id=APP,
        prompt=(Message(role="user", content="q"),),
        answers=(a, b, c),
        evidence=collect_evidence(state.values()),
    )
    seen = {key for spec in decide(group, pair_rules(AggregatorSettings())).pairs.values() for key in spec.evidence}
    assert seen and seen <= set(EVIDENCE_FIELDS)


def test_filters_judge_a_row_on_its_provenance() -> None:
    row = exports.dpo_row(pair_json(confidence=0.95, updated_at=T0))
    keep = [
        ExportFilters(app_id=APP),
        ExportFilters(model_version="v1"),
        ExportFilters(model_version="v2"),
        ExportFilters(min_confidence=0.95, method="votes", domain="general"),
        ExportFilters(since=T0, until=T0 + timedelta(seconds=1)),
    ]
    drop = [
        ExportFilters(app_id="other"),
        ExportFilters(model_version="v9"),
        ExportFilters(min_confidence=0.96),
        ExportFilters(method="expert"),
        ExportFilters(domain="medical"),
        ExportFilters(since=T0 + timedelta(seconds=1)),
        ExportFilters(until=T0),
    ]
    assert all(exports.matches(row, f) for f in keep)
    assert not any(exports.matches(row, f) for f in drop)


def test_rows_from_a_pair_are_placed_on_the_prompt_groups_side() -> None:
    pair = pair_json(prompt_key="pk-7")
    side = split_of("pk-7", 0.5)
    for kind in ("dpo", "reward", "kto", "openai-dpo"):
        rows = exports.rows_from_pair(kind, pair, exports.Selection(ExportFilters(), 0.5))
        assert rows and {row["split"] for row in rows} == {side}
        other = "train" if side == "test" else "test"
        assert exports.rows_from_pair(kind, pair, exports.Selection(ExportFilters(), 0.5, other)) == []
    filtered = exports.Selection(ExportFilters(model_version="v9"), 0.5)
    assert exports.rows_from_pair("openai-dpo", pair, filtered) == [], "openai rows are filtered on the pair"


# No surrogates (no UTF-8 JSON holds one) and no NUL (the contracts refuse it).
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
messages = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]), "content": TEXT}),
    max_size=5,
).map(lambda turns: [*turns, {"role": "user", "content": "q"}])


# No deadline: the first example pays pyarrow's one-time set-up (over 0.5 s on a loaded 2-core box).
@settings(deadline=None)
@given(messages, st.floats(0.0, 1.0), st.sampled_from([0, 1]), st.text(min_size=1, max_size=8))
def test_answers_are_always_assistant_messages_and_columns_keep_one_type(prompt, confidence, ups, key) -> None:
    pair = pair_json(prompt=prompt, confidence=confidence, evidence={"chosen_up": ups}, prompt_key=key)
    for kind in ("dpo", "reward", "kto", "openai-dpo"):
        rows = exports.rows_from_pair(kind, pair, EVERYTHING)
        for row in rows:
            for column in ("chosen", "rejected", "completion", "preferred_output", "non_preferred_output"):
                if column in row:
                    assert row[column][-1]["role"] == "assistant"
                    assert kind == "reward" or len(row[column]) == 1
        batch = rows_to_batch(rows, schema_of(kind, with_split=True))
        lines = [json.loads(line) for line in JsonlEncoder(batch.schema).write(batch).splitlines()]
        assert all(isinstance(line.get("confidence", 0.0), float) for line in lines)
        assert all(line["updated_at"].endswith("+00:00") for line in lines if "updated_at" in line)


def test_timestamps_from_any_offset_become_utc() -> None:
    pair = pair_json()
    pair["updated_at"] = "2026-11-26T12:00:00+02:00"
    assert exports.dpo_row(pair)["updated_at"] == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def test_the_export_settings_keep_their_env_names_and_reach_the_export_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {"KTO_APPROVAL_THRESHOLD": "0.8", "FETCH_ROWS": "7", "BATCH_ROWS": "9", "MAX_CONCURRENT": "3"}
    for name, value in {**values, "ACQUIRE_TIMEOUT_S": "1.5"}.items():
        monkeypatch.setenv(f"AGGREGATOR_EXPORT_{name}", value)
    configured = AggregatorSettings()
    routing = routing_rules(configured)
    rules = export_rules(configured, routing)
    assert (rules.kto_approval_threshold, rules.fetch_rows, rules.batch_rows) == (0.8, 7, 9)
    assert (rules.max_concurrent, rules.acquire_timeout_s) == (3, 1.5)
    assert rules.routing is routing, "exports route domains with the rules the pairs were routed with"
