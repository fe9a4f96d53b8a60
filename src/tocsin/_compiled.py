"""Whether the compiled send path (``tocsin._speedups``) is used.

The pure-Python modules are the reference and the fallback: the compiled
module only makes :meth:`Signal.send <tocsin.Signal.send>` faster, never
different, and the whole test suite runs on both paths. It is used when it was
built (a wheel built where a C compiler was found; otherwise the install is
pure Python, silently) and the environment variable ``TOCSIN_PURE_PYTHON`` is
not set to a non-empty value other than ``0``. A build made for another
version of these modules (an editable install whose C file changed since) is
ignored rather than misused.
"""

from __future__ import annotations

import os
from types import ModuleType

# What this version of dispatcher.py and _refs.py expect (API_VERSION in _speedups.c).
API_VERSION = 3


def _load() -> ModuleType | None:
    if os.environ.get("TOCSIN_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from . import _speedups
    except ImportError:
        return None
    if getattr(_speedups, "API_VERSION", None) != API_VERSION:
        return None
    return _speedups


speedups: ModuleType | None = _load()
"""The compiled module, or None when the pure-Python path is used."""
