"""Inter-annotator agreement from maintained counts, as pure functions: Krippendorff's alpha and pair shares.

The database keeps these counts in step with the verdicts (migration 0005), per domain and per
annotator (over the tasks that annotator reviewed), over every task with two or more verdicts:
- Krippendorff's coincidence matrix (nominal): a task with m verdicts adds 1/(m-1) at
  (first, second) for each ordered pair of two of its reviewers' verdicts;
- tasks, reviewer pairs (an annotator's: the pairs it is part of) and the pairs that agree;
- for an annotator, its completed multi-reviewer tasks (`decided`) and how many went its way.

Every count is a sum over tasks, so a new verdict changes only its own task's share, and the counts
of several domains add up. From the matrix o (n_c = sum_k o_ck, n = sum_c n_c):

    alpha = 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c * n_k

None where undefined: no pairable verdict, or one category only (no disagreement to expect).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# An annotator_id of '' in the counts stands for the domain as a whole.
WHOLE_DOMAIN = ""


@dataclass(kw_only=True, frozen=True, slots=True)
class CoincidenceCell:
    """One cell of a coincidence matrix: a domain's (annotator_id '') or an annotator's (domain None: all summed)."""

    domain: str | None
    annotator_id: str
    first: str
    second: str
    weight: float


@dataclass(kw_only=True, frozen=True, slots=True)
class AgreementCount:
    """A domain's (annotator_id '') or an annotator's (domain None) task and pair counts."""

    domain: str | None
    annotator_id: str
    tasks: int
    pairs: int
    agreeing_pairs: int
    decided: int = 0
    agreed: int = 0


@dataclass(kw_only=True, frozen=True, slots=True)
class Agreement:
    """Agreement over a set of tasks: alpha (None when undefined), agreeing pair share, task count.

    For an annotator, `with_result` is the share of its decided tasks where it gave the combined verdict.
    """

    alpha: float | None
    pairwise: float | None
    tasks: int
    with_result: float | None = None


def nominal_alpha(matrix: Mapping[tuple[str, str], float]) -> float | None:
    """Krippendorff's alpha (nominal) of a coincidence matrix {(first, second): weight}; None when undefined."""
    totals: dict[str, float] = defaultdict(float)
    for (first, _), weight in matrix.items():
        totals[first] += weight
    n = sum(totals.values())
    observed = sum(weight for (first, second), weight in matrix.items() if first != second)
    expected = sum(totals[c] * totals[k] for c in totals for k in totals if c != k)
    if n <= 1 or expected <= 0:
        return None
    return 1.0 - (n - 1.0) * observed / expected


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def agreement_from_counts(
    cells: Iterable[CoincidenceCell], counts: Iterable[AgreementCount]
) -> tuple[dict[str, Agreement], dict[str, Agreement]]:
    """Agreement per domain and per annotator, for those with at least one multi-reviewer task."""
    domain_cells: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
    annotator_cells: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
    for cell in cells:
        if cell.annotator_id == WHOLE_DOMAIN and cell.domain is not None:
            domain_cells[cell.domain][(cell.first, cell.second)] = cell.weight
        elif cell.annotator_id != WHOLE_DOMAIN:
            annotator_cells[cell.annotator_id][(cell.first, cell.second)] = cell.weight
    by_domain: dict[str, Agreement] = {}
    by_annotator: dict[str, Agreement] = {}
    for count in counts:
        if count.tasks <= 0:
            continue
        if count.annotator_id == WHOLE_DOMAIN and count.domain is not None:
            by_domain[count.domain] = Agreement(
                alpha=nominal_alpha(domain_cells[count.domain]),
                pairwise=_share(count.agreeing_pairs, count.pairs),
                tasks=count.tasks,
            )
        elif count.annotator_id != WHOLE_DOMAIN:
            by_annotator[count.annotator_id] = Agreement(
                alpha=nominal_alpha(annotator_cells[count.annotator_id]),
                pairwise=_share(count.agreeing_pairs, count.pairs),
                tasks=count.tasks,
                with_result=_share(count.agreed, count.decided),
            )
    return dict(sorted(by_domain.items())), dict(sorted(by_annotator.items()))
