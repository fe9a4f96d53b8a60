"""The asyncio Redis transport's publishing connection: commands written as they
come, replies matched to them in order.

A publish on redis.asyncio costs a coroutine per reply read, a task per round
and a round trip before the next round may leave. Here one connection speaks
Redis' protocol itself, as an :class:`asyncio.Protocol`: ``publish()`` queues
its commands and returns a future; the commands queued while the event loop
runs the tasks it has woken leave in one write; ``data_received()`` parses the
replies (with hiredis when it is installed) and settles the futures in the
order the commands were written. Redis answers a connection's commands in
order, so several writes may be on the wire at once.

Publishers that wait for their replies all wake together when a write's replies
come, and would all publish again in one write, leaving Redis and the worker
idle while they prepare it and them idle while it is on the wire. So once half
as many publishes are waiting to be written as were recently outstanding, they
are written at once: with 8 tasks publishing one by one, two writes of 4 take
turns, each prepared while the other is on the wire.

Redis-py still makes the connection (address, TLS, authentication, protocol,
database, client name: whatever the client was configured with); this module
then takes over its socket's transport, asyncio's or uvloop's. Where that is not
possible (a redis-py that keeps its socket elsewhere, an event loop whose
transports cannot change protocols: :func:`take_over` returns None), the
transport publishes through redis.asyncio instead, one round at a time.

If the connection breaks, the commands still without a reply are written once
more on a new one (the same payloads, so the same event ids); if that one breaks
too, their publishes fail with a ``redis.ConnectionError`` saying they may have
been published. A connection that makes no progress for the client's
``socket_timeout`` fails the publishes waiting on it with a
``redis.TimeoutError`` and is dropped: their replies could come later, out of
step with the next commands.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import redis
import redis.asyncio

try:
    import hiredis as _hiredis
except ImportError:  # pragma: no cover - depends on the environment
    _hiredis = None  # type: ignore[assignment]

hiredis: Any = _hiredis  # None without it (the tests make it None, too)


class _Push(list[Any]):
    """A RESP3 push frame (out of band: it answers no command)."""


_PUSHES: tuple[type, ...] = (_Push,) + (
    (hiredis.PushNotification,) if hasattr(hiredis, "PushNotification") else ()
)


class _Incomplete(Exception):
    """The buffer ends inside a reply."""


# What a reader's gets() returns while the buffer holds no whole reply (not
# hiredis' default, False, which is also a RESP3 reply).
INCOMPLETE: Any = type("Incomplete", (), {"__repr__": lambda self: "INCOMPLETE"})()


class PyReader:
    """Redis replies (RESP2 and RESP3) from bytes fed as they come, with the
    interface of ``hiredis.Reader``: :meth:`gets` returns the next reply or
    :data:`INCOMPLETE`; an error reply is a ``redis.ResponseError``, returned, not raised."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def gets(self) -> Any:
        try:
            value, end = self._parse(0)
        except _Incomplete:
            return INCOMPLETE
        del self._buffer[:end]
        return value

    def _parse(self, pos: int) -> tuple[Any, int]:
        buffer = self._buffer
        end = buffer.find(b"\r\n", pos)
        if end < 0:
            raise _Incomplete
        kind, line, pos = buffer[pos], bytes(buffer[pos + 1 : end]), end + 2
        if kind in b"$=!":  # bulk string, verbatim string, blob error
            return self._bulk(kind, _integer(line), pos)
        if kind in b"+-:(,#_":
            return _simple(kind, line), pos
        if kind in b"*~>%|":
            return self._aggregate(kind, _integer(line), pos)
        raise redis.InvalidResponse(f"Protocol error, got {chr(kind)!r} as reply type byte")

    def _bulk(self, kind: int, size: int, pos: int) -> tuple[Any, int]:
        if size < 0:
            return None, pos
        stop = pos + size
        if len(self._buffer) < stop + 2:
            raise _Incomplete
        data = bytes(self._buffer[pos:stop])
        if kind == ord("!"):
            return redis.ResponseError(data.decode(errors="replace")), stop + 2
        return (data[4:] if kind == ord("=") else data), stop + 2  # "txt:" before text

    def _aggregate(self, kind: int, count: int, pos: int) -> tuple[Any, int]:
        if count < 0:
            return None, pos
        items = []
        for _ in range(count * 2 if kind in b"%|" else count):
            item, pos = self._parse(pos)
            items.append(item)
        if kind == ord("|"):  # attributes: the reply they describe follows
            return self._parse(pos)
        if kind == ord("%"):
            return dict(zip(items[::2], items[1::2], strict=True)), pos
        return (_Push(items) if kind == ord(">") else items), pos


