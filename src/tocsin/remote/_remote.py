"""Receivers in other processes: publishing sends to a transport.

A :class:`Remote` joins signals to a transport (Redis Streams in production,
memory in tests)::

    remote = Remote(RedisStreamsTransport(url="redis://127.0.0.1:6379/0"))
    remote.publish(order_paid)            # every send of order_paid is also published

    @remote.receiver(post_save, sender=Invoice)
    def render_pdf(sender, instance, **kwargs):   # runs in a worker, not here
        ...

In the sending process, :meth:`Remote.publish` and :meth:`Remote.receiver`
connect a *publisher*: a strong receiver that serializes the send (signal
name, sender, keyword arguments, a unique id and the time) and appends it to
the stream. Arguments that cannot be serialized raise
:class:`~tocsin.exceptions.SerializationError` from ``send()``, before
anything is published.

In a worker process (:class:`tocsin.remote.Worker`, ``tocsin worker``), the
same module is imported, so the same ``Remote`` knows the same signals and
receivers by name; the worker reads each event and sends it again to the
local receivers there (for a published signal), or calls the one remote
receiver it was published for. While it does, the publishers of that signal
stand aside, so an event is never published back.

Delivery is *at least once*: a receiver may see an event again after a crash
or a retry. :func:`current_event` gives the running event's id, to make a
receiver idempotent.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from .. import oncommit
from ..dispatcher import Signal
from ..exceptions import PublishError, SerializationError, TransportError
from ..introspect import signal_name
from . import _propagation as propagation
from . import _signing
from ._frozen import maker
from ._serializer import JSONSerializer, Serializer
from .transports.base import AsyncTransport, Transport

__all__ = ["Batch", "Event", "Outbox", "Remote", "current_event"]

S = TypeVar("S", bound=Signal)
F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("tocsin")

FORMAT = 1  # the envelope's version, written as "v"
_FIELDS = ("v", "id", "signal", "time", "sender", "kwargs")  # what every envelope has
_FIELD_SET = frozenset(_FIELDS)
_STR = frozenset({str})


@dataclass(frozen=True, slots=True)
class Event:
    """One published send.

    :param id: unique (32 hex digits); the same on every delivery, so a
        receiver can tell a redelivery from a new event.
    :param signal: the name the signal is published under.
    :param sender: the sender, as the serializer read it back.
    :param kwargs: the keyword arguments of the send, read back.
    :param time: when it was sent (``time.time()`` in the sending process).
    :param receiver: for :meth:`Remote.receiver` events, the name of the one
        receiver it is for; ``None`` for a published signal.
    :param message_id: the transport's id of the message (in a worker).
    :param deliveries: how many times the message has been delivered, this
        time included (in a worker; 1 on the first try).
    :param context: what :func:`tocsin.remote.add_propagator`'s propagators carried
        from the send (a trace's ids, say); empty without them.
    """

    id: str
    signal: str
    sender: Any
    kwargs: Mapping[str, Any]
    time: float
    receiver: str | None = None
    message_id: str | None = None
    deliveries: int = field(default=0, compare=False)
    context: Mapping[str, str] = field(default_factory=dict, compare=False)


_make_event = maker(Event)  # Event(...) with every field, for each event a worker reads

_current: contextvars.ContextVar[Event | None] = contextvars.ContextVar(
    "tocsin_current_event", default=None
)
# The signal a worker is sending again right now: its publishers stand aside.
_relaying: contextvars.ContextVar[Signal | None] = contextvars.ContextVar(
    "tocsin_relaying", default=None
)


def current_event() -> Event | None:
    """The event a worker is handling in this thread or task, else ``None``.

    Use ``current_event().id`` to make a receiver idempotent: the id is the
    same on every delivery of the event.
    """
    return _current.get()


class Outbox(Protocol):
    """Where a :class:`Remote` writes events sent inside a database transaction.

    ``tocsin.contrib.sqlalchemy.Outbox`` and ``tocsin.contrib.django.remote.Outbox``
    implement it: the event is written to an outbox table in the same
    transaction, and relayed to the transport after the commit. A worker also
    calls the outbox's ``relay(transport)``, if it has one, every
    ``relay_every`` seconds, for the events a process that died after a
    commit left there.
    """

    def store(
        self,
        transport: Transport | AsyncTransport,
        stream: str,
        event_id: str,
        payload: bytes,
        sender: object,
        named: Mapping[str, Any],
    ) -> bool:
        """Write the event into the transaction the send happened in and
        return ``True``; return ``False`` when the send is not inside one
        (the remote then publishes it at once)."""
        ...


class Remote:
    """Signals and receivers whose sends travel through *transport*.

    :param transport: a :class:`~tocsin.remote.Transport` (sends
        publish from ``send()`` and ``asend()``) or an
        :class:`~tocsin.remote.AsyncTransport` (publishers are async
        receivers: ``await signal.asend(...)`` publishes without blocking the
        loop).
    :param stream: the stream events are appended to.
    :param serializer: how events become bytes; :class:`JSONSerializer` by
        default.
    :param outbox: write events sent inside a database transaction to this
        outbox in the same transaction, and publish them after the commit
        (``tocsin.contrib.sqlalchemy.Outbox``).
    :param on_commit: without an outbox, publish events sent inside a
        transaction only after it commits (nothing on rollback); a crash
        between the commit and the publish loses the event, which an outbox
        prevents.
    :param signing_key: sign every published event with this key (HMAC-SHA256),
        and make workers refuse, unread, events without a valid signature. A
        list of keys signs with the first and accepts any (key rotation). Each
        key at least 16 bytes; the same in publishers and workers.
    :param max_payload: the largest event, in bytes, this remote publishes or
        a worker reads; bigger ones raise ``SerializationError`` at send, and
        are dead-lettered unread in a worker.
    :raises TypeError: if *transport* is neither a ``Transport`` nor an
        ``AsyncTransport``, *serializer* has no ``dumps()`` and ``loads()``
        methods, or a signing key is not ``bytes``.
    :raises ValueError: if *stream* is empty, if both *outbox* and
        ``on_commit=True`` are given, if a signing key is shorter than 16
        bytes, or if *max_payload* is below 64.

    The arguments are kept as attributes of the same names.
    """

    def __init__(
        self,
        transport: Transport | AsyncTransport,
        *,
        stream: str = "tocsin:events",
        serializer: Serializer | None = None,
        outbox: Outbox | None = None,
        on_commit: bool = False,
        signing_key: bytes | Sequence[bytes] | None = None,
        max_payload: int = 1 << 20,
    ) -> None:
        if not isinstance(transport, Transport | AsyncTransport):
            raise TypeError(
                f"Remote() takes a Transport or AsyncTransport; got {type(transport).__name__}."
            )
        if not isinstance(stream, str) or not stream:
            raise ValueError(f"stream must be a non-empty string; got {stream!r}.")
        if serializer is not None and not isinstance(serializer, Serializer):
            raise TypeError("serializer must have dumps() and loads() methods.")
        if outbox is not None and on_commit:
            raise ValueError("on_commit=True is for remotes without an outbox: choose one.")
        if not isinstance(max_payload, int) or isinstance(max_payload, bool) or max_payload < 64:
            raise ValueError(
                f"max_payload must be a number of bytes, 64 or more; got {max_payload!r}."
            )
        self._signing_keys = _signing.check_keys(signing_key)
        self.max_payload = max_payload
        self.transport = transport
        self.stream = stream
        self.serializer: Serializer = serializer if serializer is not None else JSONSerializer()
        # The fast path of encode(), for a JSONSerializer whose dumps() is its own.
        self._json = (
            self.serializer
            if isinstance(self.serializer, JSONSerializer)
            and type(self.serializer).dumps is JSONSerializer.dumps
            else None
        )
        self._json_names: dict[str, str] = {}
        self.outbox = outbox
        self.on_commit = on_commit
        self._signals: dict[str, Signal] = {}
        self._receivers: dict[str, tuple[Signal, Callable[..., Any]]] = {}
        self._connected: list[tuple[Signal, object, Hashable]] = []
        self._dedupe: dict[str, float] = {}  # receiver or signal name -> seconds
        self._batch: contextvars.ContextVar[Batch | None] = contextvars.ContextVar(
            f"tocsin_batch_{id(self):x}", default=None
        )
        self._committing: list[_AfterCommit] = []  # on_commit: one per open transaction
        self._committing_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Remote stream={self.stream!r} transport={type(self.transport).__name__}>"

    # -- declaring ----------------------------------------------------------

    @property
    def signals(self) -> Mapping[str, Signal]:
        """The published signals, by the name they are published under."""
        return dict(self._signals)

    @property
    def receivers(self) -> Mapping[str, tuple[Signal, Callable[..., Any]]]:
        """The remote receivers, by name: ``(signal, function)``."""
        return dict(self._receivers)

    def publish(
        self,
        signal: S,
        *,
        name: str | None = None,
        sender: object = None,
        dedupe: timedelta | float | None = None,
    ) -> S:
        """Publish every send of *signal* (from *sender*, if given); return it.

        It connects a *publisher* to the signal, strongly, with the
        ``dispatch_uid`` ``"tocsin.remote:<stream>:<name>@<id of the remote>"``:
        a receiver that serializes the send, appends it to the stream, and
        returns the :class:`Event` as its response (with ``on_commit=True``, a
        :class:`~tocsin.oncommit.Deferred` for a send inside a transaction). A
        remote publishes a signal once per name and sender: publishing it again
        is ignored. Workers send each event again to the receivers connected
        there, while the remote's publishers of that signal stand aside (their
        response is then None).

        Every send then raises, from the publisher,
        :class:`~tocsin.exceptions.SerializationError` for an argument the
        serializer cannot write (before anything is published), and
        :class:`~tocsin.exceptions.PublishError` when the transport fails;
        ``send_robust()`` returns them as the publisher's response.

        :param name: the name both processes know the signal by; by default
            the module-level name it is bound to (``myapp.signals.order_paid``).
        :param dedupe: in workers, run each event of this signal at most once
            per consumer group within this time (a ``timedelta`` or seconds):
            an event id marked done after its receivers succeeded is skipped
            when it comes again. See "Deduplication" in docs/scaling-out.md.
        :raises TypeError: if *signal* is not a :class:`~tocsin.Signal`.
        :raises ValueError: if *name* is empty, if no *name* is given and the
            signal is bound to no module-level name, if another signal is
            published under the name, or if *dedupe* is not positive.
        """
        name = self._name_signal(signal, name)
        self._set_dedupe(name, dedupe)
        known = self._signals.get(name)
        if known is not None and known is not signal:
            raise ValueError(f"another signal is already published as {name!r}: pass name=.")
        self._signals[name] = signal
        self._connect(signal, self._publisher(name, None), sender, self._uid(name))
        return signal

    def disconnect(self) -> None:
        """Disconnect every publisher this remote connected (its signals then
        stay local); what it knows by name is kept, for :meth:`handle`."""
        for signal, sender, uid in self._connected:
            signal.disconnect(sender=sender, dispatch_uid=uid)
        self._connected.clear()

    def _uid(self, name: str) -> str:
        # Readable in `tocsin list`; one publisher per remote, name and sender
        # (Django keys dispatch_uids by sender too).
        return f"tocsin.remote:{self.stream}:{name}@{id(self):x}"

    def _connect(
        self, signal: Signal, publisher: Callable[..., Any], sender: object, uid: Hashable
    ) -> None:
        signal.connect(publisher, sender=sender, weak=False, dispatch_uid=uid)
        self._connected.append((signal, sender, uid))

    def receiver(
        self,
        signal: Signal,
        *,
        sender: object = None,
        dispatch_uid: Hashable = None,
        name: str | None = None,
        dedupe: timedelta | float | None = None,
    ) -> Callable[[F], F]:
        """Decorator: run the function in a worker whenever *signal* is sent.

        Here, sending publishes an event for it (nothing else is called);
        a worker calls it with the send's arguments, once per event. The
        function is returned unchanged, so it can still be called directly.

        :param name: the name both processes know it by; by default
            ``module.qualname``.
        :param dispatch_uid: the publisher's ``dispatch_uid``; by default
            ``"tocsin.remote:<stream>:<name>@<id of the remote>"``.
        :param dedupe: run each event at most once per consumer group within
            this time, as for :meth:`publish`.
        :raises TypeError: if *signal* is not a :class:`~tocsin.Signal` or the
            decorated object is not callable.
        :raises ValueError: if the function is defined inside another function
            (a worker could not import it) and no *name* is given, or if another
            function is registered under the name.
        """
        if not isinstance(signal, Signal):
            raise TypeError(f"Remote.receiver() takes a Signal; got {type(signal).__name__}.")

        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name must be a non-empty string; got {name!r}.")

        def decorate(func: F) -> F:
            if not callable(func):
                raise TypeError(f"Remote.receiver() decorates a function; got {func!r}.")
            key = name or f"{func.__module__}.{func.__qualname__}"
            if "<locals>" in key:
                raise ValueError(
                    f"{key} is defined inside a function, so a worker would not know it by "
                    "that name: define it at module level, or pass name=."
                )
            known = self._receivers.get(key)
            if known is not None and _defined_at(known[1]) != _defined_at(func):
                raise ValueError(f"another receiver is already registered as {key!r}: pass name=.")
            self._set_dedupe(key, dedupe)
            self._receivers[key] = (signal, func)
            publisher = self._publisher(self._name_signal(signal, None, required=False), key)
            self._connect(signal, publisher, sender, dispatch_uid or self._uid(key))
            return func

        return decorate

    def _set_dedupe(self, name: str, dedupe: timedelta | float | None) -> None:
        if dedupe is None:
            return
        seconds = dedupe.total_seconds() if isinstance(dedupe, timedelta) else dedupe
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
            raise ValueError(f"dedupe must be a positive timedelta or seconds; got {dedupe!r}.")
        self._dedupe[name] = float(seconds)

    def dedupe_for(self, event: Event) -> float | None:
        """Seconds an event's id is remembered as done, or ``None`` without deduplication."""
        return self._dedupe.get(event.receiver or event.signal)

    def _name_signal(self, signal: Signal, name: str | None, required: bool = True) -> str:
        if not isinstance(signal, Signal):
            raise TypeError(f"Remote.publish() takes a Signal; got {type(signal).__name__}.")
        if name is not None:
            if not isinstance(name, str) or not name:
                raise ValueError(f"name must be a non-empty string; got {name!r}.")
            return name
        found = signal_name(signal)
        if found.startswith("<") and required:
            raise ValueError(
                "this signal is not bound to a module-level name, so a worker could not "
                "find it: bind it at module level, or pass name=."
            )
        return found

    # -- publishing ---------------------------------------------------------

    def batch(self, *, size: int = 1000) -> Batch:
        """Publish the events sent in a block together, in one round trip.

        ``with remote.batch(): ...`` (``async with`` for an async transport)
        keeps the events sent in this thread or task inside the block, and
        publishes them when it ends, in order, whether it ends normally or by
        an exception (the sends happened); every *size* events it publishes
        early. A failure to publish raises from the end of the block. Blocks
        nest (the outermost publishes); the outbox, when there is one, still
        takes events sent inside a transaction. A failed publish raises
        :class:`~tocsin.exceptions.PublishError` from the end of the block,
        carrying the events it held.

        :raises ValueError: if *size* is not a positive ``int``.
        """
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"size must be a positive integer; got {size!r}.")
        return Batch(self, size)

    def _publisher(self, name: str, target: str | None) -> Callable[..., Any]:
        transport = self.transport
        if not isinstance(transport, Transport):
            return self._async_publisher(name, target)

        def publish_event(
            signal: Signal, sender: object, **named: Any
        ) -> Event | oncommit.Deferred | None:
            if _relaying.get() is signal:
                return None
            event, payload, full = self._take(signal, name, target, sender, named)
            if isinstance(full, oncommit.Deferred):
                return full
            if payload is not None:
                try:
                    transport.publish(self.stream, payload)
                except TransportError as error:
                    raise self._failed([event.id], [payload], error) from error
            elif full is not None:
                full.flush()
            return event

        publish_event.__name__ = publish_event.__qualname__ = f"publish[{target or name}]"
        return publish_event

    def _failed(
        self, event_ids: list[str], payloads: list[bytes], error: TransportError
    ) -> PublishError:
        """The error for events that may not have been published."""
        if isinstance(error, PublishError):
            return error
        count = "1 event" if len(event_ids) == 1 else f"{len(event_ids)} events"
        return PublishError(
            f"{count} may not have been published ({error}); remote.republish(error) "
            "publishes them again with the same ids",
            stream=self.stream,
            event_ids=event_ids,
            payloads=payloads,
        )

    def republish(self, error: PublishError) -> None:
        """Publish again the events of *error*, the same payloads, so with the
        same event ids; raises a new :class:`PublishError` if that fails too.
        With an :class:`AsyncTransport`, use :meth:`arepublish`."""
        transport = self.transport
        if not isinstance(transport, Transport):
            raise TypeError("this remote's transport is async: await remote.arepublish(error).")
        try:
            transport.publish_many(error.stream, error.payloads)
        except TransportError as again:
            raise self._failed(error.event_ids, error.payloads, again) from again

    async def arepublish(self, error: PublishError) -> None:
        """:meth:`republish` for an :class:`AsyncTransport`."""
        transport = self.transport
        if not isinstance(transport, AsyncTransport):
            raise TypeError("this remote's transport is blocking: remote.republish(error).")
        try:
            await transport.publish_many(error.stream, error.payloads)
        except TransportError as again:
            raise self._failed(error.event_ids, error.payloads, again) from again

    def _async_publisher(self, name: str, target: str | None) -> Callable[..., Any]:
        transport = self.transport
        assert isinstance(transport, AsyncTransport)

        async def publish_event(
            signal: Signal, sender: object, **named: Any
        ) -> Event | oncommit.Deferred | None:
            if _relaying.get() is signal:
                return None
            event, payload, full = self._take(signal, name, target, sender, named)
            if isinstance(full, oncommit.Deferred):
                return full
            if payload is not None:
                try:
                    await transport.publish(self.stream, payload)
                except TransportError as error:
                    raise self._failed([event.id], [payload], error) from error
            elif full is not None:
                await full.aflush()
            return event

        publish_event.__name__ = publish_event.__qualname__ = f"publish[{target or name}]"
        return publish_event

    def _take(
        self,
        signal: Signal,
        name: str,
        target: str | None,
        sender: object,
        named: Mapping[str, Any],
    ) -> tuple[Event, bytes | None, Batch | oncommit.Deferred | None]:
        """Encode a send, and give it to the send's transaction (on_commit), the
        outbox or the block's batch if one takes it. Returns the event, the
        payload to publish now (else None), and the batch if it is full and
        must be flushed, or the transaction's Deferred (else None)."""
        event, payload = self.encode(name, target, sender, named)
        if self.on_commit:
            deferred = self._defer(signal, target or name, event, payload, sender, named)
            if deferred is not None:
                return event, None, deferred
        stored = self.outbox is not None and self.outbox.store(
            self.transport, self.stream, event.id, payload, sender, named
        )
        if stored:
            return event, None, None
        batch = self._batch.get()
        if batch is None:
            return event, payload, None
        return event, None, batch if batch.add(event.id, payload) else None

    def _defer(
        self,
        signal: Signal,
        what: str,
        event: Event,
        payload: bytes,
        sender: object,
        named: Mapping[str, Any],
    ) -> oncommit.Deferred | None:
        """Hold an encoded event until the send's transaction commits; ``None``
        when the send is in no transaction (publish it now).

        Each event is its own :class:`~tocsin.oncommit.Deferred`, so that the
        scope drops exactly those of a rolled-back savepoint; but the first of a
        transaction's events to run publishes all those still pending, in one
        round trip, and marks the others done: one failure, one
        :class:`PublishError` with every event.
        """
        scope = oncommit.find_scope(sender, named)
        if scope is None:
            return None
        with self._committing_lock:
            # A group whose events all ran or were dropped is over.
            self._committing = [g for g in self._committing if g.open()]
            group = next((g for g in self._committing if g.scope == scope), None)
            if group is None:
                group = _AfterCommit(self, scope)
                self._committing.append(group)
        call = group.deferred(signal, what, sender, named)
        with self._committing_lock:
            group.held.append((call, event, payload))
        if scope.defer(call):
            return call
        with self._committing_lock:  # no transaction in progress after all
            group.held.remove((call, event, payload))
        return None

    def encode(
        self, name: str, target: str | None, sender: object, named: Mapping[str, Any]
    ) -> tuple[Event, bytes]:
        """The event for a send and its payload; ``SerializationError`` names
        the argument that cannot be sent."""
        carrier = propagation.inject()
        event_id, sent = os.urandom(16).hex(), time.time()
        # Positional, as a worker makes them (id, signal, sender, kwargs, time,
        # receiver, message_id, deliveries, context): every send makes one.
        event = _make_event(event_id, name, sender, named, sent, target, None, 0, carrier or {})
        try:
            if self._json is not None:
                # JSONSerializer: the constant parts are encoded once, not per send.
                tail: dict[str, Any] = {} if target is None else {"receiver": target}
                if carrier:
                    tail["context"] = carrier
                head = f'{{"v":{FORMAT},"id":"{event_id}","signal":{self._json_name(name)}'
                kwargs = named if type(named) is dict else dict(named)
                payload = self._json._dumps_event(f'{head},"time":{sent!r}', sender, kwargs, tail)
            else:
                envelope: dict[str, Any] = {
                    "v": FORMAT,
                    "id": event_id,
                    "signal": name,
                    "time": sent,
                    "sender": sender,
                    "kwargs": named,
                }
                if target is not None:
                    envelope["receiver"] = target
                if carrier:
                    envelope["context"] = carrier
                payload = self.serializer.dumps(envelope)
        except SerializationError as error:
            what = f"receiver {target}" if target else f"signal {name}"
            raise SerializationError(f"cannot publish an event for {what}: {error}") from None
        if self._signing_keys:
            payload = _signing.sign(self._signing_keys[0], payload)
        if len(payload) > self.max_payload:
            what = f"receiver {target}" if target else f"signal {name}"
            raise SerializationError(
                f"cannot publish an event for {what}: it is {len(payload)} bytes, more than "
                f"max_payload ({self.max_payload}); send an id instead of the data."
            )
        return event, payload

    def _json_name(self, name: str) -> str:
        found = self._json_names.get(name)
        if found is None:
            found = self._json_names[name] = json.dumps(name, ensure_ascii=False)
        return found

    def decode(self, payload: bytes, message_id: str | None = None, deliveries: int = 0) -> Event:
        """The :class:`Event` a payload holds, for a signal or receiver this
        remote knows by name.

        Raises ``SerializationError`` for anything else, before any receiver
        is called and without importing anything: a payload bigger than
        ``max_payload``, an unknown signal or receiver, an unknown tag, a
        malformed envelope; :class:`~tocsin.exceptions.ForgedEventError`, before
        it is even parsed, for a payload without a valid signature when the
        remote has signing keys.
        """
        if type(payload) is not bytes and not isinstance(payload, bytes | bytearray):
            raise SerializationError(f"the payload is a {type(payload).__name__}, not bytes.")
        if len(payload) > self.max_payload:
            raise SerializationError(
                f"the payload is {len(payload)} bytes, more than max_payload ({self.max_payload})."
            )
        if type(payload) is not bytes:
            payload = bytes(payload)
        if self._signing_keys:
            payload = _signing.verified(self._signing_keys, payload)
        elif payload.startswith(_signing.PREFIX):  # signed by a sender with keys
            payload = _signing.unsigned(payload)
        envelope = self.serializer.loads(payload)
        _check_envelope(envelope)
        name, target = envelope["signal"], envelope.get("receiver")
        if target is not None and target not in self._receivers:
            raise SerializationError(f"unknown receiver {target!r}: not registered here.")
        if target is None and name not in self._signals:
            raise SerializationError(f"unknown signal {name!r}: not published here.")
        # Positional: a worker makes one per event (id, signal, sender, kwargs,
        # time, receiver, message_id, deliveries, context).
        return _make_event(
            envelope["id"],
            name,
            envelope["sender"],
            envelope["kwargs"],
            float(envelope["time"]),
            target,
            message_id,
            deliveries,
            envelope.get("context") or {},
        )

    # -- handling (in a worker) ----------------------------------------------

    def handle(self, event: Event) -> list[BaseException]:
        """Run *event* here, as a worker does: send its signal again to the
        local receivers (publishers stand aside), or call its remote receiver.

        Returns the exceptions receivers raised (each is also logged); an empty
        list means every receiver succeeded. ``LookupError`` if this process
        does not know the event's signal or receiver.
        """
        _check_event(event)
        signal, func = self._resolve(event)
        # The event made current here rather than in a context manager object:
        # a worker runs this for every event, and each method call counts.
        current, relay = _current.set(event), _relaying.set(signal)
        try:
            carried = propagation.extracted(event.context)
            if carried is None:  # no propagators: the common case
                return _run(func, signal, event)
            with carried:
                return _run(func, signal, event)
        finally:
            _relaying.reset(relay)
            _current.reset(current)

    async def ahandle(self, event: Event) -> list[BaseException]:
        """:meth:`handle` for asyncio: async receivers are awaited in this loop."""
        _check_event(event)
        signal, func = self._resolve(event)
        current, relay = _current.set(event), _relaying.set(signal)
        try:
            carried = propagation.extracted(event.context)
            if carried is None:
                return await _arun(func, signal, event)
            with carried:
                return await _arun(func, signal, event)
        finally:
            _relaying.reset(relay)
            _current.reset(current)

    def _resolve(self, event: Event) -> tuple[Signal, Callable[..., Any] | None]:
        if event.receiver is not None:
            found = self._receivers.get(event.receiver)
            if found is None:
                raise LookupError(
                    f"no remote receiver {event.receiver!r} here: the worker must import "
                    "the module that declares it with @remote.receiver(...)."
                )
            return found
        signal = self._signals.get(event.signal)
        if signal is None:
            raise LookupError(
                f"signal {event.signal!r} is not published here: the worker must import "
                "the module that calls remote.publish(...) for it."
            )
        return signal, None


