"""Remote signals and receivers: what a send publishes, and how a worker runs it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest

from tocsin import Signal, oncommit
from tocsin.exceptions import PublishError, SerializationError, TransportError
from tocsin.remote import (
    AsyncMemoryTransport,
    Event,
    JSONSerializer,
    MemoryTransport,
    Remote,
    Worker,
    current_event,
)
from tocsin.testing import FakeTransaction

order_paid = Signal()
order_shipped = Signal()
STREAM = "events"


class Order:
    """A sender class both processes register by name."""


def app_serializer() -> JSONSerializer:
    """The serializer of this test's application: it sends Order as a sender."""
    serializer = JSONSerializer()
    serializer.register_class(Order)
    return serializer


@pytest.fixture
def transport() -> Iterator[MemoryTransport]:
    with MemoryTransport() as transport:
        yield transport


@pytest.fixture
def remote(transport: MemoryTransport) -> Iterator[Remote]:
    remote = Remote(transport, stream=STREAM, serializer=app_serializer())
    yield remote
    for signal in (order_paid, order_shipped):
        signal.receivers = []  # drop the publishers this test connected
        signal.sender_receivers_cache.clear()


def published(remote: Remote) -> list[Event]:
    transport = remote.transport
    assert isinstance(transport, MemoryTransport)
    return [remote.decode(m.payload) for m in transport.read(STREAM)]


def test_a_published_signal_sends_an_event_with_its_arguments(remote: Remote) -> None:
    """send() appends one event: signal name, sender, arguments, id and time."""
    remote.publish(order_paid)
    responses = order_paid.send(Order, order_id=7, lines=("a", "b"))
    [event] = published(remote)
    assert event.signal == f"{__name__}.order_paid"
    assert event.sender is Order
    assert event.kwargs == {"order_id": 7, "lines": ("a", "b")}
    assert len(event.id) == 32
    assert event.receiver is None
    [(_, returned)] = responses
    assert returned == event  # the publisher's response is the event it published


def test_each_send_gets_a_new_id(remote: Remote) -> None:
    """Ids tell events apart; they are unique per send."""
    remote.publish(order_paid)
    for _ in range(3):
        order_paid.send(None)
    assert len({event.id for event in published(remote)}) == 3


def test_publish_respects_a_sender_filter(remote: Remote) -> None:
    """With sender=, only that sender's sends are published."""
    remote.publish(order_paid, sender=Order)
    order_paid.send(None)
    order_paid.send(Order)
    assert [event.sender for event in published(remote)] == [Order]


def test_an_unserializable_argument_fails_the_send_and_publishes_nothing(remote: Remote) -> None:
    """The error is raised from send(), naming the signal and the argument."""
    remote.publish(order_paid)
    with pytest.raises(SerializationError) as caught:
        order_paid.send(Order, customer=object())
    assert f"signal {__name__}.order_paid" in str(caught.value)
    assert "kwargs['customer']" in str(caught.value)
    assert published(remote) == []


def test_send_robust_returns_the_serialization_error(remote: Remote) -> None:
    """send_robust() keeps Django's contract: the error is a response, not raised."""
    remote.publish(order_paid)
    [(_, error)] = order_paid.send_robust(Order, customer=object())
    assert isinstance(error, SerializationError)
    assert published(remote) == []


def test_publish_needs_a_named_signal(remote: Remote) -> None:
    """A signal bound to no module-level name cannot be found by a worker."""
    with pytest.raises(ValueError, match="pass name="):
        remote.publish(Signal())


def test_an_explicit_name_is_used(remote: Remote) -> None:
    """name= overrides the module-level name."""
    remote.publish(order_paid, name="orders.paid")
    order_paid.send(None)
    assert [event.signal for event in published(remote)] == ["orders.paid"]
    assert remote.signals == {"orders.paid": order_paid}


def test_two_signals_cannot_share_a_name(remote: Remote) -> None:
    """A name is one signal's."""
    remote.publish(order_paid, name="orders")
    with pytest.raises(ValueError, match="already published"):
        remote.publish(order_shipped, name="orders")


