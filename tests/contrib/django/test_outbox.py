"""The outbox on Django's ORM: events commit, or roll back, with the data; what a
process left is relayed, and two relays never publish a row twice."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.db.models.signals import post_save
from django.db.transaction import TransactionManagementError

from tocsin import Signal
from tocsin.contrib.django.models import OutboxEntry
from tocsin.contrib.django.remote import Outbox, register_models
from tocsin.exceptions import TransportError
from tocsin.remote import AsyncMemoryTransport, JSONSerializer, MemoryTransport, Remote, Worker

from ._databases import extra_database
from .models import Shelf

STREAM = "django-outbox"
order_placed = Signal()
pytestmark = pytest.mark.usefixtures("tables")


class FlakyTransport(MemoryTransport):
    """A memory transport that can fail, or be slow, on publish."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.delay = 0.0

    def _publish_many(self, stream: str, payloads: Sequence[bytes]) -> list[str]:
        if self.down:
            raise TransportError("the broker is down")
        time.sleep(self.delay)
        return super()._publish_many(stream, payloads)


@pytest.fixture(scope="module")
def outbox_table() -> Iterator[None]:
    with connection.schema_editor() as editor:
        editor.create_model(OutboxEntry)
    yield
    with connection.schema_editor() as editor:
        editor.delete_model(OutboxEntry)


@pytest.fixture
def transport() -> FlakyTransport:
    return FlakyTransport()


@pytest.fixture
def remote(outbox_table: None, transport: FlakyTransport) -> Iterator[Remote]:
    serializer = JSONSerializer()
    register_models(serializer)
    remote = Remote(transport, stream=STREAM, serializer=serializer, outbox=Outbox())
    remote.publish(order_placed)
    yield remote
    remote.disconnect()
    OutboxEntry.objects.all().delete()
    Shelf.objects.all().delete()


def sent(remote: Remote) -> list[Any]:
    """The order_placed events published so far: their ``number`` arguments."""
    transport = remote.transport
    assert isinstance(transport, MemoryTransport)
    return [remote.decode(m.payload).kwargs["number"] for m in transport.read(STREAM)]


def test_an_event_sent_in_an_atomic_block_is_published_after_the_commit(remote: Remote) -> None:
    """Written in the block, published after its commit, its row then deleted."""
    with transaction.atomic():
        order_placed.send(None, number=1)
        assert OutboxEntry.objects.count() == 1
        assert sent(remote) == []
    assert sent(remote) == [1]
    assert OutboxEntry.objects.count() == 0


def test_a_rollback_takes_the_event_with_it(remote: Remote) -> None:
    """Nothing published, nothing left."""
    with transaction.atomic():
        order_placed.send(None, number=1)
        transaction.set_rollback(True)
    assert sent(remote) == []
    assert OutboxEntry.objects.count() == 0


def test_savepoints_drop_their_events_and_keep_the_order(remote: Remote) -> None:
    """A rolled-back savepoint drops its events; the others come in send order."""
    with transaction.atomic():
        order_placed.send(None, number=1)
        with transaction.atomic():
            order_placed.send(None, number=2)
        with transaction.atomic():
            order_placed.send(None, number=3)
            transaction.set_rollback(True)
        order_placed.send(None, number=4)
    assert sent(remote) == [1, 2, 4]
    assert OutboxEntry.objects.count() == 0


def test_two_transactions_in_a_row_publish_their_own_events(remote: Remote) -> None:
    """A batch ends with its transaction, committed or rolled back."""
    with transaction.atomic():
        order_placed.send(None, number=1)
        transaction.set_rollback(True)
    with transaction.atomic():
        order_placed.send(None, number=2)
    with transaction.atomic():
        order_placed.send(None, number=3)
    assert sent(remote) == [2, 3]


def test_outside_an_atomic_block_the_event_is_published_at_once(remote: Remote) -> None:
    """As without an outbox: no row."""
    order_placed.send(None, number=1)
    assert sent(remote) == [1]
    assert OutboxEntry.objects.count() == 0


def test_under_manual_transaction_management_the_send_raises(remote: Remote) -> None:
    """As transaction.on_commit() does there: nothing written, nothing published."""
    transaction.set_autocommit(False)
    try:
        with pytest.raises(TransactionManagementError):
            order_placed.send(None, number=1)
        assert OutboxEntry.objects.count() == 0
    finally:
        transaction.rollback()
        transaction.set_autocommit(True)
    assert sent(remote) == []


def test_model_signals_are_published_once_and_the_outbox_rows_send_none(
    remote: Remote, installed_now: None
) -> None:
    """Rows are written and deleted without model signals: publishing every
    post_save does not publish the outbox's own rows."""
    remote.publish(post_save)
    with transaction.atomic():
        shelf = Shelf.objects.create(name="a")
    transport = remote.transport
    assert isinstance(transport, MemoryTransport)
    [event] = [remote.decode(m.payload) for m in transport.read(STREAM)]
    assert (event.sender, event.kwargs["instance"]) == (Shelf, shelf)


def test_what_the_broker_refused_after_the_commit_is_relayed_later(
    remote: Remote, transport: FlakyTransport, caplog: pytest.LogCaptureFixture
) -> None:
    """The rows stay; the worker's relay publishes them once the broker is back."""
    transport.down = True
    with transaction.atomic():
        order_placed.send(None, number=1)
        order_placed.send(None, number=2)
    assert "2 event(s) not published after the commit" in caplog.text
    assert OutboxEntry.objects.count() == 2
    transport.down = False
    outbox = remote.outbox
    assert isinstance(outbox, Outbox)
    outbox.relay_after = 0.0
    Worker(remote, block=0.01).run_once()  # its first round relays
    assert sent(remote) == [1, 2]
    assert OutboxEntry.objects.count() == 0


