"""Tests of ``tocsin.tracing``: ``subscribe()``, ``add_tracer()`` and ``Tracer``.

While a tracer is subscribed, ``Signal.send``, ``send_robust``, ``asend`` and
``asend_robust`` are replaced at class level by traced versions; removing the
last tracer puts the original functions back, so that nobody pays for tracing
while nobody listens. Every test here leaves no tracer behind (the autouse
fixture checks it).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tocsin import Signal, hooks, signals, tracing
from tocsin.contrib.sqlalchemy import disable_model_signals, enable_model_signals
from tocsin.oncommit import Deferred
from tocsin.testing import FakeTransaction
from tocsin.tracing import ReceiverCall, SendEvent, Tracer

METHODS = ("send", "send_robust", "asend", "asend_robust")


class Boom(Exception):
    """What the failing receivers raise."""


def on_event(**kwargs: Any) -> str:
    return "on_event"


def other(**kwargs: Any) -> str:
    return "other"


def fails(**kwargs: Any) -> None:
    raise Boom("fails")


async def on_event_async(**kwargs: Any) -> str:
    await asyncio.sleep(0)
    return "on_event_async"


async def fails_async(**kwargs: Any) -> None:
    await asyncio.sleep(0)
    raise Boom("fails_async")


# Tracing is a hook: Signal's methods are never replaced.
ORIGINALS = {name: Signal.__dict__[name] for name in METHODS}


def originals_in_place() -> bool:
    untouched = all(Signal.__dict__[name] is ORIGINALS[name] for name in METHODS)
    return untouched and not hooks.installed(Signal())


@pytest.fixture(autouse=True)
def no_tracer_left_behind() -> Iterator[None]:
    assert not tracing.tracing_active()
    assert originals_in_place()
    yield
    leftover = tracing._subscribed.tracers
    if leftover:
        tracing._subscribed.tracers = ()
        if tracing._subscribed.uninstall is not None:
            tracing._subscribed.uninstall()
            tracing._subscribed.uninstall = None
    assert leftover == (), "a test left a tracer subscribed"


@pytest.fixture
def events() -> Iterator[list[SendEvent]]:
    """The events of every send made during the test."""
    recorded: list[SendEvent] = []
    stop = tracing.subscribe(recorded.append)
    yield recorded
    stop()


def send(signal: Signal, method: str, sender: object = None, **named: Any) -> Any:
    """Send with *method*, from sync code whatever the method."""
    result = getattr(signal, method)(sender, **named)
    if method.startswith("a"):
        return asyncio.run(result)
    return result


def names(calls: list[ReceiverCall]) -> list[str]:
    return [call.receiver.__name__ for call in calls]


# -- what subscribers see ---------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_subscriber_gets_the_send(method: str, events: list[SendEvent]) -> None:
    signal = Signal()
    sender = object()
    signal.connect(on_event)
    signal.connect(other)
    result = send(signal, method, sender, color="red")
    assert result == [(on_event, "on_event"), (other, "other")]
    (event,) = events
    assert event.signal is signal
    assert event.sender is sender
    assert event.named == {"color": "red"}
    assert event.method == method
    assert event.exception is None
    assert [(c.receiver, c.response, c.exception) for c in event.calls] == [
        (on_event, "on_event", None),
        (other, "other", None),
    ]
    assert all(call.duration > 0 for call in event.calls)
    assert event.duration >= sum(call.duration for call in event.calls) > 0


@pytest.mark.parametrize("method", METHODS)
def test_subscriber_gets_async_receivers(method: str, events: list[SendEvent]) -> None:
    signal = Signal()
    signal.connect(on_event_async)
    signal.connect(on_event)
    result = send(signal, method)
    assert result == [(on_event, "on_event"), (on_event_async, "on_event_async")]
    (event,) = events
    assert event.method == method
    calls = {call.receiver: call for call in event.calls}
    assert set(calls) == {on_event, on_event_async}
    assert calls[on_event_async].response == "on_event_async"
    assert calls[on_event_async].exception is None
    assert calls[on_event_async].duration > 0


@pytest.mark.parametrize("method", METHODS)
def test_subscriber_gets_sends_nobody_listens_to(method: str, events: list[SendEvent]) -> None:
    signal = Signal()
    assert send(signal, method, "sender") == []
    (event,) = events
    assert (event.signal, event.sender, event.method, event.calls) == (
        signal,
        "sender",
        method,
        [],
    )
    assert event.duration > 0


@pytest.mark.parametrize("method", ["send", "asend"])
def test_subscriber_gets_a_send_that_raised(method: str, events: list[SendEvent]) -> None:
    signal = Signal()
    signal.connect(on_event)
    signal.connect(fails)
    signal.connect(other)
    with pytest.raises(Boom) as raised:
        send(signal, method)
    (event,) = events  # the subscriber is called after a failed send too
    assert event.exception is raised.value
    assert names(event.calls) == ["on_event", "fails"]
    assert event.calls[1].exception is raised.value
    assert event.calls[1].response is None
    assert event.calls[1].duration > 0
    assert event.duration > 0


def test_subscriber_gets_a_send_whose_async_receiver_raised(events: list[SendEvent]) -> None:
    signal = Signal()
    signal.connect(fails_async)
    signal.connect(on_event_async)
    with pytest.raises(Boom) as raised:
        asyncio.run(signal.asend(None))
    (event,) = events
    assert event.exception is raised.value
    failed = [call for call in event.calls if call.exception is not None]
    assert [call.receiver for call in failed] == [fails_async]
    assert failed[0].exception is raised.value


@pytest.mark.parametrize("method", ["send_robust", "asend_robust"])
def test_robust_sends_report_each_failure(
    method: str, events: list[SendEvent], caplog: pytest.LogCaptureFixture
) -> None:
    signal = Signal()
    signal.connect(fails)
    signal.connect(fails_async)
    signal.connect(on_event)
    with caplog.at_level(logging.ERROR, logger="tocsin"):
        result = send(signal, method)
    assert [r for r, _ in result] == [fails, on_event, fails_async]
    assert isinstance(result[0][1], Boom)
    assert isinstance(result[2][1], Boom)
    (event,) = events
    assert event.exception is None
    calls = {call.receiver: call for call in event.calls}
    assert calls[fails].exception is result[0][1]
    assert calls[fails_async].exception is result[2][1]
    assert calls[on_event].response == "on_event"
    # The log names the receivers, not tracing's wrappers.
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "Error calling fails in Signal.send_robust() (fails)",
        "Error calling fails_async in Signal.send_robust() (fails_async)",
    ]
    assert "_Traced" not in caplog.text


@pytest.mark.parametrize("method", METHODS)
def test_responses_name_the_receivers_not_wrappers(method: str, events: list[SendEvent]) -> None:
    class Listener:
        def method(self, **kwargs: Any) -> str:
            return "method"

    listener = Listener()
    signal = Signal()
    signal.connect(listener.method)
    signal.connect(on_event_async)
    signal.connect(on_event, sender=Listener)
    result = send(signal, method, Listener)
    assert result == [
        (listener.method, "method"),
        (on_event, "on_event"),
        (on_event_async, "on_event_async"),
    ]
    assert all(type(r).__name__ not in ("_Traced", "_TracedAsync") for r, _ in result)
    assert [call.receiver for call in events[0].calls][:2] == [listener.method, on_event]


def test_traced_sends_follow_priorities(events: list[SendEvent]) -> None:
    signal = Signal()
    signal.connect(on_event)
    signal.connect(other, priority=1)
    assert signal.send(None) == [(other, "other"), (on_event, "on_event")]
    assert names(events[0].calls) == ["other", "on_event"]


def test_traced_send_checks_for_a_running_loop(events: list[SendEvent]) -> None:
    from tocsin import AsyncReceiversInLoopError

    signal = Signal()
    signal.connect(on_event_async)

    async def main() -> None:
        with pytest.raises(AsyncReceiversInLoopError):
            signal.send(None)

    asyncio.run(main())
    assert events[0].calls == []
    assert isinstance(events[0].exception, AsyncReceiversInLoopError)


# -- Tracer ------------------------------------------------------------------------


class Recording(Tracer):
    """A tracer that logs when its context managers are entered and exited."""

    def __init__(self, name: str = "", log: list[str] | None = None) -> None:
        self.name = name
        self.log: list[str] = [] if log is None else log

    @contextlib.contextmanager
    def _scope(self, what: str) -> Iterator[None]:
        self.log.append(f"{self.name}enter {what}")
        try:
            yield
        finally:
            self.log.append(f"{self.name}exit {what}")

    def trace_send(self, event: SendEvent) -> contextlib.AbstractContextManager[Any]:
        return self._scope("send")

    def trace_receiver(
        self, event: SendEvent, receiver: Callable[..., Any]
    ) -> contextlib.AbstractContextManager[Any]:
        return self._scope(receiver.__name__)


@contextlib.contextmanager
def tracer_added(tracer: Tracer) -> Iterator[Tracer]:
    remove = tracing.add_tracer(tracer)
    try:
        yield tracer
    finally:
        remove()


def test_tracer_context_managers_nest(events: list[SendEvent]) -> None:
    signal = Signal()
    log: list[str] = []

    def receive(**kwargs: Any) -> None:
        log.append("receive")

    signal.connect(receive)
    signal.connect(on_event)
    with tracer_added(Recording(log=log)):
        signal.send(None)
    assert log == [
        "enter send",
        "enter receive",
        "receive",
        "exit receive",
        "enter on_event",
        "exit on_event",
        "exit send",
    ]


def test_tracer_send_context_manager_exits_with_the_complete_event() -> None:
    seen: list[tuple[int, float, BaseException | None]] = []

    class Checking(Tracer):
        @contextlib.contextmanager
        def _send(self, event: SendEvent) -> Iterator[None]:
            assert event.calls == []
            try:
                yield
            finally:
                seen.append((len(event.calls), event.duration, event.exception))

        def trace_send(self, event: SendEvent) -> contextlib.AbstractContextManager[Any]:
            return self._send(event)

    signal = Signal()
    signal.connect(on_event)
    signal.connect(fails)
    with tracer_added(Checking()), pytest.raises(Boom) as raised:
        signal.send(None)
    ((count, duration, exception),) = seen
    assert count == 2
    assert duration > 0
    assert exception is raised.value


def test_tracer_receiver_context_manager_sees_the_exception() -> None:
    seen: list[BaseException | None] = []

    class Checking(Tracer):
        @contextlib.contextmanager
        def _receiver(self) -> Iterator[None]:
            try:
                yield
            except BaseException as err:
                seen.append(err)
                raise
            seen.append(None)

        def trace_receiver(
            self, event: SendEvent, receiver: Callable[..., Any]
        ) -> contextlib.AbstractContextManager[Any]:
            return self._receiver()

    signal = Signal()
    signal.connect(on_event)
    signal.connect(fails)
    with tracer_added(Checking()):
        result = signal.send_robust(None)
    assert seen == [None, result[1][1]]


def test_tracer_returning_none_is_fine(events: list[SendEvent]) -> None:
    signal = Signal()
    signal.connect(on_event)
    with tracer_added(Tracer()):
        assert signal.send(None) == [(on_event, "on_event")]
    assert names(events[0].calls) == ["on_event"]


current_receiver: contextvars.ContextVar[str] = contextvars.ContextVar(
    "current_receiver", default=""
)


class Naming(Tracer):
    """Sets ``current_receiver`` around each receiver's call, as a span would be."""

    @contextlib.contextmanager
    def _receiver(self, name: str) -> Iterator[None]:
        token = current_receiver.set(name)
        try:
            yield
        finally:
            current_receiver.reset(token)

    def trace_receiver(
        self, event: SendEvent, receiver: Callable[..., Any]
    ) -> contextlib.AbstractContextManager[Any]:
        return self._receiver(receiver.__name__)


