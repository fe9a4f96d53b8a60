"""The dead-letter stream: read, replay and discard events that kept failing.

A worker moves an event to ``<stream>:dead`` after ``max_attempts`` failed
deliveries (or at once when it cannot be read), with the error. Once the
cause is fixed::

    dead = DeadLetters(remote)
    for letter in dead.list():
        print(letter.id, letter.error, letter.event)
    dead.replay()              # every one back to its stream, as it was sent

A replayed event keeps its id (receivers that deduplicate by
``current_event().id`` see the same event) and starts again at delivery 1.
Replaying publishes first and deletes after: a crash in between replays it
twice, which at-least-once receivers already expect.

``tocsin dead-letters MODULE`` does the same from a shell.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..exceptions import SerializationError
from ._remote import Event, Remote
from .transports.base import AsyncTransport, Message, Transport

__all__ = ["DeadLetter", "DeadLetters"]

_PAGE = 500  # messages read at a time when walking the whole stream

_Reader = Callable[[str, int], list[Message]]  # read(start, count)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One event in the dead-letter stream.

    :param id: its id in the dead-letter stream (what :meth:`DeadLetters.replay`
        and :meth:`DeadLetters.discard` take).
    :param event: the event, read back; ``None`` if it cannot be read
        (:attr:`unreadable` says why).
    :param error: what the receivers raised, or why it was unreadable.
    :param attempts: deliveries before it was moved here.
    :param source_stream: the stream it came from, where a replay puts it back.
    :param source_id: its id there.
    :param group: the consumer group that gave up on it.
    :param payload: the bytes as published.
    """

    id: str
    event: Event | None
    error: str
    attempts: int
    source_stream: str
    source_id: str
    group: str
    payload: bytes
    unreadable: str | None = None


