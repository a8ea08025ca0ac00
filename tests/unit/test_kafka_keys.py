"""The batched publish's per-batch key work equals aiokafka's per-record partitioner and FastStream's ids."""

from __future__ import annotations

import uuid

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from shared.kafka_keys import VECTOR_MIN_KEYS, correlation_ids, murmur2, murmur2_many, partitions_of

PARTITIONER = DefaultPartitioner()


@given(st.binary(max_size=200))
def test_murmur2_equals_aiokafka(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


@given(st.integers(min_value=0, max_value=70), st.data())
def test_many_keys_of_one_length_are_hashed_as_aiokafka_does(length: int, data: st.DataObject) -> None:
    # Enough keys of one length for the numpy path, and a few of other lengths for the loop.
    keys = data.draw(st.lists(st.binary(min_size=length, max_size=length), min_size=VECTOR_MIN_KEYS, max_size=80))
    keys += data.draw(st.lists(st.binary(max_size=40), max_size=5))
    assert murmur2_many(keys) == [aiokafka_murmur2(k) for k in keys]


def test_prompt_keys_of_a_flush_land_where_aiokafka_puts_them() -> None:
    keys = [uuid.uuid4().hex.encode() for _ in range(300)]  # 32 hex characters, as a prompt key
    for partitions in ([0], [0, 1, 2], list(range(6)), [0, 2, 5, 7]):
        expected = [PARTITIONER(k, partitions, partitions) for k in keys]
        assert partitions_of(keys, partitions) == expected
        assert partitions_of(keys[:3], partitions) == expected[:3]


def test_records_without_a_key_get_one_of_the_partitions() -> None:
    chosen = partitions_of([None] * 200 + [b"k"], [0, 1, 2])
    assert set(chosen[:200]) == {0, 1, 2}
    assert chosen[200] == PARTITIONER(b"k", [0, 1, 2], [0, 1, 2])


def test_correlation_ids_are_distinct_version_4_uuids_as_faststream_writes_them() -> None:
    ids = correlation_ids(5000)
    assert len(set(ids)) == 5000
    for value in ids:
        parsed = uuid.UUID(value.decode())
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed).encode() == value
    assert correlation_ids(0) == []