@pytest.mark.parametrize("method", METHODS)
def test_receivers_are_traced_inside_their_call(method: str) -> None:
    """What trace_receiver() sets in a context variable, the receiver sees: an
    async receiver's context manager is entered in the task that runs it."""
    seen: list[tuple[str, str]] = []

    async def async_receiver(**kwargs: Any) -> None:
        seen.append(("async_receiver", current_receiver.get()))
        await asyncio.sleep(0)
        seen.append(("async_receiver", current_receiver.get()))

    def sync_receiver(**kwargs: Any) -> None:
        seen.append(("sync_receiver", current_receiver.get()))

    signal = Signal()
    signal.connect(async_receiver)
    signal.connect(sync_receiver)
    with tracer_added(Naming()):
        send(signal, method)
    assert seen == [
        ("sync_receiver", "sync_receiver"),
        ("async_receiver", "async_receiver"),
        ("async_receiver", "async_receiver"),
    ]
    assert current_receiver.get() == ""


def test_async_receiver_context_is_entered_in_the_receivers_task() -> None:
    tasks: list[tuple[str, asyncio.Task[Any] | None]] = []

    class Tasks(Tracer):
        @contextlib.contextmanager
        def _receiver(self) -> Iterator[None]:
            tasks.append(("tracer", asyncio.current_task()))
            yield

        def trace_receiver(
            self, event: SendEvent, receiver: Callable[..., Any]
        ) -> contextlib.AbstractContextManager[Any]:
            return self._receiver()

    async def async_receiver(**kwargs: Any) -> None:
        tasks.append(("receiver", asyncio.current_task()))

    async def main() -> asyncio.Task[Any] | None:
        await signal.asend(None)
        return asyncio.current_task()

    signal = Signal()
    signal.connect(async_receiver)
    with tracer_added(Tasks()):
        caller = asyncio.run(main())
    ((_, traced), (_, ran)) = tasks
    assert traced is ran
    assert traced is not None
    assert traced is not caller


