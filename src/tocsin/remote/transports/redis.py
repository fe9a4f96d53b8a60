"""Transports on Redis Streams, sync and asyncio, through redis-py.

::

    from tocsin.remote.transports.redis import RedisStreamsTransport

    transport = RedisStreamsTransport(url="redis://127.0.0.1:6379/0")
    transport.ensure_group("events", "workers")
    transport.publish("events", b"payload")

Each method is one Redis command, or a few sent in one round trip:

=================  =====================================================
``publish``        ``XADD stream * event <payload>``
``publish_many``   one ``XADD`` per payload, pipelined
``ensure_group``   ``XGROUP CREATE stream group 0 MKSTREAM``
``consume``        ``XREADGROUP GROUP group consumer ... STREAMS stream >``
``ack``            ``XACK``
``redeliver``      ``XCLAIM``, then ``XPENDING`` for its delivery count, in ``MULTI``
``claim_stale``    ``XAUTOCLAIM`` until *count*, then ``XPENDING`` per message
``dead_letter``    ``XADD`` to the dead stream and ``XACK``, in ``MULTI``
``pending``        ``XPENDING stream group``
``read``           ``XRANGE``; ``delete``: ``XDEL``; ``length``: ``XLEN``
=================  =====================================================

A stream entry has one field, ``event``, holding the payload; a dead letter's
headers are more fields beside it. Needs Redis 7.0 or newer, whose ``XCLAIM``
and ``XAUTOCLAIM`` drop deleted messages from the pending list, and the
``redis`` extra: ``pip install 'tocsin[redis]'``.
"""

from __future__ import annotations

try:
    import redis
    import redis.asyncio
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "tocsin.remote.transports.redis needs redis-py: pip install 'tocsin[redis]'"
    ) from err

import contextlib
import math
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Self, TypeVar

from redis.connection import Connection

from ...exceptions import TransportError
from ._checks import (
    _check_block,
    _check_count,
    _check_ids,
    _check_min_idle,
    _check_name,
    _check_names,
    _check_payload,
    _check_start,
    _dead_letter_headers,
    _format_id,
    _next_id,
    _parse_id,
)
from .base import AsyncTransport, Group, Message, Pending, Transport

__all__ = ["DEFAULT_URL", "AsyncRedisStreamsTransport", "RedisStreamsTransport"]

DEFAULT_URL = "redis://127.0.0.1:6379/0"

_EVENT = b"event"  # the entry field that holds the payload


