"""The transactional outbox, on SQLite and PostgreSQL, with the memory transport.

``Remote(transport, outbox=Outbox(engine))`` writes the events of a send made
inside a session's transaction to the outbox table in that transaction, and
publishes them after the commit: never before it, never after a rollback, and
not lost when the process cannot publish right after the commit.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, LargeBinary, MetaData, String, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from _services import REDIS_URL, redis_or_skip
from tocsin import Signal
from tocsin.contrib.sqlalchemy import ModelKey, Outbox, _outbox, bind_session, register_models
from tocsin.exceptions import TransportError
from tocsin.remote import (
    AsyncMemoryTransport,
    AsyncTransport,
    Event,
    JSONSerializer,
    MemoryTransport,
    Remote,
    Transport,
    Worker,
)
from tocsin.signals import post_save
from tocsin.testing import connected_to

from .models import Base, Todo

# A project's own signal, sent by application code rather than by the ORM.
todo_completed = Signal()

STREAM = "events"


class BrokerDown(MemoryTransport):
    """A memory transport whose broker can be switched off."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def publish_many(self, stream: str, payloads: Sequence[bytes]) -> list[str]:
        if self.down:
            raise TransportError("the broker is down")
        return super().publish_many(stream, payloads)


@pytest.fixture
def transport() -> Iterator[BrokerDown]:
    """A memory transport with its broker up."""
    transport = BrokerDown()
    yield transport
    transport.close()


@pytest.fixture
def outbox(engine: Engine) -> Outbox:
    """An outbox on the test database whose relay takes rows of any age."""
    outbox = Outbox(engine, relay_after=0)
    outbox.create()
    return outbox


def make_remote(transport: Transport | AsyncTransport, outbox: Outbox) -> Remote:
    serializer = JSONSerializer()
    register_models(serializer, Base)
    return Remote(transport, stream=STREAM, serializer=serializer, outbox=outbox)


@contextmanager
def publishing(
    remote: Remote, signal: Signal, name: str, sender: object = None
) -> Iterator[Remote]:
    """``remote.publish(signal)`` for the block."""
    remote.publish(signal, name=name, sender=sender)
    try:
        yield remote
    finally:
        remote.disconnect()


@pytest.fixture
def remote(transport: BrokerDown, outbox: Outbox) -> Iterator[Remote]:
    """A remote that publishes ``todo_completed`` through the outbox."""
    with publishing(make_remote(transport, outbox), todo_completed, "todo_completed") as remote:
        yield remote


def published(remote: Remote) -> list[Event]:
    transport = remote.transport
    assert isinstance(transport, MemoryTransport)
    return [remote.decode(message.payload) for message in transport.read(STREAM)]


def texts(remote: Remote) -> list[str]:
    """What each published todo_completed event says, in order."""
    return [event.kwargs["text"] for event in published(remote)]


def rows(engine: Engine, outbox: Outbox) -> list[str]:
    """The event ids in the outbox table, as a second connection sees them."""
    with engine.connect() as connection:
        return list(connection.scalars(select(outbox.table.c.id)))


def complete(session: Session, text: str) -> Todo:
    """Add a todo and send todo_completed for it, inside the session's transaction."""
    todo = Todo(text=text, done=True)
    session.add(todo)
    session.flush()
    todo_completed.send(sender=Todo, todo=todo, text=text)
    return todo


# -- commit and rollback -----------------------------------------------------------------


def test_an_event_is_published_once_after_the_commit(
    engine: Engine, outbox: Outbox, remote: Remote
) -> None:
    """Written to the table in the transaction; published, and its row deleted, after the commit."""
    with Session(engine) as session:
        todo = complete(session, "write tests")
        assert session.scalars(select(outbox.table.c.id)).all() != []
        assert published(remote) == []  # right before the commit
        session.commit()
        [event] = published(remote)
        assert event.signal == "todo_completed"
        assert event.kwargs["todo"] == ModelKey(Todo, (todo.id,))
    assert rows(engine, outbox) == []


