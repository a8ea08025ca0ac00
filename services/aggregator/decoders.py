"""Consumed records to a batch's input: canonical interactions and votes; what breaks the contract is dead-lettered.

Pure: no I/O. A record that cannot be decoded becomes a dead-letter record in the batch's input, and
is written to the outbox in the batch's own transaction, so its offset is committed with the rest.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from aiokafka import ConsumerRecord

from services.aggregator import store
from services.aggregator.batches import BatchInput, BatchRules
from shared import topics
from shared.errors import ContractError
from shared.events import parse_interaction, parse_vote
from shared.kafka import dead_letter_for

log = structlog.get_logger(__name__)

Decode = Callable[[tuple[ConsumerRecord, ...], BatchRules], BatchInput]


def decode_inputs(records: tuple[ConsumerRecord, ...], rules: BatchRules) -> BatchInput:
    """A batch of the one consumer of both input topics: records of `interactions` decoded as interactions,
    the rest (`votes`) as votes, each topic's in its order.

    A group's answers and votes consumed together are applied together (apply_batch stores the answers
    first): its votes are not parked, and the group is decided once, in one transaction.
    """
    interactions_topic = topics.topic(rules.topic_prefix, topics.INTERACTIONS)
    answers = decode_interactions(tuple(r for r in records if r.topic == interactions_topic), rules)
    votes = decode_votes(tuple(r for r in records if r.topic != interactions_topic), rules)
    return BatchInput(
        interactions=answers.interactions, votes=votes.votes, dead_letters=answers.dead_letters + votes.dead_letters
    )


def decode_interactions(records: tuple[ConsumerRecord, ...], rules: BatchRules) -> BatchInput:
    batch = BatchInput()
    for record in records:
        try:
            interaction = parse_interaction(_value(record), rules.limits)
            if not interaction.prompt_key:
                raise ContractError(
                    "canonical interaction without prompt_key",
                    errors=[{"loc": ["prompt_key"], "msg": "set by ingest", "type": "missing"}],
                )
            batch.interactions.append(interaction)
        except ContractError as exc:
            _dead_letter(batch, rules, record, exc)
    return batch


def decode_votes(records: tuple[ConsumerRecord, ...], rules: BatchRules) -> BatchInput:
    batch = BatchInput()
    for record in records:
        try:
            vote = parse_vote(_value(record), rules.limits)
            batch.votes.append(
                store.ParkedVote(
                    vote=vote, source_topic=record.topic, source_partition=record.partition, source_offset=record.offset
                )
            )
        except ContractError as exc:
            _dead_letter(batch, rules, record, exc)
    return batch


def _value(record: ConsumerRecord) -> bytes:
    if record.value is None:
        raise ContractError("empty message (null value)", errors=[{"loc": [], "msg": "no value", "type": "missing"}])
    return record.value


def _dead_letter(batch: BatchInput, rules: BatchRules, record: ConsumerRecord, exc: ContractError) -> None:
    batch.dead_letters.append(dead_letter_for(rules.topic_prefix, rules.service, record, exc))
    log.warning(
        "message_dead_lettered",
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        **exc.to_log_context(),
    )