class RedisStreamsTransport(Transport):
    """A :class:`~tocsin.remote.transports.base.Transport` on Redis Streams.

    Safe to share between threads, as a ``redis.Redis`` client is. ``publish``
    keeps one connection of the client's pool for itself (the others take one
    from the pool per call), which halves its cost; if that connection has
    broken since the last publish (a server restart), the command is sent once
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
        self._maxlen = _check_maxlen(maxlen)
        self._client = _client_for(redis.Redis, client, url)
        self._owns_client = client is None
        # Built once: publish() is the hot path.
        self._xadd_options = () if maxlen is None else ("MAXLEN", "~", maxlen)
        self._closed = False
        self._publish_lock = threading.Lock()
        self._publisher: Connection | None = None  # taken from the pool on first publish
        self._publisher_pid = 0

    @classmethod
    def from_url(cls, url: str = DEFAULT_URL, *, maxlen: int | None = None) -> Self:
        """A transport with a client of its own, connecting to *url*."""
        return cls(url=url, maxlen=maxlen)

    def publish(self, stream: str, payload: bytes) -> str:
        # The hot path of every remote send(): nothing but the checks and XADD.
        _check_name("stream", stream)
        _check_payload(payload)
        command = ("XADD", stream, *self._xadd_options, "*", _EVENT, payload)
        with self._publish_lock:
            self._check_open()
            try:
                reply = self._round_trip(command)
            except redis.RedisError as err:
                raise _transport_error("XADD", stream, err) from err
        return str(reply.decode())

    def publish_many(self, stream: str, payloads: Sequence[bytes]) -> list[str]:
        _check_name("stream", stream)
        for payload in payloads:
            _check_payload(payload)
        with self._command("XADD", stream):
            if not payloads:
                return []
            with self._client.pipeline(transaction=False) as pipe:
                for payload in payloads:
                    pipe.xadd(stream, {_EVENT: payload}, maxlen=self._maxlen)
                return [id.decode() for id in pipe.execute()]

    def ensure_group(self, stream: str, group: str) -> None:
        _check_names(stream=stream, group=group)
        with self._command("XGROUP CREATE", stream), _group_exists_is_fine():
            self._client.xgroup_create(stream, group, id="0", mkstream=True)

    def consume(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        count: int = 100,
        block: float | None = None,
    ) -> list[Message]:
        _check_names(stream=stream, group=group, consumer=consumer)
        _check_count(count)
        _check_block(block)
        block_ms = None if block is None else _milliseconds(block)
        with self._command("XREADGROUP", stream):
            reply = self._client.xreadgroup(
                group, consumer, {stream: ">"}, count=count, block=block_ms
            )
        return [_message(entry, 1) for entry in _read_group_entries(reply)]

    def ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        _check_names(stream=stream, group=group)
        _check_ids(ids)
        with self._command("XACK", stream):
            return int(self._client.xack(stream, group, *ids)) if ids else 0

    def redeliver(
        self, stream: str, group: str, consumer: str, id: str, *, min_idle: float = 0.0
    ) -> Message | None:
        _check_names(stream=stream, group=group, consumer=consumer)
        _parse_id(id)
        _check_min_idle(min_idle)
        with self._command("XCLAIM", stream), self._client.pipeline(transaction=True) as pipe:
            pipe.xclaim(stream, group, consumer, _milliseconds(min_idle), [id])
            pipe.xpending_range(stream, group, id, id, 1, consumer)
            claimed, pending = pipe.execute()
        return _redelivered(claimed, pending)

    def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle: float, count: int = 100
    ) -> list[Message]:
        _check_names(stream=stream, group=group, consumer=consumer)
        _check_min_idle(min_idle)
        _check_count(count)
        min_idle_ms = _milliseconds(min_idle)
        claimed: list[Any] = []
        cursor: Any = "0-0"
        with self._command("XAUTOCLAIM", stream):
            # One XAUTOCLAIM looks at no more than 10 * count pending entries,
            # so it may claim fewer than it could: go on from its cursor.
            while len(claimed) < count:
                cursor, entries, *_ = self._client.xautoclaim(
                    stream, group, consumer, min_idle_ms, cursor, count=count - len(claimed)
                )
                claimed += _existing(entries)
                if _done(cursor):
                    break
        with self._command("XPENDING", stream), self._client.pipeline(transaction=False) as pipe:
            for id, _ in claimed:
                pipe.xpending_range(stream, group, id, id, 1, consumer)
            return _claimed(claimed, pipe.execute())

    def dead_letter(
        self, stream: str, group: str, message: Message, dead_stream: str, *, error: str
    ) -> str:
        _check_names(stream=stream, group=group, dead_stream=dead_stream)
        _parse_id(message.id)
        fields = _dead_letter_fields(stream, group, message, error)
        with self._command("XADD+XACK", stream), self._client.pipeline(transaction=True) as pipe:
            pipe.xadd(dead_stream, fields)
            pipe.xack(stream, group, message.id)
            dead_id, _ = pipe.execute()
        return str(dead_id.decode())

    def pending(self, stream: str, group: str) -> Pending:
        _check_names(stream=stream, group=group)
        with self._command("XPENDING", stream):
            return _pending(self._client.xpending(stream, group))

    def read(self, stream: str, *, start: str = "-", count: int = 100) -> list[Message]:
        _check_name("stream", stream)
        _check_start(start)
        _check_count(count)
        with self._command("XRANGE", stream):
            entries = self._client.xrange(stream, min=start, count=count)
        return [_message(entry, 0) for entry in entries or ()]

    def delete(self, stream: str, ids: Sequence[str]) -> int:
        _check_name("stream", stream)
        _check_ids(ids)
        with self._command("XDEL", stream):
            return int(self._client.xdel(stream, *ids)) if ids else 0

    def length(self, stream: str) -> int:
        _check_name("stream", stream)
        with self._command("XLEN", stream):
            return int(self._client.xlen(stream))

    def groups(self, stream: str) -> list[Group]:
        _check_name("stream", stream)
        with self._command("XINFO GROUPS", stream):
            try:
                return _groups(self._client.xinfo_groups(stream))
            except redis.ResponseError:
                return []  # no such stream

    def trim_acknowledged(self, stream: str) -> int:
        _check_name("stream", stream)
        with self._command("XTRIM", stream):
            try:
                groups = self._client.xinfo_groups(stream)
            except redis.ResponseError:
                return 0  # no such stream
            bounds = [
                self._client.xpending(stream, group["name"])["min"] if group["pending"] else None
                for group in groups
            ]
            minid = _trim_bound(groups, bounds)
            if minid is None:
                return 0
            return int(self._client.xtrim(stream, minid=minid, approximate=False))

    def close(self) -> None:
        with self._publish_lock:
            if self._closed:
                return
            self._closed = True
            publisher, self._publisher = self._publisher, None
        if publisher is not None:
            self._client.connection_pool.release(publisher)
        if self._owns_client:
            self._client.close()

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError("the transport is closed")

    @contextlib.contextmanager
    def _command(self, command: str, stream: str) -> Iterator[None]:
        self._check_open()
        with _translate_errors(command, stream):
            yield

    def _round_trip(self, command: tuple[Any, ...]) -> Any:
        """Send *command* on the publishing connection, return its reply. Under the lock."""
        # Going round redis-py's execute_command() (a pool checkout, retry and
        # metrics per call) halves the cost of a publish.
        if self._publisher is None or self._publisher_pid != os.getpid():
            # A connection taken before a fork is the parent's socket too: the
            # replies would go to whichever process reads first. Take a new one.
            self._publisher = self._client.connection_pool.get_connection()
            self._publisher_pid = os.getpid()
        try:
            return _send(self._publisher, command)
        except redis.ConnectionError:
            # Redis restarted, or dropped the idle connection: redis-py has
            # disconnected it, and sending again connects anew.
            return _send(self._publisher, command)


class AsyncRedisStreamsTransport(AsyncTransport):
    """The asyncio version of :class:`RedisStreamsTransport`, on ``redis.asyncio``.

    A ``redis.asyncio.Redis`` client belongs to the event loop that first uses
    it: make and use the transport in one loop. ``consume(block=...)`` waits in
    Redis (``XREADGROUP BLOCK``), not in the loop.

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
        self._maxlen = _check_maxlen(maxlen)
        self._client = _client_for(redis.asyncio.Redis, client, url)
        self._owns_client = client is None
        self._closed = False

    @classmethod
    def from_url(cls, url: str = DEFAULT_URL, *, maxlen: int | None = None) -> Self:
        """A transport with a client of its own, connecting to *url*."""
        return cls(url=url, maxlen=maxlen)

    async def publish(self, stream: str, payload: bytes) -> str:
        _check_name("stream", stream)
        _check_payload(payload)
        with self._command("XADD", stream):
            reply: Any = await self._client.xadd(stream, {_EVENT: payload}, maxlen=self._maxlen)
        return str(reply.decode())

    async def publish_many(self, stream: str, payloads: Sequence[bytes]) -> list[str]:
        _check_name("stream", stream)
        for payload in payloads:
            _check_payload(payload)
        with self._command("XADD", stream):
            if not payloads:
                return []
            async with self._client.pipeline(transaction=False) as pipe:
                for payload in payloads:
                    pipe.xadd(stream, {_EVENT: payload}, maxlen=self._maxlen)
                return [id.decode() for id in await pipe.execute()]

    async def ensure_group(self, stream: str, group: str) -> None:
        _check_names(stream=stream, group=group)
        with self._command("XGROUP CREATE", stream), _group_exists_is_fine():
            await self._client.xgroup_create(stream, group, id="0", mkstream=True)

    async def consume(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        count: int = 100,
        block: float | None = None,
    ) -> list[Message]:
        _check_names(stream=stream, group=group, consumer=consumer)
        _check_count(count)
        _check_block(block)
        block_ms = None if block is None else _milliseconds(block)
        with self._command("XREADGROUP", stream):
            reply = await self._client.xreadgroup(
                group, consumer, {stream: ">"}, count=count, block=block_ms
            )
        return [_message(entry, 1) for entry in _read_group_entries(reply)]

    async def ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        _check_names(stream=stream, group=group)
        _check_ids(ids)
        with self._command("XACK", stream):
            return int(await self._client.xack(stream, group, *ids)) if ids else 0

    async def redeliver(
        self, stream: str, group: str, consumer: str, id: str, *, min_idle: float = 0.0
    ) -> Message | None:
        _check_names(stream=stream, group=group, consumer=consumer)
        _parse_id(id)
        _check_min_idle(min_idle)
        with self._command("XCLAIM", stream):
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.xclaim(stream, group, consumer, _milliseconds(min_idle), [id])
                pipe.xpending_range(stream, group, id, id, 1, consumer)
                claimed, pending = await pipe.execute()
        return _redelivered(claimed, pending)

    async def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle: float, count: int = 100
    ) -> list[Message]:
        _check_names(stream=stream, group=group, consumer=consumer)
        _check_min_idle(min_idle)
        _check_count(count)
        min_idle_ms = _milliseconds(min_idle)
        claimed: list[Any] = []
        cursor: Any = "0-0"
        with self._command("XAUTOCLAIM", stream):
            while len(claimed) < count:  # as in RedisStreamsTransport.claim_stale
                cursor, entries, *_ = await self._client.xautoclaim(
                    stream, group, consumer, min_idle_ms, cursor, count=count - len(claimed)
                )
                claimed += _existing(entries)
                if _done(cursor):
                    break
        with self._command("XPENDING", stream):
            async with self._client.pipeline(transaction=False) as pipe:
                for id, _ in claimed:
                    pipe.xpending_range(stream, group, id, id, 1, consumer)
                return _claimed(claimed, await pipe.execute())

    async def dead_letter(
        self, stream: str, group: str, message: Message, dead_stream: str, *, error: str
    ) -> str:
        _check_names(stream=stream, group=group, dead_stream=dead_stream)
        _parse_id(message.id)
        fields = _dead_letter_fields(stream, group, message, error)
        with self._command("XADD+XACK", stream):
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.xadd(dead_stream, fields)
                pipe.xack(stream, group, message.id)
                dead_id, _ = await pipe.execute()
        return str(dead_id.decode())

    async def pending(self, stream: str, group: str) -> Pending:
        _check_names(stream=stream, group=group)
        with self._command("XPENDING", stream):
            return _pending(await self._client.xpending(stream, group))

    async def read(self, stream: str, *, start: str = "-", count: int = 100) -> list[Message]:
        _check_name("stream", stream)
        _check_start(start)
        _check_count(count)
        with self._command("XRANGE", stream):
            entries = await self._client.xrange(stream, min=start, count=count)
        return [_message(entry, 0) for entry in entries or ()]

    async def delete(self, stream: str, ids: Sequence[str]) -> int:
        _check_name("stream", stream)
        _check_ids(ids)
        with self._command("XDEL", stream):
            return int(await self._client.xdel(stream, *ids)) if ids else 0

    async def length(self, stream: str) -> int:
        _check_name("stream", stream)
        with self._command("XLEN", stream):
            return int(await self._client.xlen(stream))

    async def groups(self, stream: str) -> list[Group]:
        _check_name("stream", stream)
        with self._command("XINFO GROUPS", stream):
            try:
                return _groups(await self._client.xinfo_groups(stream))
            except redis.ResponseError:
                return []  # no such stream

    async def trim_acknowledged(self, stream: str) -> int:
        _check_name("stream", stream)
        with self._command("XTRIM", stream):
            try:
                groups = await self._client.xinfo_groups(stream)
            except redis.ResponseError:
                return 0  # no such stream
            bounds = [
                (await self._client.xpending(stream, group["name"]))["min"]
                if group["pending"]
                else None
                for group in groups
            ]
            minid = _trim_bound(groups, bounds)
            if minid is None:
                return 0
            return int(await self._client.xtrim(stream, minid=minid, approximate=False))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._client.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError("the transport is closed")

    @contextlib.contextmanager
    def _command(self, command: str, stream: str) -> Iterator[None]:
        self._check_open()
        with _translate_errors(command, stream):
            yield


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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _check_maxlen(maxlen: int | None) -> int | None:
    if maxlen is not None:
        _check_count(maxlen)  # the same rule, an int of at least 1
    return maxlen


