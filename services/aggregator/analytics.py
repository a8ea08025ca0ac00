"""What the analyst UI shows, pure: time ranges, approval over time, the flow, the queue, dead letters, alerts.

- Ranges: `1h`, `6h`, `24h`, `7d`, each with its bucket (1 minute, 10 minutes, 1 hour, 6 hours); every
  chart of a range has every bucket, empty ones as zeros. A bucket is never shorter than a feedback-stats
  window (AGGREGATOR_STATS_WINDOW_S): windows are not split, so a bucket is widened to whole windows.
- Approval over time: per model version and bucket, thumbs up / (up + down) of the feedback-stats windows
  (each end-user thumb taken in, in the window of its own occurred_at; ratings are in the windows only as a
  count and a sum, so they are left out here), with the 95% Beta(1 + up, 1 + down) interval of
  `leaderboard.approval`. Buckets without a thumb have no point.
- Flow: per bucket of wall-clock time, pairs first published, annotation requests first published, and
  requests closed: answered (the group holds an expert verdict on the task) or withdrawn (users settled it,
  or it is no longer asked for).
- Queue: open annotation requests (published to `annotation-requests`, neither withdrawn nor answered by
  an expert verdict since) per domain and kind. The domain is the one the request was routed to, found the
  way routing finds it: the group's first answer with a domain of its own, else the domain rules on the prompt.
- Dead letters: every service's, counted once per event_id under (service, error_code, hour of failed_at);
  shown per hour whatever the range (at least the last 24 hours), and summed by reason over those hours.
- Alerts: the regression alarm's state, raised first, the whole app's board before its domains', then
  the latest change first, each with both
  versions' readings on its metric from the board's latest body (the evidence the alarm looked at).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from services.aggregator.leaderboard import approval
from services.aggregator.routing import RoutingRules, route_domain
from shared.events import DeadLetter, Message

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR_S = 3600
DEAD_LETTER_MIN_SPAN_S = 24 * HOUR_S


@dataclass(frozen=True, slots=True)
class TimeRange:
    """A span of the recent past cut into buckets of `bucket_s` seconds."""

    name: str
    span_s: int
    bucket_s: int

    def bucket_starts(self, now: datetime) -> list[datetime]:
        """The buckets covering the span up to `now`, oldest first (the last one holds `now`)."""
        last = bucket_of(now, self.bucket_s)
        count = max(1, math.ceil(self.span_s / self.bucket_s))
        return [last - timedelta(seconds=self.bucket_s * k) for k in range(count - 1, -1, -1)]

    def since(self, now: datetime) -> datetime:
        return self.bucket_starts(now)[0]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "span_s": self.span_s, "bucket_s": self.bucket_s}


RANGES = {
    "1h": TimeRange("1h", HOUR_S, 60),
    "6h": TimeRange("6h", 6 * HOUR_S, 600),
    "24h": TimeRange("24h", 24 * HOUR_S, HOUR_S),
    "7d": TimeRange("7d", 7 * 24 * HOUR_S, 6 * HOUR_S),
}
DEFAULT_RANGE = "1h"


def time_range(name: str, window_s: float) -> TimeRange:
    """The named range with its bucket widened to whole stats windows of `window_s` seconds."""
    chosen = RANGES[name]
    window = max(1, math.ceil(window_s))
    bucket_s = math.ceil(chosen.bucket_s / window) * window
    return TimeRange(chosen.name, max(chosen.span_s, bucket_s), bucket_s)


def bucket_of(moment: datetime, bucket_s: int) -> datetime:
    """The start of the bucket holding `moment`, buckets aligned on the Unix epoch (as SQL's are)."""
    return _EPOCH + timedelta(seconds=((moment - _EPOCH) // timedelta(seconds=bucket_s)) * bucket_s)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# ---- approval over time ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApprovalRow:
    """Sums of one model version's stats windows in one bucket."""

    model_version: str
    bucket_start: datetime
    up: int
    down: int
    interactions: int


def _point(row: ApprovalRow) -> dict[str, Any]:
    reading = approval(row.up, row.down)
    return {
        "start": iso(row.bucket_start),
        "up": row.up,
        "down": row.down,
        "interactions": row.interactions,
        "rate": round(reading.rate, 4) if reading.rate is not None else None,
        "ci_low": round(reading.ci_low, 4),
        "ci_high": round(reading.ci_high, 4),
    }


def approval_series(rows: Iterable[ApprovalRow], models: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """One series per model version (by name), its points oldest first; `models`: the models using a version."""
    by_version: dict[str, list[ApprovalRow]] = defaultdict(list)
    for row in rows:
        by_version[row.model_version].append(row)
    series = []
    for version in sorted(by_version):
        points = sorted(by_version[version], key=lambda r: r.bucket_start)
        up, down = sum(r.up for r in points), sum(r.down for r in points)
        names = sorted(models.get(version, ()))
        series.append(
            {
                "model_version": version,
                "models": names,
                "label": f"{' / '.join(names)} {version}" if names else version,
                "up": up,
                "down": down,
                "interactions": sum(r.interactions for r in points),
                "points": [_point(r) for r in points if r.up + r.down > 0],
            }
        )
    return series


# ---- flow of pairs and tasks ----------------------------------------------------------------------

FLOW_KINDS = ("pairs", "tasks_requested", "tasks_answered", "tasks_withdrawn")


@dataclass(frozen=True, slots=True)
class FlowRow:
    """How many of one kind (FLOW_KINDS) happened in one bucket."""

    kind: str
    bucket_start: datetime
    count: int


def flow_buckets(rows: Iterable[FlowRow], window: TimeRange, now: datetime) -> list[dict[str, Any]]:
    """Every bucket of the range with its counts (zeros where nothing happened), oldest first."""
    counts: dict[datetime, Counter[str]] = defaultdict(Counter)
    for row in rows:
        counts[row.bucket_start][row.kind] += row.count
    return [
        {"start": iso(start), **{kind: counts[start][kind] for kind in FLOW_KINDS}}
        for start in window.bucket_starts(now)
    ]


# ---- the queue per domain -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueGroup:
    """The open requests of one prompt group: its own domain (None: routed by the rules on its prompt)."""

    prompt_key: str
    own_domain: str | None
    prompt: tuple[Message, ...]
    compare: int
    rewrite: int
    oldest_requested_at: datetime


def queue_by_domain(groups: Iterable[QueueGroup], rules: RoutingRules) -> list[dict[str, Any]]:
    """Open requests per domain (most first, then by name): by kind, and the oldest one's first publication."""
    domains: dict[str, dict[str, Any]] = {}
    for group in groups:
        domain = route_domain((group.own_domain,), group.prompt, rules)
        entry = domains.setdefault(domain, {"domain": domain, "open": 0, "compare": 0, "rewrite": 0, "oldest": None})
        entry["open"] += group.compare + group.rewrite
        entry["compare"] += group.compare
        entry["rewrite"] += group.rewrite
        if entry["oldest"] is None or group.oldest_requested_at < entry["oldest"]:
            entry["oldest"] = group.oldest_requested_at
    ordered = sorted(domains.values(), key=lambda e: (-e["open"], e["domain"]))
    return [
        {**{k: v for k, v in entry.items() if k != "oldest"}, "oldest_requested_at": iso(entry["oldest"])}
        for entry in ordered
    ]


# ---- dead letters -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class DeadLetterKey:
    """What dead letters are counted under."""

    service: str
    error_code: str
    hour: datetime


@dataclass(frozen=True, slots=True)
class CountedLetter:
    event_id: UUID
    failed_at: datetime
    key: DeadLetterKey


def read_dead_letter(value: bytes | None) -> CountedLetter | None:
    """A dead-letter record's event id, time and count key; None when it is not a v1 dead letter."""
    if value is None:
        return None
    try:
        letter = DeadLetter.model_validate_json(value)
    except ValidationError:
        return None
    return CountedLetter(
        letter.event_id,
        letter.failed_at,
        DeadLetterKey(letter.service, letter.error_code, bucket_of(letter.failed_at, HOUR_S)),
    )


def distinct_letters(letters: Iterable[CountedLetter]) -> list[CountedLetter]:
    """Each event_id once (the first), in event_id order."""
    first: dict[UUID, CountedLetter] = {}
    for letter in letters:
        first.setdefault(letter.event_id, letter)
    return [first[k] for k in sorted(first)]


def count_letters(letters: Iterable[CountedLetter]) -> dict[DeadLetterKey, int]:
    """Letters per key, keys sorted (the order rows are written in)."""
    counts = Counter(letter.key for letter in letters)
    return {key: counts[key] for key in sorted(counts)}


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    service: str
    error_code: str
    hour: datetime
    letters: int


def dead_letter_span(window: TimeRange) -> TimeRange:
    """Dead letters are counted per hour: the hours of the range, and at least the last 24."""
    return TimeRange(window.name, max(window.span_s, DEAD_LETTER_MIN_SPAN_S), HOUR_S)


def dead_letter_view(rows: Iterable[DeadLetterRow], hours: TimeRange, now: datetime) -> dict[str, Any]:
    """Totals by reason (most first) and each hour's letters by reason, every hour of the span."""
    starts = hours.bucket_starts(now)
    by_hour: dict[datetime, Counter[tuple[str, str]]] = defaultdict(Counter)
    for row in rows:
        if row.hour >= starts[0]:
            by_hour[row.hour][(row.service, row.error_code)] += row.letters
    totals: Counter[tuple[str, str]] = Counter()
    for counter in by_hour.values():
        totals.update(counter)
    reasons = sorted(totals, key=lambda k: (-totals[k], k))
    return {
        "span": hours.to_json(),
        "total": sum(totals.values()),
        "reasons": [{"service": s, "error_code": c, "letters": totals[(s, c)]} for s, c in reasons],
        "hours": [
            {
                "start": iso(start),
                "letters": [
                    {"service": s, "error_code": c, "letters": by_hour[start][(s, c)]}
                    for s, c in reasons
                    if by_hour[start][(s, c)]
                ],
            }
            for start in starts
        ],
    }


# ---- alerts -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertRow:
    """The regression alarm's stored state of one comparison (domain '': the whole app's board)."""

    app_id: str
    domain: str
    model: str
    previous_version: str
    new_version: str
    metric: str
    is_raised: bool
    transitions: int
    updated_at: datetime


_READING_FIELDS = {
    "approval": ("approval_rate", "approval_ci_low", "approval_ci_high", "votes"),
    "rating": ("rating", "ci_low", "ci_high", "battles"),
}


def reading(body: Mapping[str, Any] | None, model: str, version: str, metric: str) -> dict[str, Any] | None:
    """A version's estimate, interval and evidence on `metric` in a board body; None when it has none."""
    fields = _READING_FIELDS.get(metric)
    if body is None or fields is None:
        return None
    for entry in body.get("models", ()):
        if entry.get("model") == model and entry.get("model_version") == version:
            estimate, low, high, evidence = (entry.get(f) for f in fields)
            if estimate is None or low is None or high is None:
                return None
            return {"estimate": estimate, "ci_low": low, "ci_high": high, "evidence": evidence}
    return None


def alert_views(rows: Iterable[AlertRow], bodies: Mapping[tuple[str, str], Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every alarm state (raised first, whole-app boards first, latest first), with both versions' readings now."""
    ordered = sorted(
        rows, key=lambda r: (not r.is_raised, r.domain != "", -r.updated_at.timestamp(), r.app_id, r.domain, r.model)
    )
    views = []
    for row in ordered:
        body = bodies.get((row.app_id, row.domain))
        views.append(
            {
                "app_id": row.app_id,
                "domain": row.domain or None,
                "model": row.model,
                "previous_version": row.previous_version,
                "new_version": row.new_version,
                "metric": row.metric,
                "state": "raised" if row.is_raised else "cleared",
                "transitions": row.transitions,
                "updated_at": iso(row.updated_at),
                "previous": reading(body, row.model, row.previous_version, row.metric),
                "new": reading(body, row.model, row.new_version, row.metric),
            }
        )
    return views
