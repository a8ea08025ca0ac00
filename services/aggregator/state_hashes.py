"""The state hashes of pairs and tasks, pure: what a published output is stored under, so a replay publishes nothing.

A pair's hash is sha256 of `json.dumps` (sorted keys, compact, not ASCII-escaped) of the PreferencePair as
`model_dump(mode="json")` writes it, without `event_id` and `updated_at`; a task's is sha256 of
`[kind, candidates, reason, evidence, occurred_at, domain, priority]` written so (`default=str`): every
stored hash was written so, and a hash that changed would publish every output once more.

Every batch that touches a hot group hashes all of its pairs and tasks again to find the few that changed.
So both are cached on their inputs, where inputs that compare equal write the same JSON: strings (equal
strings hold the same text), ints that are ints (True == 1 but writes `true`), a float by its type and
repr (-0.0 == 0.0 but writes `-0.0`), a datetime with its UTC offset (equal instants in two offsets write
two texts). Inputs of other types are hashed uncached. A pair whose hash is cached and is the stored one
is not built as a PreferencePair at all. tests/unit/aggregator/test_state_hashes.py holds the cached
hashes to the plain ones over arbitrary inputs, including inputs that compare equal and write apart.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime

import orjson

from services.aggregator.pairs import Group, PairSpec, TaskSpec
from shared.events import PreferencePair

# The state hashes' JSON: what json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
# default=str) writes, with one encoder built once instead of one per call.
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode
# A key holds its texts (prompt, answers): 16k keys of ~2 kB ~ 32 MB at most for each cache.
CACHE_SIZE = 1 << 14
_Fields = tuple[str, str, str, str]  # a candidate's interaction_id, content, model, model_version


def plain_hash(payload: object) -> str:
    return hashlib.sha256(_JSON(payload).encode("utf-8")).hexdigest()[:32]


def pair_hash(pair: PreferencePair) -> str:
    """A pair's state hash, from the model (uncached: `PairHashes` skips building the model when it can)."""
    return plain_hash(pair.model_dump(mode="json", exclude={"event_id", "updated_at"}))


def _is_text(value: object) -> bool:
    return isinstance(value, str)


def _exact_counts(evidence: Mapping[str, int]) -> tuple[tuple[str, int], ...] | None:
    if all(type(k) is str and type(n) is int for k, n in evidence.items()):
        return tuple(evidence.items())
    return None


def _moment(value: object) -> tuple[datetime, object] | None:
    if type(value) is not datetime:
        return None
    return value, value.utcoffset()


def _candidate_fields(candidate: object) -> _Fields:
    return (candidate.interaction_id, candidate.content, candidate.model, candidate.model_version)  # type: ignore[attr-defined]


def pair_hash_key(group: Group, spec: PairSpec, domain: str) -> tuple | None:
    """What `_pair_message` builds a pair from, such that equal keys dump equal JSON; None if it may not."""
    confidence, evidence, moment = spec.confidence, _exact_counts(spec.evidence), _moment(spec.occurred_at)
    if type(confidence) not in (float, int) or evidence is None or moment is None:
        return None
    prompt = tuple((m.role, m.content) for m in group.prompt)
    chosen, rejected = _candidate_fields(spec.chosen), _candidate_fields(spec.rejected)
    texts = (group.app_id, spec.pair_id, group.prompt_key, spec.method, domain, *chosen, *rejected)
    if not all(map(_is_text, texts)) or not all(_is_text(r) and _is_text(c) for r, c in prompt):
        return None
    return (*texts, prompt, type(confidence), repr(confidence), evidence, moment)


class PairHashes:
    """Pair hashes by `pair_hash_key`, kept for the pairs built (oldest dropped first beyond `CACHE_SIZE`)."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._hashes: dict[tuple, str] = {}

    def get(self, key: tuple | None) -> str | None:
        return None if key is None else self._hashes.get(key)

    def put(self, key: tuple | None, state_hash: str) -> None:
        if key is None:
            return
        if len(self._hashes) >= self.size:
            del self._hashes[next(iter(self._hashes))]
        self._hashes[key] = state_hash

    def clear(self) -> None:
        self._hashes.clear()


PAIR_HASHES = PairHashes()


def task_hash(spec: TaskSpec, domain: str, priority: float) -> str:
    """`plain_hash` of `[kind, candidates, reason, evidence, occurred_at, domain, priority]`, cached on its inputs."""
    key = task_hash_key(spec, domain, priority)
    if key is not None:
        return _cached_task_hash(key)
    candidates = [_candidate_fields(a) for a in spec.candidates]
    return plain_task_hash(spec.kind, candidates, spec.reason, spec.evidence, spec.occurred_at, domain, priority)


def task_hash_key(spec: TaskSpec, domain: str, priority: float) -> tuple | None:
    """The inputs, such that equal keys write equal JSON; None when they may not (then not cached)."""
    evidence, moment = _exact_counts(spec.evidence), _moment(spec.occurred_at)
    if type(priority) is not float or not math.isfinite(priority) or evidence is None or moment is None:
        return None
    candidates = tuple(_candidate_fields(a) for a in spec.candidates)
    if not all(_is_text(f) for fields in candidates for f in fields):
        return None
    if not (_is_text(spec.kind) and _is_text(spec.reason) and _is_text(domain)):
        return None
    return (spec.kind, candidates, spec.reason, evidence, moment, domain, repr(priority))


@functools.lru_cache(maxsize=CACHE_SIZE)
def _cached_task_hash(key: tuple) -> str:
    kind, candidates, reason, evidence, (occurred_at, _), domain, priority = key
    return plain_task_hash(kind, candidates, reason, dict(evidence), occurred_at, domain, float(priority))


def clear_caches() -> None:
    """Forget every cached hash (tests: the plain computation)."""
    _cached_task_hash.cache_clear()
    PAIR_HASHES.clear()


def plain_task_hash(
    kind: str,
    candidates: Sequence[_Fields],
    reason: str,
    evidence: Mapping[str, int],
    occurred_at: datetime,
    domain: str,
    priority: float,
) -> str:
    """`task_hash` uncached. Written by orjson when it writes what json.dumps writes: strings, ints of 64 bits,
    and a float whose repr has no exponent (orjson writes 9.99e-05 as 0.0000999); `occurred_at` as
    `default=str` writes it. Else, or if orjson refuses a string, json.dumps.
    """
    if _orjson_writes_alike(priority, evidence):
        try:
            fast = [kind, candidates, reason, evidence, str(occurred_at), domain, priority]
            return hashlib.sha256(orjson.dumps(fast, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
        except orjson.JSONEncodeError:  # a string that is not valid UTF-8 (a lone surrogate): as json.dumps does
            pass
    return plain_hash([kind, candidates, reason, evidence, occurred_at, domain, priority])


def _orjson_writes_alike(priority: float, evidence: Mapping[str, int]) -> bool:
    if type(priority) is not float or not math.isfinite(priority) or "e" in repr(priority):
        return False
    return all(type(n) is int and -(2**63) <= n < 2**63 for n in evidence.values())
