"""Say so when a weakly connected receiver is garbage collected too soon.

The classic trap: ``signal.connect(lambda sender, **kw: ...)`` (or a closure, a
``functools.partial``, a callable object made on the spot) is held through a
weak reference, nothing else holds it, and it vanishes at once; every later
send silently skips it. Turn the diagnostic on while developing or testing::

    from tocsin import diagnostics

    diagnostics.warn_on_lost_receivers()

From then on, such a receiver connected weakly is watched, and when it is
garbage collected a :class:`LostReceiverWarning` names it and the line that
connected it. Module-level functions and bound methods are not watched: they
go away with their module or object, which is what weak references are for.
It costs nothing until it is turned on, and a little at ``connect()`` after.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
import weakref
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from ._inspect import describe

__all__ = ["LostReceiverWarning", "lost_receiver_warnings", "warn_on_lost_receivers"]


class LostReceiverWarning(UserWarning):
    """A weakly connected lambda, closure, partial or callable object was
    garbage collected, so its signal no longer calls it."""


class _Switch:
    on = False


_switch = _Switch()
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def warn_on_lost_receivers(enabled: bool = True) -> None:
    """Turn the diagnostic on (or, with False, off) for the receivers connected
    from now on, in every thread.

    While it is on, ``connect()`` watches each receiver it holds weakly and that
    usually has nobody else holding it: a lambda, a function defined inside
    another function, a ``functools.partial``, a callable object. When a
    watched receiver is garbage collected, a :class:`LostReceiverWarning` names
    it and the place that connected it (the first caller outside tocsin: the
    line that called ``connect()``, or the ``@receiver`` line). Module-level
    functions, bound methods and receivers connected with ``weak=False`` are
    never watched.

    Off by default. While off it costs nothing; while on, a little at each
    ``connect()`` of a watched receiver; sends are not affected. The warning is
    issued from a weak-reference callback, so under ``-W error`` it is printed
    as an ignored exception rather than raised
    (docs/priority-and-diagnostics.md#with-w-error-and-in-pytest).

    :raises TypeError: if *enabled* is not a ``bool``.
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"warn_on_lost_receivers() takes True or False; got {enabled!r}.")
    _switch.on = enabled


@contextlib.contextmanager
def lost_receiver_warnings() -> Iterator[None]:
    """A context manager: the diagnostic is on for the receivers connected
    inside the block, then back to what it was before.

    Like :func:`warn_on_lost_receivers`, it switches the diagnostic for the
    whole process, so what other threads connect meanwhile is watched too.
    """
    before = _switch.on
    _switch.on = True
    try:
        yield
    finally:
        _switch.on = before


def ephemeral(receiver: object) -> bool:
    """Whether *receiver* is the kind that nothing else usually holds."""
    if isinstance(receiver, functools.partial):
        return True
    qualname = getattr(receiver, "__qualname__", None)
    if isinstance(qualname, str) and getattr(receiver, "__code__", None) is not None:
        return "<lambda>" in qualname or "<locals>" in qualname
    # A callable object (not a function, method or class) made to be connected.
    return not isinstance(receiver, type) and not hasattr(receiver, "__func__")


def _connect_site() -> str:
    """file:line of the first caller outside tocsin."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        _PACKAGE + os.sep
    ):
        frame = frame.f_back
    if frame is None:
        return "an unknown place"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


class _Watch:
    """The weak-reference callback of a watched receiver: the signal's own
    callback, then the warning."""

    __slots__ = ("name", "on_dead", "site")
    name: str
    site: str
    on_dead: Callable[[Any], object]

    def __init__(self, name: str, site: str, on_dead: Callable[[Any], object]) -> None:
        self.name, self.site, self.on_dead = name, site, on_dead

    def __call__(self, reference: weakref.ref[Any]) -> None:
        self.on_dead(reference)
        warnings.warn(
            LostReceiverWarning(
                f"receiver {self.name}, connected weakly at {self.site}, was garbage "
                f"collected: its signal no longer calls it. Keep a reference to it, or "
                f"connect it with weak=False."
            ),
            stacklevel=2,
        )

    def rewatch(self, on_dead: Callable[[Any], object]) -> _Watch:
        """The same watch, for a new weak reference (rows assigned back to a signal)."""
        return _Watch(self.name, self.site, on_dead)


def watch(receiver: object, on_dead: Callable[[Any], object]) -> _Watch:
    """The weak-reference callback for *receiver*: *on_dead*, then the warning."""
    return _Watch(describe(receiver), _connect_site(), on_dead)


def watched_by(reference: weakref.ref[Any]) -> _Watch | None:
    """The watch on *reference*, if the diagnostic watches it."""
    callback = reference.__callback__
    return callback if type(callback) is _Watch else None
