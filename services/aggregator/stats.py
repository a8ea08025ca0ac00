"""feedback-stats, pure: tumbling event-time windows per (app_id, model_version) and their messages.

What is counted, in the window of the event's own time (`occurred_at`):
- interactions: each new interaction, under its model_version;
- thumbs_up / thumbs_down / ratings (and rating_mean): each new end-user vote event (raw: a voter's
  repeats and quarantined votes included), under the model_version of the interaction it is about (a
  vote parked before its interaction is counted when it is applied);
- effective_thumbs_up / _down / effective_ratings (and effective_rating_mean): what the pair math
  counts, the latest vote per voter and answer, without quarantined votes and flagged voters' votes
  (vote_quality.py gives the changes: +1 when a vote starts to count, -1 when it stops, each in the
  window of the vote's own time), so a ballot stuffer shows as the gap between raw and effective;
- quarantined_votes: each new vote event marked quarantined (moving nothing);
- pairs_emitted / tasks_queued: each pair_id or task_id published for the first time, under the
  model_version of each real answer in it, in the window of the pair's newest evidence.

A window is final once the watermark passed `window_end + allowed lateness`. The watermark is the
newest event time seen, but never ahead of the wall clock (a producer's skewed clock cannot close
windows early). Counts reaching a window after it is final are dropped (and counted as late).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.events import FeedbackStats, RatingVote, ThumbVote, Vote

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAMESPACE = uuid.UUID("6f1c8a52-1f0e-4b8e-9a39-5e0b8f3c2d10")


def window_of(moment: datetime, length_s: float) -> tuple[datetime, datetime]:
    """The tumbling window [start, end) holding `moment`, aligned on the Unix epoch."""
    length = timedelta(seconds=length_s)
    start = _EPOCH + ((moment - _EPOCH) // length) * length
    return start, start + length


def is_closed(window_end: datetime, watermark: datetime, allowed_lateness_s: float) -> bool:
    return watermark >= window_end + timedelta(seconds=allowed_lateness_s)


def watermark_of(newest_event_at: datetime | None, now: datetime) -> datetime:
    """Event-time progress: the newest event seen, capped at the wall clock."""
    return min(newest_event_at, now) if newest_event_at is not None else _EPOCH


def stats_id(app_id: str, model_version: str, window_start: datetime) -> str:
    """The topic key of one window's stats."""
    payload = "\x1f".join((app_id, model_version, window_start.isoformat()))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


@dataclass(kw_only=True)
class StatsCounts:
    """Increments of one window (the columns of the stats table)."""

    interactions: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    ratings: int = 0
    rating_sum: int = 0
    effective_thumbs_up: int = 0
    effective_thumbs_down: int = 0
    effective_ratings: int = 0
    effective_rating_sum: int = 0
    quarantined_votes: int = 0
    pairs_emitted: int = 0
    tasks_queued: int = 0


@dataclass(frozen=True, order=True)
class WindowKey:
    app_id: str
    model_version: str
    window_start: datetime