@pytest.mark.parametrize("method", ["asend", "asend_robust", "send"])
def test_concurrent_async_receivers_each_see_their_own_trace_context(method: str) -> None:
    """Two async receivers run concurrently; each sees what its own
    trace_receiver() set (an OpenTelemetry span parents what the receiver does),
    whatever the order their steps interleave in."""
    seen: list[tuple[str, str]] = []

    async def first(**kwargs: Any) -> None:
        await asyncio.sleep(0)
        seen.append(("first", current_receiver.get()))
        await asyncio.sleep(0)
        seen.append(("first", current_receiver.get()))

    async def second(**kwargs: Any) -> None:
        seen.append(("second", current_receiver.get()))
        await asyncio.sleep(0)
        seen.append(("second", current_receiver.get()))

    def body() -> None:
        with tracer_added(Naming()):
            send(signal, method)

    signal = Signal()
    signal.connect(first)
    signal.connect(second)
    contextvars.copy_context().run(body)
    assert sorted(seen) == [("first", "first")] * 2 + [("second", "second")] * 2


@pytest.mark.parametrize("method", ["asend", "send"])
def test_trace_context_does_not_leak_into_the_caller(method: str) -> None:
    """After the send, the caller's context is as it was: no receiver's
    trace context (a finished span) is left current."""

    async def quick(**kwargs: Any) -> None:
        await asyncio.sleep(0)

    async def slow(**kwargs: Any) -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    async def main() -> str:
        if method == "asend":
            await signal.asend(None)
        else:
            await asyncio.to_thread(signal.send, None)
        return current_receiver.get()

    def body() -> tuple[str, str]:
        with tracer_added(Naming()):
            in_the_loop = asyncio.run(main())
            signal.send(None)
        return in_the_loop, current_receiver.get()

    signal = Signal()
    signal.connect(quick)
    signal.connect(slow)
    # In a copy of the context, so that a leak cannot reach the other tests.
    assert contextvars.copy_context().run(body) == ("", "")


