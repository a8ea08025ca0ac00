"""A TLS (and optionally SASL) front for the local broker, which speaks neither: what the security tests connect to.

Tansu 0.6.0 cannot serve TLS or authenticate anyone (deploy/local_broker.py says why), so the tests put this
proxy in front of a Tansu whose advertised listener is the proxy's address: every client connection (the
bootstrap one and those metadata sends clients to) goes through it. The proxy terminates TLS with the test's
server certificate (`tls`, optionally requiring a client certificate) and, given an `account`, runs the
broker's side of SASL before it forwards a single byte: it answers ApiVersions through the broker, SaslHandshake
and SaslAuthenticate itself (PLAIN, or SCRAM-SHA-256/512 per RFC 5802 with its own salt), and closes a
connection that sends anything else first or fails to authenticate, as a broker requiring SASL does.
After that it copies bytes both ways. Counters say what it saw, so a test proves its clients came through.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import ssl
import struct
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from aiokafka.protocol.admin import SaslAuthenticateResponse_v0, SaslAuthenticateResponse_v1, SaslHandShakeResponse_v1

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 33, 58
SCRAM_ITERATIONS = 4096
SCRAM_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
COPY_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class SaslAccount:
    """The one account the proxy accepts."""

    mechanism: str  # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    username: str
    password: str


class ScramServer:
    """The server side of one SCRAM exchange (RFC 5802), for the account's password and a fresh salt."""

    def __init__(self, account: SaslAccount) -> None:
        self.account, self.hash_name = account, SCRAM_HASHES[account.mechanism]
        self.salt = os.urandom(16)
        salted = hashlib.pbkdf2_hmac(self.hash_name, account.password.encode(), self.salt, SCRAM_ITERATIONS)
        self.stored_key = hashlib.new(self.hash_name, self._hmac(salted, b"Client Key")).digest()
        self.server_key = self._hmac(salted, b"Server Key")
        self.nonce = self.auth_message = ""

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, self.hash_name).digest()

    def first(self, client_first: str) -> str | None:
        """The server-first message, or None for another user."""
        bare = client_first.partition(",,")[2]
        attributes = dict(pair.split("=", 1) for pair in bare.split(","))
        quoted = self.account.username.replace("=", "=3D").replace(",", "=2C")
        if attributes.get("n") != quoted:
            return None
        self.nonce = attributes["r"] + secrets.token_urlsafe(18)
        server_first = f"r={self.nonce},s={base64.b64encode(self.salt).decode()},i={SCRAM_ITERATIONS}"
        self.auth_message = f"{bare},{server_first}"
        return server_first

    def final(self, client_final: str) -> str | None:
        """The server-final message (its signature), or None when the client's proof is wrong."""
        without_proof, _, proof = client_final.rpartition(",p=")
        if dict(pair.split("=", 1) for pair in without_proof.split(",")).get("r") != self.nonce:
            return None
        auth_message = f"{self.auth_message},{without_proof}".encode()
        signature = self._hmac(self.stored_key, auth_message)
        client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature, strict=True))
        if not hmac.compare_digest(hashlib.new(self.hash_name, client_key).digest(), self.stored_key):
            return None
        return "v=" + base64.b64encode(self._hmac(self.server_key, auth_message)).decode()


@dataclass
class SaslExchange:
    """The broker's side of one connection's SASL handshake and authentication."""

    account: SaslAccount
    scram: ScramServer | None = None
    steps: int = 0

    def handshake(self, mechanism: str) -> bytes:
        error = 0 if mechanism == self.account.mechanism else UNSUPPORTED_SASL_MECHANISM
        return SaslHandShakeResponse_v1(error, [self.account.mechanism]).encode()

    def authenticate(self, token: bytes) -> tuple[bytes | None, bool]:
        """(the server's token, or None when authentication failed; whether authentication is complete)."""
        self.steps += 1
        if self.account.mechanism == "PLAIN":
            _, username, password = token.decode().split("\0")
            is_valid = username == self.account.username and hmac.compare_digest(password, self.account.password)
            return (b"" if is_valid else None), True
        if self.steps == 1:
            self.scram = ScramServer(self.account)
            server_first = self.scram.first(token.decode())
            return (server_first.encode() if server_first else None), server_first is None
        assert self.scram is not None
        server_final = self.scram.final(token.decode())
        return (server_final.encode() if server_final else None), True


def _frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


def _body(request: bytes) -> bytes:
    """The body of a request with a v1 header (api key, version, correlation id, client id)."""
    (client_id_size,) = struct.unpack_from(">h", request, 8)
    return request[10 + max(client_id_size, 0) :]


def _auth_response(version: int, token: bytes | None) -> bytes:
    error, message = (0, None) if token is not None else (SASL_AUTHENTICATION_FAILED, "invalid credentials")
    if version == 0:
        return SaslAuthenticateResponse_v0(error, message, token or b"").encode()
    return SaslAuthenticateResponse_v1(error, message, token or b"", 0).encode()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(COPY_CHUNK_BYTES):
            writer.write(data)
            await writer.drain()
    finally:
        # Kafka connections never half-close: one side gone means the connection is over.
        writer.close()


@dataclass
class KafkaProxy:
    """Listens on 127.0.0.1:`port` with TLS (`tls`, a server context) and forwards to `upstream` (host, port)."""

    port: int
    upstream: tuple[str, int]
    tls: ssl.SSLContext
    account: SaslAccount | None = None
    connections: int = 0  # TLS handshakes completed
    authenticated: int = 0  # SASL logins that succeeded
    refused: int = 0  # connections closed for a failed login or a request before it
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.tls)
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

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        self._writers.add(client_writer)
        try:
            # A client that goes away mid-exchange (a refused or stopping one) ends its connection, nothing more.
            with contextlib.suppress(OSError, asyncio.IncompleteReadError, ssl.SSLError):
                await self._forward(client_reader, client_writer)
        finally:
            client_writer.close()
            self._tasks.discard(task)

    async def _forward(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        self._writers.add(upstream_writer)
        try:
            upstream = (upstream_reader, upstream_writer)
            if self.account is None or await self._authenticate(client_reader, client_writer, *upstream):
                await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))
        finally:
            upstream_writer.close()

    async def _authenticate(
        self,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        upstream_reader: asyncio.StreamReader,
        upstream_writer: asyncio.StreamWriter,
    ) -> bool:
        assert self.account is not None
        exchange = SaslExchange(self.account)
        while True:
            request = await _read_frame(client_reader)
            api_key, api_version, correlation_id = struct.unpack_from(">hhi", request)
            if api_key == API_VERSIONS:
                upstream_writer.write(_frame(request))
                client_writer.write(_frame(await _read_frame(upstream_reader)))
                continue
            if api_key == SASL_HANDSHAKE:
                (size,) = struct.unpack_from(">h", _body(request))
                response, is_done, is_ok = exchange.handshake(_body(request)[2 : 2 + size].decode()), False, True
            elif api_key == SASL_AUTHENTICATE:
                (size,) = struct.unpack_from(">i", _body(request))
                token, is_done = exchange.authenticate(_body(request)[4 : 4 + size])
                response, is_ok = _auth_response(api_version, token), token is not None
            else:
                self.refused += 1  # anything but ApiVersions before SASL: a broker requiring SASL drops it
                return False
            client_writer.write(_frame(struct.pack(">i", correlation_id) + response))
            await client_writer.drain()
            if is_done or not is_ok:
                self.authenticated += is_ok
                self.refused += not is_ok
                return is_ok
