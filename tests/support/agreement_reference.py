"""Agreement computed from scratch over raw verdicts: the reference the maintained counts are tested against.

`reference_agreement` is what the stats computed before the counts existed: every task with two or
more verdicts, Krippendorff's alpha from the `krippendorff` package (an independent implementation),
the share of agreeing reviewer pairs, and per annotator the share of its decided tasks that went its
way. `counts_from_units` builds the counts the database keeps (migration 0005) from the same units,
in plain Python, for properties of the pure roll-up.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import krippendorff
import numpy as np

from services.feedback.agreement import WHOLE_DOMAIN, Agreement, AgreementCount, CoincidenceCell
from services.feedback.queue_rules import VERDICTS


@dataclass(kw_only=True, frozen=True, slots=True)
class AgreementRow:
    """One verdict of a task, with the task's domain and combined verdict (None while not completed)."""

    task_id: str
    domain: str
    annotator_id: str
    verdict: str
    combined: str | None


def krippendorff_alpha(units: Mapping[str, Mapping[str, str]]) -> float | None:
    """Nominal Krippendorff's alpha of {task_id: {annotator_id: verdict}}; None when undefined."""
    coders = sorted({a for unit in units.values() for a in unit})
    if len(units) == 0 or len(coders) < 2:
        return None
    if len({v for unit in units.values() for v in unit.values()}) < 2:
        return None
    codes = {v: i for i, v in enumerate(VERDICTS)}
    data = np.full((len(coders), len(units)), np.nan)
    row = {a: i for i, a in enumerate(coders)}
    for column, unit in enumerate(units.values()):
        for annotator, verdict in unit.items():
            data[row[annotator], column] = codes[verdict]
    value = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal", value_domain=list(range(4)))
    return None if math.isnan(value) else float(value)


def _pairwise(units: Iterable[Mapping[str, str]], annotator: str | None = None) -> float | None:
    agree = total = 0
    for unit in units:
        items = sorted(unit.items())
        for i, (a, va) in enumerate(items):
            for b, vb in items[i + 1 :]:
                if annotator is None or annotator in (a, b):
                    total += 1
                    agree += va == vb
    return agree / total if total else None


def reference_agreement(rows: Iterable[AgreementRow]) -> tuple[dict[str, Agreement], dict[str, Agreement]]:
    """Agreement per domain and per annotator over tasks with two or more verdicts, from the raw verdicts."""
    units: dict[str, dict[str, str]] = defaultdict(dict)
    domain_of: dict[str, str] = {}
    combined: dict[str, str | None] = {}
    for r in rows:
        units[r.task_id][r.annotator_id] = r.verdict
        domain_of[r.task_id] = r.domain
        combined[r.task_id] = r.combined
    units = {t: u for t, u in units.items() if len(u) >= 2}
    by_domain: dict[str, Agreement] = {}
    for domain in sorted({domain_of[t] for t in units}):
        mine = {t: u for t, u in units.items() if domain_of[t] == domain}
        by_domain[domain] = Agreement(
            alpha=krippendorff_alpha(mine), pairwise=_pairwise(mine.values()), tasks=len(mine)
        )
    by_annotator: dict[str, Agreement] = {}
    for annotator in sorted({a for u in units.values() for a in u}):
        mine = {t: u for t, u in units.items() if annotator in u}
        decided = [t for t in mine if combined[t] is not None]
        with_result = sum(mine[t][annotator] == combined[t] for t in decided) / len(decided) if decided else None
        by_annotator[annotator] = Agreement(
            alpha=krippendorff_alpha(mine),
            pairwise=_pairwise(mine.values(), annotator),
            tasks=len(mine),
            with_result=with_result,
        )
    return by_domain, by_annotator


def counts_from_units(rows: Iterable[AgreementRow]) -> tuple[list[CoincidenceCell], list[AgreementCount]]:
    """The counts the database keeps, summed as the stats read them (annotators over all domains)."""
    units: dict[str, dict[str, str]] = defaultdict(dict)
    domain_of: dict[str, str] = {}
    combined: dict[str, str | None] = {}
    for r in rows:
        units[r.task_id][r.annotator_id] = r.verdict
        domain_of[r.task_id] = r.domain
        combined[r.task_id] = r.combined
    cells: dict[tuple[str | None, str, str, str], float] = defaultdict(float)
    counts: dict[tuple[str | None, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for task_id, unit in units.items():
        if len(unit) < 2:
            continue
        domain, m = domain_of[task_id], len(unit)
        for a, va in unit.items():
            for b, vb in unit.items():
                if a == b:
                    continue
                for scope in ((domain, WHOLE_DOMAIN), *((None, member) for member in unit)):
                    cells[(*scope, va, vb)] += 1 / (m - 1)
                mine = counts[(None, a)]
                mine[1] += 1
                mine[2] += va == vb
        whole = counts[(domain, WHOLE_DOMAIN)]
        whole[0] += 1
        whole[1] += m * (m - 1) // 2
        whole[2] += sum(va == vb for a, va in unit.items() for b, vb in unit.items() if a < b)
        for a, va in unit.items():
            mine = counts[(None, a)]
            mine[0] += 1
            if combined[task_id] is not None:
                mine[3] += 1
                mine[4] += va == combined[task_id]
    return (
        [CoincidenceCell(domain=d, annotator_id=a, first=f, second=s, weight=w) for (d, a, f, s), w in cells.items()],
        [
            AgreementCount(
                domain=d, annotator_id=a, tasks=c[0], pairs=c[1], agreeing_pairs=c[2], decided=c[3], agreed=c[4]
            )
            for (d, a), c in counts.items()
        ],
    )
