"""tocsin: Django's signal dispatcher as a standalone library.

``from tocsin import Signal, receiver`` is a drop-in for
``from django.dispatch import Signal, receiver``.
"""

from __future__ import annotations

from .dispatcher import Signal, receiver
from .exceptions import AsyncReceiversInLoopError, TocsinError

__all__ = ["AsyncReceiversInLoopError", "Signal", "TocsinError", "receiver"]
__version__ = "0.1.0"

for _name in ("Signal", "receiver", "AsyncReceiversInLoopError", "TocsinError"):
    globals()[_name].__module__ = "tocsin"
del _name
