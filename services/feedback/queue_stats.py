"""The queue's stats roll-up as pure functions: what `GET /v1/tasks/stats` and the /metrics gauges show.

Its inputs are the counts the database keeps in step with the tasks and verdicts (migration 0005),
already summed per key, so the roll-up costs the same whatever the queue holds:
- tasks per domain and status (queued = open: offered to annotators; held: kept over the cap, task_cap.py),
  live leases per domain;
- agreement (agreement.py) per domain and per annotator;
- position bias (position_bias.py) per domain;
- for one annotator, its verdicts since the start of its day ("done today" in the web UI).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from services.feedback.agreement import Agreement, AgreementCount, CoincidenceCell, agreement_from_counts
from services.feedback.position_bias import PositionBias, PositionRow, position_bias

State = Literal["queued", "held", "completed", "contested", "withdrawn"]
STATES: tuple[State, ...] = ("queued", "held", "completed", "contested", "withdrawn")


@dataclass(kw_only=True, frozen=True, slots=True)
class TaskCount:
    """Tasks of one domain in one status (`count_tasks_by_domain`)."""

    domain: str
    status: str
    tasks: int


@dataclass(kw_only=True, slots=True)
class DomainStats:
    """One domain's tasks by state (queued = open), and its agreement (None: no multi-reviewer task yet)."""

    queued: int = 0
    held: int = 0  # requests kept, not offered: the domain was at the cap (task_cap.py)
    leased: int = 0
    completed: int = 0
    contested: int = 0
    withdrawn: int = 0
    agreement: Agreement | None = None
    position: PositionBias | None = None
    """Which screen side the chosen answers were on (None: no compare verdict sent `shown_left` yet)."""


@dataclass(kw_only=True, frozen=True, slots=True)
class AnnotatorProgress:
    """One annotator's "done today": its verdicts since `day_start`."""

    annotator_id: str
    day_start: datetime
    verdicts_today: int


def start_of_day(now: datetime) -> datetime:
    """Midnight UTC of `now`'s day: an annotator's day when its client does not say when its day began."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(kw_only=True, frozen=True, slots=True)
class QueueStats:
    """The queue per domain and the agreement per annotator, with totals over the domains."""

    domains: dict[str, DomainStats]
    annotators: dict[str, Agreement]
    annotator: AnnotatorProgress | None = None

    def total(self, state: State) -> int:
        return sum(getattr(entry, state) for entry in self.domains.values())


def queue_stats(
    counts: Iterable[TaskCount],
    leases: Mapping[str, int],
    *,
    domains: Sequence[str] | None,
    cells: Iterable[CoincidenceCell] = (),
    agreement_counts: Iterable[AgreementCount] = (),
    position_rows: Iterable[PositionRow] = (),
    progress: AnnotatorProgress | None = None,
) -> QueueStats:
    """Roll the counts up per domain (every one of `domains`, even empty; None: those seen).

    The agreement counts are those of the annotators to show (all, or one); `progress` is passed through.
    """
    by_domain, by_annotator = agreement_from_counts(cells, agreement_counts)
    positions = position_bias(position_rows)
    per_domain = {domain: DomainStats() for domain in domains or ()}
    for count in counts:
        entry = per_domain.setdefault(count.domain, DomainStats())
        state = "queued" if count.status == "open" else count.status
        setattr(entry, state, getattr(entry, state) + count.tasks)
    for domain, leased in leases.items():
        per_domain.setdefault(domain, DomainStats()).leased += leased
    for domain, entry in per_domain.items():
        entry.agreement = by_domain.get(domain)
        entry.position = positions.get(domain)
    return QueueStats(domains=dict(sorted(per_domain.items())), annotators=by_annotator, annotator=progress)
