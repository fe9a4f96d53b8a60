"""What tocsin needs to know about a receiver before it connects it.

These checks run once per ``connect()``, never on the send path, and they hold
no reference to the receiver afterwards (Django's ``func_accepts_kwargs`` is
``lru_cache``-d, which kept weakly connected lambdas alive under ``DEBUG``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from types import FunctionType, MethodType
from typing import Any

# Python 3.11's asyncio and asgiref mark "async" callables with this attribute;
# 3.12+ replaced it with inspect.markcoroutinefunction, which
# inspect.iscoroutinefunction already understands.
_LEGACY_COROUTINE_MARKER = getattr(asyncio.coroutines, "_is_coroutine", object())

_CO_VARKEYWORDS = inspect.CO_VARKEYWORDS
_CO_COROUTINE = inspect.CO_COROUTINE


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
            return inspect.iscoroutinefunction(func)
        return getattr(func, "_is_coroutine", None) is _LEGACY_COROUTINE_MARKER
    if not callable(receiver):
        raise TypeError(
            f"Signal receivers must be callable; got {type(receiver).__name__} {receiver!r}."
        )
    if not accepts_kwargs(receiver):
        _reject_kwargs(receiver)
    return is_async(receiver)


def _reject_kwargs(receiver: object) -> None:
    raise ValueError(
        f"Signal receivers must accept keyword arguments (**kwargs): "
        f"receiver {describe(receiver)} does not; add **kwargs to its parameters."
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
    return inspect.iscoroutinefunction(func) or (
        getattr(func, "_is_coroutine", None) is _LEGACY_COROUTINE_MARKER
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