class _AfterCommit:
    """The events a remote sent in one transaction (sends whose scopes are
    equal), published together by the first of their Deferreds that runs."""

    __slots__ = ("held", "remote", "scope")

    def __init__(self, remote: Remote, scope: oncommit.TransactionScope) -> None:
        self.remote = remote
        self.scope = scope
        self.held: list[tuple[oncommit.Deferred, Event, bytes]] = []

    def open(self) -> bool:
        return not self.held or any(call.state == "pending" for call, _, _ in self.held)

    def deferred(
        self, signal: Signal, what: str, sender: object, named: Mapping[str, Any]
    ) -> oncommit.Deferred:
        """The Deferred of one event: running it publishes the whole group."""
        if isinstance(self.remote.transport, AsyncTransport):

            async def apublish_after_commit(**_: Any) -> Event:
                return await self._apublish(call)

            receiver: Callable[..., Any] = apublish_after_commit
        else:

            def publish_after_commit(**_: Any) -> Event:
                return self._publish(call)

            receiver = publish_after_commit
        receiver.__name__ = receiver.__qualname__ = f"publish[{what}]"
        call = oncommit.Deferred(signal, receiver, sender, named, robust=False)
        return call

    def _claim(self, running: oncommit.Deferred) -> tuple[Event, list[Any]]:
        """Take every event still pending, *running*'s first among them; mark the
        others done now, so that their own Deferreds do not publish them again."""
        with self.remote._committing_lock:
            claimed = [
                item for item in self.held if item[0] is running or item[0].state == "pending"
            ]
            self.held = [item for item in self.held if item not in claimed]
            now = time.time()
            for call, _, _ in claimed:
                if call is not running:
                    call.state, call.started, call.duration = "done", now, 0.0
        own = next(event for call, event, _ in claimed if call is running)
        for call, event, _ in claimed:
            call.result = event
        return own, claimed

    def _failed(self, claimed: list[Any], error: TransportError) -> PublishError:
        failure = self.remote._failed(
            [e.id for _, e, _ in claimed], [p for _, _, p in claimed], error
        )
        for call, _, _ in claimed:
            call.state, call.result, call.exception = "failed", None, failure
        return failure

    def _publish(self, running: oncommit.Deferred) -> Event:
        own, claimed = self._claim(running)
        transport = self.remote.transport
        assert isinstance(transport, Transport)
        try:
            transport.publish_many(self.remote.stream, [payload for _, _, payload in claimed])
        except TransportError as error:
            raise self._failed(claimed, error) from error
        return own

    async def _apublish(self, running: oncommit.Deferred) -> Event:
        own, claimed = self._claim(running)
        transport = self.remote.transport
        assert isinstance(transport, AsyncTransport)
        try:
            await transport.publish_many(self.remote.stream, [payload for _, _, payload in claimed])
        except TransportError as error:
            raise self._failed(claimed, error) from error
        return own


