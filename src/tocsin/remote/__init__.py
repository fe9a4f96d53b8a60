"""Receivers in other processes: remote events through a transport.

Everything the feature offers is imported from here::

    from tocsin.remote import Remote, Worker, RedisStreamsTransport

    remote = Remote(RedisStreamsTransport(url="redis://127.0.0.1:6379/0"))
    remote.publish(order_paid)

The Redis transports need redis-py (``pip install 'tocsin[redis]'``): they are
imported on first use, so that the rest works without it. Inside the package,
one module per concept, none importing a module that imports it:

=========================  ==================================================
``_remote.py``             :class:`Remote`, :class:`Event`, publishing, handling
``_serializer.py``         :class:`JSONSerializer`: envelopes to bytes and back
``_signing.py``            HMAC signatures of envelopes
``_worker.py``             :class:`Worker`, :class:`AsyncWorker` and their shared
                           decisions
``_dead_letters.py``       :class:`DeadLetters`: read, replay, discard
``_propagation.py``        context (a trace) carried with events
``_cli.py``                ``tocsin worker``, ``tocsin status``, ``tocsin dead-letters``
``transports/``            the transport contract (``base.py``) and the memory and
                           Redis Streams transports
=========================  ==================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..exceptions import ForgedEventError, PublishError, SerializationError, TransportError
from ._dead_letters import DeadLetter, DeadLetters
from ._propagation import Propagator, add_propagator
from ._remote import Batch, Event, Outbox, Remote, current_event
from ._serializer import JSONSerializer, Serializer
from ._worker import AsyncWorker, Worker, WorkerOptions, WorkerStats
from .transports.base import (
    AsyncTransport,
    Attempts,
    Consumer,
    Group,
    Message,
    Pending,
    Transport,
)
from .transports.memory import AsyncMemoryTransport, MemoryTransport

if TYPE_CHECKING:
    from .transports.redis import AsyncRedisStreamsTransport, RedisStreamsTransport

__all__ = [
    "AsyncMemoryTransport",
    "AsyncRedisStreamsTransport",
    "AsyncTransport",
    "AsyncWorker",
    "Attempts",
    "Batch",
    "Consumer",
    "DeadLetter",
    "DeadLetters",
    "Event",
    "ForgedEventError",
    "Group",
    "JSONSerializer",
    "MemoryTransport",
    "Message",
    "Outbox",
    "Pending",
    "Propagator",
    "PublishError",
    "RedisStreamsTransport",
    "Remote",
    "SerializationError",
    "Serializer",
    "Transport",
    "TransportError",
    "Worker",
    "WorkerOptions",
    "WorkerStats",
    "add_propagator",
    "current_event",
]

_REDIS = ("RedisStreamsTransport", "AsyncRedisStreamsTransport")


def __getattr__(name: str) -> Any:
    # The Redis transports import redis-py: only when they are asked for.
    if name in _REDIS:
        from .transports import redis

        return getattr(redis, name)
    raise AttributeError(f"module 'tocsin.remote' has no attribute {name!r}")
