"""Transports that keep their streams in this process: for tests and single-process use.

::

    from tocsin.remote.transports.memory import MemoryTransport

    transport = MemoryTransport()
    transport.ensure_group("events", "workers")
    transport.publish("events", b"payload")
    [message] = transport.consume("events", "workers", "worker-1")
    transport.ack("events", "workers", [message.id])

They follow Redis Streams' consumer groups closely enough that a test written
against :class:`MemoryTransport` passes on Redis too: ids look like Redis ones
(``"<milliseconds>-<sequence>"``), a group delivers each message once and keeps
it pending until acknowledged, ``redeliver`` is ``XCLAIM`` and ``claim_stale``
is ``XAUTOCLAIM`` (with Redis 7's handling of deleted messages). As on Redis,
acknowledged messages stay in their stream until :meth:`MemoryTransport.delete`
removes them.

:class:`AsyncMemoryTransport` is the asyncio version. Give it a
:class:`MemoryTransport` to share its streams, so that a publisher in sync code
and a consumer in asyncio code meet.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from ...exceptions import TransportError
from ._checks import (
    _check_start,
    _dead_letter_headers,
    _format_id,
    _Id,
    _next_id,
    _parse_id,
)
from .base import AsyncTransport, Attempts, Consumer, Group, Message, Pending, Transport

__all__ = ["AsyncMemoryTransport", "MemoryTransport"]

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})  # shared by every published event


@dataclass(slots=True)
class _Entry:
    payload: bytes
    headers: Mapping[str, str]


@dataclass(slots=True)
class _Delivery:
    """A pending message of a group: Redis' pending-entries-list item."""

    consumer: str
    delivered_at: float  # time.monotonic() of the last delivery
    deliveries: int


@dataclass(slots=True)
class _Group:
    last_delivered: _Id = (0, 0)
    # By id: consume() adds ids above every earlier one and nothing else adds,
    # so insertion order is id order, oldest first.
    pending: dict[_Id, _Delivery] = field(default_factory=dict)
    # Name -> time.monotonic() it was last given messages (or joined), as Redis 7.0 counts.
    consumers: dict[str, float] = field(default_factory=dict)
    attempts: dict[str, Attempts] = field(default_factory=dict)  # by message id


@dataclass(slots=True)
class _Stream:
    ids: list[_Id] = field(default_factory=list)  # sorted, for bisect
    entries: dict[_Id, _Entry] = field(default_factory=dict)
    groups: dict[str, _Group] = field(default_factory=dict)
    # Never goes down, also when the newest message is deleted, as on Redis.
    last_id: _Id = (0, 0)


def _first_needed(group: _Group) -> _Id:
    """The oldest id *group* still needs: its oldest pending, else the next unread."""
    if group.pending:
        return next(iter(group.pending))  # pending is in id order
    return _next_id(group.last_delivered)


