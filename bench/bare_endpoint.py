"""The bare endpoint of bench.ingest: the least an HTTP ingest can do, on the service's own server stack.

`python -m bench.bare_endpoint` serves one route under uvicorn as the services are served
(shared.serve: one worker, uvloop and httptools, no access log): `POST` any path parses the JSON
body, sends it with an aiokafka producer (the service's producer settings: acks=all, linger,
batch size) keyed by its event_id, awaits the broker's acknowledgement and answers
`202 {"event_id", "status": "accepted", "accepted": [event_id]}`. A JSON array body is a batch (as
`/v1/interactions/batch` and `/v1/votes/batch` take them, for `bench.load --floor`): each item is sent as
its own record keyed by its event_id, all are awaited, and the answer is the batch routes' shape
(`{"results": [{"event_id", "status": "accepted"}], "rejected": []}`). No validation, no dedupe, no
database: what single posts through ingest are measured against. A bare ASGI callable, not a
framework, so the baseline is the fastest this stack goes; its startup heap is frozen out of the
garbage collector's full collections, as the services' is (shared.heap).

Environment: BARE_BOOTSTRAP, BARE_PORT, BARE_TOPIC, BARE_LINGER_MS, BARE_MAX_BATCH_BYTES.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import uvicorn
from aiokafka import AIOKafkaProducer

from deploy.local_broker import LOCAL_CLIENT_SECURITY

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class BareEndpoint:
    """ASGI app: parse the body, await the acknowledged send, answer 202 (GET: 200, for readiness)."""

    def __init__(self, bootstrap: str, topic: str, *, linger_ms: int, max_batch_bytes: int) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.linger_ms = linger_ms
        self.max_batch_bytes = max_batch_bytes
        self.producer: AIOKafkaProducer | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["method"] != "POST":
            await _reply(send, 200, b"{}")
            return
        parsed = orjson.loads(body)
        if isinstance(parsed, list):
            await _reply(send, 202, await self._send_batch(parsed))
            return
        event_id = parsed["event_id"]
        assert self.producer is not None
        await (await self.producer.send(self.topic, body, key=event_id.encode()))
        await _reply(send, 202, orjson.dumps({"event_id": event_id, "status": "accepted", "accepted": [event_id]}))

    async def _send_batch(self, items: list[dict[str, Any]]) -> bytes:
        """Each item its own record keyed by its event_id, all acknowledged; the reply of a batch route."""
        assert self.producer is not None
        sends = [await self.producer.send(self.topic, orjson.dumps(i), key=i["event_id"].encode()) for i in items]
        await asyncio.gather(*sends)
        results = [{"event_id": i["event_id"], "status": "accepted"} for i in items]
        return orjson.dumps({"results": results, "rejected": []})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap,
                    **LOCAL_CLIENT_SECURITY,  # the bench's own Tansu: PLAINTEXT
                    acks="all",
                    enable_idempotence=False,
                    linger_ms=self.linger_ms,
                    max_batch_size=self.max_batch_bytes,
                    max_request_size=2 * 1024 * 1024,
                )
                await self.producer.start()
                # As the services do (shared.heap): the startup heap out of full collections.
                gc.collect()
                gc.freeze()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.producer is not None:
                    await self.producer.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _reply(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    app = BareEndpoint(
        os.environ["BARE_BOOTSTRAP"],
        os.environ["BARE_TOPIC"],
        linger_ms=int(os.environ.get("BARE_LINGER_MS", "2")),
        max_batch_bytes=int(os.environ.get("BARE_MAX_BATCH_BYTES", str(64 * 1024))),
    )
    # As shared.serve runs the services: one worker, uvicorn's defaults (uvloop, httptools), no access log.
    uvicorn.run(
        app, host="127.0.0.1", port=int(os.environ["BARE_PORT"]), log_config=None, access_log=False, lifespan="on"
    )


if __name__ == "__main__":
    main()