def _integer(line: bytes) -> int:
    try:
        return int(line)
    except ValueError:
        raise redis.InvalidResponse(f"Protocol error: {line!r} is not a length") from None


def _simple(kind: int, line: bytes) -> Any:
    """The value of a one-line reply of type *kind*."""
    if kind == ord("+"):
        return line
    if kind == ord("-"):
        return redis.ResponseError(line.decode(errors="replace"))
    if kind == ord("_"):
        return None
    if kind == ord("#"):
        return line == b"t"
    try:
        return float(line) if kind == ord(",") else int(line)
    except ValueError:
        raise redis.InvalidResponse(f"Protocol error: {line!r} is not a number") from None


def reader() -> Any:
    """A reply parser: hiredis' when it is installed, else :class:`PyReader`."""
    if hiredis is None:
        return PyReader()
    return hiredis.Reader(
        protocolError=redis.InvalidResponse,
        replyError=redis.ResponseError,
        notEnoughData=INCOMPLETE,
    )


# What a taken-over transport must do. uvloop's are not asyncio.Transport
# instances (nor registered as such), but do all of it.
_WIRE = ("write", "get_protocol", "set_protocol", "is_closing", "abort", "pause_reading")


def take_over(connection: redis.asyncio.Connection) -> asyncio.Transport | None:
    """The event loop's transport under a connected redis.asyncio *connection*,
    if redis-py keeps it where this module knows to look and it can change
    protocols (asyncio's and uvloop's can)."""
    writer = getattr(connection, "_writer", None)
    transport: Any = getattr(writer, "transport", None)
    if transport is None or not all(callable(getattr(transport, m, None)) for m in _WIRE):
        return None
    if transport.is_closing():
        return None
    return transport  # type: ignore[no-any-return]


class _Link(asyncio.Protocol):
    """The protocol of one taken-over connection: what it reads goes to its
    pipeline for as long as it is the pipeline's connection."""

    def __init__(self, pipeline: Pipeline, original: asyncio.BaseProtocol) -> None:
        self.pipeline: Pipeline | None = pipeline
        self.original = original  # redis-py's, which its StreamWriter waits on to close

    def data_received(self, data: bytes) -> None:
        if self.pipeline is not None:
            self.pipeline.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.original.connection_lost(exc)
        pipeline, self.pipeline = self.pipeline, None
        if pipeline is not None:
            pipeline.connection_lost(exc)


class _Entry:
    """One caller's commands, and the replies that have come for them."""

    __slots__ = ("commands", "first", "future", "replies")

    def __init__(self, commands: list[bytes], future: asyncio.Future[list[Any]]) -> None:
        self.commands = commands
        self.future = future
        self.replies: list[Any] = []
        self.first: redis.ConnectionError | None = None  # why they were written again


# Publishes after which the count of publishers is taken afresh (when fewer
# publish, their writes stop waiting for the others within two windows).
_WINDOW = 256

# Gives a connected redis.asyncio connection and takes one back.
Connect = Callable[[], Awaitable[redis.asyncio.Connection]]
Release = Callable[[redis.asyncio.Connection], Awaitable[None]]
# Publishes commands some other way, where no connection can be taken over.
Fallback = Callable[[list[bytes]], "asyncio.Future[list[Any]]"]


