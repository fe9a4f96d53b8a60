"""``Signal.receivers`` in Django's layout, for code written against Django.

Django keeps a signal's connections in a public list of rows that add-ons
read, save, assign back and change in place. tocsin keeps a registry instead
(see :mod:`tocsin._connection`); this module turns its entries into Django
6's rows ``(lookup_key, receiver, sender_ref, is_async)`` and back (Django
5.2's 3-tuples are read too), and makes in-place changes of the list reach the
signal. The dispatcher owns the registry; this module never touches it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, NamedTuple, SupportsIndex, overload

from ._connection import Connection, identity_of
from ._options import NOW
from ._refs import NONE_ID

__all__ = ["ExtendedRow", "ReceiverEntry", "ReceiverList", "RowParts", "read_row", "row_of"]


class ReceiverEntry(NamedTuple):
    """One row of :attr:`Signal.receivers`, in Django 6's layout."""

    lookup_key: tuple[Hashable, Hashable]
    receiver: Any
    sender_ref: weakref.ref[Any] | None
    is_async: bool


class ExtendedRow(ReceiverEntry):
    """A row of a connection with tocsin's options (``on_commit``, ``priority``):
    Django's layout, plus the options, so that assigning saved rows back to
    ``receivers`` keeps them."""

    on_commit: int
    priority: int

    def _replace(self, /, **fields: Any) -> ExtendedRow:
        row = super()._replace(**fields)
        row.on_commit, row.priority = self.on_commit, self.priority
        return row


def row_of(key: Hashable, entry: Any) -> ReceiverEntry:
    """The Django row of one registry entry."""
    if type(entry) is not Connection:
        return ReceiverEntry((key, NONE_ID), entry, None, False)
    fields = ((identity_of(key), entry.sender_key), entry.ref, entry.sender_ref, entry.is_async)
    if not entry.on_commit and not entry.priority:
        return ReceiverEntry(*fields)
    row = ExtendedRow(*fields)
    row.on_commit, row.priority = entry.on_commit, entry.priority
    return row


class RowParts(NamedTuple):
    """A row read back, for the dispatcher to turn into a registry entry."""

    identity: Hashable
    sender_key: Hashable
    ref: Any
    weak: bool
    sender_ref: weakref.ref[Any] | None
    is_async: bool
    on_commit: int
    priority: int


def read_row(row: Sequence[Any]) -> RowParts:
    """Read a Django-layout row: a 6.0+ 4-tuple, or a <=5.2 3-tuple."""
    if len(row) == 4:
        lookup_key, ref, sender_ref, receiver_is_async = row
    elif len(row) == 3:
        lookup_key, ref, receiver_is_async = row
        sender_ref = None
    else:
        raise ValueError(
            f"Signal.receivers rows are (lookup_key, receiver, sender_ref, is_async); got {row!r}"
        )
    identity, sender_key = lookup_key
    later, priority = NOW, 0
    if type(row) is ExtendedRow:
        later, priority = getattr(row, "on_commit", NOW), getattr(row, "priority", 0)
    weak = isinstance(ref, weakref.ref)
    return RowParts(
        identity, sender_key, ref, weak, sender_ref, bool(receiver_is_async), later, priority
    )


class ReceiverList(list[ReceiverEntry]):
    """``Signal.receivers``: a list whose in-place changes are written back.

    *write_back* is the signal's: it assigns the list back unless the signal
    changed since the list was read (a saved "paused" list is a stale copy,
    and writing it back would undo that change), and returns the signal's new
    version, or None when it refused.
    """

    def __init__(
        self,
        rows: Iterable[ReceiverEntry],
        version: int,
        write_back: Callable[[ReceiverList, int], int | None],
    ) -> None:
        super().__init__(rows)
        self._version = version
        self._signal_write_back = write_back

    def _write_back(self) -> None:
        version = self._signal_write_back(self, self._version)
        if version is not None:
            self._version = version

    def append(self, row: ReceiverEntry) -> None:
        super().append(row)
        self._write_back()

    def extend(self, rows: Iterable[ReceiverEntry]) -> None:
        super().extend(rows)
        self._write_back()

    def insert(self, index: SupportsIndex, row: ReceiverEntry) -> None:
        super().insert(index, row)
        self._write_back()

    def remove(self, row: ReceiverEntry) -> None:
        super().remove(row)
        self._write_back()

    def pop(self, index: SupportsIndex = -1) -> ReceiverEntry:
        row = super().pop(index)
        self._write_back()
        return row

    def clear(self) -> None:
        super().clear()
        self._write_back()

    def reverse(self) -> None:
        super().reverse()
        self._write_back()

    def sort(self, *args: Any, **kwargs: Any) -> None:
        super().sort(*args, **kwargs)
        self._write_back()

    @overload
    def __setitem__(self, index: SupportsIndex, value: ReceiverEntry) -> None: ...
    @overload
    def __setitem__(self, index: slice, value: Iterable[ReceiverEntry]) -> None: ...
    def __setitem__(self, index: Any, value: Any) -> None:
        super().__setitem__(index, value)
        self._write_back()

    def __delitem__(self, index: SupportsIndex | slice) -> None:
        super().__delitem__(index)
        self._write_back()

    def __iadd__(self, rows: Iterable[ReceiverEntry]) -> ReceiverList:  # type: ignore[override,misc]
        super().__iadd__(rows)
        self._write_back()
        return self
