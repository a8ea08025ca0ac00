"""The analyst UI's pure shaping: ranges and buckets, approval series, the flow, the queue, dead letters, alerts."""

from __future__ import annotations

import itertools
import re
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import beta

from services.aggregator import analytics
from services.aggregator.analytics import (
    AlertRow,
    ApprovalRow,
    CountedLetter,
    DeadLetterKey,
    DeadLetterRow,
    FlowRow,
    QueueGroup,
)
from services.aggregator.routing import DomainRule, RoutingRules
from shared.events import DeadLetter, Message

NOW = datetime(2026, 11, 30, 12, 34, 56, tzinfo=UTC)
RULES = RoutingRules(
    domain_rules=(DomainRule(domain="medical", patterns=(re.compile(r"\bdiabetes\b", re.IGNORECASE),)),),
    traffic_weight=1.0,
    uncertainty_weight=2.0,
    priority_step=0.25,
)
moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC))


@given(moments, st.sampled_from([60, 600, 3600, 21600]))
def test_a_moment_lies_in_its_bucket_and_buckets_are_aligned(moment: datetime, bucket_s: int) -> None:
    start = analytics.bucket_of(moment, bucket_s)
    assert start <= moment < start + timedelta(seconds=bucket_s)
    assert start.timestamp() % bucket_s == 0
    assert analytics.bucket_of(start, bucket_s) == start


def test_each_range_has_every_bucket_up_to_now() -> None:
    hour = analytics.time_range("1h", window_s=60)
    starts = hour.bucket_starts(NOW)
    assert len(starts) == 60 and starts[-1] == datetime(2026, 11, 30, 12, 34, tzinfo=UTC)
    assert all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(starts))
    assert hour.since(NOW) == starts[0]
    week = analytics.time_range("7d", window_s=60)
    assert (week.bucket_s, len(week.bucket_starts(NOW))) == (21600, 28)


def test_a_bucket_is_widened_to_whole_stats_windows() -> None:
    assert analytics.time_range("1h", window_s=90).bucket_s == 90
    assert analytics.time_range("1h", window_s=45).bucket_s == 90  # two windows, never one and a half
    assert analytics.time_range("6h", window_s=90).bucket_s == 630
    assert analytics.time_range("24h", window_s=60).bucket_s == 3600
    assert analytics.time_range("1h", window_s=7200).span_s == 7200  # at least one whole bucket


def test_approval_series_carry_the_beta_interval_and_skip_buckets_without_thumbs() -> None:
    t0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    rows = [
        ApprovalRow("v2", t0, up=30, down=10, interactions=12),
        ApprovalRow("v1", t0 + timedelta(minutes=1), up=2, down=6, interactions=4),
        ApprovalRow("v1", t0, up=0, down=0, interactions=9),
    ]
    series = analytics.approval_series(rows, {"v1": ["chat"], "v2": ["chat", "mini"]})
    assert [s["model_version"] for s in series] == ["v1", "v2"]
    v1, v2 = series
    assert v1["label"] == "chat v1" and v2["label"] == "chat / mini v2"
    assert (v1["up"], v1["down"], v1["interactions"]) == (2, 6, 13)
    assert [p["start"] for p in v1["points"]] == ["2026-11-30T12:01:00Z"]  # no point without a thumb
    point = v2["points"][0]
    low, high = beta.ppf([0.025, 0.975], 31, 11)  # Beta(1 + up, 1 + down), independently
    assert point["rate"] == 0.75 and abs(point["ci_low"] - low) < 1e-4 and abs(point["ci_high"] - high) < 1e-4
    assert analytics.approval_series([], {}) == []


def test_the_flow_has_every_bucket_with_zeros_where_nothing_happened() -> None:
    window = analytics.time_range("1h", window_s=60)
    last = window.bucket_starts(NOW)[-1]
    rows = [
        FlowRow("pairs", last, 7),
        FlowRow("tasks_requested", last, 2),
        FlowRow("tasks_answered", last - timedelta(minutes=5), 1),
    ]
    buckets = analytics.flow_buckets(rows, window, NOW)
    assert len(buckets) == 60
    assert buckets[-1] == {
        "start": "2026-11-30T12:34:00Z",
        "pairs": 7,
        "tasks_requested": 2,
        "tasks_answered": 0,
        "tasks_withdrawn": 0,
    }
    assert buckets[-6]["tasks_answered"] == 1
    assert sum(b["pairs"] for b in buckets) == 7


def _group(key: str, own: str | None, prompt: str, compare: int, rewrite: int, minutes_ago: int) -> QueueGroup:
    return QueueGroup(
        prompt_key=key,
        own_domain=own,
        prompt=(Message(role="user", content=prompt),),
        compare=compare,
        rewrite=rewrite,
        oldest_requested_at=NOW - timedelta(minutes=minutes_ago),
    )


def test_the_queue_is_counted_under_the_domain_routing_gives() -> None:
    groups = [
        _group("g1", None, "Is diabetes a risk?", 2, 0, 5),  # the rules: medical
        _group("g2", "legal", "Is diabetes a risk?", 1, 1, 50),  # its own domain wins over the rules
        _group("g3", None, "Hello there", 0, 1, 3),  # no rule: general
        _group("g4", "medical", "anything", 1, 0, 30),
    ]
    queue = analytics.queue_by_domain(groups, RULES)
    assert queue == [
        {"domain": "medical", "open": 3, "compare": 3, "rewrite": 0, "oldest_requested_at": "2026-11-30T12:04:56Z"},
        {"domain": "legal", "open": 2, "compare": 1, "rewrite": 1, "oldest_requested_at": "2026-11-30T11:44:56Z"},
        {"domain": "general", "open": 1, "compare": 0, "rewrite": 1, "oldest_requested_at": "2026-11-30T12:31:56Z"},
    ]