class Batch:
    """The events a :meth:`Remote.batch` block holds back; see there.

    A context manager: ``with`` with a ``Transport``, ``async with`` with an
    ``AsyncTransport``. ``len(batch)`` is the number of events it holds.
    Entering it with the wrong kind of ``with`` raises ``TypeError``, and
    entering it again while it is in use, ``RuntimeError``.
    """

    __slots__ = ("_ids", "_payloads", "_remote", "_size", "_token")

    def __init__(self, remote: Remote, size: int) -> None:
        self._remote = remote
        self._size = size
        self._ids: list[str] = []
        self._payloads: list[bytes] = []
        self._token: contextvars.Token[Batch | None] | None = None

    def __len__(self) -> int:
        return len(self._payloads)

    def add(self, event_id: str, payload: bytes) -> bool:
        """Hold *payload*; ``True`` when the batch is full and must be flushed."""
        self._ids.append(event_id)
        self._payloads.append(payload)
        return len(self._payloads) >= self._size

    def flush(self) -> None:
        """Publish what is held now (blocking transport)."""
        ids, payloads, self._ids, self._payloads = self._ids, self._payloads, [], []
        if payloads:
            transport = self._remote.transport
            assert isinstance(transport, Transport)
            try:
                transport.publish_many(self._remote.stream, payloads)
            except TransportError as error:
                raise self._remote._failed(ids, payloads, error) from error

    async def aflush(self) -> None:
        """Publish what is held now (async transport)."""
        ids, payloads, self._ids, self._payloads = self._ids, self._payloads, [], []
        if payloads:
            transport = self._remote.transport
            assert isinstance(transport, AsyncTransport)
            try:
                await transport.publish_many(self._remote.stream, payloads)
            except TransportError as error:
                raise self._remote._failed(ids, payloads, error) from error

    def _enter(self, async_: bool) -> Batch:
        if async_ != isinstance(self._remote.transport, AsyncTransport):
            hint = "async with" if not async_ else "with"
            raise TypeError(f"this remote's transport needs `{hint} remote.batch()`.")
        if self._token is not None:
            raise RuntimeError("this batch is already in use: call remote.batch() again.")
        outer = self._remote._batch.get()
        # An inner block joins the outer one, which publishes everything.
        self._token = self._remote._batch.set(outer if outer is not None else self)
        return self

    def _leave(self) -> bool:
        assert self._token is not None
        outermost = (
            self._token.old_value is None or self._token.old_value is contextvars.Token.MISSING
        )
        self._remote._batch.reset(self._token)
        self._token = None
        return outermost

    def __enter__(self) -> Batch:
        return self._enter(async_=False)

    def __exit__(self, *exc_info: object) -> None:
        if self._leave():
            self.flush()

    async def __aenter__(self) -> Batch:
        return self._enter(async_=True)

    async def __aexit__(self, *exc_info: object) -> None:
        if self._leave():
            await self.aflush()


