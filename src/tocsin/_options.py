"""The options tocsin adds to ``connect()``, declared once.

``Signal.connect``, ``receiver()``, ``TypedSignal.connect`` and
``tocsin.testing.connected_to`` all take them as ``**options:
Unpack[ConnectOptions]`` and read them with :func:`read_options`, so that a
new option is added (and checked) in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, TypedDict

__all__ = ["ConnectOptions", "Options", "read_options"]


class ConnectOptions(TypedDict, total=False):
    """tocsin's own ``connect()`` options, on top of Django's four arguments."""

    on_commit: bool
    """Call the receiver only after the send's transaction commits (never on
    rollback); at once outside a transaction. See docs/after-commit.md."""
    robust: bool | None
    """For an ``on_commit`` receiver: log its failures after the commit (True,
    the default) or raise them from the commit (False)."""
    priority: int
    """Higher runs first; equal priorities (0 by default) keep connection order."""


# Options.on_commit: an ordinary receiver, or one that waits for the commit
# and whose failures are logged (robust) or raised.
NOW, ON_COMMIT_ROBUST, ON_COMMIT_RAISE = 0, 1, 2


class Options(NamedTuple):
    """Checked options: ``on_commit`` is one of NOW / ON_COMMIT_ROBUST / ON_COMMIT_RAISE."""

    on_commit: int = NOW
    priority: int = 0


DEFAULT = Options()
_NAMES = frozenset(ConnectOptions.__annotations__)


def read_options(options: Mapping[str, Any], caller: str = "connect()") -> Options:
    """Check *options* (the ``**options`` of *caller*) and return them as :class:`Options`."""
    if not options:
        return DEFAULT
    unknown = options.keys() - _NAMES
    if unknown:
        name = sorted(unknown)[0]
        raise TypeError(
            f"{caller} got an unexpected keyword argument {name!r}; tocsin's options "
            f"are {', '.join(sorted(_NAMES))}."
        )
    later = NOW
    if options.get("on_commit", False) is not False or options.get("robust") is not None:
        later = on_commit_mode(options.get("on_commit", False), options.get("robust"))
    priority = options.get("priority", 0)
    if type(priority) is not int:
        raise TypeError(
            f"priority must be an int (higher runs first, 0 by default); got {priority!r}."
        )
    return Options(later, priority)


def on_commit_mode(on_commit: object, robust: object) -> int:
    """NOW, ON_COMMIT_ROBUST or ON_COMMIT_RAISE for ``on_commit=``/``robust=``."""
    if not isinstance(on_commit, bool):
        raise TypeError(f"on_commit must be True or False; got {on_commit!r}.")
    if robust is not None and not isinstance(robust, bool):
        raise TypeError(f"robust must be True or False; got {robust!r}.")
    if not on_commit:
        if robust is None:
            return NOW
        raise TypeError(
            "robust= applies only to on_commit=True receivers; to catch the errors "
            "of ordinary receivers, send with send_robust()."
        )
    return ON_COMMIT_RAISE if robust is False else ON_COMMIT_ROBUST
