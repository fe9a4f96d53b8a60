# Types of tocsin/_speedups.c, the optional compiled send path (see tocsin/_compiled.py).
from collections.abc import Callable
from types import NotImplementedType
from typing import Any, Final
from weakref import ReferenceType

API_VERSION: Final[int]

class SendMethod:
    """Signal.send when compiled: a method descriptor wrapping the pure one."""

    __wrapped__: Callable[..., list[tuple[Any, Any]]]
    def __init__(
        self,
        pure: Callable[..., list[tuple[Any, Any]]],
        frame: Callable[[Callable[[], list[tuple[Any, Any]]]], list[tuple[Any, Any]]],
    ) -> None: ...
    def __get__(self, obj: object, owner: type | None = None) -> Callable[..., Any]: ...
    def __call__(self, signal: object, sender: object, **named: Any) -> list[tuple[Any, Any]]: ...

class WouldSendMethod:
    """Signal.would_send when compiled: a method descriptor wrapping the pure one."""

    __wrapped__: Callable[[object, object], bool]
    def __init__(self, pure: Callable[[object, object], bool]) -> None: ...
    def __get__(self, obj: object, owner: type | None = None) -> Callable[..., Any]: ...
    def __call__(self, signal: object, sender: object) -> bool: ...

class MethodDeref:
    """The bound method of two weak references' referents, or None if either died."""

    def __init__(self, self_ref: ReferenceType[Any], func_ref: ReferenceType[Any]) -> None: ...
    def __call__(self) -> Any: ...

def call_each(
    receivers: list[Any], signal: object, sender: object, named: dict[str, Any], made: list[Any]
) -> NotImplementedType | None:
    """Append ``receiver(signal=signal, sender=sender, **named)`` to *made* for each receiver."""