def test_relay_writes_back_what_it_could_not_publish(
    remote: Remote, transport: FlakyTransport
) -> None:
    """A broker failure during a relay keeps the rows and raises TransportError."""
    transport.down = True
    with transaction.atomic():
        order_placed.send(None, number=1)
    outbox = Outbox(relay_after=0)
    with pytest.raises(TransportError):
        outbox.relay(transport)
    assert OutboxEntry.objects.count() == 1
    transport.down = False
    assert outbox.relay(transport) == 1
    assert sent(remote) == [1]


def test_relay_leaves_rows_younger_than_relay_after(
    remote: Remote, transport: FlakyTransport
) -> None:
    """The committing process is expected to publish those."""
    transport.down = True
    with transaction.atomic():
        order_placed.send(None, number=1)
    transport.down = False
    assert Outbox(relay_after=60).relay(transport) == 0
    assert Outbox(relay_after=0).relay(transport, limit=1) == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_send_in_another_database_writes_its_row_there(
    remote: Remote, tmp_path: Path, transport: FlakyTransport, backend: str
) -> None:
    """The row goes to the database of the send's transaction (its using), is
    published after that database's commit, and is deleted there."""
    with extra_database(backend, tmp_path, (OutboxEntry, Shelf)) as alias:
        with transaction.atomic(using=alias):
            order_placed.send(None, number=1, using=alias)
            with transaction.atomic(using=alias):  # a savepoint, rolled back
                order_placed.send(None, number=2, using=alias)
                transaction.set_rollback(True, using=alias)
            assert OutboxEntry.objects.using(alias).count() == 1
            assert OutboxEntry.objects.count() == 0
        assert sent(remote) == [1]
        assert OutboxEntry.objects.using(alias).count() == 0
        transport.down = True  # now keep the rows, to relay them
        with transaction.atomic(using=alias):
            order_placed.send(None, number=3, using=alias)
        transport.down = False
        assert Outbox(databases=["default"], relay_after=0).relay(transport) == 0
        assert Outbox(databases=[alias], relay_after=0).relay(transport) == 1
        assert sent(remote) == [1, 3]
        connections[alias].close()


def test_only_the_outbox_databases_take_events(
    remote: Remote, tmp_path: Path, transport: FlakyTransport
) -> None:
    """A transaction of a database the outbox does not cover: published at once."""
    with extra_database("sqlite", tmp_path, (OutboxEntry,)) as alias:
        remote.outbox = Outbox(databases=["default"])
        with transaction.atomic(using=alias):
            order_placed.send(None, number=1, using=alias)
            assert sent(remote) == [1]


def test_an_async_worker_relays_by_awaiting_relay(
    remote: Remote, transport: FlakyTransport, tmp_path: Path
) -> None:
    """relay() returns a coroutine for an AsyncTransport; the queries run in a thread."""
    with extra_database("sqlite", tmp_path, (OutboxEntry,)) as alias:
        transport.down = True  # the committing process could not publish
        remote.outbox = Outbox(databases=[alias])
        with transaction.atomic(using=alias):
            order_placed.send(None, number=1, using=alias)
        assert OutboxEntry.objects.using(alias).count() == 1
        streams = MemoryTransport()
        relay = Outbox(databases=[alias], relay_after=0).relay(AsyncMemoryTransport(streams))
        assert asyncio.run(relay) == 1
        assert OutboxEntry.objects.using(alias).count() == 0
        [message] = streams.read(STREAM)
        assert remote.decode(message.payload).kwargs == {"number": 1, "using": alias}
        connections[alias].close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_racing_relays_never_publish_a_row_twice(tmp_path: Path, backend: str) -> None:
    """Four relays at once, each publishing slowly: every row exactly once."""
    with extra_database(backend, tmp_path, (OutboxEntry,)) as alias:
        rows = [
            OutboxEntry(id=f"{n:032x}", stream=STREAM, payload=str(n).encode(), created_at=n)
            for n in range(60)
        ]
        OutboxEntry.objects.using(alias).bulk_create(rows)
        transport = FlakyTransport()
        transport.delay = 0.01
        outbox = Outbox(databases=[alias], relay_after=0)
        start = threading.Barrier(4)
        counts: list[int] = []
        errors: list[BaseException] = []

        def relay() -> None:
            try:
                start.wait()
                while (count := outbox.relay(transport, limit=5)) > 0:
                    counts.append(count)
            except BaseException as error:  # reported by the test
                errors.append(error)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=relay) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        connections[alias].close()
        assert errors == []
        published = [m.payload for m in transport.read(STREAM, count=1000)]
        assert sorted(published, key=int) == [str(n).encode() for n in range(60)]
        assert sum(counts) == 60
        assert OutboxEntry.objects.using(alias).count() == 0


def test_outbox_checks_its_arguments(outbox_table: None) -> None:
    """TypeError and ValueError, naming what is wrong."""
    with pytest.raises(TypeError, match="list of aliases"):
        Outbox(databases="default")
    with pytest.raises(TypeError, match="database aliases"):
        Outbox(databases=[1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="relay_after must be a number"):
        Outbox(relay_after="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="relay_after must be >= 0"):
        Outbox(relay_after=-1)
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        Outbox().relay(MemoryTransport(), limit=0)
    with pytest.raises(TypeError, match="Transport or AsyncTransport"):
        Outbox().relay(object())  # type: ignore[call-overload]
