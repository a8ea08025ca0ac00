"""Capturing structlog events in-process, also from module loggers an earlier app lifespan has cached.

`configure_logging` caches each module's logger on first use (`cache_logger_on_first_use`), after
which structlog's `capture_logs` no longer sees it; the modules' loggers are swapped for fresh ones
while capturing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from types import ModuleType
from typing import Any
from unittest import mock

import structlog
from structlog.testing import capture_logs
from structlog.types import Processor


@contextmanager
def captured_logs(*modules: ModuleType, processors: Sequence[Processor] = ()) -> Iterator[list[dict[str, Any]]]:
    """The events logged through `modules`' `log` while the block runs (`processors` run first)."""
    with ExitStack() as stack:
        logs = stack.enter_context(capture_logs(processors=list(processors)))
        for module in modules:
            stack.enter_context(mock.patch.object(module, "log", structlog.get_logger(module.__name__)))
        yield logs
