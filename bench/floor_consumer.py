"""The bare consumer of `bench.load --floor`: the least an aggregator can do, read both topics and write each event.

`python -m bench.floor_consumer` joins one consumer group on the interactions and votes topics (aiokafka,
the pipeline's batch size and fetch wait), and for each batch copies every record into
`floor_events` (event_id from the record's key, its topic, its value as bytes: asyncpg
copy_records_to_table, one COPY per batch) and then commits the batch's offsets. No parsing, no
validation, no dedupe, no state, no outbox: the floor the aggregator is measured against. The table
has no index (a unique key, which idempotent writes need, would cost more): the floor is an upper bound.

Once the group has given it partitions it writes FLOOR_READY_FILE; SIGTERM stops it after the batch in
hand. Environment: FLOOR_BOOTSTRAP, FLOOR_DATABASE_URL, FLOOR_TOPICS (comma-separated), FLOOR_READY_FILE,
FLOOR_MAX_RECORDS, FLOOR_FETCH_MAX_WAIT_MS.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import asyncpg
import uvloop
from aiokafka import AIOKafkaConsumer

from deploy.local_broker import LOCAL_CLIENT_SECURITY
from shared.settings import PipelineSettings

TABLE = "floor_events"
COLUMNS = ("event_id", "topic", "value")
GROUP_ID = "floor"
POLL_TIMEOUT_MS = 100
# The statement bench.load --floor runs before it starts this process (one table per fresh stack).
CREATE_TABLE = "CREATE TABLE floor_events (event_id uuid NOT NULL, topic text NOT NULL, value bytea NOT NULL)"


async def consume(
    consumer: AIOKafkaConsumer, connection: asyncpg.Connection, ready_file: Path, stop: asyncio.Event, max_records: int
) -> None:
    """Batches until `stop`: COPY the batch, then commit its offsets; `ready_file` once partitions are assigned."""
    is_ready = False
    while not stop.is_set():
        if not is_ready and consumer.assignment():
            await asyncio.to_thread(ready_file.write_text, "ready\n")
            is_ready = True
        batches = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=max_records)
        rows = [(r.key.decode(), r.topic, r.value) for batch in batches.values() for r in batch]
        if rows:
            await connection.copy_records_to_table(TABLE, records=rows, columns=COLUMNS)
            await consumer.commit()


async def run() -> None:
    defaults = PipelineSettings.model_fields
    max_records = int(os.environ.get("FLOOR_MAX_RECORDS", defaults["kafka_max_batch_records"].default))
    consumer = AIOKafkaConsumer(
        *os.environ["FLOOR_TOPICS"].split(","),
        bootstrap_servers=os.environ["FLOOR_BOOTSTRAP"],
        **LOCAL_CLIENT_SECURITY,  # the bench's own Tansu: PLAINTEXT
        group_id=GROUP_ID,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=int(os.environ.get("FLOOR_FETCH_MAX_WAIT_MS", defaults["kafka_fetch_max_wait_ms"].default)),
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    connection = await asyncpg.connect(os.environ["FLOOR_DATABASE_URL"])
    await consumer.start()
    try:
        await consume(consumer, connection, Path(os.environ["FLOOR_READY_FILE"]), stop, max_records)
    finally:
        await consumer.stop()
        await connection.close()


def main() -> None:
    uvloop.run(run())  # the services' event loop (uvicorn's default where uvloop is installed)


if __name__ == "__main__":
    main()
