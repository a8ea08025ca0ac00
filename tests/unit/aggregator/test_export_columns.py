"""The columnar pair shaping gives exactly the batch the row-by-row reference gives, for any pairs and selection."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from services.aggregator import export_columns, exports
from services.aggregator.pairs import EDIT_MODEL, EXPERT_MODEL
from shared.events import Candidate, Message, PreferencePair
from shared.export_files import rows_to_batch
from shared.export_schema import EVIDENCE_FIELDS, schema_of
from shared.exports import KINDS, ExportFilters
from tests.strategies import T0

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=12)
VERSIONS = st.sampled_from(["v1", "v2", "annotator"])
OFFSETS = st.sampled_from([timedelta(0), timedelta(hours=2), timedelta(hours=-5, minutes=-30)])


@st.composite
def pair_texts(draw: st.DrawFn) -> str:
    """A PreferencePair as the aggregator stores it, in any of the shapes the pair rules make."""
    method = draw(st.sampled_from(["votes", "comparison", "edit", "expert"]))
    chosen_model = draw(st.sampled_from(["acme-chat", EXPERT_MODEL, EDIT_MODEL]))
    turns = draw(st.lists(st.tuples(st.sampled_from(["system", "user", "assistant"]), TEXT), max_size=4))
    prompt = [Message(role=role, content=text) for role, text in turns] + [Message(role="user", content="q")]
    chosen, rejected = draw(TEXT), draw(TEXT)
    evidence = draw(st.dictionaries(st.sampled_from(EVIDENCE_FIELDS), st.integers(1, 50), max_size=4))
    updated = T0 + timedelta(seconds=draw(st.integers(0, 100)))
    pair = PreferencePair(
        event_id=uuid.uuid4(),
        app_id=draw(st.sampled_from(["app-a", "app-b"])),
        pair_id=f"pair-{draw(st.integers(0, 10**6))}",
        prompt_key=draw(TEXT),
        prompt=prompt,
        chosen=Candidate(interaction_id="c-1", content=chosen, model=chosen_model, model_version=draw(VERSIONS)),
        rejected=Candidate(
            interaction_id="r-1", content=rejected + "!", model="acme-chat", model_version=draw(VERSIONS)
        ),
        confidence=draw(st.sampled_from([0.5, 0.9, 1.0, 0.123456])),
        method=method,  # type: ignore[arg-type]
        evidence=evidence,
        domain=draw(st.sampled_from(["general", "medical"])),
        occurred_at=T0.astimezone(timezone(draw(OFFSETS))),
        updated_at=updated,
    )
    text = pair.model_dump_json()
    if draw(st.booleans()):  # an offset other than Z, as another writer may store it
        data = json.loads(text)
        data["updated_at"] = updated.astimezone(timezone(draw(OFFSETS))).isoformat()
        text = json.dumps(data, ensure_ascii=draw(st.booleans()))
    return text


filters = st.builds(
    ExportFilters,
    app_id=st.sampled_from([None, "app-a"]),
    domain=st.sampled_from([None, "medical"]),
    method=st.sampled_from([None, "votes", "expert"]),
    model_version=st.sampled_from([None, "v1", "annotator"]),
    min_confidence=st.sampled_from([None, 0.9]),
    since=st.sampled_from([None, T0 + timedelta(seconds=30)]),
    until=st.sampled_from([None, T0 + timedelta(seconds=70)]),
)
selections = st.builds(
    exports.Selection, filters, st.sampled_from([0.0, 0.5, 1.0]), st.sampled_from(["all", "train", "test"])
)


@settings(max_examples=300, deadline=None)
@given(st.lists(pair_texts(), max_size=6), selections, st.sampled_from(KINDS))
def test_columnar_shaping_equals_the_row_by_row_reference(texts: list[str], selection, kind: str) -> None:
    rows = [row for text in texts for row in exports.rows_from_pair(kind, json.loads(text), selection)]
    expected = rows_to_batch(rows, schema_of(kind, with_split=True))
    got = export_columns.pairs_batch(kind, texts, selection)
    assert got.schema == expected.schema
    assert got.to_pylist() == expected.to_pylist()


def test_a_long_pair_is_one_line_whatever_its_length() -> None:
    long = "x" * 90_000  # 30 turns of it: a 2.7 MB line, longer than Arrow's default JSON block
    turns = [Message(role="user", content=long)] * 30
    pair = PreferencePair(
        event_id=uuid.uuid4(), app_id="a", pair_id="p", prompt_key="k", prompt=turns,
        chosen=Candidate(interaction_id="c", content="yes", model="m", model_version="v"),
        rejected=Candidate(interaction_id="r", content="no", model="m", model_version="v"),
        confidence=1.0, method="votes", domain="general", occurred_at=T0, updated_at=T0,
    )  # fmt: skip
    batch = export_columns.pairs_batch("dpo", [pair.model_dump_json()] * 2, exports.Selection(ExportFilters(), 0.0))
    assert batch.num_rows == 2 and batch.column("prompt")[1].as_py()[0]["content"] == long
    assert batch.column("evidence")[0].as_py() == dict.fromkeys(EVIDENCE_FIELDS, 0)
