"""The transport contract: how remote events travel between processes.

A transport moves opaque payloads (bytes) through named *streams* that keep
every message until it is acknowledged, with Redis Streams' consumer-group
semantics:

* :meth:`Transport.publish` appends a message to a stream and returns its id.
  Ids increase within a stream.
* Each *group* reads a stream once: :meth:`Transport.consume` hands each new
  message to exactly one consumer of the group, and records it as *pending*
  for that consumer until :meth:`Transport.ack` is called for it.
* A pending message that nobody acknowledges is never lost: the consumer that
  holds it may take it again with :meth:`Transport.redeliver` (a retry), and
  any consumer may take over the messages another one has held for too long
  with :meth:`Transport.claim_stale` (the holder died). Every delivery counts
  towards :attr:`Message.deliveries`.
* :meth:`Transport.dead_letter` moves a message that keeps failing to another
  stream and acknowledges it, in one atomic step.

:class:`Transport` is the blocking interface, :class:`AsyncTransport` the same
one for asyncio. ``tocsin.remote.transports.memory`` implements both in process (for
tests and single-process use); ``tocsin.remote.transports.redis`` implements them on
Redis Streams (``pip install tocsin[redis]``).

Times are in seconds (floats) everywhere.

Each public method checks its arguments, here, once, then calls the protected
method of the same name (``publish`` calls ``_publish``) that an
implementation provides: implementations only do the work.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

__all__ = [
    "AsyncTransport",
    "Attempts",
    "Consumer",
    "Group",
    "Message",
    "Pending",
    "Transport",
    "TransportError",
]

from ...exceptions import TransportError
from . import _checks as check


@dataclass(frozen=True, slots=True)
class Message:
    """One message read from a stream.

    :param id: the id the stream gave it (Redis: ``"1718000000000-0"``).
    :param payload: the bytes that were published.
    :param deliveries: how many times it has been delivered to a consumer of
        the group it was read for, this delivery included (1 the first time).
        0 for messages read with :meth:`Transport.read`, outside any group.
    :param headers: extra text fields stored with the message; empty for
        published events, set by :meth:`Transport.dead_letter` (``error``,
        ``attempts``, ``source-stream``, ``source-id``, ``group``).
    """

    id: str
    payload: bytes
    deliveries: int = 1
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Pending:
    """What a group has been given and not yet acknowledged.

    :param count: pending messages in the group.
    :param oldest: id of the oldest pending message, or ``None``.
    :param newest: id of the newest pending message, or ``None``.
    :param consumers: pending messages per consumer name.
    """

    count: int
    oldest: str | None
    newest: str | None
    consumers: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Group:
    """A consumer group of a stream, as :meth:`Transport.groups` reports it.

    :param name: the group's name.
    :param consumers: how many consumers it knows (those that were given messages).
    :param pending: messages given to its consumers and not acknowledged.
    :param waiting: messages in the stream it has not been given yet (its lag);
        ``None`` when the broker cannot tell (Redis, after some deletions).
    :param last_delivered: id of the last message it was given (``"0-0"`` for none).
    """

    name: str
    consumers: int
    pending: int
    waiting: int | None
    last_delivered: str


@dataclass(frozen=True, slots=True)
class Consumer:
    """A consumer of a group, as :meth:`Transport.consumers` reports it.

    :param name: the consumer's name (a worker's ``consumer``).
    :param pending: messages it has been given and not acknowledged.
    :param idle: seconds since it joined the group or was last given a message
        (Redis 7.0's ``idle``; waiting for messages does not reset it before
        Redis 7.2).
    """

    name: str
    pending: int
    idle: float


@dataclass(frozen=True, slots=True)
class Attempts:
    """What a group's workers recorded about a pending message's past runs, so
    that whichever worker holds it next knows its history (a worker that died
    told nobody). Kept until the message is acknowledged or dead-lettered.

    :param failures: runs whose receivers raised.
    :param kills: runs, alone in their worker, that the worker did not survive
        (it died, or wedged for longer than ``claim_after``).
    :param error: the last failure's error, for the dead letters.
    :param running: the consumer running it alone right now, if any: found
        still set by the next holder, it means that run killed its worker.
    """

    failures: int = 0
    kills: int = 0
    error: str | None = None
    running: str | None = None


class Transport(abc.ABC):
    """Blocking transport. Implementations must be safe to share between threads.

    Every method raises :class:`~tocsin.exceptions.TransportError` (with the
    underlying error as ``__cause__``) when the broker cannot be reached or
    refuses the command, and ``ValueError`` or ``TypeError`` for bad arguments
    (an empty stream or group name, ``count < 1``, a negative time), before
    anything is sent. An implementation overrides the protected methods
    (``_publish``...), which receive checked arguments.
    """

    def publish(self, stream: str, payload: bytes) -> str:
        """Append *payload* to *stream* (created if missing); return its id."""
        check.publish(stream, payload)
        return self._publish(stream, payload)

    def publish_many(self, stream: str, payloads: Sequence[bytes]) -> list[str]:
        """Append each payload in order, in one round trip where the broker
        allows; return their ids. An empty sequence publishes nothing."""
        check.publish_many(stream, payloads)
        return self._publish_many(stream, payloads)

    def ensure_group(self, stream: str, group: str, *, consumer: str | None = None) -> None:
        """Create *group* on *stream* (and the stream) if missing. A new group
        starts at the beginning of the stream, so it sees every message still
        in it. With *consumer*, also add that consumer to the group (Redis:
        ``XGROUP CREATECONSUMER``), so that :meth:`consumers` lists it before it
        is given anything. Calling it again is harmless."""
        check.names(stream=stream, group=group)
        if consumer is not None:
            check.names(consumer=consumer)
        self._ensure_group(stream, group, consumer)

    def consume(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        count: int = 100,
        block: float | None = None,
        ack: Sequence[str] = (),
    ) -> list[Message]:
        """Up to *count* messages the group has not delivered to anyone yet,
        oldest first, now pending for *consumer*.

        :param block: wait up to this many seconds (> 0) for a message when
            there is none; ``None`` returns at once.
        :param ack: ids to acknowledge first, as :meth:`ack` does, in the same
            round trip where the broker allows (Redis: ``XACK`` pipelined before
            ``XREADGROUP``): a worker acknowledges a batch as it asks for the
            next. If the call raises, they may or may not be acknowledged;
            acknowledging them again is harmless.
        The group must exist (:meth:`ensure_group`); if it does not,
        ``TransportError`` is raised.
        """
        check.consume(stream, group, consumer, count, block, ack)
        if ack:
            return self._ack_and_consume(stream, group, consumer, ack, count, block)
        return self._consume(stream, group, consumer, count, block)

    def ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        """Acknowledge messages: they stop being pending. Returns how many were
        pending (already acknowledged or unknown ids count 0)."""
        check.names(stream=stream, group=group)
        check.ids(ids)
        return self._ack(stream, group, ids)

    def redeliver(
        self, stream: str, group: str, consumer: str, id: str, *, min_idle: float = 0.0
    ) -> Message | None:
        """Deliver pending message *id* again to *consumer* (a retry).

        Only if it is still pending and nobody has been given it for at least
        *min_idle* seconds; otherwise ``None`` (it was acknowledged, or another
        consumer took it since). Counts as a delivery. Returns ``None`` too if
        the message was trimmed from the stream (and removes it from pending).
        """
        check.redeliver(stream, group, consumer, id, min_idle)
        return self._redeliver(stream, group, consumer, id, min_idle)

    def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle: float, count: int = 100
    ) -> list[Message]:
        """Take over up to *count* messages that have been pending, for any
        consumer, for at least *min_idle* seconds; oldest first. Each counts as
        a delivery to *consumer* (Redis: ``XAUTOCLAIM``). Pending entries whose
        message was trimmed from the stream are dropped from pending."""
        check.claim_stale(stream, group, consumer, min_idle, count)
        return self._claim_stale(stream, group, consumer, min_idle, count)

    def dead_letter(
        self, stream: str, group: str, message: Message, dead_stream: str, *, error: str
    ) -> str:
        """Atomically append *message* (its payload, with headers ``error``,
        ``attempts`` = its deliveries, ``source-stream``, ``source-id`` and
        ``group``) to *dead_stream* and acknowledge it on *stream*. Returns the
        id in *dead_stream*."""
        check.dead_letter(stream, group, message, dead_stream, error)
        return self._dead_letter(stream, group, message, dead_stream, error)

    def pending(self, stream: str, group: str) -> Pending:
        """Summary of the group's pending messages (Redis: ``XPENDING``)."""
        check.names(stream=stream, group=group)
        return self._pending(stream, group)

    def read(self, stream: str, *, start: str = "-", count: int = 100) -> list[Message]:
        """Up to *count* messages of *stream* from id *start* (inclusive;
        ``"-"`` is the first), in order, outside any group: nothing becomes
        pending. Used to inspect the dead-letter stream."""
        check.read(stream, start, count)
        return self._read(stream, start, count)

    def delete(self, stream: str, ids: Sequence[str]) -> int:
        """Remove messages from *stream*; returns how many existed."""
        check.names(stream=stream)
        check.ids(ids)
        return self._delete(stream, ids)

    def length(self, stream: str) -> int:
        """How many messages *stream* holds (0 if it does not exist)."""
        check.names(stream=stream)
        return self._length(stream)

    def groups(self, stream: str) -> list[Group]:
        """The consumer groups of *stream*, by name (none if it does not exist):
        what operations watch (``XINFO GROUPS``)."""
        check.names(stream=stream)
        return self._groups(stream)

    def consumers(self, stream: str, group: str) -> list[Consumer]:
        """The consumers of *group*, by name, idle ones too (``XINFO
        CONSUMERS``); none if the stream or the group does not exist."""
        check.names(stream=stream, group=group)
        return self._consumers(stream, group)

    def trim_acknowledged(self, stream: str) -> int:
        """Remove the messages of *stream* that every group has been given and
        acknowledged; return how many were removed.

        What any group has not read yet, or holds pending, stays. A stream
        with no group keeps everything. A group created afterwards starts
        after what was removed.
        """
        check.names(stream=stream)
        return self._trim_acknowledged(stream)

    def attempts(self, stream: str, group: str, ids: Sequence[str]) -> dict[str, Attempts]:
        """The :class:`Attempts` recorded for those of *ids* that have some."""
        check.names(stream=stream, group=group)
        check.ids(ids)
        return self._attempts(stream, group, ids) if ids else {}

    def record_attempts(
        self, stream: str, group: str, records: Mapping[str, Attempts | None]
    ) -> None:
        """Record each message's :class:`Attempts` (``None`` forgets them), in
        one round trip."""
        check.names(stream=stream, group=group)
        check.records(records)
        if records:
            self._record_attempts(stream, group, records)

    def is_done(self, stream: str, group: str, event_id: str) -> bool:
        """Whether :meth:`mark_done` marked *event_id* done for *group*, and
        the mark has not expired (deduplication)."""
        check.names(stream=stream, group=group, event_id=event_id)
        return self._is_done(stream, group, event_id)

    def mark_done(self, stream: str, group: str, event_id: str, ttl: float) -> None:
        """Mark *event_id* done for *group* for *ttl* seconds (Redis: ``SET NX EX``)."""
        check.names(stream=stream, group=group, event_id=event_id)
        check.ttl(ttl)
        self._mark_done(stream, group, event_id, ttl)

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections. Calling it again is harmless; other methods
        raise ``TransportError`` afterwards."""

    # What an implementation provides: the methods above, arguments checked.

    @abc.abstractmethod
    def _publish(self, stream: str, payload: bytes) -> str: ...

    @abc.abstractmethod
    def _publish_many(self, stream: str, payloads: Sequence[bytes]) -> list[str]: ...

    @abc.abstractmethod
    def _ensure_group(self, stream: str, group: str, consumer: str | None) -> None: ...

    @abc.abstractmethod
    def _consume(
        self, stream: str, group: str, consumer: str, count: int, block: float | None
    ) -> list[Message]: ...

    @abc.abstractmethod
    def _ack(self, stream: str, group: str, ids: Sequence[str]) -> int: ...

    def _ack_and_consume(
        self,
        stream: str,
        group: str,
        consumer: str,
        ids: Sequence[str],
        count: int,
        block: float | None,
    ) -> list[Message]:
        """:meth:`consume` with *ids* to acknowledge first: :meth:`_ack`, then
        :meth:`_consume`. Override it to send both in one round trip."""
        self._ack(stream, group, ids)
        return self._consume(stream, group, consumer, count, block)

    @abc.abstractmethod
    def _redeliver(
        self, stream: str, group: str, consumer: str, id: str, min_idle: float
    ) -> Message | None: ...

    @abc.abstractmethod
    def _claim_stale(
        self, stream: str, group: str, consumer: str, min_idle: float, count: int
    ) -> list[Message]: ...

    @abc.abstractmethod
    def _dead_letter(
        self, stream: str, group: str, message: Message, dead_stream: str, error: str
    ) -> str: ...

    @abc.abstractmethod
    def _pending(self, stream: str, group: str) -> Pending: ...

    @abc.abstractmethod
    def _read(self, stream: str, start: str, count: int) -> list[Message]: ...

    @abc.abstractmethod
    def _delete(self, stream: str, ids: Sequence[str]) -> int: ...

    @abc.abstractmethod
    def _length(self, stream: str) -> int: ...

    @abc.abstractmethod
    def _groups(self, stream: str) -> list[Group]: ...

    @abc.abstractmethod
    def _consumers(self, stream: str, group: str) -> list[Consumer]: ...

    @abc.abstractmethod
    def _trim_acknowledged(self, stream: str) -> int: ...

    @abc.abstractmethod
    def _attempts(self, stream: str, group: str, ids: Sequence[str]) -> dict[str, Attempts]: ...

    @abc.abstractmethod
    def _record_attempts(
        self, stream: str, group: str, records: Mapping[str, Attempts | None]
    ) -> None: ...

    @abc.abstractmethod
    def _is_done(self, stream: str, group: str, event_id: str) -> bool: ...

    @abc.abstractmethod
    def _mark_done(self, stream: str, group: str, event_id: str, ttl: float) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncTransport(abc.ABC):
    """:class:`Transport`'s interface for asyncio: the same methods, awaited,
    with the same meaning and the same checks. ``consume(block=...)`` must not
    block the event loop while it waits."""

    async def publish(self, stream: str, payload: bytes) -> str:
        check.publish(stream, payload)
        return await self._publish(stream, payload)

    async def publish_many(self, stream: str, payloads: Sequence[bytes]) -> list[str]:
        check.publish_many(stream, payloads)
        return await self._publish_many(stream, payloads)

    async def ensure_group(self, stream: str, group: str, *, consumer: str | None = None) -> None:
        check.names(stream=stream, group=group)
        if consumer is not None:
            check.names(consumer=consumer)
        await self._ensure_group(stream, group, consumer)

    async def consume(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        count: int = 100,
        block: float | None = None,
        ack: Sequence[str] = (),
    ) -> list[Message]:
        check.consume(stream, group, consumer, count, block, ack)
        if ack:
            return await self._ack_and_consume(stream, group, consumer, ack, count, block)
        return await self._consume(stream, group, consumer, count, block)

    async def ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        check.names(stream=stream, group=group)
        check.ids(ids)
        return await self._ack(stream, group, ids)

    async def redeliver(
        self, stream: str, group: str, consumer: str, id: str, *, min_idle: float = 0.0
    ) -> Message | None:
        check.redeliver(stream, group, consumer, id, min_idle)
        return await self._redeliver(stream, group, consumer, id, min_idle)

    async def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle: float, count: int = 100
    ) -> list[Message]:
        check.claim_stale(stream, group, consumer, min_idle, count)
        return await self._claim_stale(stream, group, consumer, min_idle, count)

    async def dead_letter(
        self, stream: str, group: str, message: Message, dead_stream: str, *, error: str
    ) -> str:
        check.dead_letter(stream, group, message, dead_stream, error)
        return await self._dead_letter(stream, group, message, dead_stream, error)

    async def pending(self, stream: str, group: str) -> Pending:
        check.names(stream=stream, group=group)
        return await self._pending(stream, group)

    async def read(self, stream: str, *, start: str = "-", count: int = 100) -> list[Message]:
        check.read(stream, start, count)
        return await self._read(stream, start, count)

    async def delete(self, stream: str, ids: Sequence[str]) -> int:
        check.names(stream=stream)
        check.ids(ids)
        return await self._delete(stream, ids)

    async def length(self, stream: str) -> int:
        check.names(stream=stream)
        return await self._length(stream)

    async def groups(self, stream: str) -> list[Group]:
        check.names(stream=stream)
        return await self._groups(stream)

    async def consumers(self, stream: str, group: str) -> list[Consumer]:
        check.names(stream=stream, group=group)
        return await self._consumers(stream, group)

    async def trim_acknowledged(self, stream: str) -> int:
        check.names(stream=stream)
        return await self._trim_acknowledged(stream)

    async def attempts(self, stream: str, group: str, ids: Sequence[str]) -> dict[str, Attempts]:
        check.names(stream=stream, group=group)
        check.ids(ids)
        return await self._attempts(stream, group, ids) if ids else {}

    async def record_attempts(
        self, stream: str, group: str, records: Mapping[str, Attempts | None]
    ) -> None:
        check.names(stream=stream, group=group)
        check.records(records)
        if records:
            await self._record_attempts(stream, group, records)

    async def is_done(self, stream: str, group: str, event_id: str) -> bool:
        check.names(stream=stream, group=group, event_id=event_id)
        return await self._is_done(stream, group, event_id)

    async def mark_done(self, stream: str, group: str, event_id: str, ttl: float) -> None:
        check.names(stream=stream, group=group, event_id=event_id)
        check.ttl(ttl)
        await self._mark_done(stream, group, event_id, ttl)

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def _is_done(self, stream: str, group: str, event_id: str) -> bool: ...

    @abc.abstractmethod
    async def _mark_done(self, stream: str, group: str, event_id: str, ttl: float) -> None: ...

    @abc.abstractmethod
    async def _publish(self, stream: str, payload: bytes) -> str: ...

    @abc.abstractmethod
    async def _publish_many(self, stream: str, payloads: Sequence[bytes]) -> list[str]: ...

    @abc.abstractmethod
    async def _ensure_group(self, stream: str, group: str, consumer: str | None) -> None: ...

    @abc.abstractmethod
    async def _consume(
        self, stream: str, group: str, consumer: str, count: int, block: float | None
    ) -> list[Message]: ...

    @abc.abstractmethod
    async def _ack(self, stream: str, group: str, ids: Sequence[str]) -> int: ...

    async def _ack_and_consume(
        self,
        stream: str,
        group: str,
        consumer: str,
        ids: Sequence[str],
        count: int,
        block: float | None,
    ) -> list[Message]:
        """:meth:`Transport._ack_and_consume`, awaited."""
        await self._ack(stream, group, ids)
        return await self._consume(stream, group, consumer, count, block)

    @abc.abstractmethod
    async def _redeliver(
        self, stream: str, group: str, consumer: str, id: str, min_idle: float
    ) -> Message | None: ...

    @abc.abstractmethod
    async def _claim_stale(
        self, stream: str, group: str, consumer: str, min_idle: float, count: int
    ) -> list[Message]: ...

    @abc.abstractmethod
    async def _dead_letter(
        self, stream: str, group: str, message: Message, dead_stream: str, error: str
    ) -> str: ...

    @abc.abstractmethod
    async def _pending(self, stream: str, group: str) -> Pending: ...

    @abc.abstractmethod
    async def _read(self, stream: str, start: str, count: int) -> list[Message]: ...

    @abc.abstractmethod
    async def _delete(self, stream: str, ids: Sequence[str]) -> int: ...

    @abc.abstractmethod
    async def _length(self, stream: str) -> int: ...

    @abc.abstractmethod
    async def _groups(self, stream: str) -> list[Group]: ...

    @abc.abstractmethod
    async def _consumers(self, stream: str, group: str) -> list[Consumer]: ...

    @abc.abstractmethod
    async def _trim_acknowledged(self, stream: str) -> int: ...

    @abc.abstractmethod
    async def _attempts(
        self, stream: str, group: str, ids: Sequence[str]
    ) -> dict[str, Attempts]: ...

    @abc.abstractmethod
    async def _record_attempts(
        self, stream: str, group: str, records: Mapping[str, Attempts | None]
    ) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
