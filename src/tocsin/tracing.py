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

It costs nothing while nobody listens: adding the first tracer replaces
``Signal.send``, ``send_robust``, ``asend`` and ``asend_robust`` with traced
versions, and removing the last one puts the originals back.
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
from typing import Any, Literal

from .dispatcher import Derefs, Signal, _Later, _Slow

__all__ = ["ReceiverCall", "SendEvent", "Tracer", "add_tracer", "subscribe", "tracing_active"]

Method = Literal["send", "send_robust", "asend", "asend_robust"]


@dataclass(eq=False)
class ReceiverCall:
    """One receiver's part in a send."""

    receiver: Callable[..., Any]
    response: Any = None
    exception: BaseException | None = None
    duration: float = 0.0
    """Seconds, from the call to its return (for an async receiver: until its
    coroutine finished)."""


@dataclass(eq=False)
class SendEvent:
    """One send, as tracers see it. ``calls`` grows as receivers finish."""

    signal: Signal
    sender: object
    named: dict[str, Any]
    method: Method
    calls: list[ReceiverCall] = field(default_factory=list)
    exception: BaseException | None = None
    """What the send raised, if it raised."""
    duration: float = 0.0
    # Deferred on-commit receivers, reported after the receivers called now.
    _deferred: list[ReceiverCall] = field(default_factory=list, repr=False)
    # The tracers subscribed when the send began: they, and only they, see it all.
    _tracers: tuple[Tracer, ...] = field(default=(), repr=False)


class Tracer:
    """Subclass and override what you need; every method does nothing by default.

    A tracer must not raise: an exception from it propagates into the send.
    """

    def trace_send(self, event: SendEvent) -> AbstractContextManager[Any] | None:
        """A context manager entered before the send calls anything and exited
        after it (``event`` is complete then), or None."""
        return None

    def trace_receiver(
        self, event: SendEvent, receiver: Callable[..., Any]
    ) -> AbstractContextManager[Any] | None:
        """A context manager around one receiver's call, or None. For an async
        receiver it is entered in the task that runs the receiver."""
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


_subscribed = _Subscribed()
_lock = threading.Lock()
_ORIGINALS: dict[str, Any] = {
    name: Signal.__dict__[name] for name in ("send", "send_robust", "asend", "asend_robust")
}


def tracing_active() -> bool:
    """Whether any tracer is subscribed."""
    return bool(_subscribed.tracers)


def add_tracer(tracer: Tracer) -> Callable[[], None]:
    """Subscribe *tracer* to every send of every signal; returns the function
    that unsubscribes it. Adding the same tracer twice adds it once."""
    if not isinstance(tracer, Tracer):
        raise TypeError(
            f"add_tracer() takes a tocsin.tracing.Tracer (subclass it); got "
            f"{type(tracer).__name__}. For a plain function, use subscribe()."
        )
    with _lock:
        if tracer not in _subscribed.tracers:
            _subscribed.tracers = (*_subscribed.tracers, tracer)
            _install()

    def remove() -> None:
        with _lock:
            _subscribed.tracers = tuple(t for t in _subscribed.tracers if t is not tracer)
            if not _subscribed.tracers:
                _uninstall()

    return remove


def subscribe(callback: Callable[[SendEvent], object]) -> Callable[[], None]:
    """Call ``callback(event)`` after every send (also one that raised);
    returns the function that unsubscribes it."""
    if not callable(callback):
        raise TypeError(f"subscribe() takes a callable; got {type(callback).__name__}.")
    return add_tracer(_Callback(callback))


def _install() -> None:
    Signal.send = _send  # type: ignore[method-assign]
    Signal.send_robust = _send_robust  # type: ignore[method-assign]
    Signal.asend = _asend  # type: ignore[method-assign]
    Signal.asend_robust = _asend_robust  # type: ignore[method-assign]


def _uninstall() -> None:
    for name, function in _ORIGINALS.items():
        setattr(Signal, name, function)


# -- the traced methods ----------------------------------------------------------------


def _send(self: Signal, sender: object, **named: Any) -> list[tuple[Any, Any]]:
    return dispatch(self, sender, named, "send")


def _send_robust(self: Signal, sender: object, **named: Any) -> list[tuple[Any, Any]]:
    return dispatch(self, sender, named, "send_robust")


async def _asend(self: Signal, sender: object, **named: Any) -> list[tuple[Any, Any]]:
    return await adispatch(self, sender, named, "asend")


async def _asend_robust(self: Signal, sender: object, **named: Any) -> list[tuple[Any, Any]]:
    return await adispatch(self, sender, named, "asend_robust")


for _name, _function in (
    ("send", _send),
    ("send_robust", _send_robust),
    ("asend", _asend),
    ("asend_robust", _asend_robust),
):
    _function.__doc__ = _ORIGINALS[_name].__doc__
    _function.__qualname__ = f"Signal.{_name}"
    _function.__module__ = Signal.__module__


