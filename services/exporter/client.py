"""Reaching the aggregator's export route: where it is, one streamed request, its errors as ExporterError.

The exporter asks for one `KIND.arrow` stream with `split=all`: a single request, so a single
snapshot, whose `split` column the exporter divides into the train and test files while it arrives
(an Arrow IPC stream can be read batch by batch; a Parquet file only once it is complete).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from http.client import HTTPResponse
from pathlib import Path
from typing import Any

from shared.exports import HEADER_REQUEST, HEADER_SCHEMA_VERSION, HEADER_SNAPSHOT, HEADER_SNAPSHOT_AT

# Exit codes: 2 for bad input (argparse's own), 1 for everything that is not the caller's typo.
EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class ExporterError(Exception):
    """A failure to report in one line; `exit_code` is what the process exits with."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def find_aggregator(flag: str | None, env_url: str | None, stack_file: Path) -> tuple[str, str]:
    """(base URL, where it came from): the --aggregator flag, else EXPORTER_AGGREGATOR_URL, else the stack file."""
    if flag:
        return flag.rstrip("/"), "--aggregator"
    if env_url:
        return env_url.rstrip("/"), "EXPORTER_AGGREGATOR_URL"
    try:
        stack = json.loads(stack_file.read_text())
    except FileNotFoundError:
        raise ExporterError(
            f"no aggregator to ask: {stack_file} does not exist (start the stack with `make up`),"
            " and neither --aggregator nor EXPORTER_AGGREGATOR_URL is given"
        ) from None
    except (OSError, ValueError) as exc:
        raise ExporterError(f"cannot read {stack_file}: {exc}") from exc
    url = stack.get("aggregator") if isinstance(stack, dict) else None
    if not isinstance(url, str) or not url:
        raise ExporterError(f"{stack_file} names no aggregator URL")
    return url.rstrip("/"), str(stack_file)


@dataclass
class ExportResponse:
    """An open export response: the body to read and what its headers say about the snapshot."""

    url: str
    body: HTTPResponse
    snapshot_at: str
    snapshot: str
    schema_version: int
    request: dict[str, Any]

    def close(self) -> None:
        self.body.close()


def _detail(error: urllib.error.HTTPError) -> Any:
    try:
        return json.loads(error.read() or b"null").get("detail")
    except (ValueError, AttributeError, OSError):
        return None


def _bad_input_message(detail: Any) -> str:
    """`422` detail -> "--min-confidence: must be between 0 and 1; ..." (flags named as the CLI spells them)."""
    if not isinstance(detail, list):
        return f"the aggregator refused the request: {detail}"
    parts = []
    for error in detail:
        loc = [str(p) for p in error.get("loc", [])[1:]]
        name = "--" + "-".join(loc).replace("_", "-") if loc else "request"
        parts.append(f"{name}: {error.get('msg')}")
    return "; ".join(parts)


def open_export(base_url: str, kind: str, params: Mapping[str, str], timeout_s: float) -> ExportResponse:
    """GET {base_url}/v1/exports/{kind}.arrow?params&split=all. Raises ExporterError with the reason."""
    query = urllib.parse.urlencode({**params, "split": "all"})
    url = f"{base_url}/v1/exports/{urllib.parse.quote(kind)}.arrow?{query}"
    request = urllib.request.Request(url, headers={"Accept": "application/vnd.apache.arrow.stream"})
    try:
        body = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as error:
        detail = _detail(error)
        if error.code == 422:
            raise ExporterError(_bad_input_message(detail), EXIT_BAD_INPUT) from None
        if error.code == 404:
            raise ExporterError(str(detail or "nothing matches")) from None
        raise ExporterError(f"the aggregator answered {error.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ExporterError(f"cannot reach the aggregator at {base_url}: {reason}") from None
    headers = body.headers
    return ExportResponse(
        url=url,
        body=body,
        snapshot_at=headers.get(HEADER_SNAPSHOT_AT, ""),
        snapshot=headers.get(HEADER_SNAPSHOT, ""),
        schema_version=int(headers.get(HEADER_SCHEMA_VERSION, "0")),
        request=json.loads(headers.get(HEADER_REQUEST, "{}")),
    )