def test_several_tracers_nest_in_subscription_order(events: list[SendEvent]) -> None:
    log: list[str] = []
    signal = Signal()
    signal.connect(on_event)
    with tracer_added(Recording("A:", log)), tracer_added(Recording("B:", log)):
        signal.send(None)
    assert log == [
        "A:enter send",
        "B:enter send",
        "A:enter on_event",
        "B:enter on_event",
        "B:exit on_event",
        "A:exit on_event",
        "B:exit send",
        "A:exit send",
    ]
    assert len(events) == 1


def test_several_subscribers_each_get_every_send() -> None:
    first: list[SendEvent] = []
    second: list[SendEvent] = []
    signal = Signal()
    signal.connect(on_event)
    stop_first = tracing.subscribe(first.append)
    stop_second = tracing.subscribe(second.append)
    try:
        signal.send(None)
        stop_first()
        signal.send(None)
    finally:
        stop_first()
        stop_second()
    assert len(first) == 1
    assert len(second) == 2
    assert first[0] is second[0]  # one event per send, shared


def test_the_same_tracer_added_twice_is_added_once() -> None:
    tracer = Recording()
    signal = Signal()
    signal.connect(on_event)
    remove_first = tracing.add_tracer(tracer)
    remove_second = tracing.add_tracer(tracer)
    try:
        assert tracing._subscribed.tracers == (tracer,)
        signal.send(None)
        assert tracer.log == ["enter send", "enter on_event", "exit on_event", "exit send"]
    finally:
        remove_first()
        remove_second()