def _check_envelope(envelope: object) -> None:
    """``SerializationError`` unless *envelope* has every field, of its type."""
    # Run for every event a worker reads: set operations where they can do.
    if not isinstance(envelope, dict):
        raise SerializationError("the payload is not an object.")
    if not envelope.keys() >= _FIELD_SET:
        missing = [key for key in _FIELDS if key not in envelope]
        raise SerializationError(f"the event has no {missing[0]!r} field.")
    if type(envelope["v"]) is not int or envelope["v"] != FORMAT:
        raise SerializationError(
            f"event format {envelope['v']!r} is not {FORMAT}: upgrade this worker."
        )
    event_id, name, target = envelope["id"], envelope["signal"], envelope.get("receiver")
    kwargs, context = envelope["kwargs"], envelope.get("context") or {}
    if not (type(event_id) is str and event_id):
        raise SerializationError("the event's id is not a non-empty string.")
    if type(name) is not str or not (target is None or type(target) is str):
        raise SerializationError("the event's signal and receiver names are not strings.")
    sent_at = envelope["time"]
    if not (type(sent_at) is float or (type(sent_at) is int and abs(sent_at) < 2**53)):
        raise SerializationError("the event's time is not a number.")
    if (
        type(kwargs) is not dict
        or not {*map(type, kwargs)} <= _STR
        or "signal" in kwargs
        or "sender" in kwargs
    ):
        raise SerializationError(
            "the event's kwargs are not an object of argument names (other than "
            "'signal' and 'sender')."
        )
    if context and (
        type(context) is not dict
        or not {*map(type, context)} <= _STR
        or not {*map(type, context.values())} <= _STR
    ):
        raise SerializationError("the event's context is not an object of strings.")