def test_publishing_twice_connects_once(remote: Remote) -> None:
    """publish() is idempotent: one event per send."""
    remote.publish(order_paid)
    remote.publish(order_paid)
    order_paid.send(None)
    assert len(published(remote)) == 1


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: Remote("redis://"), TypeError),  # type: ignore[arg-type]
        (lambda: Remote(MemoryTransport(), stream=""), ValueError),
        (lambda: Remote(MemoryTransport(), serializer=object()), TypeError),  # type: ignore[arg-type]
        (lambda: Remote(MemoryTransport(), outbox=object(), on_commit=True), ValueError),  # type: ignore[arg-type]
    ],
    ids=["not-a-transport", "empty-stream", "bad-serializer", "outbox-and-on-commit"],
)
def test_remote_checks_its_arguments(call: Any, error: type[Exception]) -> None:
    """Bad constructor arguments raise at once."""
    with pytest.raises(error):
        call()


def test_a_remote_receiver_is_not_called_here(remote: Remote) -> None:
    """Sending publishes an event for the receiver instead of calling it."""
    calls: list[Any] = []

    @remote.receiver(order_paid, name="email_receipt")
    def email_receipt(sender: Any, **kwargs: Any) -> None:
        calls.append(kwargs)

    order_paid.send(Order, order_id=1)
    assert calls == []
    [event] = published(remote)
    assert event.receiver == "email_receipt"
    assert remote.receivers == {"email_receipt": (order_paid, email_receipt)}


def test_a_worker_calls_the_remote_receiver_with_the_arguments(remote: Remote) -> None:
    """handle() calls the one receiver the event is for, with Django's arguments."""
    calls: list[dict[str, Any]] = []

    def email_receipt(sender: Any, **kwargs: Any) -> None:
        calls.append({"sender": sender, **kwargs})

    remote.receiver(order_paid, name="email_receipt")(email_receipt)
    order_paid.send(Order, order_id=1)
    [event] = published(remote)
    assert event.receiver == "email_receipt"
    assert remote.handle(event) == []
    assert calls == [{"sender": Order, "signal": order_paid, "order_id": 1}]


def test_a_remote_receiver_keeps_its_sender_filter(remote: Remote) -> None:
    """Only sends from the receiver's sender are published for it."""
    remote.receiver(order_paid, sender=Order, name="only_orders")(lambda **kw: None)
    order_paid.send(None)
    order_paid.send(Order)
    assert [event.sender for event in published(remote)] == [Order]


def test_local_receivers_are_not_published(remote: Remote) -> None:
    """A remote receiver's name must be importable by the worker: locals need name=."""

    def local(**kwargs: Any) -> None: ...

    with pytest.raises(ValueError, match="inside a function"):
        remote.receiver(order_paid)(local)


def test_two_receivers_cannot_share_a_name(remote: Remote) -> None:
    """A receiver name is one function's."""

    def first(**kwargs: Any) -> None: ...

    def second(**kwargs: Any) -> None: ...

    remote.receiver(order_paid, name="handler")(first)
    with pytest.raises(ValueError, match="already registered"):
        remote.receiver(order_paid, name="handler")(second)


def test_handling_sends_again_to_local_receivers_without_publishing(remote: Remote) -> None:
    """In a worker, the signal's receivers run and the event is not published back."""
    remote.publish(order_paid)
    seen: list[tuple[Any, Any]] = []

    def on_paid(sender: Any, **kwargs: Any) -> None:
        event = current_event()
        assert event is not None
        seen.append((kwargs["order_id"], event.id))

    order_paid.connect(on_paid)
    order_paid.disconnect(on_paid)  # sent from elsewhere: only the publisher is here
    order_paid.send(Order, order_id=3)
    [event] = published(remote)
    order_paid.connect(on_paid)
    try:
        assert remote.handle(event) == []
    finally:
        order_paid.disconnect(on_paid)
    assert seen == [(3, event.id)]
    assert len(published(remote)) == 1  # nothing published again
    assert current_event() is None


def test_handle_reports_what_receivers_raised(remote: Remote) -> None:
    """Failures are returned (and logged), every receiver still runs."""
    remote.publish(order_paid)
    order_paid.send(None)
    [event] = published(remote)
    ran: list[str] = []

    def fails(**kwargs: Any) -> None:
        raise RuntimeError("mail server down")

    def succeeds(**kwargs: Any) -> None:
        ran.append("ok")

    order_paid.connect(fails)
    order_paid.connect(succeeds)
    [error] = remote.handle(event)
    assert isinstance(error, RuntimeError)
    assert ran == ["ok"]