def dispatch(
    signal: Signal,
    sender: object,
    named: dict[str, Any],
    method: Method,
    await_: Callable[[Awaitable[Any]], Any] | None = None,
) -> list[tuple[Any, Any]]:
    """A traced sync send; *await_* as for ``Signal._send_slow``."""
    event = SendEvent(signal, sender, named, method)
    with _tracing(event):
        plan = _wrap(signal._receivers_of(sender), event)
        robust = method == "send_robust"
        if plan[1]:
            responses = signal._send_slow(sender, named, plan, robust, await_)
        elif robust:
            responses = signal._call_robust(_live(plan[0]), sender, named)
        else:
            responses = signal._call_all(_live(plan[0]), sender, named)
    return _unwrap(responses)


async def adispatch(
    signal: Signal, sender: object, named: dict[str, Any], method: Method
) -> list[tuple[Any, Any]]:
    event = SendEvent(signal, sender, named, method)
    with _tracing(event):
        plan = _wrap(signal._receivers_of(sender), event)
        responses = await signal._asend_plan(plan, sender, named, method == "asend_robust")
    return _unwrap(responses)


@contextlib.contextmanager
def _tracing(event: SendEvent) -> Iterator[None]:
    started = time.perf_counter()
    event._tracers = _subscribed.tracers
    with ExitStack() as stack:
        for tracer in event._tracers:
            manager = tracer.trace_send(event)
            if manager is not None:
                stack.enter_context(manager)
        try:
            yield
        except BaseException as err:
            event.exception = err
            raise
        finally:
            event.duration = time.perf_counter() - started
            if event._deferred:
                event.calls.extend(event._deferred)


# -- receivers wrapped for one send --------------------------------------------------


class _Traced:
    """A receiver, called through the tracers of one send."""

    __slots__ = ("event", "receiver")

    def __init__(self, receiver: Callable[..., Any], event: SendEvent) -> None:
        self.receiver = receiver
        self.event = event

    @property
    def _tocsin_traced(self) -> Callable[..., Any]:
        """The receiver itself, for the dispatcher's error messages."""
        return self.receiver

    def deferred(self, call: Any) -> None:
        """The dispatcher deferred this on-commit receiver: report its Deferred."""
        self.event._deferred.append(ReceiverCall(self.receiver, response=call))

    def _enter(self, stack: ExitStack) -> ReceiverCall:
        call = ReceiverCall(self.receiver)
        for tracer in self.event._tracers:
            manager = tracer.trace_receiver(self.event, self.receiver)
            if manager is not None:
                stack.enter_context(manager)
        return call

    @contextlib.contextmanager
    def _recording(self) -> Iterator[ReceiverCall]:
        """Around one call: the tracers' context managers, the timing, the record."""
        with ExitStack() as stack:
            call = self._enter(stack)
            started = time.perf_counter()
            try:
                yield call
            except BaseException as err:
                call.exception = err
                raise
            finally:
                call.duration = time.perf_counter() - started
                self.event.calls.append(call)

    def __call__(self, **named: Any) -> Any:
        with self._recording() as call:
            call.response = self.receiver(**named)
        return call.response


class _TracedAsync(_Traced):
    __slots__ = ()

    def __call__(self, **named: Any) -> Any:
        return self._run(named)

    async def _run(self, named: dict[str, Any]) -> Any:
        # The receivers of one send share a context; tracers' context managers
        # (an OpenTelemetry span made current, say) would then see each other.
        # Each traced receiver gets a context of its own, and what the receiver
        # itself sets is copied back, as it would be without tracing.
        before = contextvars.copy_context()
        context = before.copy()
        task = asyncio.get_running_loop().create_task(self._call(named), context=context)
        try:
            return await task
        finally:
            # Only what this receiver changed: copying all of its context back
            # would undo what a receiver that finished first set.
            for var, value in context.items():
                if before.get(var, _MISSING) is not value:
                    var.set(value)

    async def _call(self, named: dict[str, Any]) -> Any:
        with self._recording() as call:
            call.response = await self.receiver(**named)
        return call.response


_MISSING = object()


def _wrapping(deref: Callable[[], Any], kind: type[_Traced], event: SendEvent) -> Callable[[], Any]:
    def traced() -> Any:
        receiver = deref()
        return None if receiver is None else kind(receiver, event)

    return traced


def _wrap(plan: Derefs, event: SendEvent) -> Derefs:
    sync, slow = plan
    wrapped_sync = tuple(_wrapping(d, _Traced, event) for d in sync)
    if not slow:
        return wrapped_sync, ()
    # An on-commit receiver called at once is traced like the others; one that
    # is deferred is reported with its Deferred (its later run is not traced).
    async_ = tuple(_wrapping(d, _TracedAsync, event) for d in slow.async_)
    later = tuple(
        _Later(_wrapping(item.deref, _TracedAsync if item.is_async else _Traced, event), *item[1:])
        for item in slow.later
    )
    return wrapped_sync, _Slow(async_, later)


def _live(derefs: tuple[Callable[[], Any], ...]) -> list[Any]:
    return [r for r in [d() for d in derefs] if r is not None]


def _unwrap(responses: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    return [(r.receiver if isinstance(r, _Traced) else r, response) for r, response in responses]