def test_a_rollback_publishes_nothing_and_leaves_no_row(
    engine: Engine, outbox: Outbox, remote: Remote
) -> None:
    """The row goes with the transaction."""
    with Session(engine) as session:
        complete(session, "never")
        session.rollback()
    assert published(remote) == []
    assert rows(engine, outbox) == []


def test_closing_the_session_without_commit_publishes_nothing(
    engine: Engine, outbox: Outbox, remote: Remote
) -> None:
    """A close is a rollback."""
    with Session(engine) as session:
        complete(session, "never")
    assert published(remote) == []
    assert rows(engine, outbox) == []


def test_events_of_one_transaction_are_published_in_order(
    engine: Engine, outbox: Outbox, remote: Remote
) -> None:
    """Many sends, one commit: every event, in the order sent."""
    with Session(engine) as session:
        for text in ("a", "b", "c"):
            complete(session, text)
        session.commit()
    assert texts(remote) == ["a", "b", "c"]
    assert rows(engine, outbox) == []


def test_each_transaction_publishes_its_own_events(
    engine: Engine, outbox: Outbox, remote: Remote
) -> None:
    """A second transaction of the same session publishes only what it sent."""
    with Session(engine) as session:
        complete(session, "first")
        session.commit()
        complete(session, "second")
        session.commit()
    assert texts(remote) == ["first", "second"]


def test_a_rolled_back_savepoint_drops_only_its_events(
    engine: Engine, outbox: Outbox, remote: Remote
) -> None:
    """Events before and after the SAVEPOINT are still published."""
    with Session(engine) as session:
        complete(session, "before")
        savepoint = session.begin_nested()
        complete(session, "inside")
        savepoint.rollback()
        complete(session, "after")
        session.commit()
    assert texts(remote) == ["before", "after"]
    assert rows(engine, outbox) == []


def test_a_released_savepoint_keeps_its_events_in_order(
    engine: Engine, outbox: Outbox, remote: Remote
) -> None:
    """A released SAVEPOINT's events are published with the transaction's, in send order."""
    with Session(engine) as session:
        complete(session, "before")
        with session.begin_nested():
            complete(session, "inside")
        complete(session, "after")
        assert published(remote) == []
        session.commit()
    assert texts(remote) == ["before", "inside", "after"]
    assert rows(engine, outbox) == []


def test_a_send_outside_any_transaction_is_published_at_once(
    engine: Engine, outbox: Outbox, remote: Remote
) -> None:
    """No session in sight, or one not in a transaction: nothing to wait for, no row."""
    todo_completed.send(sender=Todo, text="no session")
    with Session(engine, expire_on_commit=False) as session:
        todo = complete(session, "committed")
        session.commit()
        assert not session.in_transaction()
        todo_completed.send(sender=Todo, todo=todo, text="after the commit")
        assert texts(remote) == ["no session", "committed", "after the commit"]
    assert rows(engine, outbox) == []


def test_bind_session_puts_sends_without_an_instance_in_the_transaction(
    engine: Engine, outbox: Outbox, remote: Remote
) -> None:
    """``todo_completed.send(sender=Todo, text=...)`` has no instance to find the session by."""
    with Session(engine) as session, bind_session(session):
        session.add(Todo(text="x"))
        todo_completed.send(sender=Todo, text="bound")
        assert published(remote) == []
        session.commit()
        assert texts(remote) == ["bound"]


def test_a_session_joined_to_an_outer_transaction_deletes_its_rows_there(
    engine: Engine, outbox: Outbox, remote: Remote
) -> None:
    """The test-suite pattern: the session's commit publishes, the connection's owner decides."""
    with engine.connect() as connection:
        connection.begin()
        with Session(bind=connection) as session:
            complete(session, "joined")
            session.commit()
        assert texts(remote) == ["joined"]
        assert connection.scalars(select(outbox.table.c.id)).all() == []
        connection.rollback()


# -- model signals, sent by the flush ---------------------------------------------------


