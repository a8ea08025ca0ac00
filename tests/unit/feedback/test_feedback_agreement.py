"""Agreement from maintained counts (agreement.py) against the krippendorff package on the raw verdicts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.feedback.agreement import Agreement, agreement_from_counts, nominal_alpha
from services.feedback.queue_rules import VERDICTS
from tests.support.agreement_reference import AgreementRow, counts_from_units, reference_agreement


def rows(domain: str, units: dict[str, dict[str, str]], combined: dict[str, str] | None = None) -> list[AgreementRow]:
    return [
        AgreementRow(task_id=t, domain=domain, annotator_id=a, verdict=v, combined=(combined or {}).get(t))
        for t, unit in units.items()
        for a, v in unit.items()
    ]


def from_counts(data: list[AgreementRow]) -> tuple[dict[str, Agreement], dict[str, Agreement]]:
    return agreement_from_counts(*counts_from_units(data))


def test_perfect_agreement_on_varied_items_gives_alpha_one() -> None:
    units = {"t1": {"x": "A", "y": "A"}, "t2": {"x": "B", "y": "B"}, "t3": {"x": "tie", "y": "tie"}}
    by_domain, by_annotator = from_counts(rows("medical", units))
    assert by_domain["medical"].alpha == pytest.approx(1.0)
    assert by_domain["medical"].pairwise == 1.0
    assert by_annotator["x"].tasks == 3


def test_systematic_disagreement_gives_negative_alpha() -> None:
    units = {"t1": {"x": "A", "y": "B"}, "t2": {"x": "B", "y": "A"}}
    by_domain, _ = from_counts(rows("legal", units))
    assert by_domain["legal"].alpha is not None and by_domain["legal"].alpha < 0
    assert by_domain["legal"].pairwise == 0.0


def test_alpha_undefined_with_one_category_and_single_reviews_ignored() -> None:
    units = {"t1": {"x": "A", "y": "A"}, "t2": {"x": "A"}}
    by_domain, by_annotator = from_counts(rows("code", units))
    assert (by_domain["code"].alpha, by_domain["code"].pairwise, by_domain["code"].tasks) == (None, 1.0, 1)
    assert set(by_annotator) == {"x", "y"} and by_annotator["x"].tasks == 1


def test_annotator_agreement_with_the_result() -> None:
    data = rows("m", {"t1": {"x": "A", "y": "A", "z": "B"}}, combined={"t1": "A"})
    _, by_annotator = from_counts(data)
    assert by_annotator["z"].with_result == 0.0
    assert by_annotator["x"].with_result == 1.0
    assert by_annotator["x"].pairwise == 0.5


def test_no_coincidence_no_alpha() -> None:
    assert nominal_alpha({}) is None
    assert nominal_alpha({("A", "A"): 2.0}) is None, "one category: no disagreement to expect"


# Tasks of 2-4 reviewers from a pool of six annotators, in two domains; some completed.
unit_strategy = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d", "e", "f"]), st.sampled_from(VERDICTS), min_size=1, max_size=4
)
task_strategy = st.tuples(st.sampled_from(["medical", "legal"]), unit_strategy, st.none() | st.sampled_from(VERDICTS))


@settings(max_examples=150, deadline=None)
@given(st.lists(task_strategy, min_size=1, max_size=25))
def test_counts_give_the_same_agreement_as_krippendorff_on_the_raw_verdicts(
    tasks: list[tuple[str, dict[str, str], str | None]],
) -> None:
    data = [
        AgreementRow(task_id=f"t{i}", domain=domain, annotator_id=a, verdict=v, combined=combined)
        for i, (domain, unit, combined) in enumerate(tasks)
        for a, v in unit.items()
    ]
    expected_domains, expected_annotators = reference_agreement(data)
    got_domains, got_annotators = from_counts(data)
    assert got_domains.keys() == expected_domains.keys()
    assert got_annotators.keys() == expected_annotators.keys()
    for got, expected in [*zip(got_domains.values(), expected_domains.values(), strict=True),
                          *zip(got_annotators.values(), expected_annotators.values(), strict=True)]:  # fmt: skip
        assert (got.tasks, got.pairwise, got.with_result) == (expected.tasks, expected.pairwise, expected.with_result)
        if expected.alpha is None:
            assert got.alpha is None
        else:
            assert got.alpha == pytest.approx(expected.alpha, abs=1e-9)
