"""See every send: which receivers ran, what they returned or raised, how long they took.

A public replacement for patching Django's private ``_live_receivers``::

    from tocsin import tracing

    def log_send(event: tracing.SendEvent) -> None:
        for call in event.calls:
            print(event.signal, call.receiver, call.duration, call.exception)

    stop = tracing.subscribe(log_send)   # called after every send
    ...
    stop()

A :class:`Tracer` gets more: a context manager around each send and around
each receiver call (OpenTelemetry spans are made that way, see
:mod:`tocsin.contrib.otel`).

It costs nothing while nobody listens: tracing is a hook (:mod:`tocsin.hooks`)
installed on every signal with the first tracer and removed with the last.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from . import hooks
from .dispatcher import Signal
from .oncommit import Deferred

__all__ = ["ReceiverCall", "SendEvent", "Tracer", "add_tracer", "subscribe", "tracing_active"]

Method = hooks.Method


@dataclass(eq=False)
class ReceiverCall:
    """One receiver's part in a send (a dataclass)."""

    receiver: Callable[..., Any]
    """The receiver, as it was connected."""
    response: Any = None
    """What it returned (for an async receiver, what its coroutine returned); for
    an on-commit receiver that the send deferred, its
    :class:`~tocsin.oncommit.Deferred`."""
    exception: BaseException | None = None
    """What it raised, or None; in a robust send, the exception that send caught."""
    duration: float = 0.0
    """Seconds, from the call to its return (for an async receiver: until its
    coroutine finished); 0 for a deferred on-commit receiver."""


@dataclass(eq=False)
class SendEvent:
    """One send, as tracers see it (a dataclass). ``calls`` grows as receivers finish."""

    signal: Signal
    """The signal sent."""
    sender: object
    """The send's ``sender``."""
    named: dict[str, Any]
    """The send's keyword arguments, as a dict (the objects the receivers got, not
    copies)."""
    method: Method
    """``"send"``, ``"send_robust"``, ``"asend"`` or ``"asend_robust"``."""
    calls: list[ReceiverCall] = field(default_factory=list)
    """A :class:`ReceiverCall` per receiver, in the order they finished, then one per
    on-commit receiver the send deferred."""
    exception: BaseException | None = None
    """What the send raised, if it raised."""
    duration: float = 0.0
    """Seconds, from the start of the send to its end."""
    # Deferred on-commit receivers, reported after the receivers called now.
    _deferred: list[ReceiverCall] = field(default_factory=list, repr=False)
    # The tracers subscribed when the send began: they, and only they, see it all.
    _tracers: tuple[Tracer, ...] = field(default=(), repr=False)


class Tracer:
    """The base class of tracers: subclass it and override what you need; every
    method returns None, doing nothing, by default.

    A tracer must not raise: an exception from it propagates into the send.
    One tracer serves every thread and task that sends, so what belongs to one
    send goes in the event or a context variable, not in plain attributes of
    the tracer.
    """

    def trace_send(self, event: SendEvent) -> AbstractContextManager[Any] | None:
        """A context manager entered before the send calls anything and exited
        after it (``event`` is complete then), or None."""
        return None

    def trace_receiver(
        self, event: SendEvent, receiver: Callable[..., Any]
    ) -> AbstractContextManager[Any] | None:
        """A context manager around one receiver's call, or None. For an async
        receiver it is entered in the task that runs the receiver. It is not
        called for an on-commit receiver that the send defers to a transaction."""
        return None


class _Callback(Tracer):
    def __init__(self, callback: Callable[[SendEvent], object]) -> None:
        self.callback = callback

    @contextlib.contextmanager
    def _after(self, event: SendEvent) -> Iterator[None]:
        try:
            yield
        finally:
            self.callback(event)

    def trace_send(self, event: SendEvent) -> AbstractContextManager[Any]:
        return self._after(event)


class _Subscribed:
    # Replaced, never changed in place: a send iterates over the tuple it read.
    tracers: tuple[Tracer, ...] = ()
    # Undoes the hook's installation while some tracer is subscribed.
    uninstall: Callable[[], None] | None = None


_subscribed = _Subscribed()
_lock = threading.Lock()


def tracing_active() -> bool:
    """Whether any tracer is subscribed (a callback given to :func:`subscribe` counts)."""
    return bool(_subscribed.tracers)


