"""Per-record work of a batched publish done per batch: partitions of keys, and correlation ids.

`shared.kafka_batches` puts each record on the partition aiokafka's default partitioner gives its key
(Kafka's murmur2, as the Java client), so one key keeps its partition whichever path published it.
aiokafka's murmur2 is pure Python, byte by byte (~11 µs for a 32-byte prompt key: the issue 15
profile of 250-item batches found it at 3-4% of ingest's CPU); here the same hash reads 4-byte
words at once, and a flush's keys of one length are hashed together with numpy's uint32 arithmetic
(which wraps mod 2**32 as the Java client's int does). Records without a key get a random partition,
as aiokafka gives them. FastStream's publish gives each record a `correlation_id` header,
`str(uuid4())`; here a flush's ids come from one `os.urandom` call, formatted as version 4 UUIDs.
"""

from __future__ import annotations

import os
import random
import struct
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_M32 = np.uint32(_M)
# Below this many keys of one length, numpy's per-call overhead costs more than the loop it replaces.
VECTOR_MIN_KEYS = 32
_VARIANT = "89ab"


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of `data` (equal to aiokafka.partitioner.murmur2), as an unsigned 32-bit int."""
    length = len(data)
    words = length // 4
    h = (_SEED ^ length) & _MASK
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    tail = words * 4
    extra = length - tail
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h = ((h ^ data[tail]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def murmur2_same_length(keys: Sequence[bytes], length: int) -> list[int]:
    """`murmur2` of each key, every key `length` bytes long, computed as uint32 columns."""
    data = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), length)
    words = length // 4
    h = np.full(len(keys), (_SEED ^ length) & _MASK, dtype=np.uint32)
    if words:
        columns = np.ascontiguousarray(data[:, : words * 4]).view("<u4")
        for i in range(words):
            k = columns[:, i] * _M32
            k ^= k >> np.uint32(24)
            k *= _M32
            h *= _M32
            h ^= k
    tail = words * 4
    extra = length - tail
    if extra >= 3:
        h ^= data[:, tail + 2].astype(np.uint32) << np.uint32(16)
    if extra >= 2:
        h ^= data[:, tail + 1].astype(np.uint32) << np.uint32(8)
    if extra >= 1:
        h ^= data[:, tail].astype(np.uint32)
        h *= _M32
    h ^= h >> np.uint32(13)
    h *= _M32
    h ^= h >> np.uint32(15)
    return [int(value) for value in h.tolist()]


def murmur2_many(keys: Sequence[bytes]) -> list[int]:
    """`murmur2` of each key, in order: keys of one length hashed together when there are enough of them."""
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, key in enumerate(keys):
        by_length[len(key)].append(index)
    hashes = [0] * len(keys)
    for length, indexes in by_length.items():
        group = [keys[i] for i in indexes]
        values = murmur2_same_length(group, length) if len(group) >= VECTOR_MIN_KEYS else map(murmur2, group)
        for index, value in zip(indexes, values, strict=True):
            hashes[index] = value
    return hashes


def partitions_of(keys: Sequence[bytes | None], partitions: Sequence[int]) -> list[int]:
    """The partition aiokafka's default partitioner gives each key among `partitions` (sorted); no key: random."""
    keyed = [i for i, key in enumerate(keys) if key is not None]
    hashes = murmur2_many([keys[i] for i in keyed])  # type: ignore[misc]
    chosen = [random.choice(partitions) if key is None else 0 for key in keys]
    for index, value in zip(keyed, hashes, strict=True):
        chosen[index] = partitions[(value & 0x7FFFFFFF) % len(partitions)]
    return chosen


def correlation_ids(count: int) -> list[bytes]:
    """`count` random version 4 UUIDs as FastStream writes a correlation id (`str(uuid4())`), encoded."""
    raw = os.urandom(16 * count).hex()
    ids = []
    for start in range(0, 32 * count, 32):
        h = raw[start : start + 32]
        variant = _VARIANT[int(h[16], 16) & 3]
        ids.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}".encode())
    return ids
