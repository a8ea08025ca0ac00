"""Position bias of expert verdicts, as pure functions: do annotators choose the answer shown left too often?

The annotator UI randomizes which of a task's two answers it shows on the left and sends that side
(`shown_left`) with the verdict. A verdict for A or B then chose either the answer on the left or the
one on the right. With no position bias, left and right are equally likely whatever the answers are
(the sides were assigned at random), so a two-sided binomial test of "left" against 1/2 says whether
the split is more uneven than chance allows. `tie` and `both_bad` choose no side: they are counted
beside, not in the test. Verdicts without `shown_left` (API clients that do not say) and verdicts on
rewrite tasks (one answer, no position) are left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from scipy.stats import binomtest


@dataclass(kw_only=True, frozen=True, slots=True)
class PositionRow:
    """How many verdicts of one domain gave `verdict` with the task's `shown_left` side on the left."""

    domain: str
    shown_left: str
    verdict: str
    verdicts: int


@dataclass(kw_only=True, frozen=True, slots=True)
class PositionBias:
    """One domain's split: answers chosen on the left, on the right, and verdicts that chose neither."""

    left: int
    right: int
    neither: int

    @property
    def verdicts(self) -> int:
        return self.left + self.right + self.neither

    @property
    def left_share(self) -> float | None:
        sided = self.left + self.right
        return self.left / sided if sided else None

    @property
    def p_value(self) -> float | None:
        """Two-sided binomial test of `left` out of `left + right` against 1/2 (None with no sided verdict)."""
        sided = self.left + self.right
        return float(binomtest(self.left, sided, 0.5).pvalue) if sided else None


def chose(verdict: str, shown_left: str) -> str:
    """Where on the screen the chosen answer was: "left", "right", or "neither" (tie, both bad)."""
    if verdict not in ("A", "B"):
        return "neither"
    return "left" if verdict == shown_left else "right"


def position_bias(rows: Iterable[PositionRow]) -> dict[str, PositionBias]:
    """The split per domain of the verdicts that recorded the side shown left."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"left": 0, "right": 0, "neither": 0})
    for row in rows:
        counts[row.domain][chose(row.verdict, row.shown_left)] += row.verdicts
    return {
        domain: PositionBias(left=c["left"], right=c["right"], neither=c["neither"])
        for domain, c in sorted(counts.items())
    }
