"""Exceptions raised by tocsin.

Misuse of the API (a receiver that is not callable, that does not accept
``**kwargs``, that cannot be weakly referenced) raises the built-in
``TypeError`` or ``ValueError`` at ``connect()``, as Django does. Failures that
happen while tocsin works derive from :class:`TocsinError`::

    TocsinError
     └── AsyncReceiversInLoopError (also a RuntimeError, as in Django)
"""

from __future__ import annotations

__all__ = ["AsyncReceiversInLoopError", "TocsinError"]


class TocsinError(Exception):
    """Base class of the errors tocsin raises while it works."""


class AsyncReceiversInLoopError(TocsinError, RuntimeError):
    """``send()`` or ``send_robust()`` was called inside a running event loop
    while async receivers are connected.

    Waiting for them would block the loop they need. Use ``await
    signal.asend(...)`` instead. It subclasses ``RuntimeError``, which is what
    Django raises in the same case.
    """