def test_post_save_sent_during_the_flush_goes_through_the_outbox(
    engine: Engine, outbox: Outbox, remote: Remote
) -> None:
    """The row is written inside the flush, and the event published after the commit."""
    with publishing(remote, post_save, "post_save", sender=Todo):
        with Session(engine) as session:
            todo = Todo(text="saved")
            session.add(todo)
            session.flush()
            assert published(remote) == []
            assert len(session.scalars(select(outbox.table.c.id)).all()) == 1
            session.commit()
            [event] = published(remote)
            assert event.kwargs["instance"] == ModelKey(Todo, (todo.id,))
            assert event.kwargs["created"] is True
            assert event.sender is Todo
    assert rows(engine, outbox) == []


def test_the_flush_done_by_commit_is_relayed_too(
    engine: Engine, outbox: Outbox, remote: Remote
) -> None:
    """No explicit flush: the events of the commit's own flush are published after it."""
    with publishing(remote, post_save, "post_save", sender=Todo):
        with Session(engine) as session:
            session.add_all([Todo(text="a"), Todo(text="b")])
            session.commit()
    assert [event.signal for event in published(remote)] == ["post_save", "post_save"]
    assert rows(engine, outbox) == []


def test_a_failed_flush_publishes_nothing(engine: Engine, outbox: Outbox, remote: Remote) -> None:
    """The flush's error rolls back the transaction, and the rows written in it."""
    with publishing(remote, post_save, "post_save", sender=Todo):
        with Session(engine) as session:
            session.add(Todo(text="saved"))
            session.flush()
            session.add(Todo(text=None))  # NOT NULL
            with pytest.raises(IntegrityError):
                session.flush()
            session.rollback()
    assert published(remote) == []
    assert rows(engine, outbox) == []


# -- when the publish after the commit fails --------------------------------------------