class Pipeline:
    """Publishing commands on one connection, replies matched in order.

    :param connect: gives a connected redis.asyncio connection to take over
        (the client's pool's ``get_connection``).
    :param release: gives it back, once disconnected.
    :param fallback: publishes commands through redis.asyncio, from the first
        connection that cannot be taken over (:func:`take_over`) on.
    """

    def __init__(self, connect: Connect, release: Release, fallback: Fallback) -> None:
        self._connect = connect
        self._release = release
        self._fallback = fallback
        self.unsupported = False  # publishing through the fallback
        self._loop = asyncio.get_running_loop()
        self._reader = reader()
        self._connection: redis.asyncio.Connection | None = None
        self._wire: asyncio.Transport | None = None
        self._link: _Link | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()  # giving broken connections back
        self._unsent: list[_Entry] = []
        self._sent: collections.deque[_Entry] = collections.deque()
        self._flush_soon = False
        # The most publishes outstanding at once in the last window of publishes
        # and so far in this one: how many publishers there are.
        self._peak = self._high = 0
        self._window = 0
        # Fails the publishes on the wire after the connection's socket_timeout without progress.
        self._watchdog = Watchdog(self._loop, None, self._stalled)

    def publish(self, commands: list[bytes]) -> asyncio.Future[list[Any]]:
        """Queue *commands*; the future gets their replies, in order (an error
        reply as a ``redis.ResponseError``), or the ``redis.RedisError`` that
        stopped them all. Cancelling it before its commands are written keeps
        them from being sent."""
        if self.unsupported:
            return self._fallback(commands)
        entry = _Entry(commands, self._loop.create_future())
        unsent = self._unsent
        unsent.append(entry)
        waiting = len(self._sent) + len(unsent)
        self._high = max(self._high, waiting)
        self._window += 1
        if self._window == _WINDOW:
            self._peak, self._high, self._window = self._high, waiting, 0
        if self._wire is None:
            if self._connecting is None:
                self._connecting = self._loop.create_task(self._reconnect())
        elif self._half(len(unsent)):
            self._flush()  # this write overlaps the other half's
        elif not self._flush_soon:
            self._flush_soon = True
            self._loop.call_soon(self._flush)
        return entry.future

    def _half(self, unsent: int) -> bool:
        """Whether *unsent* publishes are half of the publishers (at least two
        of them, unless there is only one: alone, a publish leaves at once)."""
        publishers = max(self._peak, self._high)
        return unsent * 2 >= publishers and (unsent > 1 or publishers == 1)

    async def aclose(self) -> None:
        """Wait for every publish queued or on the wire, then give the connection back."""
        if self._connecting is not None:
            await asyncio.wait([self._connecting])
        self._flush()
        waiting = [entry.future for entry in (*self._sent, *self._unsent)]
        if waiting:
            await asyncio.wait(waiting)
        await self._drop()
        if self._background:  # broken connections still being given back
            await asyncio.wait(set(self._background))

    # -- writing -------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_soon = False
        if self._wire is None or not self._unsent:
            return  # connecting: what is queued goes once it is done
        entries = [entry for entry in self._unsent if not entry.future.done()]
        self._unsent = []
        if not entries:
            return
        if not self._sent:
            self._watchdog.arm()
        self._sent.extend(entries)
        self._wire.write(
            b"".join([command for e in entries for command in e.commands[len(e.replies) :]])
        )

    async def _reconnect(self) -> None:
        """Connect (again), then write what waits: first what a broken
        connection left without replies, in the order it was written."""
        try:
            connection, wire = await self._taken_over()
        except BaseException as error:
            self._connecting = None
            failure = error if isinstance(error, redis.RedisError) else None
            for entry in self._unsent:
                self._fail(entry, failure or redis.ConnectionError(f"not connected: {error!r}"))
            self._unsent = []
            if failure is None:
                raise
            return
        self._connecting = None
        if wire is None:
            self._hand_over()
            return
        self._connection, self._wire = connection, wire
        self._watchdog = Watchdog(self._loop, connection.socket_timeout, self._stalled)
        self._reader = reader()
        self._link = _Link(self, wire.get_protocol())
        wire.set_protocol(self._link)
        self._flush()

    async def _taken_over(self) -> tuple[redis.asyncio.Connection, asyncio.Transport | None]:
        connection = await self._connect()
        wire = take_over(connection)
        if wire is None:
            await self._release(connection)
        return connection, wire

    def _hand_over(self) -> None:
        """No connection can be taken over here: what waits, and every publish
        from now on, goes through the fallback."""
        self.unsupported = True
        unsent, self._unsent = self._unsent, []
        for entry in unsent:
            if not entry.future.done():
                _chain(self._fallback(entry.commands), entry.future)

    async def _drop(self) -> None:
        """Close the connection and give it back to the pool."""
        connection = self._detach()
        if connection is not None:
            await self._release_closed(connection)

    def _detach(self) -> redis.asyncio.Connection | None:
        """Stop reading and writing on the connection; return it, to close."""
        if self._link is not None:
            self._link.pipeline = None
        connection, self._connection, self._wire, self._link = self._connection, None, None, None
        self._watchdog.disarm()
        return connection

    def _in_background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        # Held until done: the event loop keeps only a weak reference to a task.
        task = self._loop.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _release_closed(self, connection: redis.asyncio.Connection) -> None:
        await connection.disconnect(nowait=True)
        await self._release(connection)

    # -- reading -------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        reader, sent = self._reader, self._sent
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not INCOMPLETE:
                if isinstance(reply, _PUSHES):
                    continue  # out of band (RESP3): it answers no command
                entry = sent[0]
                replies = entry.replies
                replies.append(reply)
                if len(replies) == len(entry.commands):
                    sent.popleft()
                    if not entry.future.done():
                        entry.future.set_result(replies)
        except (redis.RedisError, IndexError) as error:  # garbage, or a reply nobody asked for
            self._abandon(redis.InvalidResponse(f"Protocol error: {error!r}"))
            return
        self._watchdog.progress()

    def connection_lost(self, exc: Exception | None) -> None:
        """Redis closed the connection, or it broke: what has no reply yet goes
        again on a new connection, once."""
        connection = self._detach()
        if connection is not None:
            self._in_background(self._release_closed(connection))
        error = redis.ConnectionError(
            f"Error while reading from the publishing connection: {exc!r}"
            if exc is not None
            else "Connection closed by server."
        )
        again = []
        for entry in self._sent:
            if entry.future.done():
                continue  # its caller gave up: it is not written again
            if entry.first is None:
                entry.first = error
                again.append(entry)
            else:
                self._fail(entry, error)
        self._sent.clear()
        self._unsent[:0] = again
        if self._unsent and self._connecting is None:
            self._connecting = self._loop.create_task(self._reconnect())

    def _fail(self, entry: _Entry, error: redis.RedisError) -> None:
        if entry.future.done():
            return
        if entry.first is not None and isinstance(error, redis.ConnectionError):
            error = redis.ConnectionError(
                f"{error} (sent twice: the first attempt failed with {entry.first!r}, "
                "and may have been published)"
            )
        entry.future.set_exception(error)

    def _abandon(self, error: redis.RedisError) -> None:
        """Fail every publish on the wire and drop the connection: replies that
        come later would be out of step with the next commands."""
        for entry in self._sent:
            self._fail(entry, error)
        self._sent.clear()
        wire = self._wire
        connection = self._detach()
        if wire is not None:
            wire.abort()
        if connection is not None:
            self._in_background(self._release_closed(connection))
        if self._unsent and self._connecting is None:
            self._connecting = self._loop.create_task(self._reconnect())

    # -- the timeout ----------------------------------------------------------

    def _stalled(self) -> None:
        if not self._sent:
            return  # nothing was waiting: the watchdog is armed again by the next write
        connection = self._connection
        where = f"{connection.host}:{connection.port}" if connection is not None else "Redis"
        limit = self._watchdog.limit
        self._abandon(
            redis.TimeoutError(f"Timeout reading from {where} (no progress for {limit} s)")
        )


