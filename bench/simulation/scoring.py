"""Scoring what the pipeline concluded against the simulator's ground truth.

`preference-pairs` is compacted in production, but the local broker never compacts: a reader keeps the
latest value per key itself, and a null value (tombstone) retracts the pair. A pair is *scored* when its
two answers have a ground truth (one good, one bad, same group): it agrees when the chosen one is the
good one. Pairs between two good or two bad answers are counted as unscored; pairs of answers the
simulation does not know (other traffic on the topic, edits, expert rewrites) as foreign.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from scipy.stats import kendalltau

from bench.simulation.scenario import Truth
from shared.topics import PREFERENCE_PAIRS, topic


@dataclass(frozen=True)
class MethodScore:
    published: int = 0
    scored: int = 0
    agree: int = 0

    @property
    def accuracy(self) -> float | None:
        """Share of scored pairs whose chosen answer is the truly better one."""
        return self.agree / self.scored if self.scored else None


@dataclass(frozen=True)
class PairScore:
    by_method: dict[str, MethodScore] = field(default_factory=dict)
    unscored: int = 0
    foreign: int = 0

    @property
    def overall(self) -> MethodScore:
        return MethodScore(
            sum(m.published for m in self.by_method.values()),
            sum(m.scored for m in self.by_method.values()),
            sum(m.agree for m in self.by_method.values()),
        )

    def as_dict(self) -> dict[str, Any]:
        methods = {name: {**vars(m), "accuracy": m.accuracy} for name, m in sorted(self.by_method.items())}
        overall = self.overall
        return {
            "overall": {**vars(overall), "accuracy": overall.accuracy},
            "by_method": methods,
            "unscored": self.unscored,
            "foreign": self.foreign,
        }


def score_pairs(pairs: Mapping[str, Mapping[str, Any]], truth: Truth) -> PairScore:
    """Score live pairs (pair_id -> PreferencePair as JSON) against the truth, split by method."""
    counts: dict[str, list[int]] = {}
    unscored = foreign = 0
    for pair in pairs.values():
        chosen, rejected = pair["chosen"]["interaction_id"], pair["rejected"]["interaction_id"]
        method = counts.setdefault(pair["method"], [0, 0, 0])
        method[0] += 1
        if chosen not in truth.answers or rejected not in truth.answers or chosen == rejected:
            foreign += 1
            continue
        better = truth.better(chosen, rejected)
        if better is None:
            unscored += 1
            continue
        method[1] += 1
        method[2] += better == chosen
    return PairScore({name: MethodScore(*c) for name, c in counts.items()}, unscored, foreign)


def latest_per_key(records: Iterable[tuple[bytes | None, bytes | None]]) -> dict[str, dict[str, Any]]:
    """Fold (key, value) records in topic order into the live pairs: latest value per key, null retracts."""
    live: dict[str, dict[str, Any]] = {}
    for key, value in records:
        if key is None:
            continue
        name = key.decode()
        if value is None:
            live.pop(name, None)
        else:
            live[name] = json.loads(value)
    return live


async def read_pairs(bootstrap: str, prefix: str, idle_s: float = 1.0, timeout_s: float = 60.0) -> dict[str, dict]:
    """Every live pair on `preference-pairs`: read from the beginning until nothing new for `idle_s`.

    Not end_offsets(): Tansu reports it wrong after multi-record batches.
    """
    name = topic(prefix, PREFERENCE_PAIRS)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    records: list[tuple[bytes | None, bytes | None]] = []
    try:
        partitions = await _partitions(consumer, name)
        consumer.assign([TopicPartition(name, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        loop = asyncio.get_running_loop()
        deadline, quiet_since = loop.time() + timeout_s, loop.time()
        while loop.time() < deadline and loop.time() - quiet_since < idle_s:
            batches = await consumer.getmany(timeout_ms=100)
            for batch in batches.values():
                records.extend((r.key, r.value) for r in batch)
            if batches:
                quiet_since = loop.time()
    finally:
        await consumer.stop()
    # Keys of one pair share a partition, so per-partition order is enough for latest-per-key.
    return latest_per_key(records)


async def _partitions(consumer: AIOKafkaConsumer, name: str, attempts: int = 100) -> set[int]:
    for _ in range(attempts):
        partitions = consumer.partitions_for_topic(name)
        if partitions:
            return partitions
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.05)
    raise RuntimeError(f"topic {name} has no partitions (is the stack running with this prefix?)")


def ranking_agreement(truth: Truth, observed: Sequence[str]) -> float:
    """Kendall's tau between the true version ranking and an observed one (1: same order, -1: reversed)."""
    true_rank = {version: rank for rank, version in enumerate(truth.version_ranking())}
    common = [version for version in observed if version in true_rank]
    if len(common) < 2:
        return float("nan")
    statistic = kendalltau([true_rank[v] for v in common], list(range(len(common)))).statistic
    return float(statistic)
