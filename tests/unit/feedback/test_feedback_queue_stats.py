"""The stats roll-up over maintained counts (services/feedback/queue_stats.py): depth, leases, position, progress."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.feedback.agreement import AgreementCount, CoincidenceCell
from services.feedback.position_bias import PositionBias, PositionRow
from services.feedback.queue_stats import AnnotatorProgress, TaskCount, queue_stats, start_of_day

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def test_counts_roll_up_per_domain_with_totals_and_every_asked_domain() -> None:
    counts = [
        TaskCount(domain="medical", status="open", tasks=7),
        TaskCount(domain="medical", status="completed", tasks=3),
        TaskCount(domain="medical", status="held", tasks=4),
        TaskCount(domain="legal", status="withdrawn", tasks=2),
        TaskCount(domain="legal", status="contested", tasks=1),
    ]
    stats = queue_stats(counts, {"medical": 2}, domains=["medical", "legal", "empty"])
    assert list(stats.domains) == ["empty", "legal", "medical"]
    medical = stats.domains["medical"]
    assert (medical.queued, medical.leased, medical.completed, medical.contested, medical.withdrawn) == (7, 2, 3, 0, 0)
    assert (stats.total("queued"), stats.total("withdrawn"), stats.total("contested")) == (7, 2, 1)
    assert (medical.held, stats.total("held")) == (4, 4), "held (over the cap) is not queued"
    assert stats.domains["empty"].queued == 0 and stats.domains["empty"].agreement is None


def test_queue_stats_carry_each_domains_agreement_position_bias_and_one_annotators_progress() -> None:
    counts = [TaskCount(domain=d, status="open", tasks=1) for d in ("medical", "legal")]
    positions = [
        PositionRow(domain="medical", shown_left="A", verdict="A", verdicts=3),  # left
        PositionRow(domain="medical", shown_left="B", verdict="A", verdicts=1),  # right
        PositionRow(domain="medical", shown_left="B", verdict="tie", verdicts=2),
    ]
    cells = [
        CoincidenceCell(domain="medical", annotator_id="", first="A", second="A", weight=2.0),
        CoincidenceCell(domain=None, annotator_id="x", first="A", second="A", weight=2.0),
    ]
    agreement = [
        AgreementCount(domain="medical", annotator_id="", tasks=1, pairs=1, agreeing_pairs=1),
        AgreementCount(domain=None, annotator_id="x", tasks=1, pairs=1, agreeing_pairs=1, decided=1, agreed=1),
    ]
    progress = AnnotatorProgress(annotator_id="x", day_start=NOW, verdicts_today=4)
    stats = queue_stats(
        counts,
        {},
        domains=["medical", "legal"],
        cells=cells,
        agreement_counts=agreement,
        position_rows=positions,
        progress=progress,
    )
    assert stats.domains["medical"].position == PositionBias(left=3, right=1, neither=2)
    assert stats.domains["legal"].position is None
    medical = stats.domains["medical"].agreement
    assert medical is not None and (medical.alpha, medical.pairwise, medical.tasks) == (None, 1.0, 1)
    assert stats.domains["legal"].agreement is None
    assert set(stats.annotators) == {"x"} and stats.annotators["x"].with_result == 1.0
    assert stats.annotator == progress
    assert queue_stats(counts, {}, domains=None).annotator is None


@given(st.datetimes(timezones=st.just(UTC)))
def test_an_annotators_day_starts_at_the_last_midnight_utc(now: datetime) -> None:
    start = start_of_day(now)
    assert start <= now < start + timedelta(days=1)
    assert (start.hour, start.minute, start.second, start.microsecond) == (0, 0, 0, 0)
