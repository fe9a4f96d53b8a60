"""tocsin: Django's signal dispatcher as a standalone library.

``from tocsin import Signal, receiver`` is a drop-in for
``from django.dispatch import Signal, receiver``.
"""

from __future__ import annotations

from .dispatcher import Signal, receiver
from .exceptions import AsyncReceiversInLoopError, TocsinError
from .typed import TypedSignal, typed_signal

__all__ = [
    "AsyncReceiversInLoopError",
    "Signal",
    "TocsinError",
    "TypedSignal",
    "receiver",
    "typed_signal",
]
__version__ = "0.1.0"

for _name in (
    "Signal",
    "receiver",
    "TypedSignal",
    "typed_signal",
    "AsyncReceiversInLoopError",
    "TocsinError",
):
    globals()[_name].__module__ = "tocsin"
del _name