def test_the_same_callback_subscribed_twice_is_called_twice() -> None:
    """subscribe() wraps the callback each time: two subscriptions, two calls."""
    recorded: list[SendEvent] = []
    stops = [tracing.subscribe(recorded.append) for _ in range(2)]
    try:
        Signal().send(None)
    finally:
        for stop in stops:
            stop()
    assert len(recorded) == 2


# -- subscribing and unsubscribing ---------------------------------------------------


def test_the_hook_is_installed_while_someone_listens_and_signal_is_never_patched() -> None:
    assert not tracing.tracing_active()
    assert originals_in_place()
    stop_first = tracing.subscribe(lambda event: None)
    stop_second = tracing.add_tracer(Tracer())
    assert tracing.tracing_active()
    assert len(hooks.installed(Signal())) == 1  # one hook, whatever the tracers
    stop_first()
    assert tracing.tracing_active()
    assert len(hooks.installed(Signal())) == 1
    stop_second()
    assert not tracing.tracing_active()
    assert originals_in_place()
    for name in METHODS:
        assert Signal.__dict__[name] is ORIGINALS[name]
        assert name not in vars(Signal())


def test_removing_is_idempotent() -> None:
    recorded: list[SendEvent] = []
    stop = tracing.subscribe(recorded.append)
    stop()
    stop()
    assert originals_in_place()
    # A stale remove function does not touch the tracers subscribed since.
    stop_again = tracing.subscribe(recorded.append)
    try:
        stop()
        assert tracing.tracing_active()
        Signal().send(None)
        assert len(recorded) == 1
    finally:
        stop_again()
    assert originals_in_place()


def test_nothing_is_recorded_after_unsubscribing() -> None:
    recorded: list[SendEvent] = []
    signal = Signal()
    signal.connect(on_event)
    stop = tracing.subscribe(recorded.append)
    signal.send(None)
    stop()
    signal.send(None)
    asyncio.run(signal.asend(None))
    assert len(recorded) == 1


def test_a_subscriber_can_unsubscribe_itself() -> None:
    recorded: list[SendEvent] = []

    def once(event: SendEvent) -> None:
        recorded.append(event)
        stop()

    stop = tracing.subscribe(once)
    signal = Signal()
    signal.send(None)
    signal.send(None)
    assert len(recorded) == 1
    assert originals_in_place()