def _letter(service: str, code: str, failed_at: datetime, event_id: uuid.UUID | None = None) -> bytes:
    letter = DeadLetter(
        event_id=event_id or uuid.uuid4(),
        failed_at=failed_at,
        service=service,
        source_topic="interactions.raw",
        raw_value="x",
        error_code=code,
        reason="bad",
    )
    return letter.model_dump_json().encode()


def test_a_dead_letter_is_read_into_its_key_and_anything_else_is_not() -> None:
    event_id = uuid.uuid4()
    read = analytics.read_dead_letter(_letter("ingest", "contract_violation", NOW, event_id))
    assert read == CountedLetter(
        event_id, NOW, DeadLetterKey("ingest", "contract_violation", datetime(2026, 11, 30, 12, tzinfo=UTC))
    )
    for value in (None, b"", b"not json", b'{"event_id": "x"}', b"\xff\xfe"):
        assert analytics.read_dead_letter(value) is None


letters = st.builds(
    lambda n, service, code, minutes: analytics.read_dead_letter(
        _letter(service, code, NOW - timedelta(minutes=minutes), uuid.UUID(int=n))
    ),
    st.integers(min_value=1, max_value=12),
    st.sampled_from(["ingest", "feedback", "aggregator"]),
    st.sampled_from(["contract_violation", "processing_failed"]),
    st.integers(min_value=0, max_value=300),
)


@given(st.lists(letters, max_size=30))
def test_each_event_id_is_counted_once_whatever_the_repeats(batch: list[CountedLetter]) -> None:
    distinct = analytics.distinct_letters(batch + batch[::-1])
    assert len(distinct) == len({letter.event_id for letter in batch})
    counts = analytics.count_letters(distinct)
    assert sum(counts.values()) == len(distinct)
    assert list(counts) == sorted(counts)  # the order rows are written in (the lock order)


def test_dead_letters_by_reason_and_hour_over_at_least_a_day() -> None:
    hours = analytics.dead_letter_span(analytics.time_range("1h", window_s=60))
    assert (hours.span_s, hours.bucket_s) == (86400, 3600)
    this_hour = datetime(2026, 11, 30, 12, tzinfo=UTC)
    rows = [
        DeadLetterRow("ingest", "contract_violation", this_hour, 3),
        DeadLetterRow("feedback", "forbidden_source", this_hour - timedelta(hours=2), 5),
        DeadLetterRow("ingest", "contract_violation", this_hour - timedelta(hours=2), 4),
        DeadLetterRow("ingest", "contract_violation", this_hour - timedelta(hours=30), 100),  # before the span
    ]
    view = analytics.dead_letter_view(rows, hours, NOW)
    assert view["total"] == 12
    assert view["reasons"] == [
        {"service": "ingest", "error_code": "contract_violation", "letters": 7},
        {"service": "feedback", "error_code": "forbidden_source", "letters": 5},
    ]
    assert len(view["hours"]) == 24 and view["hours"][-1]["start"] == "2026-11-30T12:00:00Z"
    assert view["hours"][-3]["letters"] == [
        {"service": "ingest", "error_code": "contract_violation", "letters": 4},
        {"service": "feedback", "error_code": "forbidden_source", "letters": 5},
    ]
    assert view["hours"][0]["letters"] == []


def _alert(domain: str, is_raised: bool, minutes_ago: int, metric: str = "approval") -> AlertRow:
    return AlertRow(
        app_id="app",
        domain=domain,
        model="chat",
        previous_version="v1",
        new_version="v2",
        metric=metric,
        is_raised=is_raised,
        transitions=1 if is_raised else 2,
        updated_at=NOW - timedelta(minutes=minutes_ago),
    )


def test_alerts_raised_first_whole_app_first_then_latest_with_both_readings() -> None:
    body = {
        "models": [
            {
                "model": "chat",
                "model_version": "v1",
                "approval_rate": 0.8,
                "approval_ci_low": 0.7,
                "approval_ci_high": 0.88,
                "votes": 90,
                "rating": 1100.0,
                "ci_low": 1050.0,
                "ci_high": 1150.0,
                "battles": 40,
            },
            {
                "model": "chat",
                "model_version": "v2",
                "approval_rate": 0.3,
                "approval_ci_low": 0.2,
                "approval_ci_high": 0.4,
                "votes": 60,
                "rating": None,
                "ci_low": None,
                "ci_high": None,
                "battles": 3,
            },
        ]
    }
    rows = [_alert("code", True, 1), _alert("", False, 0), _alert("", True, 9), _alert("", True, 5, "rating")]
    views = analytics.alert_views(rows, {("app", ""): body})
    assert [(v["domain"], v["state"], v["metric"]) for v in views] == [
        (None, "raised", "rating"),
        (None, "raised", "approval"),
        ("code", "raised", "approval"),
        (None, "cleared", "approval"),
    ]
    approval = views[1]
    assert approval["previous"] == {"estimate": 0.8, "ci_low": 0.7, "ci_high": 0.88, "evidence": 90}
    assert approval["new"] == {"estimate": 0.3, "ci_low": 0.2, "ci_high": 0.4, "evidence": 60}
    assert views[0]["new"] is None  # v2 is not rated (any more): no rating reading
    assert views[2]["previous"] is None  # no body of that board