def test_a_broker_down_at_commit_leaves_the_rows_for_the_relay(
    engine: Engine,
    outbox: Outbox,
    remote: Remote,
    transport: BrokerDown,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The commit succeeds, a warning is logged, and relay() publishes the rows later."""
    transport.down = True
    with caplog.at_level(logging.WARNING, logger="tocsin"), Session(engine) as session:
        complete(session, "a")
        complete(session, "b")
        session.commit()
    assert "2 event(s) not published after the commit" in caplog.text
    assert published(remote) == []
    assert len(rows(engine, outbox)) == 2

    transport.down = False
    assert outbox.relay(transport) == 2
    assert texts(remote) == ["a", "b"]
    assert rows(engine, outbox) == []


def test_a_crash_after_the_commit_loses_nothing(
    engine: Engine, outbox: Outbox, remote: Remote, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process "dies" before publishing: the committed rows are relayed by another one."""
    monkeypatch.setattr(_outbox, "_relay_committed", lambda **kwargs: None)
    with Session(engine) as session:
        complete(session, "survives")
        session.commit()
    assert published(remote) == []
    monkeypatch.undo()

    # Another process: its own transport and outbox on the same table.
    other = Outbox(engine, relay_after=0)
    with MemoryTransport() as transport:
        assert other.relay(transport) == 1
        assert [remote.decode(m.payload).kwargs["text"] for m in transport.read(STREAM)] == [
            "survives"
        ]
    assert rows(engine, outbox) == []


# -- relay() -----------------------------------------------------------------------------


def leave_rows(engine: Engine, transport: BrokerDown, *text: str) -> None:
    """Commit one event per text while the broker is down, so their rows stay."""
    transport.down = True
    with Session(engine) as session:
        for each in text:
            complete(session, each)
        session.commit()
    transport.down = False


def test_relay_takes_the_oldest_rows_first_up_to_the_limit(
    engine: Engine, outbox: Outbox, remote: Remote, transport: BrokerDown
) -> None:
    """Each relay publishes the next rows in send order, and says how many."""
    leave_rows(engine, transport, "1", "2", "3", "4", "5")
    assert outbox.relay(transport, limit=2) == 2
    assert texts(remote) == ["1", "2"]
    assert outbox.relay(transport, limit=2) == 2
    assert outbox.relay(transport, limit=2) == 1
    assert outbox.relay(transport, limit=2) == 0
    assert texts(remote) == ["1", "2", "3", "4", "5"]


def test_relay_leaves_rows_younger_than_relay_after(
    engine: Engine, outbox: Outbox, remote: Remote, transport: BrokerDown
) -> None:
    """A row this new may still be published by the process that committed it."""
    leave_rows(engine, transport, "recent")
    patient = Outbox(engine, relay_after=3600)
    assert patient.relay(transport) == 0
    assert len(rows(engine, outbox)) == 1


def test_relay_with_the_broker_down_raises_and_keeps_the_rows(
    engine: Engine, outbox: Outbox, remote: Remote, transport: BrokerDown
) -> None:
    """The worker logs the TransportError and relays again later."""
    leave_rows(engine, transport, "kept")
    transport.down = True
    with pytest.raises(TransportError):
        outbox.relay(transport)
    assert len(rows(engine, outbox)) == 1


def test_relay_needs_an_engine() -> None:
    """Writing needs only the session; relay() reads the table by itself."""
    with MemoryTransport() as transport, pytest.raises(ValueError, match=r"Outbox\(engine"):
        Outbox().relay(transport)


@pytest.mark.parametrize("limit", [0, -1, 1.5, True])
def test_relay_refuses_a_bad_limit(outbox: Outbox, limit: Any) -> None:
    """limit is a positive integer."""
    with MemoryTransport() as transport, pytest.raises(ValueError, match="limit"):
        outbox.relay(transport, limit=limit)


def test_relay_with_an_async_transport_returns_a_coroutine(
    engine: Engine, outbox: Outbox, remote: Remote, transport: BrokerDown
) -> None:
    """What AsyncWorker awaits."""
    leave_rows(engine, transport, "async")
    relay = outbox.relay(AsyncMemoryTransport(transport))
    assert asyncio.iscoroutine(relay)
    assert asyncio.run(relay) == 1
    assert texts(remote) == ["async"]
    assert rows(engine, outbox) == []


class Gated(MemoryTransport):
    """Holds its first publish_many until released, with the relay's rows locked."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = threading.Event()
        self.release = threading.Event()

    def publish_many(self, stream: str, payloads: Sequence[bytes]) -> list[str]:
        self.holding.set()
        self.release.wait(timeout=10)
        return super().publish_many(stream, payloads)


# SQLite has one writer at a time and nothing to lock: relays there are at least once.
@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_concurrent_relays_share_the_rows_on_postgresql(
    engine: Engine, outbox: Outbox, remote: Remote, transport: BrokerDown
) -> None:
    """FOR UPDATE SKIP LOCKED: a second relay skips the rows the first holds."""
    leave_rows(engine, transport, "1", "2", "3", "4", "5")
    gated = Gated()
    counts: list[int] = []
    first = threading.Thread(target=lambda: counts.append(outbox.relay(gated, limit=2)))
    first.start()
    try:
        assert gated.holding.wait(timeout=10)
        with MemoryTransport() as second:
            assert outbox.relay(second) == 3
            seen_second = [remote.decode(m.payload).kwargs["text"] for m in second.read(STREAM)]
    finally:
        gated.release.set()
        first.join()
    seen_first = [remote.decode(m.payload).kwargs["text"] for m in gated.read(STREAM)]
    gated.close()
    assert counts == [2]
    assert seen_first == ["1", "2"]
    assert seen_second == ["3", "4", "5"]
    assert rows(engine, outbox) == []


# -- the whole way, with a worker --------------------------------------------------------


def test_a_worker_delivers_a_committed_event_with_its_model_key(
    engine: Engine, outbox: Outbox, remote: Remote
) -> None:
    """Send in a transaction, commit, and a worker runs the receiver with the todo's key."""
    received: list[tuple[ModelKey, str]] = []

    def on_completed(sender: type[Todo], todo: ModelKey, **kwargs: Any) -> None:
        with Session(engine) as session:
            received.append((todo, todo.get(session).text))

    with Session(engine) as session:
        todo = complete(session, "ship it")
        session.commit()
        todo_id = todo.id

    with connected_to(on_completed, todo_completed):
        assert Worker(remote, block=0.01).run_once() == 1
    assert received == [(ModelKey(Todo, (todo_id,)), "ship it")]
    assert rows(engine, outbox) == []


def test_a_worker_relays_what_a_crashed_process_left(
    engine: Engine, outbox: Outbox, remote: Remote, transport: BrokerDown
) -> None:
    """run_once() relays the outbox before reading, so the event is handled in the same round."""
    leave_rows(engine, transport, "left behind")
    received: list[str] = []

    def on_completed(sender: type[Todo], text: str, **kwargs: Any) -> None:
        received.append(text)

    with connected_to(on_completed, todo_completed):
        assert Worker(remote, block=0.01).run_once() == 1
    assert received == ["left behind"]
    assert rows(engine, outbox) == []


# -- asyncio -----------------------------------------------------------------------------


@pytest.fixture
def async_outbox(async_engine: AsyncEngine) -> Outbox:
    """An outbox on the asyncio test database, its table created."""
    outbox = Outbox(async_engine, relay_after=0)

    async def create() -> None:
        async with async_engine.begin() as connection:
            await connection.run_sync(outbox.table.create)

    asyncio.run(create())
    return outbox


async def async_rows(engine: AsyncEngine, outbox: Outbox) -> list[str]:
    async with engine.connect() as connection:
        return list(await connection.scalars(select(outbox.table.c.id)))


def test_post_save_in_an_async_session_goes_through_the_outbox(
    async_engine: AsyncEngine, async_outbox: Outbox
) -> None:
    """The flush runs in SQLAlchemy's greenlet, where the row is written at once."""
    transport = MemoryTransport()
    remote = make_remote(transport, async_outbox)

    async def main() -> tuple[list[Event], int]:
        async with AsyncSession(async_engine) as session:
            session.add(Todo(text="async"))
            await session.flush()
            assert published(remote) == []
            in_table = len((await session.scalars(select(async_outbox.table.c.id))).all())
            await session.commit()
        return published(remote), in_table

    with publishing(remote, post_save, "post_save", sender=Todo):
        events, in_table = asyncio.run(main())
    assert in_table == 1
    assert [event.signal for event in events] == ["post_save"]
    assert asyncio.run(async_rows(async_engine, async_outbox)) == []
    transport.close()


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "rollback"])
def test_a_send_from_async_code_is_written_by_the_session(
    async_engine: AsyncEngine, async_outbox: Outbox, commit: bool
) -> None:
    """Outside the flush no SQL can run: the row waits in memory and the commit writes it."""
    transport = MemoryTransport()
    remote = make_remote(transport, async_outbox)

    async def main() -> None:
        async with AsyncSession(async_engine) as session:
            todo = Todo(text="async")
            session.add(todo)
            await session.flush()
            await todo_completed.asend(sender=Todo, todo=todo, text="from async code")
            assert published(remote) == []
            if commit:
                await session.commit()

    with publishing(remote, todo_completed, "todo_completed"):
        asyncio.run(main())
    assert texts(remote) == (["from async code"] if commit else [])
    assert asyncio.run(async_rows(async_engine, async_outbox)) == []
    transport.close()