def add_tracer(tracer: Tracer) -> Callable[[], None]:
    """Subscribe *tracer* to every send of every signal; returns the function,
    taking no arguments, that unsubscribes it. Adding the same tracer twice adds
    it once.

    Subscribing and unsubscribing may be done from any thread, also while others
    send; a send is seen by the tracers subscribed when it starts, and only by
    them.

    :raises TypeError: if *tracer* is not a :class:`Tracer` (for a plain function,
        use :func:`subscribe`).
    """
    if not isinstance(tracer, Tracer):
        raise TypeError(
            f"add_tracer() takes a tocsin.tracing.Tracer (subclass it); got "
            f"{type(tracer).__name__}. For a plain function, use subscribe()."
        )
    with _lock:
        if tracer not in _subscribed.tracers:
            _subscribed.tracers = (*_subscribed.tracers, tracer)
            if _subscribed.uninstall is None:
                _subscribed.uninstall = hooks.install(_TracingHook())

    def remove() -> None:
        with _lock:
            _subscribed.tracers = tuple(t for t in _subscribed.tracers if t is not tracer)
            if not _subscribed.tracers and _subscribed.uninstall is not None:
                _subscribed.uninstall()
                _subscribed.uninstall = None

    return remove


def subscribe(callback: Callable[[SendEvent], object]) -> Callable[[], None]:
    """Call ``callback(event)``, with the send's :class:`SendEvent`, after every
    send of every signal (also one that raised).

    Returns a function, taking no arguments, that unsubscribes it; calling it
    again does nothing. A callback subscribed twice is called twice.

    :raises TypeError: if *callback* is not callable.
    """
    if not callable(callback):
        raise TypeError(f"subscribe() takes a callable; got {type(callback).__name__}.")
    return add_tracer(_Callback(callback))


# -- the hook --------------------------------------------------------------------------


class _TracingHook(hooks.SendHook):
    def observe(self, send: hooks.SendInfo) -> hooks.SendObserver | None:
        tracers = _subscribed.tracers
        if not tracers:
            return None  # the last tracer went while this send began
        event = SendEvent(send.signal, send.sender, send.named, send.method, _tracers=tracers)
        return _TracedSend(event)


class _TracedSend(hooks.SendObserver):
    """One send, traced: the tracers' context managers around it and around
    each receiver, with the timings and outcomes recorded in the event."""

    def __init__(self, event: SendEvent) -> None:
        self.event = event
        self.stack = ExitStack()
        self.started = 0.0

    def __enter__(self) -> _TracedSend:
        event = self.event
        self.started = time.perf_counter()
        with ExitStack() as stack:
            for tracer in event._tracers:
                manager = tracer.trace_send(event)
                if manager is not None:
                    stack.enter_context(manager)
            self.stack = stack.pop_all()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        event = self.event
        event.exception = exc
        event.duration = time.perf_counter() - self.started
        if event._deferred:
            event.calls.extend(event._deferred)
        self.stack.__exit__(exc_type, exc, tb)

    def call(self, receiver: Callable[..., Any], call: Callable[[], Any]) -> Any:
        with self._recording(receiver) as record:
            record.response = call()
        return record.response

    async def acall(self, receiver: Callable[..., Any], call: Callable[[], Awaitable[Any]]) -> Any:
        # The receivers of one send share a context; tracers' context managers
        # (an OpenTelemetry span made current, say) would then see each other.
        # Each traced receiver gets a context of its own, and what the receiver
        # itself sets is copied back, as it would be without tracing.
        before = contextvars.copy_context()
        context = before.copy()
        task = asyncio.get_running_loop().create_task(self._acall(receiver, call), context=context)
        try:
            return await task
        finally:
            # Only what this receiver changed: copying all of its context back
            # would undo what a receiver that finished first set.
            for var, value in context.items():
                if before.get(var, _MISSING) is not value:
                    var.set(value)

    async def _acall(self, receiver: Callable[..., Any], call: Callable[[], Awaitable[Any]]) -> Any:
        with self._recording(receiver) as record:
            record.response = await call()
        return record.response

    def deferred(self, receiver: Callable[..., Any], deferred: Deferred) -> None:
        # Reported after the receivers called now; its later run is not traced.
        self.event._deferred.append(ReceiverCall(receiver, response=deferred))

    @contextlib.contextmanager
    def _recording(self, receiver: Callable[..., Any]) -> Iterator[ReceiverCall]:
        """Around one call: the tracers' context managers, the timing, the record."""
        event = self.event
        with ExitStack() as stack:
            record = ReceiverCall(receiver)
            for tracer in event._tracers:
                manager = tracer.trace_receiver(event, receiver)
                if manager is not None:
                    stack.enter_context(manager)
            started = time.perf_counter()
            try:
                yield record
            except BaseException as err:
                record.exception = err
                raise
            finally:
                record.duration = time.perf_counter() - started
                event.calls.append(record)


_MISSING = object()
