"""Transports on Redis Streams, sync and asyncio, through redis-py.

::

    from tocsin.remote.transports.redis import RedisStreamsTransport

    transport = RedisStreamsTransport(url="redis://127.0.0.1:6379/0")
    transport.ensure_group("events", "workers")
    transport.publish("events", b"payload")

Each method is one Redis command, or a few sent in one round trip:

=================  =====================================================
``publish``        ``XADD stream * event <payload>``
``publish_many``   one ``XADD`` per payload, pipelined (both coalesced across threads or tasks)
``ensure_group``   ``XGROUP CREATE stream group 0 MKSTREAM`` (and ``CREATECONSUMER``)
``consume``        ``XREADGROUP GROUP group consumer ... STREAMS stream >`` (after an ``XACK``)
``ack``            ``XACK``
``redeliver``      ``XCLAIM``, then ``XPENDING`` for its delivery count, in ``MULTI``
``claim_stale``    ``XAUTOCLAIM`` until *count*, then ``XPENDING`` per message
``dead_letter``    ``XADD`` to the dead stream and ``XACK``, in ``MULTI``
``pending``        ``XPENDING stream group``
``consumers``      ``XINFO CONSUMERS stream group``
``read``           ``XRANGE``; ``delete``: ``XDEL``; ``length``: ``XLEN``
=================  =====================================================

The commands are built, and their replies parsed, in one place without I/O,
:class:`_Commands`: each operation is a *plan*, a generator that yields rounds of
commands (one command, or a pipeline) and receives their replies. The two
transports only run plans, one with a ``redis.Redis`` client, the other awaiting
a ``redis.asyncio.Redis`` one.

A stream entry has one field, ``event``, holding the payload; a dead letter's
headers are more fields beside it. Needs Redis 7.0 or newer, whose ``XCLAIM``
and ``XAUTOCLAIM`` drop deleted messages from the pending list, and the
``redis`` extra: ``pip install 'tocsin[redis]'``.
"""

from __future__ import annotations

try:
    import redis
    import redis.asyncio
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "tocsin.remote.transports.redis needs redis-py: pip install 'tocsin[redis]'"
    ) from _error

import asyncio
import contextlib
import itertools
import json
import math
import os
import threading
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

from redis.connection import Connection

from ...exceptions import TransportError
from .._frozen import maker
from . import _pipelined
from ._checks import (
    _check_count,
    _dead_letter_headers,
    _format_id,
    _next_id,
    _parse_id,
)
from .base import AsyncTransport, Attempts, Consumer, Group, Message, Pending, Transport

__all__ = ["DEFAULT_URL", "AsyncRedisStreamsTransport", "RedisStreamsTransport"]

DEFAULT_URL = "redis://127.0.0.1:6379/0"
"""Where the Redis transports look for Redis when given neither a client nor a URL."""

_EVENT = b"event"  # the entry field that holds the payload