def test_an_async_transport_publishes_after_an_async_commit(
    async_engine: AsyncEngine, async_outbox: Outbox
) -> None:
    """Async publishers run outside the greenlet; the flush writes their rows, and the
    commit awaits the publish in its event loop."""
    memory = MemoryTransport()
    remote = make_remote(AsyncMemoryTransport(memory), async_outbox)

    async def main() -> list[str]:
        async with AsyncSession(async_engine) as session:
            session.add(Todo(text="async"))
            await session.flush()
            assert memory.length(STREAM) == 0
            stored = list((await session.scalars(select(async_outbox.table.c.id))).all())
            await session.commit()
        return stored

    with publishing(remote, post_save, "post_save", sender=Todo):
        stored = asyncio.run(main())
    assert [remote.decode(m.payload).id for m in memory.read(STREAM)] == stored
    assert asyncio.run(async_rows(async_engine, async_outbox)) == []
    memory.close()


def test_a_sync_session_with_an_async_transport_leaves_the_rows_for_the_relay(
    engine: Engine, outbox: Outbox
) -> None:
    """No event loop to publish in after the commit: the worker's relay publishes them."""
    memory = MemoryTransport()
    async_transport = AsyncMemoryTransport(memory)
    remote = make_remote(async_transport, outbox)
    with publishing(remote, todo_completed, "todo_completed"), Session(engine) as session:
        complete(session, "later")
        session.commit()
    assert memory.length(STREAM) == 0
    assert asyncio.run(outbox.relay(async_transport)) == 1
    assert [remote.decode(m.payload).kwargs["text"] for m in memory.read(STREAM)] == ["later"]
    memory.close()


