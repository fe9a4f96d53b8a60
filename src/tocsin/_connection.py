"""What the dispatcher's registry holds: one entry per connection.

The registry is a dict from lookup key to entry, in connection order. The most
common connection (a weakly referenced, synchronous receiver for any sender,
without options) is stored as the bare ``weakref.ref``, which keeps a
connected receiver under 150 bytes; any other is a :class:`Connection`.

Lookup keys are Django's receiver identity (``make_id(receiver)``, or the
``dispatch_uid``) for connections to any sender, and ``(SENDER, identity,
sender key)`` for connections restricted to one sender: the tag keeps the
two kinds from ever being equal.
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable
from typing import Any

from ._options import NOW

__all__ = ["SENDER", "Connection", "count_senders", "identity_of", "is_dead", "priority_of"]

SENDER = object()


class Connection:
    """A connection that is not the common case."""

    __slots__ = ("is_async", "on_commit", "priority", "ref", "sender_key", "sender_ref", "weak")

    def __init__(
        self,
        ref: Any,
        weak: bool,
        sender_key: Hashable,
        sender_ref: weakref.ref[Any] | None,
        is_async: bool,
        on_commit: int = NOW,
        priority: int = 0,
    ) -> None:
        self.ref = ref
        self.weak = weak
        self.sender_key = sender_key
        self.sender_ref = sender_ref
        self.is_async = is_async
        self.on_commit = on_commit
        self.priority = priority

    def is_dead(self) -> bool:
        if self.weak and self.ref() is None:
            return True
        return self.sender_ref is not None and self.sender_ref() is None


def is_dead(entry: Any) -> bool:
    if type(entry) is Connection:
        return entry.is_dead()
    return entry() is None


def priority_of(entry: Any) -> int:
    return entry.priority if type(entry) is Connection else 0


def identity_of(key: Hashable) -> Hashable:
    """The receiver identity (or dispatch_uid) part of a lookup key."""
    if type(key) is tuple and key and key[0] is SENDER:
        return key[1]  # type: ignore[no-any-return]
    return key


def count_senders(registry: dict[Hashable, Any]) -> dict[Hashable, int]:
    """Sender key -> how many connections in *registry* are restricted to it."""
    counts: dict[Hashable, int] = {}
    for key in registry:
        if type(key) is tuple and key and key[0] is SENDER:
            counts[key[2]] = counts.get(key[2], 0) + 1
    return counts