def _send(connection: Connection, command: tuple[Any, ...]) -> Any:
    try:
        connection.send_command(*command)  # type: ignore[no-untyped-call]
        return connection.read_response()
    except redis.ResponseError:
        raise  # the error was the reply: the connection is still in step
    except BaseException:
        # Anything else (KeyboardInterrupt between send and read, say) may leave
        # a reply unread, which the next publish would take for its own.
        connection.disconnect()  # type: ignore[no-untyped-call]
        raise


def _transport_error(command: str, stream: str, err: redis.RedisError) -> TransportError:
    return TransportError(f"Redis {command} on stream {stream!r} failed: {err}")


@contextlib.contextmanager
def _translate_errors(command: str, stream: str) -> Iterator[None]:
    try:
        yield
    except redis.RedisError as err:
        raise _transport_error(command, stream, err) from err


@contextlib.contextmanager
def _group_exists_is_fine() -> Iterator[None]:
    try:
        yield
    except redis.ResponseError as err:
        if not str(err).startswith("BUSYGROUP"):
            raise


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


def _dead_letter_fields(stream: str, group: str, message: Message, error: str) -> dict[Any, Any]:
    _check_payload(message.payload)
    if not isinstance(error, str):
        raise TypeError(f"error must be a str, not {type(error).__name__}")
    return {_EVENT: message.payload, **_dead_letter_headers(stream, group, message, error)}


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
