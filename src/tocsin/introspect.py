"""Which signals exist, and who listens to them.

(Being written: see the developer-experience issue.)
"""

from __future__ import annotations

import sys
import weakref

from .dispatcher import Signal, _every_signal

__all__ = ["all_signals", "signal_name"]

_names: weakref.WeakKeyDictionary[Signal, str] = weakref.WeakKeyDictionary()


def all_signals() -> list[Signal]:
    """Every Signal alive, in no particular order."""
    return list(_every_signal)


def signal_name(signal: Signal) -> str:
    """``module.attribute`` of the module-level name *signal* is bound to (its
    first one found), else ``"<Signal at 0x...>"``."""
    if not isinstance(signal, Signal):
        raise TypeError(f"signal_name() takes a Signal; got {type(signal).__name__}.")
    name = _names.get(signal)
    if name is not None:
        return name
    for module_name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for attribute, value in list(namespace.items()):
            if value is signal:
                name = _names[signal] = f"{module_name}.{attribute}"
                return name
    return f"<Signal at {id(signal):#x}>"
