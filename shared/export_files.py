"""Export encoders: rows -> Arrow record batches -> Parquet, JSONL or Arrow IPC bytes, streamed chunk by chunk.

Every row goes through `rows_to_batch` with the kind's explicit schema, so a column has one type
across rows whatever the source (a confidence stored as 1 is 1.0; a count is an int64), in every
format: JSONL lines are written from the typed batch. An encoder takes a batch or a table of batches
at a time and returns the bytes it completed (a Parquet row group, IPC record batches, JSONL lines),
so a caller streams them to an HTTP response or a file with memory flat in the row count.
Timestamps are UTC with their offset: timestamp[us, tz=UTC] in Parquet / Arrow, ISO 8601 strings
ending in +00:00 in JSONL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_GROUP_ROWS = 4_096
JSONL_ROWS_AT_ONCE = 256


def _array(values: Sequence[Any], type_: pa.DataType) -> pa.Array:
    """An Arrow array of `type_` from Python values, building nested types from flat children (fast)."""
    if pa.types.is_list(type_):
        offsets = [0]
        flat: list[Any] = []
        for value in values:
            flat.extend(value)
            offsets.append(len(flat))
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), _array(flat, type_.value_type), type=type_)
    if pa.types.is_struct(type_):
        children = [_array([value[field.name] for value in values], field.type) for field in type_]
        return pa.StructArray.from_arrays(children, fields=list(type_))
    return pa.array(values, type=type_)


def rows_to_batch(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.RecordBatch:
    """A record batch of exactly `schema` from row dicts (a missing key is an error, extra keys are ignored)."""
    arrays = [_array([row[field.name] for row in rows], field.type) for field in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class _ChunkSink:
    """A write-only file that keeps what was written until `take()`: pyarrow writes, we stream it out."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


Batches = pa.RecordBatch | pa.Table


def _table(data: Batches) -> pa.Table:
    return pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data


class Encoder(Protocol):
    def write(self, data: Batches) -> bytes: ...

    def finish(self) -> bytes: ...


class ParquetEncoder:
    """Parquet bytes, one row group per `write`; the footer comes with `finish()`."""

    def __init__(self, schema: pa.Schema) -> None:
        self._sink = _ChunkSink()
        self._writer = pq.ParquetWriter(self._sink, schema, compression="snappy")

    def write(self, data: Batches) -> bytes:
        table = _table(data)
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        return self._sink.take()

    def finish(self) -> bytes:
        self._writer.close()
        return self._sink.take()


class ArrowStreamEncoder:
    """An Arrow IPC stream: readable batch by batch while it arrives (the exporter CLI's transport)."""

    def __init__(self, schema: pa.Schema) -> None:
        self._sink = _ChunkSink()
        self._writer = pa.ipc.new_stream(self._sink, schema)

    def write(self, data: Batches) -> bytes:
        self._writer.write_table(_table(data))
        return self._sink.take()

    def finish(self) -> bytes:
        self._writer.close()
        return self._sink.take()


class JsonlEncoder:
    """One JSON object per line, from the typed batch (so JSONL has the same types as Parquet)."""

    def __init__(self, schema: pa.Schema) -> None:
        self._schema = schema

    def write(self, data: Batches) -> bytes:
        # A few hundred rows at a time as Python objects, so that a big row group never is all at once.
        lines = []
        for batch in _table(data).to_batches(max_chunksize=JSONL_ROWS_AT_ONCE):
            lines += [orjson.dumps(row) + b"\n" for row in batch.to_pylist()]
        return b"".join(lines)

    def finish(self) -> bytes:
        return b""


def encoder_for(fmt: str, schema: pa.Schema) -> Encoder:
    """The encoder of an export format (parquet, jsonl, arrow)."""
    encoders = {"parquet": ParquetEncoder, "jsonl": JsonlEncoder, "arrow": ArrowStreamEncoder}
    return encoders[fmt](schema)


class FileWriter:
    """Batches of one schema into one file of a format, through the same encoders as the HTTP route.

    Batches are gathered up to `group_rows` rows before they are encoded (one Parquet row group),
    so that small batches from a stream do not make a file of tiny row groups.
    """

    def __init__(self, path: Path, fmt: str, schema: pa.Schema, group_rows: int = DEFAULT_GROUP_ROWS) -> None:
        self.path = path
        self.rows = 0
        self.arrow_bytes = 0
        self._file: BinaryIO = path.open("wb")
        self._encoder = encoder_for(fmt, schema)
        self._group_rows = group_rows
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self._pending.append(batch)
            self._pending_rows += batch.num_rows
            self.rows += batch.num_rows
            self.arrow_bytes += batch.nbytes
        if self._pending_rows >= self._group_rows:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._file.write(self._encoder.write(pa.Table.from_batches(self._pending)))
            self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        try:
            self._flush()
            self._file.write(self._encoder.finish())
        finally:
            self._file.close()