# -- Redis -------------------------------------------------------------------------------


@pytest.fixture
def redis_stream() -> Iterator[str]:
    """A stream of the test's own on the real Redis server, deleted afterwards."""
    redis = pytest.importorskip("redis")
    redis_or_skip(REDIS_URL)
    stream = f"tocsin-test:{uuid.uuid4().hex}:outbox"
    yield stream
    with redis.Redis.from_url(REDIS_URL) as client:
        client.delete(stream)


def test_a_committed_event_reaches_redis(engine: Engine, outbox: Outbox, redis_stream: str) -> None:
    """The same path on the real transport: nothing in the stream until the commit."""
    from tocsin.remote import RedisStreamsTransport

    serializer = JSONSerializer()
    register_models(serializer, Base)
    with RedisStreamsTransport(url=REDIS_URL) as transport:
        remote = Remote(transport, stream=redis_stream, serializer=serializer, outbox=outbox)
        with publishing(remote, todo_completed, "todo_completed"), Session(engine) as session:
            complete(session, "to redis")
            assert transport.length(redis_stream) == 0
            session.commit()
        [message] = transport.read(redis_stream)
    assert remote.decode(message.payload).kwargs["text"] == "to redis"
    assert rows(engine, outbox) == []


# -- the table -----------------------------------------------------------------------------


def test_the_table_can_join_your_metadata(engine: Engine) -> None:
    """Pass metadata= so Alembic sees it; create() does nothing when it exists."""
    metadata = MetaData()
    outbox = Outbox(engine, metadata=metadata, table_name="events_outbox")
    assert metadata.tables["events_outbox"] is outbox.table
    outbox.create()
    outbox.create()
    columns = {column["name"]: column for column in inspect(engine).get_columns("events_outbox")}
    assert list(columns) == ["id", "stream", "payload", "created_at"]
    assert isinstance(outbox.table.c.id.type, String)
    assert isinstance(outbox.table.c.payload.type, LargeBinary)
    assert [index["column_names"] for index in inspect(engine).get_indexes("events_outbox")] == [
        ["created_at"]
    ]


def test_a_table_name_taken_in_the_metadata_is_refused() -> None:
    """Two outboxes cannot share one table definition."""
    metadata = MetaData()
    Outbox(metadata=metadata)
    with pytest.raises(ValueError, match="table_name"):
        Outbox(metadata=metadata)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"table_name": ""}, "table_name"), ({"relay_after": -1}, "relay_after")],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    """At construction, naming the option."""
    with pytest.raises(ValueError, match=message):
        Outbox(**options)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)
def test_relays_racing_publish_every_row_exactly_once(engine: Engine, outbox: Outbox) -> None:
    """Three relays in threads over 600 rows: each row is published once, by one of them."""
    old = time.time() - 3600
    with engine.begin() as connection:
        connection.execute(
            outbox.table.insert(),
            [
                {"id": f"{n:032x}", "stream": STREAM, "payload": b"%d" % n, "created_at": old + n}
                for n in range(600)
            ],
        )
    shared = MemoryTransport()
    start = threading.Barrier(3)
    failures: list[BaseException] = []

    def relay() -> None:
        try:
            start.wait()
            while outbox.relay(shared, limit=25):
                pass
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=relay) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    payloads = [message.payload for message in shared.read(STREAM, count=10_000)]
    assert len(payloads) == 600
    assert sorted(payloads) == sorted(b"%d" % n for n in range(600))
    assert rows(engine, outbox) == []
