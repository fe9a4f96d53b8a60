"""Turning one ``django.dispatch.Signal`` into a tocsin Signal and back.

A Django signal is converted in place: its class becomes a *bridged* class,
made once per Django signal class, that inherits from the Django class (so
``isinstance()`` and the class's own overrides still hold) with tocsin's
``Signal`` placed just before ``django.dispatch.Signal`` in the method order.
Converting in place, rather than wrapping, keeps the object's identity: the
``signal=`` argument receivers get, ``signal is post_save`` tests, and every
reference Django and third-party modules hold, all see the same object, which
now dispatches with tocsin's methods.

Its connections move over as Django's ``receivers`` rows, which tocsin's
``receivers`` setter takes in both Django layouts (weak references stay weak,
a ``dispatch_uid`` stays the identity). Reverting rebuilds Django's rows, in
the layout of the installed Django, with Django's own dead-reference callback.
"""

from __future__ import annotations

import functools
import threading
import types
import weakref
from collections.abc import Callable, Hashable
from typing import Any

from django.db.models.signals import ModelSignal
from django.dispatch import Signal as DjangoSignal

from ... import Signal

__all__ = ["bridged_class", "convert", "redirect_pending", "revert"]

# What django.dispatch.Signal.__init__ puts in an instance's __dict__.
_DJANGO_STATE = ("receivers", "lock", "use_caching", "sender_receivers_cache", "_dead_receivers")
# Django's method that weak references call back when their object dies:
# _flag_dead_receivers since 6.0, _remove_receiver before (both take one argument).
_DJANGO_CALLBACKS = ("_flag_dead_receivers", "_remove_receiver")
# Django 6.0 added the sender's weak reference to the rows (a 4-tuple; 3 before).
_ROWS_HAVE_SENDER_REF = "_flag_dead_receivers" in vars(DjangoSignal)

# Django's own, taken before install() replaces it (this module is imported first).
_django_init = DjangoSignal.__init__

_bridged: dict[type, type] = {}  # Django signal class -> its bridged class
_original: dict[type, type] = {}  # and back
_classes_lock = threading.Lock()