@dataclass
class StatsDeltas:
    """Increments per window gathered while one batch is processed."""

    length_s: float
    counts: dict[WindowKey, StatsCounts] = field(default_factory=dict)
    newest_at: dict[WindowKey, datetime] = field(default_factory=dict)
    _window: tuple[datetime, datetime] | None = field(default=None, repr=False, compare=False)
    _keys: dict[tuple[str, str, datetime], WindowKey] = field(default_factory=dict, repr=False, compare=False)

    def _start(self, moment: datetime) -> datetime:
        """The start of `moment`'s window (a batch's events mostly fall in the window of the one before)."""
        window = self._window
        if window is None or not window[0] <= moment < window[1]:
            window = self._window = window_of(moment, self.length_s)
        return window[0]

    def add(self, app_id: str, model_version: str, moment: datetime, **increments: int) -> None:
        start = self._start(moment)
        key = self._keys.get((app_id, model_version, start))
        if key is None:
            key = self._keys[app_id, model_version, start] = WindowKey(app_id, model_version, start)
        counts = self.counts.get(key)
        if counts is None:
            counts = self.counts[key] = StatsCounts()
        for name, value in increments.items():
            setattr(counts, name, getattr(counts, name) + value)
        newest = self.newest_at.get(key)
        if newest is None or moment > newest:
            self.newest_at[key] = moment

    def add_vote(self, app_id: str, model_version: str, vote: Vote) -> None:
        """A new vote event (raw counts; quarantined ones counted apart too)."""
        if vote.quarantine_reason is not None:
            self.add(app_id, model_version, vote.occurred_at, quarantined_votes=1)
        if isinstance(vote, ThumbVote):
            self.add(app_id, model_version, vote.occurred_at, **{"thumbs_up" if vote.value > 0 else "thumbs_down": 1})
        elif isinstance(vote, RatingVote):
            self.add(app_id, model_version, vote.occurred_at, ratings=1, rating_sum=vote.value)

    def add_effective(self, app_id: str, model_version: str, vote: Vote, sign: int) -> None:
        """A thumb or rating that starts (+1) or stops (-1) counting, in the window of its own time."""
        if isinstance(vote, ThumbVote):
            name = "effective_thumbs_up" if vote.value > 0 else "effective_thumbs_down"
            self.add(app_id, model_version, vote.occurred_at, **{name: sign})
        elif isinstance(vote, RatingVote):
            self.add(
                app_id, model_version, vote.occurred_at, effective_ratings=sign, effective_rating_sum=sign * vote.value
            )

    def rows(self) -> list[tuple[WindowKey, datetime, StatsCounts, datetime]]:
        """(key, window_end, counts, newest event) sorted by key, the lock order of the stats rows."""
        length = timedelta(seconds=self.length_s)
        return [(k, k.window_start + length, self.counts[k], self.newest_at[k]) for k in sorted(self.counts)]


def columns(counts: StatsCounts) -> list[int]:
    return [getattr(counts, f.name) for f in fields(StatsCounts)]


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def stats_message(row: Mapping[str, Any], *, is_final: bool, now: datetime) -> FeedbackStats:
    """One window's FeedbackStats; its event_id is the same for the same counts (replays repeat it)."""
    up, down, ratings = row["thumbs_up"], row["thumbs_down"], row["ratings"]
    # Never below 0: a window open when effective counting began may lose a vote it never gained.
    effective_ratings = max(0, row["effective_ratings"])
    sid = stats_id(row["app_id"], row["model_version"], row["window_start"])
    counts = [row[f.name] for f in fields(StatsCounts)]
    return FeedbackStats(
        event_id=uuid.uuid5(_NAMESPACE, f"{sid}:{counts}:{is_final}"),
        stats_id=sid,
        app_id=row["app_id"],
        model_version=row["model_version"],
        window_start=row["window_start"],
        window_end=row["window_end"],
        interactions=row["interactions"],
        thumbs_up=up,
        thumbs_down=down,
        ratings=ratings,
        rating_mean=round(row["rating_sum"] / ratings, 6) if ratings else None,
        thumbs_up_rate=_rate(up, up + down),
        thumbs_down_rate=_rate(down, up + down),
        effective_thumbs_up=max(0, row["effective_thumbs_up"]),
        effective_thumbs_down=max(0, row["effective_thumbs_down"]),
        effective_ratings=effective_ratings,
        effective_rating_mean=(
            round(row["effective_rating_sum"] / effective_ratings, 6) if effective_ratings else None
        ),
        quarantined_votes=row["quarantined_votes"],
        pairs_emitted=row["pairs_emitted"],
        tasks_queued=row["tasks_queued"],
        is_final=is_final,
        updated_at=now,
    )


def model_versions(candidates: Iterable[Any], synthetic_models: Iterable[str]) -> set[str]:
    """Model versions of the real answers among candidates (edits and rewrites are no model's)."""
    skip = set(synthetic_models)
    return {c.model_version for c in candidates if c.model not in skip}
