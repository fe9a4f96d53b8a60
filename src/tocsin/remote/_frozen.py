"""Frozen dataclasses made quickly: the records a worker makes for every event.

A frozen dataclass's ``__init__`` sets each field with ``object.__setattr__``
(its own ``__setattr__`` refuses): for an :class:`~tocsin.remote.Event`, nine
calls, half of what decoding an event's envelope costs besides the JSON. With
slots, each field is a descriptor whose ``__set__`` does the same without the
call through ``object.__setattr__``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def maker(cls: type[T]) -> Callable[..., T]:
    """A function taking every field of *cls* positionally, in order, and
    returning the instance ``cls(...)`` would make with them.

    :raises TypeError: unless *cls* is a frozen dataclass with slots and no
        ``__post_init__`` (the maker would skip it).
    """
    params = getattr(cls, "__dataclass_params__", None)
    if (
        params is None
        or not params.frozen
        or "__slots__" not in cls.__dict__
        or hasattr(cls, "__post_init__")
    ):
        raise TypeError(f"{cls.__qualname__} is not a frozen dataclass with slots.")
    names = [field.name for field in dataclasses.fields(cls)]  # type: ignore[arg-type]
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    scope.update({f"_set_{name}": getattr(cls, name).__set__ for name in names})
    sets = "".join(f"    _set_{name}(self, {name})\n" for name in names)
    source = f"def make({', '.join(names)}):\n    self = _new(_cls)\n{sets}    return self\n"
    exec(source, scope)
    make: Callable[..., T] = scope["make"]
    make.__qualname__ = make.__name__ = f"make_{cls.__name__}"
    return make
