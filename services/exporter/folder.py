"""Writing an export folder, all or nothing: data files per split, then the dataset card, then manifest.json.

Order of effects: everything is written into a hidden folder beside the target
(`.NAME.partial-<random>`), the manifest last; only a complete folder is renamed to the target
(one rename). An export that fails or is interrupted (an error, a lost connection, Ctrl-C) removes
its temporary folder; one killed outright leaves only that `.partial` folder, never a folder at the
target that looks complete. With `overwrite`, an existing target is moved aside just before the
rename and deleted after it.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from services.exporter.card import DATA_DIR, data_file, dataset_card, manifest
from services.exporter.client import EXIT_BAD_INPUT, ExporterError
from shared.export_files import FileWriter
from shared.exports import SPLIT_COLUMN


@dataclass
class SplitFiles:
    """One file per split, opened when its first row comes; rows arrive with a `split` column, written without."""

    folder: Path
    fmt: str
    schema: pa.Schema
    writers: dict[str, FileWriter] = field(default_factory=dict)

    def write(self, batch: pa.RecordBatch) -> None:
        for split in ("train", "test"):
            part = batch.filter(pc.equal(batch.column(SPLIT_COLUMN), split)).drop_columns([SPLIT_COLUMN])
            if part.num_rows:
                self._writer(split).write(part)

    def _writer(self, split: str) -> FileWriter:
        if split not in self.writers:
            path = self.folder / data_file(split, self.fmt)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writers[split] = FileWriter(path, self.fmt, self.schema)
        return self.writers[split]

    def close(self) -> dict[str, int]:
        """Finish every file; rows per split."""
        for writer in self.writers.values():
            writer.close()
        return {split: writer.rows for split, writer in self.writers.items()}

    def sizes(self) -> dict[str, int]:
        """The in-memory Arrow size of each split (what `datasets` records as a split's num_bytes)."""
        return {split: writer.arrow_bytes for split, writer in self.writers.items()}


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse a target that exists with content unless `overwrite` (exit code 2, naming --out)."""
    if out.exists() and not out.is_dir():
        raise ExporterError(f"--out: {out} exists and is not a folder", EXIT_BAD_INPUT)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExporterError(f"--out: {out} exists and is not empty (pass --overwrite to replace it)", EXIT_BAD_INPUT)


def _install(partial: Path, out: Path, overwrite: bool) -> None:
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ExporterError(f"--out: {out} appeared while exporting", EXIT_BAD_INPUT)
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(out, old)
        os.rename(partial, out)
        shutil.rmtree(old, ignore_errors=True)
        return
    # rename(2) replaces a missing or empty folder in one step.
    os.replace(partial, out)


@dataclass(frozen=True)
class FolderSpec:
    """What the folder is: its kind and format, the stream's schema (with split), and its snapshot and request."""

    kind: str
    fmt: str
    schema: pa.Schema
    created_at: str
    snapshot: Mapping[str, Any]
    request: Mapping[str, Any]


def write_folder(
    out: Path,
    spec: FolderSpec,
    batches: Iterable[pa.RecordBatch],
    *,
    overwrite: bool = False,
    on_rows: Callable[[int], None] = lambda _: None,
) -> dict[str, Any]:
    """Write the export folder at `out` from batches carrying a `split` column; return its manifest."""
    check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:8]}")
    partial.mkdir()
    try:
        data_schema = spec.schema.remove(spec.schema.get_field_index(SPLIT_COLUMN))
        files = SplitFiles(partial, spec.fmt, data_schema)
        try:
            for batch in batches:
                files.write(batch)
                on_rows(batch.num_rows)
        finally:
            counts = files.close()
        if not sum(counts.values()):
            raise ExporterError("no rows came back: nothing matches the filters")
        info = manifest(
            kind=spec.kind,
            fmt=spec.fmt,
            created_at=spec.created_at,
            snapshot=spec.snapshot,
            request=spec.request,
            counts=counts,
            columns=data_schema.names,
        )
        card = dataset_card(spec.kind, spec.fmt, data_schema, info, files.sizes())
        (partial / "README.md").write_text(card)
        (partial / "manifest.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
        _install(partial, out, overwrite)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return info


__all__ = ["DATA_DIR", "FolderSpec", "SplitFiles", "check_target", "write_folder"]
