"""install() and uninstall(): every Django signal of the process, on tocsin or off it."""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Callable
from typing import Any

from django.apps import apps
from django.dispatch import Signal as DjangoSignal

from ... import oncommit
from . import _bridge, _transactions

__all__ = ["install", "installed", "uninstall"]


class _State:
    """What install() changed, for uninstall() to undo; one per process."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        # Django's Signal.__init__, while install() has replaced it; None when off.
        self.django_init: Callable[..., None] | None = None
        self.remove_finder: Callable[[], None] = _nothing


def _nothing() -> None:
    pass


_state = _State()


def install() -> None:
    """Make every ``django.dispatch.Signal`` of the process dispatch through tocsin.

    Signals that exist now are converted in place (their receivers kept, in
    order), and signals created later are born converted. On-commit receivers
    (``connect(..., on_commit=True)``) wait for ``django.db.transaction``.
    Calling it again does nothing. :func:`uninstall` undoes it.

    Call it at start-up, before other threads send or connect: the app config
    (``"tocsin.contrib.django"`` in ``INSTALLED_APPS``) does, when Django creates it.

    :raises ValueError: if a signal's ``receivers`` list holds something other
        than Django's rows; nothing is changed then.
    """
    with _state.lock:
        if _state.django_init is not None:
            return
        converted: list[Any] = []
        try:
            for signal in _django_signals():
                _bridge.convert(signal)
                converted.append(signal)
        except BaseException:
            for signal in converted:
                _bridge.revert(signal)
            raise
        _bridge.redirect_pending(apps)
        _state.django_init = init = DjangoSignal.__init__
        DjangoSignal.__init__ = _born_converted(init)
        _state.remove_finder = oncommit.add_scope_finder(_transactions.find_atomic_scope)


def uninstall() -> None:
    """Undo :func:`install`: every Django signal dispatches with ``django.dispatch``
    again, with the receivers it has now, in connection order.

    Receivers connected with tocsin's options keep their connection but lose
    the options, which Django has not: an ``on_commit=True`` receiver is then
    called during the send, and priorities no longer reorder receivers.
    Calling it when not installed does nothing.
    """
    with _state.lock:
        if _state.django_init is None:
            return
        DjangoSignal.__init__ = _state.django_init
        _state.django_init = None
        _state.remove_finder()
        _state.remove_finder = _nothing
        for signal in _django_signals():
            _bridge.revert(signal)


def installed() -> bool:
    """Whether :func:`install` is in effect."""
    return _state.django_init is not None


def _born_converted(init: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        _bridge.convert(self)

    return __init__


def _django_signals() -> list[Any]:
    """Every Django signal alive. Signals are module globals of Django and of
    every app, created at import; the garbage collector's list is the one place
    that has them all. Scanning it takes about 80 ms per million objects the
    process holds (CPython 3.12 here), once per install() or uninstall()."""
    # type(), not isinstance(): isinstance() falls back to __class__, which a
    # Django lazy object (settings, a SimpleLazyObject) evaluates.
    return [obj for obj in gc.get_objects() if issubclass(type(obj), DjangoSignal)]
