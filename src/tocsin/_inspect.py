"""What tocsin needs to know about a receiver before it connects it.

These checks run once per ``connect()``, never on the send path, and they hold
no reference to the receiver afterwards (Django's ``func_accepts_kwargs`` is
``lru_cache``-d, which kept weakly connected lambdas alive under ``DEBUG``).
"""

from __future__ import annotations

import functools
import sys
from types import FunctionType, MethodType
from typing import Any

# inspect's CO_VARKEYWORDS and CO_COROUTINE: fixed by CPython's code objects.
# inspect itself (and asyncio) is imported only when a receiver that is not a
# plain function needs it, so that ``import tocsin`` stays cheap.
_CO_VARKEYWORDS = 0x08
_CO_COROUTINE = 0x80


def _legacy_coroutine_marker() -> object:
    """What Python 3.11's asyncio and asgiref mark "async" callables with (3.12+
    replaced it with inspect.markcoroutinefunction, which
    inspect.iscoroutinefunction already understands). Nothing can carry it
    before asyncio is imported."""
    asyncio = sys.modules.get("asyncio")
    coroutines = getattr(asyncio, "coroutines", None)
    return getattr(coroutines, "_is_coroutine", _NO_MARKER)


_NO_MARKER = object()


# Django's messages, word for word: tocsin's begin with them (code and tests
# match on them), then say which receiver and what to do.
NOT_CALLABLE = "Signal receivers must be callable."
NO_KWARGS = "Signal receivers must accept keyword arguments (**kwargs)."


def check_receiver(receiver: object) -> bool:
    """Check that *receiver* can be connected, and say whether it is async.

    Raises ``TypeError`` if it is not callable and ``ValueError`` if it does not
    accept ``**kwargs``, naming the receiver. Plain functions and methods are
    answered from their code object, which keeps ``connect()`` cheap.
    """
    func = receiver.__func__ if type(receiver) is MethodType else receiver
    if type(func) is FunctionType and not hasattr(func, "__wrapped__"):
        flags = func.__code__.co_flags
        if not flags & _CO_VARKEYWORDS:
            _reject_kwargs(receiver)
        if flags & _CO_COROUTINE:
            return True
        # inspect.markcoroutinefunction (3.12+) and asgiref on 3.11 set these;
        # getattr, not func.__dict__, which would allocate a dict.
        if getattr(func, "_is_coroutine_marker", None) is not None:
            import inspect

            return inspect.iscoroutinefunction(func)
        marker = getattr(func, "_is_coroutine", None)
        return marker is not None and marker is _legacy_coroutine_marker()
    if not callable(receiver):
        raise TypeError(
            f"{NOT_CALLABLE} Got {type(receiver).__name__} {receiver!r}: connect a "
            f"function, a bound method or an object with __call__."
        )
    if not accepts_kwargs(receiver):
        _reject_kwargs(receiver)
    return is_async(receiver)


def _reject_kwargs(receiver: object) -> None:
    raise ValueError(
        f"{NO_KWARGS} Receiver {describe(receiver)} does not; add **kwargs to its "
        f"parameters (a send may add arguments)."
    )


def is_bound_method(receiver: object) -> bool:
    """Whether *receiver* must be referenced through ``weakref.WeakMethod``.

    Django's rule, kept as is: anything with both ``__self__`` and ``__func__``.
    """
    if type(receiver) is FunctionType:
        return False
    return hasattr(receiver, "__self__") and hasattr(receiver, "__func__")


def _unwrap_partial(receiver: object) -> object:
    while isinstance(receiver, functools.partial):
        receiver = receiver.func
    return receiver


def _marked_async(func: object) -> bool:
    import inspect

    return inspect.iscoroutinefunction(func) or (
        getattr(func, "_is_coroutine", None) is _legacy_coroutine_marker()
    )


def is_async(receiver: object) -> bool:
    """Whether calling *receiver* returns an awaitable that must be awaited.

    Django 6.1 uses ``inspect.iscoroutinefunction``, which misses objects whose
    class defines ``async def __call__`` (Django's ``send()`` then returns an
    un-awaited coroutine). tocsin also looks at ``type(obj).__call__``, through
    any number of ``functools.partial`` layers.
    """
    if _marked_async(receiver):
        return True
    target = _unwrap_partial(receiver)
    if _marked_async(target):
        return True
    if isinstance(target, (FunctionType, MethodType, type)):
        return False
    return _marked_async(getattr(type(target), "__call__", None))  # noqa: B004


def accepts_kwargs(receiver: object) -> bool:
    """Whether *receiver* has a ``**kwargs`` parameter.

    Plain functions and bound methods are answered from their code flags
    (cheap, so ``connect()`` stays fast); everything else goes through
    ``inspect.signature``. A callable whose signature cannot be read (some
    C builtins) is given the benefit of the doubt.
    """
    func = receiver.__func__ if isinstance(receiver, MethodType) else receiver
    if type(func) is FunctionType and not hasattr(func, "__wrapped__"):
        return bool(func.__code__.co_flags & _CO_VARKEYWORDS)
    import inspect

    try:
        parameters = inspect.signature(receiver).parameters.values()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def describe(receiver: Any) -> str:
    """A short, human name for *receiver*, for errors and logs.

    Never raises: Django's ``send_robust`` crashed on ``receiver.__qualname__``
    for ``functools.partial`` objects and callable instances.
    """
    try:
        return _name(receiver)
    except Exception:  # a hostile __getattr__ must not break logging
        return object.__repr__(receiver)


def _name(receiver: Any) -> str:
    if isinstance(receiver, functools.partial):
        return f"functools.partial({describe(receiver.func)})"
    if isinstance(receiver, MethodType):
        owner = receiver.__self__
        if not isinstance(owner, type):
            owner = type(owner)
        return f"{owner.__module__}.{owner.__qualname__}.{receiver.__func__.__name__}"
    qualname = getattr(receiver, "__qualname__", None)
    if isinstance(qualname, str):
        module = getattr(receiver, "__module__", None)
        return f"{module}.{qualname}" if module else qualname
    cls = type(receiver)
    return f"{cls.__module__}.{cls.__qualname__} instance"