class Watchdog:
    """Calls *expire* once *limit* seconds pass without :meth:`progress` after
    :meth:`arm` (never without a limit). One timer, moved on lazily: progress
    costs a clock reading, not a timer."""

    __slots__ = ("_expire", "_handle", "_last", "_loop", "limit")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, limit: float | None, expire: Callable[[], None]
    ) -> None:
        self._loop = loop
        self.limit = limit or 0.0
        self._expire = expire
        self._last = loop.time()
        self._handle: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        """Count from now, with a timer if none is running."""
        self._last = self._loop.time()
        if self.limit and self._handle is None:
            self._handle = self._loop.call_at(self._last + self.limit, self._check)

    def progress(self) -> None:
        self._last = self._loop.time()

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        due = self._last + self.limit
        if self._loop.time() < due:  # progress since it was armed: wait the rest
            self._handle = self._loop.call_at(due, self._check)
        else:
            self._expire()


def _chain(source: asyncio.Future[list[Any]], target: asyncio.Future[list[Any]]) -> None:
    """Settle *target* as *source* settles; cancelling *target* cancels *source*."""

    def settle(done: asyncio.Future[list[Any]]) -> None:
        if target.done():
            return
        if done.cancelled():
            target.cancel()
        elif (error := done.exception()) is not None:
            target.set_exception(error)
        else:
            target.set_result(done.result())

    def cancel(done: asyncio.Future[list[Any]]) -> None:
        if done.cancelled():
            source.cancel()

    source.add_done_callback(settle)
    target.add_done_callback(cancel)