def bridged_class(cls: type) -> type:
    """The bridged class of the Django signal class *cls*, made on first use."""
    with _classes_lock:
        found = _bridged.get(cls)
        if found is not None:
            return found
        bases = (Signal, DjangoSignal) if cls is DjangoSignal else (cls, Signal, DjangoSignal)
        namespace: dict[str, Any] = {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
        if issubclass(cls, ModelSignal):
            # Django's, unless the class has its own (which then keeps Django's arguments).
            if getattr(cls, "connect", None) is ModelSignal.connect:
                namespace["connect"] = _model_signal_connect
            if getattr(cls, "disconnect", None) is ModelSignal.disconnect:
                namespace["disconnect"] = _model_signal_disconnect
        made = type(cls.__name__, bases, namespace)
        _bridged[cls], _original[made] = made, cls
        return made


def convert(signal: Any) -> None:
    """Make the Django signal *signal* dispatch through tocsin, keeping its
    receivers, in order. Does nothing if it already does.

    :raises ValueError: if its ``receivers`` list holds a row that is not in
        Django's layout; the signal is then left as it was.
    """
    if isinstance(signal, Signal):
        return
    bridged = bridged_class(type(signal))
    with signal.lock:  # Django's: no connect or disconnect of Django's half-way through
        original = type(signal)
        signal.__class__ = bridged  # first: if Python refuses, nothing has changed
        state = vars(signal)
        saved = dict(state)
        rows = list(state.get("receivers", ()))
        use_caching = bool(state.get("use_caching", False))
        for name in _DJANGO_STATE:
            state.pop(name, None)
        try:
            Signal.__init__(signal, use_caching)
            signal.receivers = rows
        except (TypeError, ValueError) as err:
            state.clear()
            state.update(saved)
            signal.__class__ = original
            raise ValueError(
                f"cannot move the receivers of {signal!r} to tocsin: {err}. Its "
                f"receivers list must hold Django's rows (lookup_key, receiver, "
                f"sender_ref, is_async); fix the code that assigned it."
            ) from None


def revert(signal: Any) -> None:
    """Make *signal*, converted by :func:`convert`, a plain Django signal again,
    keeping its live receivers in connection order. tocsin's ``on_commit`` and
    ``priority`` settings, which Django has not, are dropped: such receivers
    become ordinary ones."""
    original = _original.get(type(signal))
    if original is None:
        return
    with signal.lock:
        rows = list(signal.receivers)
        use_caching = signal.use_caching
        state = vars(signal)
        for name in _tocsin_state():
            state.pop(name, None)
        signal.__class__ = original
        _django_init(signal, use_caching)
    callback = _django_callback(signal)
    signal.receivers = [row for row in (_django_row(r, callback) for r in rows) if row]


@functools.cache
def _tocsin_state() -> frozenset[str]:
    """The names of the attributes a tocsin Signal keeps in its ``__dict__``."""
    return frozenset(vars(Signal()))


def _django_callback(signal: Any) -> Callable[[Any], object]:
    # Django's own method, under the installed version's name.
    name = next(name for name in _DJANGO_CALLBACKS if name in vars(DjangoSignal))
    method: Callable[[Any], object] = getattr(signal, name)
    return method


def _django_row(row: Any, callback: Callable[[Any], object]) -> tuple[Any, ...] | None:
    """A tocsin row in the installed Django's layout, its weak references remade
    with Django's callback; None if its receiver or sender has died."""
    lookup_key, ref, sender_ref, is_async = row[:4]
    if isinstance(ref, weakref.ref):
        receiver = ref()
        if receiver is None:
            return None
        make = weakref.WeakMethod if isinstance(ref, weakref.WeakMethod) else weakref.ref
        ref = make(receiver, callback)
    if sender_ref is not None:
        sender = sender_ref()
        if sender is None:
            return None
        sender_ref = weakref.ref(sender, callback)
    key = tuple(lookup_key)
    if _ROWS_HAVE_SENDER_REF:
        return (key, ref, sender_ref, bool(is_async))
    return (key, ref, bool(is_async))


# -- ModelSignal, with tocsin's options ---------------------------------------------


def _model_signal_connect(
    self: Any,
    receiver: Any,
    sender: object = None,
    weak: bool = True,
    dispatch_uid: Hashable = None,
    apps: Any = None,
    **options: Any,
) -> Any:
    """ModelSignal.connect(), which also takes tocsin's options (``on_commit``,
    ``robust``, ``priority``). A lazy ``"app_label.ModelName"`` sender waits,
    as in Django, until the model is registered."""
    if isinstance(sender, str):
        from django.db.models.options import Options
        from django.db.models.utils import make_model_tuple

        later = functools.partial(
            _later("connect", self), receiver, weak=weak, dispatch_uid=dispatch_uid, **options
        )
        (apps or Options.default_apps).lazy_model_operation(later, make_model_tuple(sender))
        return receiver
    return Signal.connect(self, receiver, sender, weak, dispatch_uid, **options)


def _model_signal_disconnect(
    self: Any,
    receiver: Any = None,
    sender: object = None,
    dispatch_uid: Hashable = None,
    apps: Any = None,
) -> bool | None:
    """ModelSignal.disconnect(). A lazy ``"app_label.ModelName"`` sender waits,
    as in Django, until the model is registered, and returns None."""
    if isinstance(sender, str):
        from django.db.models.options import Options
        from django.db.models.utils import make_model_tuple

        later = functools.partial(_later("disconnect", self), receiver, dispatch_uid=dispatch_uid)
        (apps or Options.default_apps).lazy_model_operation(later, make_model_tuple(sender))
        return None
    return Signal.disconnect(self, receiver, sender, dispatch_uid)


# What ModelSignal hands to lazy_model_operation(): a partial of one of these,
# bound to the signal (Django's, unpatched: install() never replaces them).
_DJANGO_LAZY_METHODS = (DjangoSignal.connect, DjangoSignal.disconnect)


def redirect_pending(apps: Any) -> None:
    """Make the connects and disconnects that *apps* holds for models not yet
    registered (lazy ``"app_label.Model"`` senders given before install) call
    the signal's method when they run, rather than Django's.

    Each pending operation of Django's ``lazy_model_operation()`` is a function
    whose ``func`` attribute is what it will call; ModelSignal's is a partial of
    Django's bound ``Signal.connect`` (or ``disconnect``), which would write
    Django 5.2's rows into tocsin's. Other operations are left alone.
    """
    for operations in list(apps._pending_operations.values()):
        for operation in operations:
            call = getattr(operation, "func", None)
            if not isinstance(call, functools.partial):
                continue
            method: Any = call.func
            if getattr(method, "__func__", None) not in _DJANGO_LAZY_METHODS:
                continue
            signal, name = method.__self__, method.__func__.__name__
            operation.func = functools.partial(_later(name, signal), *call.args, **call.keywords)


def _later(name: str, signal: Any) -> Callable[..., Any]:
    """A method of *signal* that calls its *name* method (``connect`` or
    ``disconnect``) when a lazy sender's model is registered.

    The method is looked up then, not now: if tocsin has been installed or
    uninstalled meanwhile, the signal's method of the moment runs.
    """
    return types.MethodType(_LATE[name], signal)


def _late_call(name: str) -> Callable[..., Any]:
    def call(signal: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(signal, name)(*args, **kwargs)

    # Django's system check for lazy references that never resolved (checks
    # signals.E001: "<receiver> was connected to the 'post_save' signal with a
    # lazy reference to the sender ...") recognises a waiting connection by the
    # module and name of the bound method it finds: those of Django's own.
    call.__module__ = DjangoSignal.connect.__module__
    call.__name__, call.__qualname__ = name, f"Signal.{name}"
    return call


_LATE = {name: _late_call(name) for name in ("connect", "disconnect")}
