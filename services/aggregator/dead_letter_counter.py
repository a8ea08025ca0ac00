"""The aggregator's consumer of `dead-letter`: every service's dead letters counted for the analyst UI.

No service saw the dead letters once published; this counter reads them in a consumer group of its own
(AGGREGATOR_DEAD_LETTER_GROUP_ID) and counts each per (service, error_code, hour of failed_at), once per
event_id: a batch's new event ids and their counts commit in one transaction before its offsets, so a
redelivered letter finds its id seen and counts nothing. The ids are kept while the topic may still hold
the letter (its retention and a day more), then forgotten in the same transactions.

A record that is not a v1 dead letter is skipped with a warning (a dead letter is never dead-lettered
again: that would loop). A batch that fails is delivered again after a capped pause; the counts are the
analyst's view, never on the pipeline's path.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from faststream import Depends as SubscriberDepends
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import Counter

from services.aggregator import analytics_store
from services.aggregator.analytics import CountedLetter, read_dead_letter
from services.aggregator.context import AggregatorContext
from services.aggregator.settings import AggregatorSettings
from shared import db, topics
from shared.events import utcnow
from shared.kafka import RedeliveryPause, batch_subscriber
from shared.runtime import Runtime

log = structlog.get_logger(__name__)
# The ids of letters the topic no longer holds cannot come again; a day more covers clocks and slow consumers.
SEEN_MARGIN = timedelta(days=1)


def dead_letter_group(settings: AggregatorSettings) -> str:
    return settings.dead_letter_group_id or f"{settings.group_id}-dead-letters"


def register_dead_letter_counter(runtime: Runtime[AggregatorContext], settings: AggregatorSettings) -> None:
    """Consume `dead-letter` in batches (its own group) and count each letter once; nothing when switched off."""
    if not settings.dead_letters_counted:
        return
    dependency = runtime.context
    pause = RedeliveryPause(settings.retry_initial_backoff_s, settings.retry_max_backoff_s)
    keep_seen = timedelta(milliseconds=settings.dead_letter_retention_ms) + SEEN_MARGIN
    outcomes = Counter(
        "aggregator_dead_letters_read",
        "Dead letters read by the analyst UI's counter, by outcome (counted, duplicate, unreadable)",
        ["outcome"],
        registry=runtime.registry,
    )

    @batch_subscriber(
        runtime.broker,
        settings,
        topics.DEAD_LETTER,
        group_id=dead_letter_group(settings),
        title="dead-letter (counted)",
        description="Every service's dead letters, counted per service, error code and hour for the analyst UI.",
    )
    async def on_dead_letters(
        msg: KafkaMessage, context: AggregatorContext = SubscriberDepends(dependency, cast=False)
    ) -> None:
        letters: list[CountedLetter] = []
        for record in msg.raw_message:
            letter = read_dead_letter(record.value)
            if letter is None:
                outcomes.labels("unreadable").inc()
                log.warning("dead_letter_unreadable", partition=record.partition, offset=record.offset)
            else:
                letters.append(letter)
        try:
            async with db.translate_errors(), context.pool.acquire() as conn, conn.transaction():
                counted = await analytics_store.count_dead_letters(conn, letters)
                await analytics_store.delete_dead_letters_seen_before(conn, utcnow() - keep_seen)
        except Exception as exc:
            backoff_s = await pause.failed()
            log.warning("dead_letter_count_failed", error=type(exc).__name__, backoff_s=backoff_s)
            raise
        pause.succeeded()
        outcomes.labels("counted").inc(counted)
        outcomes.labels("duplicate").inc(len(letters) - counted)
        if counted:
            log.debug("dead_letters_counted", letters=counted)
