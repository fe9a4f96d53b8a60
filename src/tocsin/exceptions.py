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

The first two are also importable from :mod:`tocsin`; the others come from
remote receivers (:mod:`tocsin.remote`, which re-exports them).
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
    """Base class of the errors tocsin raises while it works.

    Catching it does not catch the exceptions raised by receivers: those
    propagate unchanged.
    """


class AsyncReceiversInLoopError(TocsinError, RuntimeError):
    """``send()`` or ``send_robust()`` was called inside a running event loop
    while async receivers are connected.

    Waiting for them would block the loop they need. Use ``await
    signal.asend(...)`` instead. It is raised before any receiver is called. It
    subclasses ``RuntimeError``, which is what Django raises in the same case,
    so existing ``except RuntimeError`` code still catches it.
    """


class SerializationError(TocsinError, TypeError):
    """A remote event's sender or arguments cannot be serialized (at send
    time), or a received payload cannot be read back (in the worker).

    Raised by the publisher, so from ``send()``, before anything is published;
    in a worker, the event then goes to the dead letters. The message says
    where the value is (``kwargs['customer'] is a myapp.models.Customer, ...``)
    and how to make it serializable (a type hook on the serializer).
    """


class ForgedEventError(SerializationError):
    """A remote with signing keys read a payload whose signature is missing or
    matches none of its keys: it is refused unread. A worker moves it to the
    dead letters as ``forged event: ...``."""


class TransportError(TocsinError):
    """The transport's broker could not be reached, or refused a command.

    The message names the command and the stream; the broker client's own
    exception is the ``__cause__``. A send whose publish fails raises it (as a
    :class:`PublishError`); a worker logs it and waits it out.
    """


class PublishError(TransportError):
    """A :class:`~tocsin.remote.Remote` could not publish events: the broker
    failed (the ``__cause__``) while they were on their way.

    It is the one error of a failed publish, whatever the number of events:
    from a send, from the end of a ``remote.batch()`` block, and from the commit
    of a transaction with ``Remote(on_commit=True)`` (every event of the
    transaction in one error).

    Each of them may or may not have been published (a reply lost on the way
    back looks the same as a request lost on the way there). Publish them again
    with ``remote.republish(error)`` (``await remote.arepublish(error)``), which
    sends the same payloads, so the same event ids: receivers that deduplicate,
    or check ``current_event().id``, then run each at most once more.

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