@dataclass(frozen=True, slots=True)
class _Call:
    """One command, as the redis-py method that sends it (clients and pipelines
    of both kinds have the same methods, which parse the replies alike)."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Round:
    """Commands sent in one round trip: one alone, or a pipeline.

    :param transaction: in ``MULTI``/``EXEC``.
    :param tolerate: a Redis error whose text starts with this is no failure:
        the plan receives ``None`` instead of the replies (``""``: any error reply).
    """

    calls: tuple[_Call, ...]
    transaction: bool = False
    tolerate: str | None = None


_T = TypeVar("_T")
# What a plan yields (rounds), receives (each round's replies, a list, or None
# for a tolerated error) and returns.
_Plan = Generator[_Round, Any, _T]


def _one(method: str, *args: Any, tolerate: str | None = None, **kwargs: Any) -> _Round:
    return _Round((_Call(method, args, kwargs),), tolerate=tolerate)


class _Commands:
    """Every operation of the Redis transports as a plan, without I/O: the
    commands to send and what their replies mean, for both transports."""

    def __init__(self, maxlen: int | None, encoder: Any) -> None:
        self.maxlen = _check_maxlen(maxlen)
        self._encoder = encoder  # the client's: names encoded as redis-py would send them
        # Built once: publish() is the hot path.
        self._xadd_options: tuple[bytes, ...] = (
            () if maxlen is None else (b"MAXLEN", b"~", str(maxlen).encode())
        )
        self._xadd_heads: dict[str, bytes] = {}
        self._reads: dict[tuple[str, str, str, int, int | None], bytes] = {}  # XREADGROUPs
        self._xack_heads: dict[tuple[str, str], bytes] = {}

    def key(self, name: str) -> bytes:
        """A stream, group or consumer name as redis-py would send it."""
        return self._encoder.encode(name)  # type: ignore[no-any-return]

    def xadd(self, stream: str, payload: bytes) -> bytes:
        """The ``XADD`` of a publish in Redis' protocol (RESP), for the transports'
        own publishing connection: all but the payload is made once per stream."""
        head = self._xadd_heads.get(stream)
        if head is None:
            args = (b"XADD", self.key(stream), *self._xadd_options, b"*", _EVENT)
            head = b"*%d\r\n" % (len(args) + 1) + b"".join(
                b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args
            )
            _bounded(self._xadd_heads)[stream] = head
        return b"%s$%d\r\n%s\r\n" % (head, len(payload), payload)

    def ensure_group(self, stream: str, group: str, consumer: str | None) -> _Plan[None]:
        yield _one("xgroup_create", stream, group, id="0", mkstream=True, tolerate="BUSYGROUP")
        if consumer is not None:
            # Redis before 7.2 adds a consumer only when it is first given
            # messages: a worker that waits would not be listed by XINFO CONSUMERS.
            yield _one("xgroup_createconsumer", stream, group, consumer)

    def consume(
        self,
        stream: str,
        group: str,
        consumer: str,
        count: int,
        block: float | None,
        ack: Sequence[str] = (),
    ) -> _Plan[list[Message]]:
        block_ms = None if block is None else _milliseconds(block)
        read = _Call(
            "xreadgroup", (group, consumer, {stream: ">"}), {"count": count, "block": block_ms}
        )
        if not ack:
            [reply] = yield _Round((read,))
        else:
            # One round trip: Redis runs the XACK before XREADGROUP waits for messages.
            _, reply = yield _Round((_Call("xack", (stream, group, *ack)), read))
        return [_message(entry, 1) for entry in _read_group_entries(reply)]

    def read_group(
        self,
        stream: str,
        group: str,
        consumer: str,
        count: int,
        block: float | None,
        ack: Sequence[str],
    ) -> list[bytes]:
        """:meth:`consume`'s commands in Redis' protocol, for the sync transport,
        which sends them on a connection of its own: ``XACK`` of *ack* (if any),
        then ``XREADGROUP``; :func:`_raw_messages` reads the last reply. All but
        the ids is made once (a worker reads in small batches when it keeps up)."""
        block_ms = None if block is None else _milliseconds(block)
        read = self._reads.get((stream, group, consumer, count, block_ms))
        if read is None:
            args = [b"XREADGROUP", b"GROUP", self.key(group), self.key(consumer)]
            args += [b"COUNT", b"%d" % count]
            if block_ms is not None:
                args += [b"BLOCK", b"%d" % block_ms]
            read = _pack(*args, b"STREAMS", self.key(stream), b">")
            _bounded(self._reads)[stream, group, consumer, count, block_ms] = read
        if not ack:
            return [read]
        head = self._xack_heads.get((stream, group))
        if head is None:
            head = _pack(b"XACK", self.key(stream), self.key(group)).partition(b"\r\n")[2]
            _bounded(self._xack_heads)[stream, group] = head
        ids = b"".join(b"$%d\r\n%s\r\n" % (len(id), id.encode()) for id in ack)
        return [b"*%d\r\n%s%s" % (len(ack) + 3, head, ids), read]

    def ack(self, stream: str, group: str, ids: Sequence[str]) -> _Plan[int]:
        if not ids:
            return 0
        [reply] = yield _one("xack", stream, group, *ids)
        return int(reply)

    def redeliver(
        self, stream: str, group: str, consumer: str, id: str, min_idle: float
    ) -> _Plan[Message | None]:
        claim = _Call("xclaim", (stream, group, consumer, _milliseconds(min_idle), [id]))
        look = _Call("xpending_range", (stream, group, id, id, 1, consumer))
        claimed, pending = yield _Round((claim, look), transaction=True)
        return _redelivered(claimed, pending)

    def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle: float, count: int
    ) -> _Plan[list[Message]]:
        min_idle_ms = _milliseconds(min_idle)
        claimed: list[Any] = []
        cursor: Any = "0-0"
        # One XAUTOCLAIM looks at no more than 10 * count pending entries,
        # so it may claim fewer than it could: go on from its cursor.
        while len(claimed) < count:
            [reply] = yield _one(
                "xautoclaim",
                stream,
                group,
                consumer,
                min_idle_ms,
                cursor,
                count=count - len(claimed),
            )
            cursor, entries, *_ = reply
            claimed += _existing(entries)
            if _done(cursor):
                break
        if not claimed:
            return []
        pending = yield _Round(
            tuple(
                _Call("xpending_range", (stream, group, id, id, 1, consumer)) for id, _ in claimed
            )
        )
        return _claimed(claimed, pending or [])

    def dead_letter(
        self, stream: str, group: str, message: Message, dead_stream: str, error: str
    ) -> _Plan[str]:
        headers = _dead_letter_headers(stream, group, message, error)
        fields: dict[Any, Any] = {_EVENT: message.payload, **headers}
        add = _Call("xadd", (dead_stream, fields))
        ack = _Call("xack", (stream, group, message.id))
        dead_id, _ = yield _Round((add, ack), transaction=True)
        return _id(dead_id)

    def pending(self, stream: str, group: str) -> _Plan[Pending]:
        [reply] = yield _one("xpending", stream, group)
        return _pending(reply)

    def read(self, stream: str, start: str, count: int) -> _Plan[list[Message]]:
        [entries] = yield _one("xrange", stream, min=start, count=count)
        return [_message(entry, 0) for entry in entries or ()]

    def delete(self, stream: str, ids: Sequence[str]) -> _Plan[int]:
        if not ids:
            return 0
        [reply] = yield _one("xdel", stream, *ids)
        return int(reply)

    def length(self, stream: str) -> _Plan[int]:
        [reply] = yield _one("xlen", stream)
        return int(reply)

    def consumers(self, stream: str, group: str) -> _Plan[list[Consumer]]:
        replies = yield _one("xinfo_consumers", stream, group, tolerate="")  # no stream or group
        return [] if replies is None else _consumers(replies[0])

    def groups(self, stream: str) -> _Plan[list[Group]]:
        replies = yield _one("xinfo_groups", stream, tolerate="")  # "" : no such stream
        return [] if replies is None else _groups(replies[0])

    def trim_acknowledged(self, stream: str) -> _Plan[int]:
        replies = yield _one("xinfo_groups", stream, tolerate="")
        if replies is None:
            return 0  # no such stream
        groups: list[dict[str, Any]] = replies[0]
        busy = [group for group in groups if group["pending"]]
        oldest: dict[Any, Any] = {}
        if busy:
            pending = yield _Round(tuple(_Call("xpending", (stream, g["name"])) for g in busy))
            oldest = {g["name"]: reply["min"] for g, reply in zip(busy, pending or [], strict=True)}
        minid = _trim_bound(groups, [oldest.get(group["name"]) for group in groups])
        if minid is None:
            return 0
        [removed] = yield _one("xtrim", stream, minid=minid, approximate=False)
        return int(removed)

    def attempts(self, stream: str, group: str, ids: Sequence[str]) -> _Plan[dict[str, Attempts]]:
        [values] = yield _one("hmget", _attempts_key(stream, group), list(ids))
        return {id: _attempts(value) for id, value in zip(ids, values, strict=True) if value}

    def record_attempts(
        self, stream: str, group: str, records: Mapping[str, Attempts | None]
    ) -> _Plan[None]:
        key = _attempts_key(stream, group)
        kept = {id: _attempts_json(record) for id, record in records.items() if record}
        gone = [id for id, record in records.items() if record is None]
        calls = [_Call("hset", (key,), {"mapping": kept})] if kept else []
        calls += [_Call("hdel", (key, *gone))] if gone else []
        yield _Round(tuple(calls))

    def is_done(self, stream: str, group: str, event_id: str) -> _Plan[bool]:
        [found] = yield _one("exists", _done_key(stream, group, event_id))
        return bool(found)

    def mark_done(self, stream: str, group: str, event_id: str, ttl: float) -> _Plan[None]:
        key = _done_key(stream, group, event_id)
        yield _one("set", key, b"1", nx=True, px=_milliseconds(ttl))


class RedisStreamsTransport(Transport):
    """A :class:`~tocsin.remote.transports.base.Transport` on Redis Streams.

    Safe to share between threads, as a ``redis.Redis`` client is. ``publish``
    keeps one connection of the client's pool for itself, and so does
    ``consume`` (while a thread reads on it, others take one from the pool, as
    the other commands do), which halves their cost; if that connection has
    broken since it was last used (a server restart), the command is sent once
    more on a new one, so an event may, rarely, be published twice.

    :param client: the ``redis.Redis`` client to use, made with
        ``decode_responses=False`` (payloads are bytes). ``close()`` leaves it
        open, for its owner to close. Its ``socket_timeout``, if any, must be
        longer than the longest ``consume(block=...)``.
    :param url: where Redis is, when no client is given (by default
        ``redis://127.0.0.1:6379/0``); the transport then makes and closes its
        own client.
    :param maxlen: trim each stream to about this many messages as ``publish``
        adds to it (``XADD MAXLEN ~``). Trimming removes the oldest messages
        whether consumed or not, so it can lose events a group has not read
        yet; by default streams are not trimmed.
    """

    def __init__(
        self,
        client: redis.Redis | None = None,
        *,
        url: str | None = None,
        maxlen: int | None = None,
    ) -> None:
        self._client = _client_for(redis.Redis, client, url)
        self._commands = _Commands(maxlen, self._client.connection_pool.get_encoder())
        self._owns_client = client is None
        self._closed = False
        self._publish_lock = threading.Lock()  # the publishing connection's, held by the leader
        self._publisher: Connection | None = None  # taken from the pool on first publish
        self._publisher_pid = 0
        self._reader_lock = threading.Lock()  # held by the thread reading on _reader
        self._reader: Connection | None = None  # a worker's: taken from the pool on first read
        self._reader_pid = 0
        self._queue_lock = threading.Lock()
        self._queue: list[_Slot] = []  # publishes waiting for the connection
        self._leading = False  # whether a thread is sending (or about to send) the queue
        self._crowded = False  # whether the last round sent the publishes of several callers

    @classmethod
    def from_url(cls, url: str = DEFAULT_URL, *, maxlen: int | None = None) -> Self:
        """A transport with a client of its own, connecting to *url*."""
        return cls(url=url, maxlen=maxlen)

    def _publish(self, stream: str, payload: bytes) -> str:
        # The hot path of every remote send(): one XADD, sent with those of the
        # other threads publishing at the same moment.
        [reply] = self._coalesced(stream, [self._commands.xadd(stream, payload)])
        return _id(reply)

    def _publish_many(self, stream: str, payloads: Sequence[bytes]) -> list[str]:
        xadd = self._commands.xadd
        replies = self._coalesced(stream, [xadd(stream, p) for p in payloads])
        return [_id(reply) for reply in replies]

    def _ensure_group(self, stream: str, group: str, consumer: str | None) -> None:
        self._run("XGROUP CREATE", stream, self._commands.ensure_group(stream, group, consumer))

    def _consume(
        self, stream: str, group: str, consumer: str, count: int, block: float | None
    ) -> list[Message]:
        return self._read_group(stream, group, consumer, (), count, block)

    def _ack_and_consume(
        self,
        stream: str,
        group: str,
        consumer: str,
        ids: Sequence[str],
        count: int,
        block: float | None,
    ) -> list[Message]:
        return self._read_group(stream, group, consumer, ids, count, block)

    def _read_group(
        self,
        stream: str,
        group: str,
        consumer: str,
        ids: Sequence[str],
        count: int,
        block: float | None,
    ) -> list[Message]:
        """XACK *ids* (if any) and XREADGROUP, in one round trip on the
        connection kept for reading (:meth:`_on_reader`). A worker's hot path:
        as for publish(), going round redis-py's command layer (and its parsing
        of each entry into a dict) halves its cost."""
        self._check_open()
        commands = self._commands.read_group(stream, group, consumer, count, block, ids)
        what = "XACK+XREADGROUP" if ids else "XREADGROUP"
        with _translate_errors(what, stream):
            replies = self._on_reader(commands)
        for reply in replies:
            if isinstance(reply, redis.RedisError):
                raise _transport_error(what, stream, reply) from reply
        return _raw_messages(replies[-1])

    def _on_reader(self, commands: list[bytes]) -> list[Any]:
        """Run *commands* on the connection the transport keeps for reading, or
        on one of the pool while another thread reads on it (two workers in
        threads). Taking a connection from redis-py's pool and giving it back
        costs 6-9 us a read (a lock, a poll() for stale data, its metrics): as
        much as the Python of the read itself, in a worker keeping up with
        small batches."""
        pool = self._client.connection_pool
        if not self._reader_lock.acquire(blocking=False):
            connection = pool.get_connection()
            try:
                return _pipeline(connection, commands)
            finally:
                pool.release(connection)
        try:
            if self._reader is None or self._reader_pid != os.getpid():
                # Not one taken before a fork: the parent reads on that socket too.
                self._reader = pool.get_connection()
                self._reader_pid = os.getpid()
            return _pipeline(self._reader, commands)
        finally:
            if self._closed:  # close() came while this read was on the wire
                self._give_back_reader()
            self._reader_lock.release()

    def _give_back_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and self._reader_pid == os.getpid():
            self._client.connection_pool.release(reader)

    def _ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        return self._run("XACK", stream, self._commands.ack(stream, group, ids))

    def _redeliver(
        self, stream: str, group: str, consumer: str, id: str, min_idle: float
    ) -> Message | None:
        plan = self._commands.redeliver(stream, group, consumer, id, min_idle)
        return self._run("XCLAIM", stream, plan)

    def _claim_stale(
        self, stream: str, group: str, consumer: str, min_idle: float, count: int
    ) -> list[Message]:
        plan = self._commands.claim_stale(stream, group, consumer, min_idle, count)
        return self._run("XAUTOCLAIM", stream, plan)

    def _dead_letter(
        self, stream: str, group: str, message: Message, dead_stream: str, error: str
    ) -> str:
        plan = self._commands.dead_letter(stream, group, message, dead_stream, error)
        return self._run("XADD+XACK", stream, plan)

    def _pending(self, stream: str, group: str) -> Pending:
        return self._run("XPENDING", stream, self._commands.pending(stream, group))

    def _read(self, stream: str, start: str, count: int) -> list[Message]:
        return self._run("XRANGE", stream, self._commands.read(stream, start, count))

    def _delete(self, stream: str, ids: Sequence[str]) -> int:
        return self._run("XDEL", stream, self._commands.delete(stream, ids))

    def _length(self, stream: str) -> int:
        return self._run("XLEN", stream, self._commands.length(stream))

    def _groups(self, stream: str) -> list[Group]:
        return self._run("XINFO GROUPS", stream, self._commands.groups(stream))

    def _consumers(self, stream: str, group: str) -> list[Consumer]:
        return self._run("XINFO CONSUMERS", stream, self._commands.consumers(stream, group))

    def _trim_acknowledged(self, stream: str) -> int:
        return self._run("XTRIM", stream, self._commands.trim_acknowledged(stream))

    def _attempts(self, stream: str, group: str, ids: Sequence[str]) -> dict[str, Attempts]:
        return self._run("HMGET", stream, self._commands.attempts(stream, group, ids))

    def _record_attempts(
        self, stream: str, group: str, records: Mapping[str, Attempts | None]
    ) -> None:
        self._run("HSET", stream, self._commands.record_attempts(stream, group, records))

    def _is_done(self, stream: str, group: str, event_id: str) -> bool:
        return self._run("EXISTS", stream, self._commands.is_done(stream, group, event_id))

    def _mark_done(self, stream: str, group: str, event_id: str, ttl: float) -> None:
        self._run("SET", stream, self._commands.mark_done(stream, group, event_id, ttl))

    def close(self) -> None:
        with self._publish_lock:
            if self._closed:
                return
            self._closed = True
            publisher, self._publisher = self._publisher, None
        if publisher is not None:
            self._client.connection_pool.release(publisher)
        if self._reader_lock.acquire(blocking=False):  # else the reading thread gives it back
            try:
                self._give_back_reader()
            finally:
                self._reader_lock.release()
        if self._owns_client:
            self._client.close()

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError("the transport is closed")

    def _run(self, command: str, stream: str, plan: _Plan[_T]) -> _T:
        """Run *plan*, a round trip per round; *command* names it in errors."""
        self._check_open()
        with _translate_errors(command, stream):
            replies: list[Any] | None = None
            try:
                while True:
                    replies = self._execute(plan.send(replies))
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def _execute(self, round: _Round) -> list[Any] | None:
        try:
            if len(round.calls) == 1 and not round.transaction:
                [call] = round.calls
                return [getattr(self._client, call.method)(*call.args, **call.kwargs)]
            with self._client.pipeline(transaction=round.transaction) as pipe:
                for call in round.calls:
                    getattr(pipe, call.method)(*call.args, **call.kwargs)
                return list(pipe.execute())
        except redis.ResponseError as err:
            if round.tolerate is not None and str(err).startswith(round.tolerate):
                return None
            raise

    def _coalesced(self, stream: str, commands: list[bytes]) -> list[Any]:
        """Send *commands* on the publishing connection and return their replies,
        in one pipeline with those of every other thread publishing meanwhile.

        A "group commit": the first caller to find nobody sending leads: it
        takes the connection, then everything queued by then, sends it in one
        write and reads the replies, handing each caller its own (or its own
        error); callers that came meanwhile wait, and the first of those still
        queued leads next. Alone, a caller sends at once: no added latency.
        Each thread's publishes keep their order (a thread has one in the queue
        at a time, and the queue is sent in order).
        """
        slot = _Slot(commands)
        with self._queue_lock:
            self._queue.append(slot)
            lead, self._leading = not self._leading, True
        if not lead:
            self._wait(slot)  # released once sent, or to lead the next round
        elif self._crowded:
            # The last round carried several callers, just woken: let them queue
            # their next publish before this round leaves (alone, no wait at all).
            time.sleep(0)
        if not slot.sent:
            self._lead(slot)
        if slot.error is not None:
            error = slot.error
            if isinstance(error, TransportError):
                raise error
            raise _transport_error("XADD", stream, error) from error
        for reply in slot.replies:
            if isinstance(reply, redis.RedisError):
                raise _transport_error("XADD", stream, reply) from reply
        return slot.replies

    def _wait(self, slot: _Slot) -> None:
        """Wait until *slot* is sent, or called to lead; once sent, wake the
        caller after it in its round (the last one, the next leader).

        A round's callers are woken one after the other, each by the one before
        it as it gets going, rather than all at once by the leader: all at once,
        they woke only to queue for the GIL, and each paid a second sleep and
        wake-up there. The next leader is woken last, so that the next round
        carries every caller of this one that publishes again, rather than the
        few that were quick. From 8 threads sending through a Remote (no worker
        running) this halved the context switches of a publish (per event,
        2.1-3.8 voluntary and 0.7-1.2 involuntary before, 1.1-1.6 and 0.1-0.4
        after), cut its CPU time by about a third (27-31 us an event before,
        16-23 after, in the same minutes) and filled the rounds (8 publishes a
        write, from 5).
        """
        try:
            slot.wake.acquire()
        except BaseException:  # interrupted (KeyboardInterrupt in the main thread)
            self._abandon(slot)
            raise
        if slot.sent:
            with self._queue_lock:
                self._wake_from(slot.next)

    def _wake_from(self, slot: _Slot | None) -> None:
        """Wake *slot*'s caller, or the first after it still waiting; past the
        round's last caller, the next leader. With the queue's lock held:
        :meth:`_abandon` marks callers gone under it."""
        while slot is not None and slot.gone:
            slot = slot.next
        if slot is not None:
            slot.wake.release()
        elif self._queue:
            self._queue[0].wake.release()  # it leads the next round
        else:
            self._leading = False

    def _abandon(self, slot: _Slot) -> None:
        """*slot*'s caller was interrupted while it waited: it is not sent if it
        is still queued, and whatever waking it was owed passes to the next."""
        with self._queue_lock:
            woken = slot.wake.acquire(blocking=False)  # released before the interruption
            queued = slot in self._queue
            if queued:
                self._queue.remove(slot)
            slot.gone = True
            if woken:
                # Sent: the caller after it in its round; called to lead: the next one leads.
                self._wake_from(None if queued else slot.next)

    def _lead(self, mine: _Slot) -> None:
        """Send what is queued (*mine* among it), then wake the first of the
        round's other callers, who wakes the next (:meth:`_wait`), the last
        waking the next leader if more was queued meanwhile."""
        batch: list[_Slot] = []
        try:
            with self._publish_lock:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                if self._closed:
                    for slot in batch:
                        slot.error = TransportError("the transport is closed")
                else:
                    self._send(batch)
                self._crowded = len(batch) > 1
        finally:
            followers = [slot for slot in batch if slot is not mine]
            for slot, after in itertools.pairwise(followers):
                slot.next = after
            for slot in batch:
                slot.sent = True
                if slot.error is None and len(slot.replies) != len(slot.commands):
                    # Interrupted (KeyboardInterrupt in the leader): never leave a caller waiting.
                    slot.error = redis.ConnectionError("interrupted before the reply was read")
            with self._queue_lock:
                if not batch and mine in self._queue:
                    # Interrupted before taking the queue: leave, and let the next one lead.
                    self._queue.remove(mine)
                self._wake_from(followers[0] if followers else None)

    def _send(self, batch: list[_Slot]) -> None:
        """Send the commands of *batch* in one write, and give each slot its
        replies (a ``redis.ResponseError`` in place of a refused command)."""
        # Going round redis-py's execute_command() and Pipeline (a pool checkout,
        # retry and metrics per call, a command stack) halves the cost of a publish.
        if self._publisher is None or self._publisher_pid != os.getpid():
            # A connection taken before a fork is the parent's socket too: the
            # replies would go to whichever process reads first. Take a new one.
            try:
                self._publisher = self._client.connection_pool.get_connection()
            except redis.RedisError as err:  # it connects at once: Redis is down
                for slot in batch:
                    slot.error = err
                return
            self._publisher_pid = os.getpid()
        replies = _pipeline(self._publisher, [c for slot in batch for c in slot.commands])
        start = 0
        for slot in batch:
            slot.replies = replies[start : start + len(slot.commands)]
            start += len(slot.commands)


class AsyncRedisStreamsTransport(AsyncTransport):
    """The asyncio version of :class:`RedisStreamsTransport`, on ``redis.asyncio``.

    A ``redis.asyncio.Redis`` client belongs to the event loop that first uses
    it: make and use the transport in one loop. ``consume(block=...)`` waits in
    Redis (``XREADGROUP BLOCK``), not in the loop. Publishes go out on a
    connection the transport takes from the client's pool and keeps, shared by
    every task publishing at once (see :mod:`._pipelined`).

    :param client: the ``redis.asyncio.Redis`` client to use, made with
        ``decode_responses=False``; ``close()`` leaves it open.
    :param url: where Redis is, when no client is given (by default
        ``redis://127.0.0.1:6379/0``).
    :param maxlen: approximate trimming on publish, as for
        :class:`RedisStreamsTransport` (it can lose unread events).
    """

    def __init__(
        self,
        client: redis.asyncio.Redis | None = None,
        *,
        url: str | None = None,
        maxlen: int | None = None,
    ) -> None:
        self._client = _client_for(redis.asyncio.Redis, client, url)
        encoder = self._client.connection_pool.get_encoder()  # type: ignore[no-untyped-call]
        self._commands = _Commands(maxlen, encoder)
        self._owns_client = client is None
        self._closed = False
        self._pipeline: _pipelined.Pipeline | None = None  # made on first publish
        # Where the pipeline cannot take a connection over, through redis.asyncio:
        self._publisher: redis.asyncio.Connection | None = None  # taken on first publish
        self._queue: list[tuple[list[bytes], asyncio.Future[list[Any]]]] = []  # publishes waiting
        self._sender: asyncio.Task[None] | None = None  # sends the queue, while it is not empty

    @classmethod
    def from_url(cls, url: str = DEFAULT_URL, *, maxlen: int | None = None) -> Self:
        """A transport with a client of its own, connecting to *url*."""
        return cls(url=url, maxlen=maxlen)

    async def _publish(self, stream: str, payload: bytes) -> str:
        [reply] = await self._coalesced(stream, [self._commands.xadd(stream, payload)])
        return _id(reply)

    async def _publish_many(self, stream: str, payloads: Sequence[bytes]) -> list[str]:
        xadd = self._commands.xadd
        replies = await self._coalesced(stream, [xadd(stream, p) for p in payloads])
        return [_id(reply) for reply in replies]

    async def _ensure_group(self, stream: str, group: str, consumer: str | None) -> None:
        plan = self._commands.ensure_group(stream, group, consumer)
        await self._run("XGROUP CREATE", stream, plan)

    async def _consume(
        self, stream: str, group: str, consumer: str, count: int, block: float | None
    ) -> list[Message]:
        plan = self._commands.consume(stream, group, consumer, count, block)
        return await self._run("XREADGROUP", stream, plan)

    async def _ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        return await self._run("XACK", stream, self._commands.ack(stream, group, ids))

    async def _ack_and_consume(
        self,
        stream: str,
        group: str,
        consumer: str,
        ids: Sequence[str],
        count: int,
        block: float | None,
    ) -> list[Message]:
        plan = self._commands.consume(stream, group, consumer, count, block, ids)
        return await self._run("XACK+XREADGROUP", stream, plan)

    async def _redeliver(
        self, stream: str, group: str, consumer: str, id: str, min_idle: float
    ) -> Message | None:
        plan = self._commands.redeliver(stream, group, consumer, id, min_idle)
        return await self._run("XCLAIM", stream, plan)

    async def _claim_stale(
        self, stream: str, group: str, consumer: str, min_idle: float, count: int
    ) -> list[Message]:
        plan = self._commands.claim_stale(stream, group, consumer, min_idle, count)
        return await self._run("XAUTOCLAIM", stream, plan)

    async def _dead_letter(
        self, stream: str, group: str, message: Message, dead_stream: str, error: str
    ) -> str:
        plan = self._commands.dead_letter(stream, group, message, dead_stream, error)
        return await self._run("XADD+XACK", stream, plan)

    async def _pending(self, stream: str, group: str) -> Pending:
        return await self._run("XPENDING", stream, self._commands.pending(stream, group))

    async def _read(self, stream: str, start: str, count: int) -> list[Message]:
        return await self._run("XRANGE", stream, self._commands.read(stream, start, count))

    async def _delete(self, stream: str, ids: Sequence[str]) -> int:
        return await self._run("XDEL", stream, self._commands.delete(stream, ids))

    async def _length(self, stream: str) -> int:
        return await self._run("XLEN", stream, self._commands.length(stream))

    async def _groups(self, stream: str) -> list[Group]:
        return await self._run("XINFO GROUPS", stream, self._commands.groups(stream))

    async def _consumers(self, stream: str, group: str) -> list[Consumer]:
        plan = self._commands.consumers(stream, group)
        return await self._run("XINFO CONSUMERS", stream, plan)

    async def _trim_acknowledged(self, stream: str) -> int:
        return await self._run("XTRIM", stream, self._commands.trim_acknowledged(stream))

    async def _attempts(self, stream: str, group: str, ids: Sequence[str]) -> dict[str, Attempts]:
        return await self._run("HMGET", stream, self._commands.attempts(stream, group, ids))

    async def _record_attempts(
        self, stream: str, group: str, records: Mapping[str, Attempts | None]
    ) -> None:
        await self._run("HSET", stream, self._commands.record_attempts(stream, group, records))

    async def _is_done(self, stream: str, group: str, event_id: str) -> bool:
        return await self._run("EXISTS", stream, self._commands.is_done(stream, group, event_id))

    async def _mark_done(self, stream: str, group: str, event_id: str, ttl: float) -> None:
        await self._run("SET", stream, self._commands.mark_done(stream, group, event_id, ttl))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pipeline is not None:
            # Publishes queued before close() were accepted: let them go out.
            await self._pipeline.aclose()
        if self._sender is not None:
            # Publishes queued before close() were accepted: let them go out.
            await asyncio.wait([self._sender])
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            await self._client.connection_pool.release(publisher)
        if self._owns_client:
            await self._client.aclose()

    async def _coalesced(self, stream: str, commands: list[bytes]) -> list[Any]:
        """Send *commands* on the publishing connection and return their replies,
        sharing writes with every other task publishing meanwhile (see
        :mod:`._pipelined`). A publish cancelled before its write leaves is not
        sent.
        """
        self._check_open()
        pipeline = self._pipeline
        if pipeline is None:
            pool = self._client.connection_pool
            pipeline = self._pipeline = _pipelined.Pipeline(
                pool.get_connection, pool.release, self._queued
            )
        waiter = pipeline.publish(commands)
        try:
            replies = await waiter
        except redis.RedisError as err:
            raise _transport_error("XADD", stream, err) from err
        for reply in replies:
            if isinstance(reply, redis.RedisError):
                raise _transport_error("XADD", stream, reply) from reply
        return replies

    def _queued(self, commands: list[bytes]) -> asyncio.Future[list[Any]]:
        """Publishing through redis.asyncio, where the pipeline cannot take a
        connection over: each publish waits on a future; one task, started by
        the first publish to find none running, sends everything queued in one
        write per round until the queue is empty. Tasks that publish while a
        round is on the wire share the next one."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[list[Any]] = loop.create_future()
        self._queue.append((commands, waiter))
        if self._sender is None:
            self._sender = loop.create_task(self._send_queued())
        return waiter

    async def _send_queued(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._send([entry for entry in batch if not entry[1].done()])
        finally:
            self._sender = None

    async def _send(self, batch: list[tuple[list[bytes], asyncio.Future[list[Any]]]]) -> None:
        """Send the commands of *batch* in one write and settle each future with
        its replies, or with the error that stopped them all."""
        if not batch:
            return
        try:
            if self._publisher is None:
                pool = self._client.connection_pool
                self._publisher = await pool.get_connection()  # type: ignore[no-untyped-call]
            commands = [command for own, _ in batch for command in own]
            replies = await _apipeline(self._publisher, commands)
        except redis.RedisError as err:  # it connects at once: Redis is down
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(err)
            return
        except BaseException:
            # Cancelled (the loop is closing): never leave a caller waiting.
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(
                        redis.ConnectionError("interrupted before the reply was read")
                    )
            raise
        start = 0
        for commands, waiter in batch:
            if not waiter.done():
                waiter.set_result(replies[start : start + len(commands)])
            start += len(commands)

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError("the transport is closed")

    async def _run(self, command: str, stream: str, plan: _Plan[_T]) -> _T:
        """:meth:`RedisStreamsTransport._run`, awaiting each round trip."""
        self._check_open()
        with _translate_errors(command, stream):
            replies: list[Any] | None = None
            try:
                while True:
                    replies = await self._execute(plan.send(replies))
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    async def _execute(self, round: _Round) -> list[Any] | None:
        try:
            if len(round.calls) == 1 and not round.transaction:
                [call] = round.calls
                return [await getattr(self._client, call.method)(*call.args, **call.kwargs)]
            async with self._client.pipeline(transaction=round.transaction) as pipe:
                for call in round.calls:
                    getattr(pipe, call.method)(*call.args, **call.kwargs)
                return list(await pipe.execute())
        except redis.ResponseError as err:
            if round.tolerate is not None and str(err).startswith(round.tolerate):
                return None
            raise


_Client = TypeVar("_Client", redis.Redis, redis.asyncio.Redis)


def _client_for(kind: type[_Client], client: _Client | None, url: str | None) -> _Client:
    """The client to use: *client*, or a new one for *url*; payloads must stay bytes."""
    if client is not None and url is not None:
        raise ValueError("pass a Redis client or a url, not both")
    made = kind.from_url(url or DEFAULT_URL) if client is None else client
    if made.connection_pool.connection_kwargs.get("decode_responses"):
        raise ValueError(
            "the Redis client must not decode responses (payloads are bytes): "
            "make it with decode_responses=False"
        )
    return made


def _groups(replies: list[dict[str, Any]]) -> list[Group]:
    groups = [
        Group(
            name=_text(reply["name"]),
            consumers=int(reply["consumers"]),
            pending=int(reply["pending"]),
            # Redis 7 reports the lag, or nil when it cannot tell (after some deletions).
            waiting=None if reply.get("lag") is None else int(reply["lag"]),
            last_delivered=_text(reply["last-delivered-id"]),
        )
        for reply in replies
    ]
    return sorted(groups, key=lambda group: group.name)


def _consumers(replies: list[dict[str, Any]]) -> list[Consumer]:
    # Redis 7.2 adds "inactive" (since the last successful read); 7.0 has "idle" only.
    consumers = [
        Consumer(_text(reply["name"]), int(reply["pending"]), int(reply["idle"]) / 1000)
        for reply in replies
    ]
    return sorted(consumers, key=lambda consumer: consumer.name)


def _trim_bound(groups: list[dict[str, Any]], oldest_pending: list[Any]) -> str | None:
    """``XTRIM MINID`` for what every group is done with: the lowest of each
    group's oldest pending id, or the id after its last delivered one.
    ``None`` when there is no group (nobody is done with anything)."""
    needed = [
        _parse_id(_text(pending))
        if pending is not None
        else _next_id(_parse_id(_text(group["last-delivered-id"])))
        for group, pending in zip(groups, oldest_pending, strict=True)
    ]
    return _format_id(min(needed)) if needed else None


def _done_key(stream: str, group: str, event_id: str) -> str:
    """The key that marks an event done for a group, for deduplication."""
    return f"{stream}:done:{group}:{event_id}"


def _attempts_key(stream: str, group: str) -> str:
    """The hash of a group's :class:`Attempts`, by message id, beside its stream."""
    return f"{stream}:attempts:{group}"


def _attempts_json(record: Attempts) -> str:
    fields = {"f": record.failures, "k": record.kills, "e": record.error, "r": record.running}
    return json.dumps(fields)


def _attempts(value: bytes) -> Attempts:
    fields = json.loads(value)
    return Attempts(fields["f"], fields["k"], fields["e"], fields["r"])


def _id(reply: Any) -> str:
    return str(reply.decode())


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _check_maxlen(maxlen: int | None) -> int | None:
    if maxlen is not None:
        _check_count(maxlen)  # the same rule, an int of at least 1
    return maxlen


class _Slot:
    """One caller's publish in the queue of :meth:`RedisStreamsTransport._coalesced`."""

    __slots__ = ("commands", "error", "gone", "next", "replies", "sent", "wake")

    def __init__(self, commands: list[bytes]) -> None:
        self.commands = commands
        self.replies: list[Any] = []
        self.error: redis.RedisError | TransportError | None = None  # the whole publish failed
        self.sent = False
        self.wake = threading.Lock()
        self.wake.acquire()  # held until the caller may go on
        self.next: _Slot | None = None  # the caller after it in its round, woken by it
        self.gone = False  # its caller was interrupted while it waited


_SEND, _READ, _DROP = range(3)  # what _exchange() asks of the connection


def _exchange(commands: list[bytes]) -> Generator[tuple[int, bytes], Any, list[Any]]:
    """The decisions of one pipelined exchange, without I/O: send *commands* (in
    Redis' protocol) in one write and read their replies; return the replies, a
    refused command's being its ``redis.ResponseError`` and those a broken
    connection left unread a ``redis.ConnectionError``.

    It yields ``(_SEND, data)``, ``(_READ, b"")`` (and receives the reply) or
    ``(_DROP, b"")`` (disconnect); the connection's errors are thrown into it.
    :func:`_pipeline` and :func:`_apipeline` run it, blocking or awaiting.

    If the connection was broken (Redis restarted, or dropped it while idle),
    the commands still without a reply are sent once more, on a new
    connection: the same payloads, so the same event ids, and an XADD that did
    get through the first time is a duplicate receivers can recognise.
    """
    replies: list[Any] = []
    first: redis.ConnectionError | None = None
    while True:
        waiting = commands[len(replies) :]
        try:
            yield _SEND, b"".join(waiting)
            for _ in waiting:
                try:
                    replies.append((yield _READ, b""))
                except redis.ResponseError as refused:  # the reply: still in step
                    replies.append(refused)
        except redis.ConnectionError as err:
            if first is None:
                first = err  # redis-py has disconnected: sending again connects anew
                continue
            failed = redis.ConnectionError(
                f"{err} (sent twice: the first attempt failed with {first!r}, "
                "and may have been published)"
            )
            return replies + [failed] * (len(commands) - len(replies))
        except redis.RedisError as err:  # a timeout: the replies may come later, out of step
            yield _DROP, b""
            return replies + [err] * (len(commands) - len(replies))
        except BaseException:
            # KeyboardInterrupt or a cancellation between send and read, say: a
            # reply left unread would be taken by the next command for its own.
            yield _DROP, b""
            raise
        else:
            return replies


def _pipeline(connection: Connection, commands: list[bytes]) -> list[Any]:
    """Run :func:`_exchange` on a blocking connection."""
    steps = _exchange(commands)
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            action, data = steps.send(reply) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        reply = error = None
        try:
            if action == _READ:
                reply = connection.read_response()
            elif action == _SEND:
                connection.send_packed_command([data])  # type: ignore[no-untyped-call]
            else:
                connection.disconnect()  # type: ignore[no-untyped-call]
        except BaseException as err:
            error = err


async def _apipeline(connection: redis.asyncio.Connection, commands: list[bytes]) -> list[Any]:
    """Run :func:`_exchange` on an asyncio connection.

    redis.asyncio times each ``read_response()`` out with a timer of its own, and
    with a round's replies already buffered those timers were most of what a
    publish cost. Here the replies are read without one, and a single timer
    watches the exchange instead: it fails the read under way (a
    ``redis.TimeoutError``, as redis-py's would be) once the connection has
    made no progress for ``socket_timeout`` seconds.
    """
    watch = _Stall(connection.socket_timeout)
    steps = _exchange(commands)
    reply: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                action, data = steps.send(reply) if error is None else steps.throw(error)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            reply = error = None
            try:
                if action == _READ:
                    reply = await connection.read_response(timeout=math.inf)
                elif action == _SEND:
                    await connection.send_packed_command([data])
                else:
                    await connection.disconnect()
                watch.progress()
            except asyncio.CancelledError as cancelled:
                error = watch.timeout(connection) or cancelled
            except BaseException as err:
                error = err
    finally:
        watch.stop()


class _Stall:
    """The timer of :func:`_apipeline`: cancels the running task once *limit*
    seconds pass without :meth:`progress`; :meth:`timeout` then tells that
    cancellation (a ``redis.TimeoutError``) from any other (None), as
    ``asyncio.timeout()`` does with ``uncancel()``."""

    __slots__ = ("_task", "_watchdog", "expired")

    def __init__(self, limit: float | None) -> None:
        task = asyncio.current_task()
        assert task is not None  # run by a task: the transport's sender
        self._task = task
        self.expired = False
        self._watchdog = _pipelined.Watchdog(asyncio.get_running_loop(), limit, self._expire)
        self._watchdog.arm()

    def _expire(self) -> None:
        self.expired = True
        self._task.cancel()

    def progress(self) -> None:
        self._watchdog.progress()

    def timeout(self, connection: redis.asyncio.Connection) -> redis.TimeoutError | None:
        if not self.expired:
            return None
        self.expired = False
        if self._task.uncancel() > 0:  # cancelled by someone else as well: that wins
            return None
        self.progress()
        return redis.TimeoutError(
            f"Timeout reading from {connection.host}:{connection.port} "
            f"(no progress for {self._watchdog.limit} s)"
        )

    def stop(self) -> None:
        self._watchdog.disarm()


def _transport_error(command: str, stream: str, err: redis.RedisError) -> TransportError:
    return TransportError(f"Redis {command} on stream {stream!r} failed: {err}")


@contextlib.contextmanager
def _translate_errors(command: str, stream: str) -> Iterator[None]:
    try:
        yield
    except redis.RedisError as err:
        raise _transport_error(command, stream, err) from err


def _milliseconds(seconds: float) -> int:
    # Rounded up, so that waits and idle times are never shorter than asked;
    # round() first, so that 0.7 s is 700 ms and not 701 (0.7 * 1000 = 700.0000000000001).
    return math.ceil(round(seconds * 1000, 6))


def _message(entry: Any, deliveries: int) -> Message:
    """A stream entry as redis-py parses it, ``(id, {field: value})``, as a Message."""
    id, fields = entry
    headers = {
        name.decode(errors="replace"): value.decode(errors="replace")
        for name, value in fields.items()
        if name != _EVENT
    }
    return Message(id.decode(), fields.get(_EVENT, b""), deliveries, headers)


def _bounded(cache: dict[Any, bytes]) -> dict[Any, bytes]:
    """*cache*, emptied first if full: streams named per tenant, say, keep it bounded."""
    if len(cache) >= 1024:
        cache.clear()
    return cache


def _pack(*args: bytes) -> bytes:
    """A command in Redis' protocol (RESP)."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args)


_make_message = maker(Message)  # Message(...), for each message a worker reads


def _raw_messages(reply: Any) -> list[Message]:
    """XREADGROUP's messages from its reply as the connection parses it, without
    redis-py's response callbacks: ``[[stream, entries]]`` (RESP2), ``{stream:
    entries}`` (RESP3), or nil when none came; each entry ``[id, [field, value, ...]]``."""
    if not reply:
        return []
    [entries] = reply.values() if isinstance(reply, dict) else [reply[0][1]]
    messages = []
    for id, fields in entries:
        if fields and len(fields) == 2 and fields[0] == _EVENT:  # a published event alone
            messages.append(_make_message(id.decode(), fields[1], 1, {}))
        else:
            pairs = dict(zip(fields[::2], fields[1::2], strict=True)) if fields else {}
            messages.append(_message((id, pairs), 1))
    return messages


def _read_group_entries(reply: Any) -> list[Any]:
    """The entries of XREADGROUP's reply for one stream, as any client gives them.

    The shape depends on the client's ``protocol`` and ``legacy_responses``:
    ``[[stream, entries]]`` (RESP2, and RESP3 by default), ``{stream: [entries]}``
    (``protocol=3``) or ``{stream: entries}`` (``legacy_responses=False``).
    """
    if not reply:
        return []
    if not isinstance(reply, dict):
        return list(reply[0][1])
    [entries] = reply.values()
    if entries and isinstance(entries[0], list):
        [entries] = entries
    return list(entries)


def _existing(entries: Any) -> list[Any]:
    # Redis before 7.0 answers XCLAIM and XAUTOCLAIM with nil for deleted messages.
    return [entry for entry in entries if entry[0] is not None]


def _done(cursor: Any) -> bool:
    return cursor in (b"0-0", "0-0")


def _redelivered(claimed: Any, pending: Any) -> Message | None:
    """redeliver()'s message from XCLAIM's and XPENDING's replies, run in one MULTI."""
    [entry] = _existing(claimed) or [None]
    if entry is None:
        return None
    return _message(entry, int(pending[0]["times_delivered"]))


def _claimed(claimed: list[Any], pending: list[Any]) -> list[Message]:
    """claim_stale()'s messages, given each one's XPENDING reply.

    A message whose reply is empty was taken by another consumer (or
    acknowledged) between XAUTOCLAIM and XPENDING: it is no longer ours to give.
    """
    return [
        _message(entry, int(found[0]["times_delivered"]))
        for entry, found in zip(claimed, pending, strict=True)
        if found
    ]


def _pending(reply: Any) -> Pending:
    def text(id: bytes | None) -> str | None:
        return None if id is None else id.decode()

    return Pending(
        count=int(reply["pending"]),
        oldest=text(reply["min"]),
        newest=text(reply["max"]),
        consumers={
            consumer["name"].decode(errors="replace"): int(consumer["pending"])
            for consumer in reply["consumers"]
        },
    )
