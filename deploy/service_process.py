"""One OS process of a service, as the stack starts it: `python -m services.<service>` on its own port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICE_HOST = "127.0.0.1"


@dataclass(kw_only=True)
class ServiceProcess:
    """One OS process of a service: `python -m services.<service>` on its own port."""

    service: str
    instance: int
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    is_signalled: bool = False
    spawn_count: int = field(default=0)

    @property
    def name(self) -> str:
        return self.service if self.instance == 1 else f"{self.service}-{self.instance}"

    @property
    def url(self) -> str:
        return f"http://{SERVICE_HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    def spawn(self) -> None:
        # The first start of a Stack truncates the log; restarts append, so a fault test sees both lives.
        with self.log_path.open("ab" if self.spawn_count else "wb") as log_file:
            # Own session: a terminal Ctrl-C reaches only the stack, which stops services in order.
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.service}"],
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.spawn_count += 1
        self.is_signalled = False
        log.info("service_started", service=self.name, pid=self.pid, url=self.url, log_path=str(self.log_path))

    def send_signal(self, sig: int) -> None:
        """Signal the service's process group (it leads its own session)."""
        if not self.is_running:
            return
        assert self.process is not None
        self.is_signalled = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    async def wait_exit(self, timeout_s: float) -> int | None:
        """The exit code once the process has exited, or None if it is still running after `timeout_s`."""
        if self.process is None:
            return None
        try:
            return await asyncio.to_thread(self.process.wait, timeout_s)
        except subprocess.TimeoutExpired:
            return None
