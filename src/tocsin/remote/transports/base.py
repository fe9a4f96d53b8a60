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
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

__all__ = ["AsyncTransport", "Group", "Message", "Pending", "Transport", "TransportError"]

from ...exceptions import TransportError


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


class Transport(abc.ABC):
    """Blocking transport. Implementations must be safe to share between threads.

    Every method raises :class:`~tocsin.exceptions.TransportError` (with the
    underlying error as ``__cause__``) when the broker cannot be reached or
    refuses the command, and ``ValueError`` for bad arguments (an empty
    stream or group name, ``count < 1``, a negative time).
    """

    @abc.abstractmethod
    def publish(self, stream: str, payload: bytes) -> str:
        """Append *payload* to *stream* (created if missing); return its id."""

    @abc.abstractmethod
    def publish_many(self, stream: str, payloads: Sequence[bytes]) -> list[str]:
        """Append each payload in order, in one round trip where the broker
        allows; return their ids. An empty sequence publishes nothing."""

    @abc.abstractmethod
    def ensure_group(self, stream: str, group: str) -> None:
        """Create *group* on *stream* (and the stream) if missing. A new group
        starts at the beginning of the stream, so it sees every message still
        in it. Calling it again is harmless."""

    @abc.abstractmethod
    def consume(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        count: int = 100,
        block: float | None = None,
    ) -> list[Message]:
        """Up to *count* messages the group has not delivered to anyone yet,
        oldest first, now pending for *consumer*.

        :param block: wait up to this many seconds (> 0) for a message when
            there is none; ``None`` returns at once.
        The group must exist (:meth:`ensure_group`); if it does not,
        ``TransportError`` is raised.
        """

    @abc.abstractmethod
    def ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        """Acknowledge messages: they stop being pending. Returns how many were
        pending (already acknowledged or unknown ids count 0)."""

    @abc.abstractmethod
    def redeliver(
        self, stream: str, group: str, consumer: str, id: str, *, min_idle: float = 0.0
    ) -> Message | None:
        """Deliver pending message *id* again to *consumer* (a retry).

        Only if it is still pending and nobody has been given it for at least
        *min_idle* seconds; otherwise ``None`` (it was acknowledged, or another
        consumer took it since). Counts as a delivery. Returns ``None`` too if
        the message was trimmed from the stream (and removes it from pending).
        """

    @abc.abstractmethod
    def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle: float, count: int = 100
    ) -> list[Message]:
        """Take over up to *count* messages that have been pending, for any
        consumer, for at least *min_idle* seconds; oldest first. Each counts as
        a delivery to *consumer* (Redis: ``XAUTOCLAIM``). Pending entries whose
        message was trimmed from the stream are dropped from pending."""

    @abc.abstractmethod
    def dead_letter(
        self, stream: str, group: str, message: Message, dead_stream: str, *, error: str
    ) -> str:
        """Atomically append *message* (its payload, with headers ``error``,
        ``attempts`` = its deliveries, ``source-stream``, ``source-id`` and
        ``group``) to *dead_stream* and acknowledge it on *stream*. Returns the
        id in *dead_stream*."""

    @abc.abstractmethod
    def pending(self, stream: str, group: str) -> Pending:
        """Summary of the group's pending messages (Redis: ``XPENDING``)."""

    @abc.abstractmethod
    def read(self, stream: str, *, start: str = "-", count: int = 100) -> list[Message]:
        """Up to *count* messages of *stream* from id *start* (inclusive;
        ``"-"`` is the first), in order, outside any group: nothing becomes
        pending. Used to inspect the dead-letter stream."""

    @abc.abstractmethod
    def delete(self, stream: str, ids: Sequence[str]) -> int:
        """Remove messages from *stream*; returns how many existed."""

    @abc.abstractmethod
    def length(self, stream: str) -> int:
        """How many messages *stream* holds (0 if it does not exist)."""

    @abc.abstractmethod
    def groups(self, stream: str) -> list[Group]:
        """The consumer groups of *stream*, by name (none if it does not exist):
        what operations watch (``XINFO GROUPS``)."""

    @abc.abstractmethod
    def trim_acknowledged(self, stream: str) -> int:
        """Remove the messages of *stream* that every group has been given and
        acknowledged; return how many were removed.

        What any group has not read yet, or holds pending, stays. A stream
        with no group keeps everything. A group created afterwards starts
        after what was removed.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections. Calling it again is harmless; other methods
        raise ``TransportError`` afterwards."""

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
    with the same meaning. ``consume(block=...)`` must not block the event
    loop while it waits."""

    @abc.abstractmethod
    async def publish(self, stream: str, payload: bytes) -> str: ...

    @abc.abstractmethod
    async def publish_many(self, stream: str, payloads: Sequence[bytes]) -> list[str]: ...

    @abc.abstractmethod
    async def ensure_group(self, stream: str, group: str) -> None: ...

    @abc.abstractmethod
    async def consume(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        count: int = 100,
        block: float | None = None,
    ) -> list[Message]: ...

    @abc.abstractmethod
    async def ack(self, stream: str, group: str, ids: Sequence[str]) -> int: ...

    @abc.abstractmethod
    async def redeliver(
        self, stream: str, group: str, consumer: str, id: str, *, min_idle: float = 0.0
    ) -> Message | None: ...

    @abc.abstractmethod
    async def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle: float, count: int = 100
    ) -> list[Message]: ...

    @abc.abstractmethod
    async def dead_letter(
        self, stream: str, group: str, message: Message, dead_stream: str, *, error: str
    ) -> str: ...

    @abc.abstractmethod
    async def pending(self, stream: str, group: str) -> Pending: ...

    @abc.abstractmethod
    async def read(self, stream: str, *, start: str = "-", count: int = 100) -> list[Message]: ...

    @abc.abstractmethod
    async def delete(self, stream: str, ids: Sequence[str]) -> int: ...

    @abc.abstractmethod
    async def length(self, stream: str) -> int: ...

    @abc.abstractmethod
    async def groups(self, stream: str) -> list[Group]: ...

    @abc.abstractmethod
    async def trim_acknowledged(self, stream: str) -> int: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