class MemoryTransport(Transport):
    """A :class:`~tocsin.remote.transports.base.Transport` that keeps its streams in memory.

    Safe to share between threads: one lock guards every stream, and
    ``consume(block=...)`` waits on a condition that publishing notifies.
    Messages live as long as the transport (or until deleted), like a Redis
    stream nobody trims.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._published = threading.Condition(self._lock)
        self._streams: dict[str, _Stream] = {}
        self._done: dict[tuple[str, str, str], float] = {}  # -> when the mark expires
        self._closed = False
        # Callbacks run (under the lock) after each publish and on close, to wake
        # AsyncMemoryTransport.consume() calls waiting in event loops.
        self._wakers: set[Callable[[], None]] = set()

    def _publish(self, stream: str, payload: bytes) -> str:
        with self._lock:
            self._check_open()
            key = self._append(stream, payload, _NO_HEADERS)
            self._wake()
        return _format_id(key)

    def _publish_many(self, stream: str, payloads: Sequence[bytes]) -> list[str]:
        with self._lock:
            self._check_open()
            keys = [self._append(stream, payload, _NO_HEADERS) for payload in payloads]
            if keys:
                self._wake()
        return [_format_id(key) for key in keys]

    def _ensure_group(self, stream: str, group: str, consumer: str | None) -> None:
        with self._lock:
            self._check_open()
            found = self._streams.setdefault(stream, _Stream()).groups.setdefault(group, _Group())
            if consumer is not None:
                found.consumers.setdefault(consumer, time.monotonic())

    def _consume(
        self, stream: str, group: str, consumer: str, count: int, block: float | None
    ) -> list[Message]:
        deadline = None if block is None else time.monotonic() + block
        with self._lock:
            while True:
                self._check_open()
                messages = self._deliver_new(stream, group, consumer, count)
                remaining = 0.0 if deadline is None else deadline - time.monotonic()
                if messages or remaining <= 0:
                    return messages
                self._published.wait(remaining)

    def _ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        keys = [_parse_id(id) for id in ids]
        with self._lock:
            self._check_open()
            return self._forget(stream, group, keys)

    def _redeliver(
        self, stream: str, group: str, consumer: str, id: str, min_idle: float
    ) -> Message | None:
        key = _parse_id(id)
        with self._lock:
            self._check_open()
            pending = self._group(stream, group).pending
            delivery = pending.get(key)
            if delivery is None:
                return None
            state = self._stream(stream)
            if key not in state.entries:
                # Redis 7's XCLAIM drops the pending entry of a deleted message.
                del pending[key]
                return None
            if time.monotonic() - delivery.delivered_at < min_idle:
                return None
            self._group(stream, group).consumers[consumer] = time.monotonic()
            return self._hand_over(state, key, delivery, consumer)

    def _claim_stale(
        self, stream: str, group: str, consumer: str, min_idle: float, count: int
    ) -> list[Message]:
        with self._lock:
            self._check_open()
            pending = self._group(stream, group).pending
            state, now = self._stream(stream), time.monotonic()
            claimed: list[Message] = []
            for key, delivery in list(pending.items()):
                if len(claimed) == count:
                    break
                if key not in state.entries:
                    del pending[key]  # as Redis 7's XAUTOCLAIM does
                elif now - delivery.delivered_at >= min_idle:
                    claimed.append(self._hand_over(state, key, delivery, consumer))
            if claimed:
                self._group(stream, group).consumers[consumer] = time.monotonic()
            return claimed

    def _dead_letter(
        self, stream: str, group: str, message: Message, dead_stream: str, error: str
    ) -> str:
        key = _parse_id(message.id)
        headers = _dead_letter_headers(stream, group, message, error)
        with self._lock:
            self._check_open()
            dead_key = self._append(dead_stream, message.payload, headers)
            self._forget(stream, group, [key])
            self._wake()
        return _format_id(dead_key)

    def _pending(self, stream: str, group: str) -> Pending:
        with self._lock:
            self._check_open()
            pending = self._group(stream, group).pending
            if not pending:
                return Pending(count=0, oldest=None, newest=None, consumers={})
            consumers = Counter(delivery.consumer for delivery in pending.values())
            return Pending(
                count=len(pending),
                oldest=_format_id(next(iter(pending))),
                newest=_format_id(next(reversed(pending))),
                consumers=dict(sorted(consumers.items())),
            )

    def _consumers(self, stream: str, group: str) -> list[Consumer]:
        with self._lock:
            self._check_open()
            state = self._streams.get(stream)
            found = None if state is None else state.groups.get(group)
            if found is None:
                return []
            held = Counter(delivery.consumer for delivery in found.pending.values())
            now = time.monotonic()
            return [
                Consumer(name, held[name], max(0.0, now - seen))
                for name, seen in sorted(found.consumers.items())
            ]

    def _read(self, stream: str, start: str, count: int) -> list[Message]:
        first = _check_start(start)
        with self._lock:
            self._check_open()
            state = self._streams.get(stream)
            if state is None:
                return []
            at = bisect.bisect_left(state.ids, first)
            return [self._message(state, key, 0) for key in state.ids[at : at + count]]

    def _delete(self, stream: str, ids: Sequence[str]) -> int:
        keys = [_parse_id(id) for id in ids]
        with self._lock:
            self._check_open()
            state = self._streams.get(stream)
            if state is None:
                return 0
            # Pending entries stay, as with XDEL; redeliver/claim_stale drop them.
            deleted = [key for key in dict.fromkeys(keys) if state.entries.pop(key, None)]
            for key in deleted:
                del state.ids[bisect.bisect_left(state.ids, key)]
            return len(deleted)

    def _length(self, stream: str) -> int:
        with self._lock:
            self._check_open()
            state = self._streams.get(stream)
            return 0 if state is None else len(state.entries)

    def _groups(self, stream: str) -> list[Group]:
        with self._lock:
            self._check_open()
            state = self._streams.get(stream)
            if state is None:
                return []
            return [
                Group(
                    name=name,
                    consumers=len(group.consumers),
                    pending=len(group.pending),
                    waiting=len(state.ids) - bisect.bisect_right(state.ids, group.last_delivered),
                    last_delivered=_format_id(group.last_delivered),
                )
                for name, group in sorted(state.groups.items())
            ]

    def _trim_acknowledged(self, stream: str) -> int:
        with self._lock:
            self._check_open()
            state = self._streams.get(stream)
            if state is None or not state.groups:
                return 0
            keep_from = min(_first_needed(group) for group in state.groups.values())
            cut = bisect.bisect_left(state.ids, keep_from)
            for key in state.ids[:cut]:
                del state.entries[key]
            del state.ids[:cut]
            return cut

    def _attempts(self, stream: str, group: str, ids: Sequence[str]) -> dict[str, Attempts]:
        with self._lock:
            self._check_open()
            known = self._group(stream, group).attempts
            return {id: known[id] for id in ids if id in known}

    def _record_attempts(
        self, stream: str, group: str, records: Mapping[str, Attempts | None]
    ) -> None:
        with self._lock:
            self._check_open()
            known = self._group(stream, group).attempts
            for id, record in records.items():
                if record is None:
                    known.pop(id, None)
                else:
                    known[id] = record

    def _is_done(self, stream: str, group: str, event_id: str) -> bool:
        with self._lock:
            self._check_open()
            return self._done.get((stream, group, event_id), 0.0) > time.monotonic()

    def _mark_done(self, stream: str, group: str, event_id: str, ttl: float) -> None:
        with self._lock:
            self._check_open()
            now = time.monotonic()
            self._done = {key: until for key, until in self._done.items() if until > now}
            self._done.setdefault((stream, group, event_id), now + ttl)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._streams.clear()
            # Blocked consume() calls wake up and raise TransportError.
            self._wake()

    @contextlib.contextmanager
    def _waking(self, wake: Callable[[], None]) -> Iterator[None]:
        """Call *wake* (under the lock) after each publish and on close, meanwhile."""
        with self._lock:
            self._wakers.add(wake)
        try:
            yield
        finally:
            with self._lock:
                self._wakers.discard(wake)

    # Under self._lock from here on.

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError("the transport is closed")

    def _wake(self) -> None:
        self._published.notify_all()
        for wake in self._wakers:
            wake()

    def _stream(self, stream: str) -> _Stream:
        # Every caller has found the group first, so the stream exists.
        return self._streams[stream]

    def _group(self, stream: str, group: str) -> _Group:
        state = self._streams.get(stream)
        found = None if state is None else state.groups.get(group)
        if found is None:
            # Redis answers NOGROUP here: the group must be created first.
            raise TransportError(
                f"no group {group!r} on stream {stream!r}: call ensure_group() first"
            )
        return found

    def _append(self, stream: str, payload: bytes, headers: Mapping[str, str]) -> _Id:
        state = self._streams.setdefault(stream, _Stream())
        key = self._next_id(state)
        state.ids.append(key)
        state.entries[key] = _Entry(payload, headers)
        state.last_id = key
        return key

    def _next_id(self, state: _Stream) -> _Id:
        # As Redis does: the clock's milliseconds, or the last id's if the clock
        # has not moved on (or went back), with the sequence counting up.
        now_ms = time.time_ns() // 1_000_000
        last_ms, last_seq = state.last_id
        return (now_ms, 0) if now_ms > last_ms else (last_ms, last_seq + 1)

    def _deliver_new(self, stream: str, group: str, consumer: str, count: int) -> list[Message]:
        found = self._group(stream, group)
        state = self._stream(stream)
        at = bisect.bisect_right(state.ids, found.last_delivered)
        keys = state.ids[at : at + count]
        if not keys:
            return []
        now = time.monotonic()
        found.consumers[consumer] = now
        for key in keys:
            found.pending[key] = _Delivery(consumer, now, 1)
        found.last_delivered = keys[-1]
        return [self._message(state, key, 1) for key in keys]

    def _hand_over(self, state: _Stream, key: _Id, delivery: _Delivery, consumer: str) -> Message:
        delivery.consumer = consumer
        delivery.delivered_at = time.monotonic()
        delivery.deliveries += 1
        return self._message(state, key, delivery.deliveries)

    def _forget(self, stream: str, group: str, keys: list[_Id]) -> int:
        # Like XACK: an unknown stream or group acknowledges nothing, without error.
        state = self._streams.get(stream)
        found = None if state is None else state.groups.get(group)
        if found is None:
            return 0
        return sum(found.pending.pop(key, None) is not None for key in keys)

    @staticmethod
    def _message(state: _Stream, key: _Id, deliveries: int) -> Message:
        entry = state.entries[key]
        # A copy each, as a broker's client would give: no receiver can change the stream.
        return Message(_format_id(key), entry.payload, deliveries, dict(entry.headers))


class AsyncMemoryTransport(AsyncTransport):
    """The asyncio version of :class:`MemoryTransport`.

    Every method but ``consume(block=...)`` returns at once (the lock is held for
    microseconds); a blocking ``consume`` waits without blocking the event loop,
    woken by publishes from any thread.

    :param transport: the :class:`MemoryTransport` whose streams to use, shared
        with the code that uses it directly. ``close()`` then leaves it open.
        By default the transport has streams of its own.
    """

    def __init__(self, transport: MemoryTransport | None = None) -> None:
        self._sync = MemoryTransport() if transport is None else transport
        self._owns_sync = transport is None
        self._closed = False
        self._waiting: set[asyncio.Event] = set()

    async def _publish(self, stream: str, payload: bytes) -> str:
        self._check_open()
        return self._sync._publish(stream, payload)

    async def _publish_many(self, stream: str, payloads: Sequence[bytes]) -> list[str]:
        self._check_open()
        return self._sync._publish_many(stream, payloads)

    async def _ensure_group(self, stream: str, group: str, consumer: str | None) -> None:
        self._check_open()
        self._sync._ensure_group(stream, group, consumer)

    async def _consume(
        self, stream: str, group: str, consumer: str, count: int, block: float | None
    ) -> list[Message]:
        self._check_open()
        messages = self._sync._consume(stream, group, consumer, count, None)
        if messages or block is None:
            return messages
        return await self._wait_and_consume(stream, group, consumer, count, block)

    async def _ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        self._check_open()
        return self._sync._ack(stream, group, ids)

    async def _redeliver(
        self, stream: str, group: str, consumer: str, id: str, min_idle: float
    ) -> Message | None:
        self._check_open()
        return self._sync._redeliver(stream, group, consumer, id, min_idle)

    async def _claim_stale(
        self, stream: str, group: str, consumer: str, min_idle: float, count: int
    ) -> list[Message]:
        self._check_open()
        return self._sync._claim_stale(stream, group, consumer, min_idle, count)

    async def _dead_letter(
        self, stream: str, group: str, message: Message, dead_stream: str, error: str
    ) -> str:
        self._check_open()
        return self._sync._dead_letter(stream, group, message, dead_stream, error)

    async def _pending(self, stream: str, group: str) -> Pending:
        self._check_open()
        return self._sync._pending(stream, group)

    async def _read(self, stream: str, start: str, count: int) -> list[Message]:
        self._check_open()
        return self._sync._read(stream, start, count)

    async def _delete(self, stream: str, ids: Sequence[str]) -> int:
        self._check_open()
        return self._sync._delete(stream, ids)

    async def _length(self, stream: str) -> int:
        self._check_open()
        return self._sync._length(stream)

    async def _groups(self, stream: str) -> list[Group]:
        self._check_open()
        return self._sync._groups(stream)

    async def _consumers(self, stream: str, group: str) -> list[Consumer]:
        self._check_open()
        return self._sync._consumers(stream, group)

    async def _trim_acknowledged(self, stream: str) -> int:
        self._check_open()
        return self._sync._trim_acknowledged(stream)

    async def _attempts(self, stream: str, group: str, ids: Sequence[str]) -> dict[str, Attempts]:
        self._check_open()
        return self._sync._attempts(stream, group, ids)

    async def _record_attempts(
        self, stream: str, group: str, records: Mapping[str, Attempts | None]
    ) -> None:
        self._check_open()
        self._sync._record_attempts(stream, group, records)

    async def _is_done(self, stream: str, group: str, event_id: str) -> bool:
        self._check_open()
        return self._sync._is_done(stream, group, event_id)

    async def _mark_done(self, stream: str, group: str, event_id: str, ttl: float) -> None:
        self._check_open()
        self._sync._mark_done(stream, group, event_id, ttl)

    async def close(self) -> None:
        self._closed = True
        for waiting in self._waiting:
            waiting.set()  # they find the transport closed and raise
        if self._owns_sync:
            self._sync.close()

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError("the transport is closed")

    async def _wait_and_consume(
        self, stream: str, group: str, consumer: str, count: int, block: float
    ) -> list[Message]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block
        published = asyncio.Event()

        def wake() -> None:  # called by the publishing thread, under the sync lock
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits now
                loop.call_soon_threadsafe(published.set)

        self._waiting.add(published)
        try:
            with self._sync._waking(wake):
                while True:
                    # Cleared before looking, so that a publish after the look sets it again.
                    published.clear()
                    self._check_open()
                    messages = self._sync._consume(stream, group, consumer, count, None)
                    remaining = deadline - loop.time()
                    if messages or remaining <= 0:
                        return messages
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(published.wait(), remaining)
        finally:
            self._waiting.discard(published)
