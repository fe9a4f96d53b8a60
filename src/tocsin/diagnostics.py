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
    """Turn the diagnostic on (or off) for receivers connected from now on."""
    if not isinstance(enabled, bool):
        raise TypeError(f"warn_on_lost_receivers() takes True or False; got {enabled!r}.")
    _switch.on = enabled


@contextlib.contextmanager
def lost_receiver_warnings() -> Iterator[None]:
    """The diagnostic, on for the receivers connected inside this block."""
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