@pytest.mark.parametrize(
    "tracer", [lambda event: None, object(), "tracer", None, type("Duck", (), {"trace_send": 1})()]
)
def test_add_tracer_takes_a_tracer(tracer: Any) -> None:
    with pytest.raises(TypeError, match="add_tracer"):
        tracing.add_tracer(tracer)
    assert originals_in_place()


@pytest.mark.parametrize("callback", [None, 42, "print"])
def test_subscribe_takes_a_callable(callback: Any) -> None:
    with pytest.raises(TypeError, match="subscribe"):
        tracing.subscribe(callback)
    assert originals_in_place()


def test_a_failing_subscriber_propagates_into_the_send() -> None:
    def broken(event: SendEvent) -> None:
        raise Boom("subscriber")

    signal = Signal()
    signal.connect(on_event)
    stop = tracing.subscribe(broken)
    try:
        with pytest.raises(Boom, match="subscriber"):
            signal.send(None)
    finally:
        stop()


# -- on-commit receivers -------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_on_commit_receivers_answer_a_deferred_and_are_not_traced_later(
    method: str, events: list[SendEvent]
) -> None:
    committed: list[str] = []

    def after_commit(**kwargs: Any) -> str:
        committed.append("after_commit")
        return "committed"

    signal = Signal()
    signal.connect(on_event)
    signal.connect(after_commit, on_commit=True)
    with FakeTransaction():
        result = send(signal, method)
        assert [r for r, _ in result] == [on_event, after_commit]
        deferred = result[1][1]
        assert isinstance(deferred, Deferred)
        assert deferred.receiver is after_commit
        assert deferred.state == "pending"
        (event,) = events
        calls_at_send = list(event.calls)
        assert on_event in [call.receiver for call in calls_at_send]

    assert committed == ["after_commit"]  # the end of the block committed
    assert (str(deferred.state), deferred.result) == ("done", "committed")
    assert len(events) == 1  # the commit is not a send
    assert event.calls == calls_at_send  # nor a call of this send


def test_on_commit_receivers_are_reported_with_their_deferred(events: list[SendEvent]) -> None:
    """The send's event says which on-commit receivers it deferred: the
    ReceiverCall's response is the Deferred that send() returned for it."""

    def after_commit(**kwargs: Any) -> None:
        pass

    signal = Signal()
    signal.connect(on_event)
    signal.connect(after_commit, on_commit=True)
    with FakeTransaction():
        result = signal.send(None)
    (event,) = events
    assert [(call.receiver, call.response) for call in event.calls] == [
        (on_event, "on_event"),
        (after_commit, result[1][1]),
    ]


def test_on_commit_receivers_called_at_once_are_traced(events: list[SendEvent]) -> None:
    """Outside a transaction an on-commit receiver is called during the send,
    like an ordinary one, so the send's event reports it."""

    def after_commit(**kwargs: Any) -> str:
        return "now"

    signal = Signal()
    signal.connect(on_event)
    signal.connect(after_commit, on_commit=True)
    assert signal.send(None) == [(on_event, "on_event"), (after_commit, "now")]
    (event,) = events
    assert [(call.receiver, call.response) for call in event.calls] == [
        (on_event, "on_event"),
        (after_commit, "now"),
    ]


# -- model signals from SQLAlchemy --------------------------------------------------


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "note"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(50))


@pytest.fixture
def model_signals() -> Iterator[None]:
    saved = {s: s.receivers for s in (signals.pre_save, signals.post_save, signals.post_init)}
    enable_model_signals(Base)
    try:
        yield
    finally:
        disable_model_signals(Base)
        for signal, rows in saved.items():
            signal.receivers = rows


