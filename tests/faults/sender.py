"""The workload's clients: HTTP batches to ingest and feedback, raw records to the raw topics.

A client that got no answer (connection refused or reset, timeout, 5xx) sends the same batch
again, same event_ids, until a deadline: that is the retry contract the edge services dedupe on.
Every event whose request got a 2xx (or whose raw record the broker acknowledged) is remembered
in `acked`, so a test can check each one reached the output.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence

import httpx
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared import topics
from tests.faults.workload import Send
from tests.support.kafka import Security, client_security

HTTP_PATHS = {"ingest": "/v1/interactions/batch", "feedback": "/v1/votes/batch"}
RAW_TOPICS = {"interactions.raw": topics.INTERACTIONS_RAW, "feedback.raw": topics.FEEDBACK_RAW}
RETRY_INITIAL_S = 0.1
RETRY_MAX_S = 1.0
REQUEST_TIMEOUT_S = 10.0


class Sender:
    """Sends sends in order, `batch_size` at a time, at most `rate` events per second."""

    def __init__(
        self,
        url_of: Callable[[str], str],
        bootstrap: str,
        prefix: str,
        *,
        batch_size: int = 50,
        rate: float = 1000.0,
        retry_deadline_s: float = 120.0,
        security: Security = None,
    ) -> None:
        self.url_of = url_of
        self.security = security
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.batch_size = batch_size
        self.rate = rate
        self.retry_deadline_s = retry_deadline_s
        self.acked: set[str] = set()
        self.sent = 0  # sends handled so far (acknowledged), duplicates included
        self.retries = 0
        self._client = httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, trust_env=False)
        self._producer: AIOKafkaProducer | None = None

    async def aclose(self) -> None:
        await self._client.aclose()
        if self._producer is not None:
            await self._producer.stop()

    async def send(self, sends: Sequence[Send]) -> None:
        """Send everything; return once each event was acknowledged (raise if one never is)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        for start in range(0, len(sends), self.batch_size):
            chunk = sends[start : start + self.batch_size]
            by_channel = itertools.groupby(sorted(chunk, key=lambda s: s.channel), key=lambda s: s.channel)
            await asyncio.gather(*(self._send_channel(channel, list(items)) for channel, items in by_channel))
            self.sent += len(chunk)
            # Pacing, not synchronisation: keep the offered load realistic for a 2-core box.
            ahead_s = started + (start + len(chunk)) / self.rate - loop.time()
            if ahead_s > 0:
                await asyncio.sleep(ahead_s)

    async def _send_channel(self, channel: str, items: list[Send]) -> None:
        if channel in HTTP_PATHS:
            await self._retrying(lambda: self._post(channel, items))
        else:
            await self._retrying(lambda: self._produce(RAW_TOPICS[channel], items))
        self.acked.update(s.event_id for s in items)

    async def _retrying(self, attempt: Callable[[], object]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_deadline_s
        delay = RETRY_INITIAL_S
        while True:
            try:
                await attempt()  # type: ignore[misc]
                return
            except (httpx.TransportError, KafkaError, _Retry) as exc:
                if loop.time() + delay > deadline:
                    raise AssertionError(f"no acknowledgement within {self.retry_deadline_s} s: {exc!r}") from exc
            self.retries += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def _post(self, service: str, items: list[Send]) -> None:
        response = await self._client.post(
            self.url_of(service) + HTTP_PATHS[service],
            content=orjson.dumps([s.body for s in items]),
            headers={"content-type": "application/json"},
        )
        if response.status_code >= 500 or response.status_code == 429:
            raise _Retry(f"HTTP {response.status_code}")
        assert response.status_code == 202, f"{service}: HTTP {response.status_code} {response.text[:500]}"
        body = response.json()
        assert not body["rejected"], f"{service} rejected valid events: {body['rejected'][:3]}"

    async def _produce(self, name: str, items: list[Send]) -> None:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                enable_idempotence=False,
                acks="all",
                request_timeout_ms=5000,
                **client_security(self.security),
            )
            await producer.start()
            self._producer = producer
        futures = [
            await self._producer.send(
                topics.topic(self.prefix, name), orjson.dumps(s.body), key=s.body["interaction_id"].encode()
            )
            for s in items
        ]
        await asyncio.gather(*futures)


class _Retry(Exception):
    """A retryable answer (5xx, 429)."""