def test_sends_from_a_receiver_in_the_worker_are_published(remote: Remote) -> None:
    """Only the relayed signal's publishers stand aside: other signals still publish."""
    remote.publish(order_paid)
    remote.publish(order_shipped)
    order_paid.send(None, order_id=1)
    [event] = published(remote)

    def ship(**kwargs: Any) -> None:
        order_shipped.send(None, order_id=kwargs["order_id"])

    order_paid.connect(ship)
    assert remote.handle(event) == []
    assert [e.signal for e in published(remote)] == [event.signal, f"{__name__}.order_shipped"]


def test_handle_refuses_an_unknown_signal(remote: Remote) -> None:
    """A worker that does not know the signal raises LookupError saying what to import."""
    event = Event("0" * 32, "nowhere.signal", None, {}, 0.0)
    with pytest.raises(LookupError, match="not published here"):
        remote.handle(event)
    with pytest.raises(LookupError, match="no remote receiver"):
        remote.handle(Event("0" * 32, "nowhere.signal", None, {}, 0.0, receiver="x"))


def test_decode_refuses_a_newer_format(remote: Remote) -> None:
    """An event format this version does not know is an error, not a guess."""
    with pytest.raises(SerializationError, match="upgrade"):
        remote.decode(
            b'{"v": 2, "id": "x", "signal": "s", "sender": null, "kwargs": {}, "time": 0}'
        )
    with pytest.raises(SerializationError, match="no 'kwargs'"):
        remote.decode(b'{"v": 1, "id": "x", "signal": "s", "sender": null, "time": 0}')


def test_on_commit_publishes_after_the_commit(transport: MemoryTransport) -> None:
    """Remote(on_commit=True) publishes only when the transaction commits."""
    remote = Remote(transport, stream=STREAM, serializer=app_serializer(), on_commit=True)
    remote.publish(order_paid)
    try:
        with FakeTransaction():
            order_paid.send(None, order_id=1)
            assert published(remote) == []
        assert [event.kwargs for event in published(remote)] == [{"order_id": 1}]
    finally:
        order_paid.receivers = []


def test_an_async_transport_publishes_from_asend() -> None:
    """With an AsyncTransport, the publisher is an async receiver awaited by asend()."""

    async def main() -> list[Event]:
        async with AsyncMemoryTransport() as transport:
            remote = Remote(transport, stream=STREAM, serializer=app_serializer())
            remote.publish(order_paid)
            try:
                await order_paid.asend(Order, order_id=9)
            finally:
                order_paid.receivers = []
            return [remote.decode(m.payload) for m in await transport.read(STREAM)]

    [event] = asyncio.run(main())
    assert event.kwargs == {"order_id": 9}
    assert event.sender is Order


def test_ahandle_awaits_async_receivers(remote: Remote) -> None:
    """ahandle() runs the event in the running loop."""
    remote.publish(order_paid)
    order_paid.send(None, order_id=2)
    [event] = published(remote)
    seen: list[Any] = []

    async def on_paid(**kwargs: Any) -> None:
        await asyncio.sleep(0)
        seen.append(current_event())

    order_paid.connect(on_paid)
    assert asyncio.run(remote.ahandle(event)) == []
    assert seen == [event]


def test_a_batch_publishes_its_events_together_at_the_end(remote: Remote) -> None:
    """Inside remote.batch(), events wait for the end of the block, in order."""
    remote.publish(order_paid)
    with remote.batch() as batch:
        for order_id in range(3):
            order_paid.send(None, order_id=order_id)
        assert published(remote) == []
        assert len(batch) == 3
    assert [event.kwargs["order_id"] for event in published(remote)] == [0, 1, 2]


def test_a_full_batch_publishes_early(remote: Remote) -> None:
    """Every size events are published without waiting for the end."""
    remote.publish(order_paid)
    with remote.batch(size=2):
        for order_id in range(3):
            order_paid.send(None, order_id=order_id)
        assert len(published(remote)) == 2
    assert len(published(remote)) == 3


def test_a_batch_ended_by_an_exception_still_publishes(remote: Remote) -> None:
    """The sends happened: their events are not dropped."""
    remote.publish(order_paid)

    def send_then_fail() -> None:
        with remote.batch():
            order_paid.send(None, order_id=1)
            raise KeyError("boom")

    with pytest.raises(KeyError):
        send_then_fail()
    assert len(published(remote)) == 1


def test_nested_batches_publish_once_at_the_outermost_end(remote: Remote) -> None:
    """An inner block joins the outer one."""
    remote.publish(order_paid)
    with remote.batch():
        with remote.batch():
            order_paid.send(None)
        assert published(remote) == []
    assert len(published(remote)) == 1