@pytest.mark.usefixtures("model_signals")
def test_model_signals_sent_from_a_flush_are_traced(events: list[SendEvent]) -> None:
    received: list[tuple[str, object]] = []

    def on_pre_save(sender: object, instance: Note, **kwargs: Any) -> None:
        received.append(("pre_save", instance))

    def on_post_save(sender: object, instance: Note, created: bool, **kwargs: Any) -> str:
        received.append(("post_save", instance))
        return "saved"

    async def on_post_save_async(sender: object, **kwargs: Any) -> str:
        return "saved async"

    signals.pre_save.connect(on_pre_save, sender=Note)
    signals.post_save.connect(on_post_save, sender=Note)
    signals.post_save.connect(on_post_save_async, sender=Note)
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    try:
        with Session(engine) as session:
            note = Note(text="hello")
            session.add(note)
            events.clear()
            session.commit()
            assert received == [("pre_save", note), ("post_save", note)]
            pre, post = events
            assert (pre.signal, pre.sender, pre.method) == (signals.pre_save, Note, "send")
            assert pre.named["instance"] is note
            assert [call.receiver for call in pre.calls] == [on_pre_save]
            assert (post.signal, post.sender, post.method) == (signals.post_save, Note, "send")
            assert post.named["created"] is True
            assert post.named["instance"] is note
            assert {(call.receiver, call.response) for call in post.calls} == {
                (on_post_save, "saved"),
                (on_post_save_async, "saved async"),
            }
            assert all(call.duration > 0 for call in post.calls)

            events.clear()
            note.text = "changed"
            session.commit()
            assert [(e.signal, e.named["update_fields"]) for e in events] == [
                (signals.pre_save, frozenset({"text"})),
                (signals.post_save, frozenset({"text"})),
            ]
    finally:
        engine.dispose()


@pytest.mark.usefixtures("model_signals")
def test_model_signals_are_not_traced_once_unsubscribed() -> None:
    received: list[str] = []

    def on_post_save(sender: object, **kwargs: Any) -> None:
        received.append("post_save")

    signals.post_save.connect(on_post_save, sender=Note)
    recorded: list[SendEvent] = []
    stop = tracing.subscribe(recorded.append)
    stop()
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    try:
        with Session(engine) as session:
            session.add(Note(text="hello"))
            session.commit()
    finally:
        engine.dispose()
    assert received == ["post_save"]
    assert recorded == []


# -- threads ----------------------------------------------------------------------


def test_two_threads_tracing_at_once_record_each_send_once(events: list[SendEvent]) -> None:
    sends = 300
    signal = Signal()
    seen: dict[str, int] = {"first": 0, "second": 0}
    lock = threading.Lock()

    def count(sender: str, **kwargs: Any) -> None:
        with lock:
            seen[sender] += 1

    signal.connect(count)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            barrier.wait()
            for index in range(sends):
                if index % 2:
                    signal.send(name, index=index)
                else:
                    signal.send_robust(name, index=index)
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(name,)) for name in seen]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert seen == {"first": sends, "second": sends}
    for name in seen:
        mine = [event for event in events if event.sender == name]
        assert sorted(event.named["index"] for event in mine) == list(range(sends))
        assert all(len(event.calls) == 1 for event in mine)
        assert all(event.calls[0].receiver is count for event in mine)
    assert len(events) == 2 * sends


def test_subscribing_while_another_thread_sends() -> None:
    """Tracers come and go while a thread sends: no send fails or is seen twice."""
    signal = Signal()
    signal.connect(on_event)
    stop_sending = threading.Event()
    failures: list[BaseException] = []
    sent = [0]

    def sender() -> None:
        try:
            while not stop_sending.is_set():
                assert signal.send(None) == [(on_event, "on_event")]
                sent[0] += 1
        except BaseException as err:  # reported below
            failures.append(err)

    thread = threading.Thread(target=sender)
    thread.start()
    recorded: list[SendEvent] = []
    try:
        for _ in range(200):
            stop = tracing.subscribe(recorded.append)
            stop()
    finally:
        stop_sending.set()
        thread.join()
    assert failures == []
    assert len({id(event) for event in recorded}) == len(recorded)
    assert originals_in_place()
