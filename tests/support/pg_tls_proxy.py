"""A TLS front for the test PostgreSQL, whose embedded build has no TLS ("SSL is not supported by this build").

A client asks a PostgreSQL server for TLS with an SSLRequest; this proxy answers "S", completes the TLS
handshake with the test's server certificate and then relays the decrypted protocol to the real server in
plain text. A client that does not ask for TLS is turned away, as by a server whose pg_hba.conf allows only
`hostssl`. Counters say what it saw, so a test proves its clients came through TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

SSL_REQUEST = struct.pack(">ii", 8, 80877103)  # length, then the SSLRequest code (PostgreSQL protocol 3)
COPY_CHUNK_BYTES = 64 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(COPY_CHUNK_BYTES):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


@dataclass
class PostgresTlsProxy:
    """Listens on 127.0.0.1:`port`, TLS with `tls` (a server context), and relays to `upstream` (host, port)."""

    port: int
    upstream: tuple[str, int]
    tls: ssl.SSLContext
    tls_sessions: int = 0  # TLS handshakes completed
    refused_plaintext: int = 0  # clients that did not ask for TLS
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            # A client that fails the handshake (a wrong CA) or goes away ends its connection, nothing more.
            with contextlib.suppress(OSError, asyncio.IncompleteReadError, ssl.SSLError):
                await self._relay(reader, writer)
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await reader.readexactly(len(SSL_REQUEST)) != SSL_REQUEST:
            self.refused_plaintext += 1
            return
        writer.write(b"S")
        await writer.start_tls(self.tls)
        self.tls_sessions += 1
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        self._writers.add(upstream_writer)
        try:
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            upstream_writer.close()