def _check_event(event: object) -> None:
    if not isinstance(event, Event):
        raise TypeError(
            "handle() takes an Event (remote.decode(payload) gives one); "
            f"got {type(event).__name__}."
        )


def _defined_at(func: Callable[..., Any]) -> tuple[str, str]:
    code = getattr(func, "__code__", None)
    return (getattr(func, "__module__", ""), getattr(func, "__qualname__", repr(code)))


def _run(func: Callable[..., Any] | None, signal: Signal, event: Event) -> list[BaseException]:
    """Send *event*'s signal to its local receivers (or call *func*, its remote
    receiver); what they raised."""
    if func is not None:
        return _call(func, signal, event)
    responses = signal.send_robust(event.sender, **event.kwargs)
    return [value for _, value in responses if isinstance(value, BaseException)]


async def _arun(
    func: Callable[..., Any] | None, signal: Signal, event: Event
) -> list[BaseException]:
    if func is not None:
        return await _acall(func, signal, event)
    responses = await signal.asend_robust(event.sender, **event.kwargs)
    return [value for _, value in responses if isinstance(value, BaseException)]


def _call(func: Callable[..., Any], signal: Signal, event: Event) -> list[BaseException]:
    try:
        result = func(signal=signal, sender=event.sender, **event.kwargs)
        if inspect.isawaitable(result):
            asyncio.run(_await(result))
    except Exception as error:
        logger.exception("Error calling %s for event %s", event.receiver, event.id)
        return [error]
    return []


async def _acall(func: Callable[..., Any], signal: Signal, event: Event) -> list[BaseException]:
    try:
        if inspect.iscoroutinefunction(func):
            await func(signal=signal, sender=event.sender, **event.kwargs)
        else:  # off the loop, as asend() runs sync receivers
            result = await asyncio.to_thread(
                func, signal=signal, sender=event.sender, **event.kwargs
            )
            if inspect.isawaitable(result):
                await result
    except Exception as error:
        logger.exception("Error calling %s for event %s", event.receiver, event.id)
        return [error]
    return []


async def _await(awaitable: Any) -> Any:
    return await awaitable
