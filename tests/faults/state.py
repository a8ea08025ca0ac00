"""The final live state of a run, read from the output topics, and its comparison with a reference run.

The local broker never compacts, so readers apply latest-per-key themselves: a pair_id whose
latest value is null is a tombstone, a task_id whose latest value is null was withdrawn, and the
stats of a window are its latest value. What a run publishes on the way depends on batch
boundaries (crashes move them); this final state depends only on the set of events.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared import topics
from tests.support.kafka import TopicReader

OUTPUT_TOPICS = (topics.PREFERENCE_PAIRS, topics.ANNOTATION_REQUESTS, topics.FEEDBACK_STATS)
CANONICAL_TOPICS = (topics.INTERACTIONS, topics.VOTES)
StatsKey = tuple[str, str]  # (app_id, model_version)
COMPARED_STATS = ("interactions", "thumbs_up", "thumbs_down")


@dataclass(frozen=True)
class FinalState:
    pairs: dict[str, tuple[str, str, str]]  # pair_id -> (chosen, rejected, method)
    tombstones: frozenset[str]
    tasks: frozenset[str]
    stats: dict[StatsKey, tuple[int, int, int]]  # interactions, thumbs_up, thumbs_down
    published: frozenset[str] = frozenset()  # every pair_id this run published (live, retracted, transient)
    pairs_emitted: int = 0
    tasks_queued: int = 0
    redelivered: int = 0  # canonical records whose event_id was already on the topic (at-least-once)

    def key(self) -> tuple[Any, ...]:
        """What must be equal between runs (for stability checks)."""
        return (self.pairs, self.tombstones, self.tasks, self.stats)

    def summary(self) -> dict[str, int]:
        return {
            "pairs": len(self.pairs),
            "tombstones": len(self.tombstones),
            "tasks": len(self.tasks),
            "pairs_emitted": self.pairs_emitted,
            "tasks_queued": self.tasks_queued,
        }


def _latest(records: list[Any]) -> dict[bytes, bytes | None]:
    # One key lives on one partition and readers keep each partition's order: the last one wins.
    latest: dict[bytes, bytes | None] = {}
    for record in records:
        latest[record.key] = record.value
    return latest


def _stats(records: list[Any]) -> tuple[dict[StatsKey, tuple[int, int, int]], int, int]:
    totals: dict[StatsKey, Counter[str]] = {}
    for value in _latest(records).values():
        if value is None:
            continue
        window = orjson.loads(value)
        counts = totals.setdefault((window["app_id"], window["model_version"]), Counter())
        for name in (*COMPARED_STATS, "pairs_emitted", "tasks_queued"):
            counts[name] += window[name]
    compared = {k: tuple(c[name] for name in COMPARED_STATS) for k, c in totals.items()}
    return compared, sum(c["pairs_emitted"] for c in totals.values()), sum(c["tasks_queued"] for c in totals.values())


def _redelivered(records: list[Any]) -> int:
    seen: set[bytes] = set()
    repeats = 0
    for record in records:
        event_id = orjson.loads(record.value)["event_id"] if record.value is not None else None
        if event_id in seen:
            repeats += 1
        seen.add(event_id)
    return repeats


def final_state(readers: dict[str, TopicReader]) -> FinalState:
    pairs, tombstones = {}, set()
    for key, value in _latest(readers[topics.PREFERENCE_PAIRS].records).items():
        if value is None:
            tombstones.add(key.decode())
            continue
        pair = orjson.loads(value)
        pairs[key.decode()] = (pair["chosen"]["interaction_id"], pair["rejected"]["interaction_id"], pair["method"])
    latest_tasks = _latest(readers[topics.ANNOTATION_REQUESTS].records)
    stats, pairs_emitted, tasks_queued = _stats(readers[topics.FEEDBACK_STATS].records)
    redelivered = sum(_redelivered(readers[name].records) for name in CANONICAL_TOPICS if name in readers)
    return FinalState(
        pairs=pairs,
        tombstones=frozenset(tombstones),
        tasks=frozenset(k.decode() for k, v in latest_tasks.items() if v is not None),
        stats=stats,
        published=frozenset(pairs) | tombstones,
        pairs_emitted=pairs_emitted,
        tasks_queued=tasks_queued,
        redelivered=redelivered,
    )


@dataclass
class Comparison:
    """How a faulted run's final state differs from the reference: each list names what differs."""

    missing_pairs: list[str] = field(default_factory=list)  # live in the reference, absent or different here
    extra_pairs: list[str] = field(default_factory=list)
    # Retracted in the reference, published here and not retracted. (A reference tombstone this run never
    # published at all was a transient of the reference's own batch boundaries: nobody saw it here.)
    missing_tombstones: list[str] = field(default_factory=list)
    transient_tombstones: list[str] = field(default_factory=list)  # never live in the reference: tolerated
    missing_tasks: list[str] = field(default_factory=list)
    extra_tasks: list[str] = field(default_factory=list)
    stats_deficit: dict[str, int] = field(default_factory=dict)
    stats_surplus: dict[str, int] = field(default_factory=dict)
    lost_events: list[str] = field(default_factory=list)  # acknowledged to a client, never taken in

    @property
    def lost(self) -> int:
        return (
            len(self.missing_pairs)
            + len(self.missing_tombstones)
            + len(self.missing_tasks)
            + sum(self.stats_deficit.values())
            + len(self.lost_events)
        )

    @property
    def duplicated(self) -> int:
        return len(self.extra_pairs) + len(self.extra_tasks) + sum(self.stats_surplus.values())

    @property
    def is_equal(self) -> bool:
        return self.lost == 0 and self.duplicated == 0

    def explain(self) -> str:
        parts = {k: v for k, v in self.__dict__.items() if v and k != "transient_tombstones"}
        return "; ".join(f"{k}={sorted(v)[:5] if isinstance(v, list) else v} ({len(v)})" for k, v in parts.items())


def compare(reference: FinalState, run: FinalState, lost_events: set[str] = frozenset()) -> Comparison:  # type: ignore[assignment]
    result = Comparison(lost_events=sorted(lost_events))
    result.missing_pairs = sorted(p for p, v in reference.pairs.items() if run.pairs.get(p) != v)
    result.missing_tombstones = sorted((reference.tombstones & run.published) - run.tombstones)
    result.extra_pairs = sorted(set(run.pairs) - set(reference.pairs) - set(result.missing_tombstones))
    result.transient_tombstones = sorted(run.tombstones - reference.tombstones - set(reference.pairs))
    result.missing_tasks = sorted(reference.tasks - run.tasks)
    result.extra_tasks = sorted(run.tasks - reference.tasks)
    for key in reference.stats.keys() | run.stats.keys():
        want, got = reference.stats.get(key, (0, 0, 0)), run.stats.get(key, (0, 0, 0))
        for name, w, g in zip(COMPARED_STATS, want, got, strict=True):
            label = f"{key[0]}/{key[1]}/{name}"
            if g < w:
                result.stats_deficit[label] = w - g
            elif g > w:
                result.stats_surplus[label] = g - w
    return result
