"""`python -m services.exporter KIND --out DIR [--format parquet|jsonl] [filters]`: one export folder.

The arguments are checked here first, with the same rules as the route (shared.exports): a bad one
exits 2 naming it, before anything is asked. Then one request to the aggregator (found from
--aggregator, EXPORTER_AGGREGATOR_URL, or `.run/stack.json`), read while it arrives and written
into the folder (services/exporter/folder.py). Progress goes to stderr when it is a terminal.
Exit codes: 0 written; 2 bad input; 1 anything else (nothing reachable, nothing matches, a failure).
"""

from __future__ import annotations

import argparse
import http.client
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from tqdm import tqdm

from services.exporter.client import EXIT_BAD_INPUT, ExporterError, ExportResponse, find_aggregator, open_export
from services.exporter.folder import FolderSpec, check_target, write_folder
from services.exporter.settings import ExporterSettings
from shared.errors import ContractError
from shared.exports import FORMATS_BY_KIND, KINDS, SCHEMA_VERSION, parse_request

# What reading a response body can raise when the connection drops or the bytes are cut short.
_STREAM_ERRORS = (OSError, http.client.HTTPException, pa.ArrowException)
_FILTER_FLAGS = ("app_id", "domain", "method", "model_version", "min_confidence", "since", "until", "test_size")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.exporter",
        description="Export the aggregator's live pairs as a training dataset folder (TRL / Hugging Face datasets).",
    )
    parser.add_argument("kind", metavar="KIND", choices=KINDS, help=f"one of {', '.join(KINDS)}")
    parser.add_argument("--out", required=True, type=Path, help="the folder to write (must not exist or be empty)")
    parser.add_argument("--format", choices=("parquet", "jsonl"), help="data file format (parquet; openai-dpo: jsonl)")
    parser.add_argument("--app-id", help="only this app")
    parser.add_argument("--domain", help="only this routed domain")
    parser.add_argument("--method", help="votes, comparison, edit, expert (kto also: approval)")
    parser.add_argument("--model-version", help="rows about this model version")
    parser.add_argument("--min-confidence", help="at least this confidence (0-1)")
    parser.add_argument("--since", help="updated at or after this ISO 8601 time (with offset) or date")
    parser.add_argument("--until", help="updated before this ISO 8601 time (with offset) or date")
    parser.add_argument("--test-size", help="share of prompt groups in the test split (0-1, default 0.1)")
    parser.add_argument("--aggregator", help="aggregator base URL (else EXPORTER_AGGREGATOR_URL, else the stack file)")
    parser.add_argument("--stack", type=Path, help="the stack file to read the aggregator from (.run/stack.json)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return parser


def _flag(loc: Sequence[object]) -> str:
    name = str(loc[-1]) if loc else "request"
    return "KIND" if name == "kind" else "--" + name.replace("_", "-")


def checked_params(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """(format, query parameters), validated as the route validates them. Raises ExporterError (exit 2)."""
    fmt = args.format or FORMATS_BY_KIND[args.kind][0]
    if fmt not in FORMATS_BY_KIND[args.kind]:
        allowed = ", ".join(FORMATS_BY_KIND[args.kind])
        raise ExporterError(f"--format: {args.kind} is exported as {allowed} only", EXIT_BAD_INPUT)
    params = {name: getattr(args, name) for name in _FILTER_FLAGS if getattr(args, name) is not None}
    try:
        parse_request(f"{args.kind}.arrow", params)
    except ContractError as error:
        message = "; ".join(f"{_flag(e['loc'])}: {e['msg']}" for e in error.errors)
        raise ExporterError(message, EXIT_BAD_INPUT) from None
    return fmt, params


def _reader(response: ExportResponse) -> pa.ipc.RecordBatchStreamReader:
    if response.schema_version != SCHEMA_VERSION:
        raise ExporterError(
            f"the aggregator writes export schema version {response.schema_version}, this exporter reads"
            f" {SCHEMA_VERSION}: use the exporter of the same release"
        )
    try:
        return pa.ipc.open_stream(response.body)
    except _STREAM_ERRORS as error:
        raise ExporterError(f"the export stream could not be read: {error!r}") from error


def _batches(reader: pa.ipc.RecordBatchStreamReader) -> Iterator[pa.RecordBatch]:
    try:
        yield from reader
    except _STREAM_ERRORS as error:
        raise ExporterError(f"the export stream broke off: {error!r}") from error


def run(args: argparse.Namespace, settings: ExporterSettings) -> dict:
    """Check the arguments, ask the aggregator once, write the folder; return its manifest."""
    fmt, params = checked_params(args)
    check_target(args.out, args.overwrite)
    base_url, _ = find_aggregator(args.aggregator, settings.aggregator_url, args.stack or settings.stack_file)
    response = open_export(base_url, args.kind, params, settings.timeout_s)
    progress = tqdm(desc=f"{args.kind} rows", unit=" rows", disable=not sys.stderr.isatty(), file=sys.stderr)
    try:
        reader = _reader(response)
        spec = FolderSpec(
            kind=args.kind,
            fmt=fmt,
            schema=reader.schema,
            created_at=datetime.now(UTC).isoformat(),
            snapshot={"taken_at": response.snapshot_at, "pg_snapshot": response.snapshot, "aggregator": base_url},
            request=response.request,
        )
        return write_folder(args.out, spec, _batches(reader), overwrite=args.overwrite, on_rows=progress.update)
    finally:
        progress.close()
        response.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        info = run(args, ExporterSettings())
    except ExporterError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    counts = info["counts"][args.kind]
    print(f"wrote {args.out}: {counts['train']} train, {counts['test']} test rows ({info['format']})")
    return 0
