"""Exceptions raised by tocsin.

Misuse of the API (a receiver that is not callable, that does not accept
``**kwargs``, that cannot be weakly referenced) raises the built-in
``TypeError`` or ``ValueError`` at ``connect()``, as Django does. Failures that
happen while tocsin works derive from :class:`TocsinError`::

    TocsinError
     ├── AsyncReceiversInLoopError (also a RuntimeError, as in Django)
     ├── SerializationError (also a TypeError): an event that cannot be published,
 │    │   or a payload a worker cannot read
 │    └── ForgedEventError: a payload without a valid signature
     └── TransportError: the broker could not be reached or refused a command
          └── PublishError: events a remote could not publish (they may have been)
"""

from __future__ import annotations

__all__ = [
    "AsyncReceiversInLoopError",
    "ForgedEventError",
    "PublishError",
    "SerializationError",
    "TocsinError",
    "TransportError",
]


class TocsinError(Exception):
    """Base class of the errors tocsin raises while it works."""


class AsyncReceiversInLoopError(TocsinError, RuntimeError):
    """``send()`` or ``send_robust()`` was called inside a running event loop
    while async receivers are connected.

    Waiting for them would block the loop they need. Use ``await
    signal.asend(...)`` instead. It subclasses ``RuntimeError``, which is what
    Django raises in the same case.
    """


class SerializationError(TocsinError, TypeError):
    """A remote event's sender or arguments cannot be serialized (at send
    time), or a received payload cannot be read back (in the worker).

    The message names the argument and its type, and says how to make it
    serializable (a type hook on the serializer).
    """


class ForgedEventError(SerializationError):
    """A worker of a remote with signing keys read a payload whose signature
    is missing or matches none of its keys: it is refused unread."""


class TransportError(TocsinError):
    """The transport's broker could not be reached, or refused a command.

    The broker client's own exception is the ``__cause__``.
    """


class PublishError(TransportError):
    """A :class:`~tocsin.remote.Remote` could not publish events: the broker
    failed (the ``__cause__``) while they were on their way.

    Each of them may or may not have been published (a reply lost on the way
    back looks the same as a request lost on the way there). Publish them again
    with ``remote.republish(error)``, which sends the same payloads, so the
    same event ids: receivers that deduplicate, or check ``current_event().id``,
    then run each at most once more.

    :param event_ids: the ids of the events, in order.
    :param payloads: their payloads, as published, for :meth:`Remote.republish`.
    :param stream: the stream they were for.
    """

    def __init__(
        self, message: str, *, stream: str, event_ids: list[str], payloads: list[bytes]
    ) -> None:
        super().__init__(message)
        self.stream = stream
        self.event_ids = event_ids
        self.payloads = payloads