class DeadLetters:
    """The dead letters of *remote*'s stream (``<stream>:dead``, or *stream*).

    Blocking methods need a blocking transport; the ``a``-prefixed ones
    (:meth:`alist`, :meth:`areplay`, :meth:`adiscard`, :meth:`acount`) an
    async one: each flavour raises ``TypeError`` on the other kind of
    transport. :meth:`replay` and :meth:`discard` raise ``TypeError`` for a
    single string where a list of ids is expected.

    :raises TypeError: if *remote* is not a :class:`Remote`.
    :raises ValueError: if *stream* is empty.
    """

    def __init__(self, remote: Remote, *, stream: str | None = None) -> None:
        if not isinstance(remote, Remote):
            raise TypeError(f"DeadLetters() takes a Remote; got {type(remote).__name__}.")
        if stream is not None and (not isinstance(stream, str) or not stream):
            raise ValueError(f"stream must be a non-empty string; got {stream!r}.")
        self.remote = remote
        self.stream: str = stream or f"{remote.stream}:dead"

    def __repr__(self) -> str:
        return f"<DeadLetters {self.stream!r}>"

    # -- blocking -------------------------------------------------------------

    def list(self, *, start: str = "-", count: int = 100) -> builtins.list[DeadLetter]:
        """Up to *count* dead letters from id *start* (``"-"``: the oldest), oldest first."""
        return [self._letter(m) for m in self._sync().read(self.stream, start=start, count=count)]

    def count(self) -> int:
        """How many dead letters there are."""
        return self._sync().length(self.stream)

    def replay(self, ids: Sequence[str] | None = None) -> int:
        """Publish these dead letters (``None``: all) back to their streams,
        then remove them; return how many. ``LookupError`` (before anything
        is replayed) for an id that is not a dead letter."""
        transport = self._sync()
        messages = self._select(
            ids, lambda start, n: transport.read(self.stream, start=start, count=n)
        )
        for message in messages:
            transport.publish(
                _header(message, "source-stream", self.remote.stream), message.payload
            )
            transport.delete(self.stream, [message.id])
        return len(messages)

    def discard(self, ids: Sequence[str] | None = None) -> int:
        """Remove these dead letters (``None``: all) for good; return how many."""
        transport = self._sync()
        messages = self._select(
            ids, lambda start, n: transport.read(self.stream, start=start, count=n)
        )
        return transport.delete(self.stream, [m.id for m in messages]) if messages else 0

    # -- asyncio ----------------------------------------------------------------

    async def alist(self, *, start: str = "-", count: int = 100) -> builtins.list[DeadLetter]:
        """:meth:`list` with an async transport."""
        messages = await self._async().read(self.stream, start=start, count=count)
        return [self._letter(m) for m in messages]

    async def acount(self) -> int:
        """:meth:`count` with an async transport."""
        return await self._async().length(self.stream)

    async def areplay(self, ids: Sequence[str] | None = None) -> int:
        """:meth:`replay` with an async transport."""
        transport = self._async()
        messages = await self._aselect(ids, transport)
        for message in messages:
            stream = _header(message, "source-stream", self.remote.stream)
            await transport.publish(stream, message.payload)
            await transport.delete(self.stream, [message.id])
        return len(messages)

    async def adiscard(self, ids: Sequence[str] | None = None) -> int:
        """:meth:`discard` with an async transport."""
        transport = self._async()
        messages = await self._aselect(ids, transport)
        return await transport.delete(self.stream, [m.id for m in messages]) if messages else 0

    # -- helpers ----------------------------------------------------------------

    def _sync(self) -> Transport:
        transport = self.remote.transport
        if not isinstance(transport, Transport):
            raise TypeError("this remote's transport is async: use the a-prefixed methods.")
        return transport

    def _async(self) -> AsyncTransport:
        transport = self.remote.transport
        if not isinstance(transport, AsyncTransport):
            raise TypeError("this remote's transport is blocking: use the methods without 'a'.")
        return transport

    def _select(self, ids: Sequence[str] | None, read: _Reader) -> builtins.list[Message]:
        if ids is None:
            return _read_all(read)
        wanted = _check_ids(ids)
        found = [m for m in (_read_one(read, id) for id in wanted) if m is not None]
        _check_found(wanted, found)
        return found

    async def _aselect(
        self, ids: Sequence[str] | None, transport: AsyncTransport
    ) -> builtins.list[Message]:
        if ids is None:
            everything: builtins.list[Message] = []
            start = "-"
            while page := await transport.read(self.stream, start=start, count=_PAGE):
                everything.extend(page)
                start = _after(page[-1].id)
            return everything
        wanted = _check_ids(ids)
        found = []
        for id in wanted:
            page = await transport.read(self.stream, start=id, count=1)
            if page and page[0].id == id:
                found.append(page[0])
        _check_found(wanted, found)
        return found

    def _letter(self, message: Message) -> DeadLetter:
        event, unreadable = None, None
        try:
            event = self.remote.decode(message.payload, message.headers.get("source-id"))
        except SerializationError as error:
            unreadable = str(error)
        attempts = message.headers.get("attempts", "0")
        return DeadLetter(
            id=message.id,
            event=event,
            error=message.headers.get("error", ""),
            attempts=int(attempts) if attempts.isdigit() else 0,
            source_stream=_header(message, "source-stream", self.remote.stream),
            source_id=message.headers.get("source-id", ""),
            group=message.headers.get("group", ""),
            payload=message.payload,
            unreadable=unreadable,
        )


def _header(message: Message, name: str, default: str) -> str:
    return message.headers.get(name) or default


def _after(id: str) -> str:
    ms, _, seq = id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


def _read_all(read: _Reader) -> list[Message]:
    everything: list[Message] = []
    start = "-"
    while page := read(start, _PAGE):
        everything.extend(page)
        start = _after(page[-1].id)
    return everything


def _read_one(read: _Reader, id: str) -> Message | None:
    page = read(id, 1)
    return page[0] if page and page[0].id == id else None


def _check_ids(ids: Sequence[str]) -> list[str]:
    if isinstance(ids, str):
        raise TypeError(f"ids must be a list of ids, not a single string: [{ids!r}]")
    return list(dict.fromkeys(ids))


def _check_found(wanted: list[str], found: list[Message]) -> None:
    missing = sorted(set(wanted) - {m.id for m in found})
    if missing:
        raise LookupError(f"not in the dead-letter stream: {', '.join(missing)}")