def test_a_batch_is_local_to_its_thread(remote: Remote) -> None:
    """Another thread's sends are not held by this thread's batch."""
    import threading

    remote.publish(order_paid)
    with remote.batch():
        thread = threading.Thread(target=order_paid.send, args=(None,))
        thread.start()
        thread.join()
        assert len(published(remote)) == 1


def test_batch_checks_its_use(remote: Remote) -> None:
    """A bad size, or `with` on an async transport, raise clearly."""
    with pytest.raises(ValueError, match="size"):
        remote.batch(size=0)
    async_remote = Remote(AsyncMemoryTransport(), stream=STREAM, serializer=app_serializer())
    with pytest.raises(TypeError, match="async with"), async_remote.batch():
        pass


def test_an_async_batch_publishes_at_the_end() -> None:
    """`async with remote.batch()` holds asend()'s events, then publishes them."""

    async def main() -> tuple[int, int]:
        async with AsyncMemoryTransport() as transport:
            remote = Remote(transport, stream=STREAM, serializer=app_serializer())
            remote.publish(order_paid)
            try:
                async with remote.batch():
                    await order_paid.asend(None, order_id=1)
                    await order_paid.asend(None, order_id=2)
                    during = await transport.length(STREAM)
            finally:
                order_paid.receivers = []
            return during, await transport.length(STREAM)

    assert asyncio.run(main()) == (0, 2)


def test_disconnect_removes_the_publishers(remote: Remote) -> None:
    """After disconnect(), sends stay local; the remote still knows its names."""
    remote.publish(order_paid)
    remote.receiver(order_paid, name="email")(lambda **kw: None)
    remote.disconnect()
    order_paid.send(None)
    assert published(remote) == []
    assert not order_paid.has_listeners()
    assert list(remote.signals) == [f"{__name__}.order_paid"]
    assert list(remote.receivers) == ["email"]


def test_each_remote_publishes_to_its_own_transport(transport: MemoryTransport) -> None:
    """Two remotes publishing one signal each get the event."""
    first, second = (
        Remote(transport, stream=STREAM, serializer=app_serializer()),
        Remote(MemoryTransport(), stream=STREAM),
    )
    try:
        first.publish(order_paid)
        second.publish(order_paid)
        order_paid.send(None)
        assert len(published(first)) == len(published(second)) == 1
    finally:
        first.disconnect()
        second.disconnect()


def test_ahandle_runs_a_sync_remote_receiver_off_the_loop(remote: Remote) -> None:
    """A sync remote receiver does not block the worker's event loop."""
    import threading

    threads: list[str] = []

    def report(**kwargs: Any) -> None:
        threads.append(threading.current_thread().name)
        assert current_event() is not None

    remote.receiver(order_paid, name="report")(report)
    order_paid.send(None)
    [event] = published(remote)
    assert asyncio.run(remote.ahandle(event)) == []
    assert threads
    assert threads[0] != threading.main_thread().name


