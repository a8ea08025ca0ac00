"""Position bias of verdicts: left / right / neither per domain, and the binomial test against chance."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binomtest

from services.feedback.position_bias import PositionBias, PositionRow, chose, position_bias


@pytest.mark.parametrize(
    ("verdict", "shown_left", "side"),
    [
        ("A", "A", "left"),
        ("B", "B", "left"),
        ("A", "B", "right"),
        ("B", "A", "right"),
        ("tie", "A", "neither"),
        ("both_bad", "B", "neither"),
    ],
)
def test_a_verdict_chose_the_side_its_task_side_was_shown_on(verdict: str, shown_left: str, side: str) -> None:
    assert chose(verdict, shown_left) == side


def test_counts_per_domain_map_task_sides_to_screen_sides() -> None:
    rows = [
        PositionRow(domain="medical", shown_left="A", verdict="A", verdicts=7),  # A on the left, A chosen: left
        PositionRow(domain="medical", shown_left="B", verdict="A", verdicts=2),  # B on the left, A chosen: right
        PositionRow(domain="medical", shown_left="B", verdict="B", verdicts=5),  # left
        PositionRow(domain="medical", shown_left="A", verdict="tie", verdicts=3),
        PositionRow(domain="legal", shown_left="A", verdict="B", verdicts=4),  # right
    ]
    result = position_bias(rows)
    assert result["medical"] == PositionBias(left=12, right=2, neither=3)
    assert result["legal"] == PositionBias(left=0, right=4, neither=0)
    medical = result["medical"]
    assert (medical.verdicts, medical.left_share) == (17, pytest.approx(12 / 14))
    assert medical.p_value == pytest.approx(binomtest(12, 14, 0.5).pvalue)
    assert medical.p_value < 0.05


def test_no_sided_verdict_has_no_share_and_no_test() -> None:
    only_ties = position_bias([PositionRow(domain="code", shown_left="A", verdict="tie", verdicts=3)])["code"]
    assert (only_ties.left_share, only_ties.p_value, only_ties.verdicts) == (None, None, 3)


@given(st.integers(0, 200), st.integers(0, 200))
def test_an_even_split_is_never_significant_and_the_test_is_symmetric(left: int, right: int) -> None:
    forward = PositionBias(left=left, right=right, neither=0)
    mirrored = PositionBias(left=right, right=left, neither=0)
    if left + right:
        assert forward.p_value == pytest.approx(mirrored.p_value)
        assert 0.0 <= forward.p_value <= 1.0
    if left == right and left:
        assert forward.p_value == pytest.approx(1.0)
