"""Dead letters can go home: send dead-lettered messages back to their origin topic once the cause is fixed.

A redrive reads `dead-letter` from the beginning (every partition, no consumer group), keeps the
letters of one error_code (failed at or after `since`, when given), and republishes each one's
original bytes to its origin topic, under its original key, with a header `redriven_from` naming
the dead letter (its event_id). What fails again goes back to `dead-letter` as usual, as a new letter.

Only the pipeline's input topics are origins a letter may be sent back to (a letter naming any other
topic is `not_redrivable`), so a forged letter cannot make a redrive write where no consumer checks it.

Each letter is sent at most once: the letters to send are first claimed in `redriven_dead_letters`
(an insert only one redrive wins, committed before anything is published), then published, then
marked sent once the broker acknowledged them. A crash or a broker error between the claim and the
acknowledgement leaves them claimed and unsent: later redrives report them `unconfirmed` and do not
send them again (sending twice is what at-most-once rules out; an operator who checked the origin
topic may delete their rows to let them go again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from shared import db, topics
from shared.events import DeadLetter
from shared.kafka import OutRecord, publish_records
from shared.kafka_security import kafka_client_kwargs
from shared.settings import PipelineSettings

log = structlog.get_logger(__name__)
QUERIES = db.SHARED_QUERIES

# The topics the pipeline consumes: the only places a dead letter goes back to.
REDRIVABLE_TOPICS = (
    topics.INTERACTIONS_RAW,
    topics.FEEDBACK_RAW,
    topics.INTERACTIONS,
    topics.VOTES,
    topics.ANNOTATION_REQUESTS,
)
REDRIVEN_FROM = "redriven_from"
# Empty polls past the end offsets before a read stops, whatever the end offsets say (Tansu's lag behind).
_IDLE_POLLS = 2

ItemStatus = Literal["redriven", "would_redrive", "already_redriven", "unconfirmed", "not_redrivable"]


@dataclass(kw_only=True, frozen=True, slots=True)
class RedriveRequest:
    """Which dead letters to send back: one error_code, failed at or after `since`; `dry_run` only lists them."""

    reason: str
    since: datetime | None = None
    dry_run: bool = False


@dataclass(kw_only=True, frozen=True, slots=True)
class RedriveItem:
    letter: DeadLetter
    status: ItemStatus

    def to_json(self) -> dict[str, Any]:
        letter = self.letter
        return {
            "dead_letter_id": str(letter.event_id),
            "source_topic": letter.source_topic,
            "source_partition": letter.source_partition,
            "source_offset": letter.source_offset,
            "failed_at": letter.failed_at.isoformat(),
            "service": letter.service,
            "status": self.status,
        }


@dataclass(kw_only=True)
class RedriveReport:
    request: RedriveRequest
    dead_letters_read: int = 0
    items: list[RedriveItem] = field(default_factory=list)

    @property
    def redriven(self) -> int:
        return sum(1 for item in self.items if item.status in ("redriven", "would_redrive"))

    def to_json(self) -> dict[str, Any]:
        request = self.request
        return {
            "reason": request.reason,
            "since": request.since.isoformat() if request.since else None,
            "dry_run": request.dry_run,
            "dead_letters_read": self.dead_letters_read,
            "matched": len(self.items),
            "redriven": self.redriven,
            "items": [item.to_json() for item in self.items],
        }


def is_selected(letter: DeadLetter, request: RedriveRequest) -> bool:
    return letter.error_code == request.reason and (request.since is None or letter.failed_at >= request.since)


def is_redrivable(letter: DeadLetter, topic_prefix: str) -> bool:
    origins = {topics.topic(topic_prefix, name) for name in REDRIVABLE_TOPICS}
    return letter.raw_value is not None and letter.source_topic in origins


def redriven_record(letter: DeadLetter) -> OutRecord:
    """The original message, back to its origin topic, naming the dead letter it comes from."""
    return OutRecord(
        topic=letter.source_topic,
        key=letter.source_key.encode() if letter.source_key is not None else None,
        value=letter.raw_bytes(),
        headers=((REDRIVEN_FROM, str(letter.event_id)),),
    )


async def read_dead_letters(
    settings: PipelineSettings, keep: Callable[[DeadLetter], bool]
) -> tuple[int, list[DeadLetter]]:
    """(letters read, those `keep` takes, once each) from the whole dead-letter topic, no consumer group."""
    name = topics.topic(settings.topic_prefix, topics.DEAD_LETTER)
    partitions = await _partitions(settings, name)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        **kafka_client_kwargs(settings),
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )
    await consumer.start()
    read, kept = 0, dict[UUID, DeadLetter]()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        idle = 0
        while idle < _IDLE_POLLS:
            batches = await consumer.getmany(timeout_ms=int(settings.redrive_read_idle_s * 1000))
            records = [r for batch in batches.values() for r in batch]
            for record in records:
                letter = _letter(record.value)
                if letter is None:
                    continue
                read += 1
                if keep(letter):
                    kept.setdefault(letter.event_id, letter)
            past_ends = all([await consumer.position(tp) >= ends[tp] for tp in partitions])
            idle = idle + 1 if not records and past_ends else 0
    finally:
        await consumer.stop()
    return read, list(kept.values())


async def _partitions(settings: PipelineSettings, name: str) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, **kafka_client_kwargs(settings))
    await admin.start()
    try:
        described = await admin.describe_topics([name])
    finally:
        await admin.close()
    return [TopicPartition(name, p["partition"]) for t in described if t["topic"] == name for p in t["partitions"]]


def _letter(value: bytes | None) -> DeadLetter | None:
    if value is None:
        return None
    try:
        return DeadLetter.model_validate_json(value)
    except ValidationError:
        log.warning("dead_letter_unreadable", bytes=len(value))
        return None


async def redrive(
    *, pool: asyncpg.Pool, broker: KafkaBroker, settings: PipelineSettings, request: RedriveRequest
) -> RedriveReport:
    """Send the selected dead letters back (see the module docstring); the report lists each with its status.

    Raises TransientError when the database or the broker is away (letters claimed by then stay unsent).
    """
    read, letters = await read_dead_letters(settings, lambda letter: is_selected(letter, request))
    report = RedriveReport(request=request, dead_letters_read=read)
    letters.sort(key=lambda d: (d.failed_at, str(d.event_id)))
    taken = await _taken(pool, [d.event_id for d in letters])
    to_send = [d for d in letters if d.event_id not in taken and is_redrivable(d, settings.topic_prefix)]
    if not request.dry_run:
        to_send = await _claim_and_send(pool, broker, settings, to_send, taken)
    sending = {d.event_id for d in to_send}
    for letter in letters:
        report.items.append(RedriveItem(letter=letter, status=_status(letter, taken, sending, request)))
    log.info(
        "dead_letters_redriven", reason=request.reason, dry_run=request.dry_run, read=read,
        matched=len(letters), redriven=len(sending),
    )  # fmt: skip
    return report


def _status(letter: DeadLetter, taken: dict[UUID, bool], sending: set[UUID], request: RedriveRequest) -> ItemStatus:
    if letter.event_id in sending:
        return "would_redrive" if request.dry_run else "redriven"
    if letter.event_id in taken:
        return "already_redriven" if taken[letter.event_id] else "unconfirmed"
    return "not_redrivable"


async def _taken(pool: asyncpg.Pool, ids: Sequence[UUID]) -> dict[UUID, bool]:
    """Dead letter id -> whether its redrive was confirmed, for those a redrive took already."""
    if not ids:
        return {}
    async with db.translate_errors():
        rows = await pool.fetch(QUERIES["select_redriven_dead_letters"], list(ids))
    return {row["dead_letter_id"]: row["sent_at"] is not None for row in rows}


async def _claim_and_send(
    pool: asyncpg.Pool,
    broker: KafkaBroker,
    settings: PipelineSettings,
    letters: Sequence[DeadLetter],
    taken: dict[UUID, bool],
) -> list[DeadLetter]:
    """Claim, publish, mark sent; return the letters this redrive sent (a concurrent one may win some)."""
    if not letters:
        return []
    async with db.translate_errors():
        rows = await pool.fetch(
            QUERIES["claim_redriven_dead_letters"],
            [d.event_id for d in letters],
            [d.source_topic for d in letters],
            [d.error_code for d in letters],
        )
    claimed = {row["dead_letter_id"] for row in rows}
    for letter in letters:
        if letter.event_id not in claimed:
            taken[letter.event_id] = True  # another redrive claimed it in between
    mine = [d for d in letters if d.event_id in claimed]
    await publish_records(broker, [redriven_record(d) for d in mine], timeout_s=settings.publish_timeout_s)
    async with db.translate_errors(), asyncio.timeout(settings.db_acquire_timeout_s):
        await pool.execute(QUERIES["mark_redriven_dead_letters_sent"], [d.event_id for d in mine])
    return mine