def test_bad_arguments_to_receiver_handle_and_decode_raise(remote: Remote) -> None:
    """An empty receiver name, a non-Event to handle(), a non-bytes payload: clear errors."""
    with pytest.raises(ValueError, match="name"):
        remote.receiver(order_paid, name="")
    with pytest.raises(TypeError, match="takes an Event"):
        remote.handle({"signal": "x"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes an Event"):
        asyncio.run(remote.ahandle("event"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes"):
        remote.decode(123)  # type: ignore[arg-type]


class _Down(MemoryTransport):
    """A memory transport whose broker fails the next publishes."""

    failures = 0

    def _publish(self, stream: str, payload: bytes) -> str:
        if self.failures:
            self.failures -= 1
            raise TransportError("connection lost")
        return super()._publish(stream, payload)

    def _publish_many(self, stream: str, payloads: Sequence[bytes]) -> list[str]:
        if self.failures:
            self.failures -= 1
            raise TransportError("connection lost")
        return super()._publish_many(stream, payloads)


def test_a_failed_publish_raises_publish_error_and_republishes_the_same_id() -> None:
    """PublishError names the event ids; republish() sends the same payloads, and a
    receiver with dedupe runs an event published twice once."""
    shipped = Signal()
    runs: list[str] = []
    transport = _Down()
    remote = Remote(transport, stream="ship")

    @remote.receiver(shipped, name="ship.record", dedupe=timedelta(hours=1))
    def record(sender: object, parcel: str, **kwargs: Any) -> None:
        runs.append(parcel)

    transport.failures = 1
    with pytest.raises(PublishError) as caught:
        shipped.send(sender=None, parcel="P1")
    error = caught.value
    assert isinstance(error, TransportError)
    [event_id] = error.event_ids
    assert "remote.republish(error)" in str(error)

    remote.republish(error)
    remote.republish(error)  # as if the first attempt had got through after all
    worker = Worker(remote, block=0.01)
    assert worker.run_once() == 2
    assert runs == ["P1"]
    assert worker.stats.duplicates == 1
    ids = {remote.decode(m.payload).id for m in transport.read("ship")}
    assert ids == {event_id}


@pytest.mark.parametrize("count", [1, 2, 3])
def test_a_failed_after_commit_publish_raises_one_publish_error(count: int) -> None:
    """However many events a transaction sent, a failed publish after its commit
    raises one PublishError carrying all of them, in order; republish() sends them."""
    transport = _Down()
    remote = Remote(transport, stream=STREAM, serializer=app_serializer(), on_commit=True)
    remote.publish(order_paid)
    try:
        with FakeTransaction() as transaction:
            responses = [order_paid.send(None, order_id=n) for n in range(count)]
            calls = [response for [(_, response)] in responses]
            assert all(isinstance(call, oncommit.Deferred) for call in calls)
            assert transaction.pending == calls
            transport.failures = 1
            with pytest.raises(PublishError) as caught:
                transaction.commit()
    finally:
        order_paid.receivers = []
        order_paid.sender_receivers_cache.clear()
    error = caught.value
    assert type(error) is PublishError
    assert error.stream == STREAM
    assert len(error.event_ids) == len(error.payloads) == count
    assert [remote.decode(p).id for p in error.payloads] == error.event_ids
    assert [remote.decode(p).kwargs for p in error.payloads] == [
        {"order_id": n} for n in range(count)
    ]
    assert str(error).startswith("1 event " if count == 1 else f"{count} events ")
    assert [call.state for call in calls] == ["failed"] * count
    assert all(call.exception is error for call in calls)
    assert transport.read(STREAM) == []
    remote.republish(error)
    assert [remote.decode(m.payload).id for m in transport.read(STREAM)] == error.event_ids


def test_after_commit_events_go_in_one_round_trip_without_the_dropped_ones(
    transport: MemoryTransport,
) -> None:
    """The events of one transaction are published together; one its scope dropped
    (a rolled-back savepoint) is not, and the next transaction starts afresh."""
    rounds: list[int] = []
    original = transport._publish_many

    def counting(stream: str, payloads: Sequence[bytes]) -> list[str]:
        rounds.append(len(payloads))
        return original(stream, payloads)

    transport._publish_many = counting  # type: ignore[method-assign]
    remote = Remote(transport, stream=STREAM, serializer=app_serializer(), on_commit=True)
    remote.publish(order_paid)
    try:
        with FakeTransaction() as transaction:
            order_paid.send(None, order_id=0)
            with transaction.savepoint() as savepoint:
                order_paid.send(None, order_id=1)
                savepoint.rollback()
            order_paid.send(None, order_id=2)
        assert rounds == [2]
        first, dropped, last = transaction.deferred
        assert [call.state for call in (first, dropped, last)] == ["done", "dropped", "done"]
        assert [call.result.kwargs for call in (first, last)] == [{"order_id": 0}, {"order_id": 2}]
        with FakeTransaction():
            order_paid.send(None, order_id=3)
        assert rounds == [2, 1]
    finally:
        order_paid.receivers = []
        order_paid.sender_receivers_cache.clear()
    assert [event.kwargs["order_id"] for event in published(remote)] == [0, 2, 3]


def test_an_after_commit_event_that_cannot_be_serialized_fails_the_send(
    transport: MemoryTransport,
) -> None:
    """Events are encoded at the send, so a bad argument fails it before the commit."""
    remote = Remote(transport, stream=STREAM, on_commit=True)
    remote.publish(order_paid)
    try:
        with FakeTransaction() as transaction:
            with pytest.raises(SerializationError):
                order_paid.send(None, order_id=object())
            assert transaction.deferred == []
    finally:
        order_paid.receivers = []
        order_paid.sender_receivers_cache.clear()
