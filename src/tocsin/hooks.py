"""The dispatcher's one extension point: hooks that observe or change sends.

Tracing, the testing helpers' local overlays and the OpenTelemetry adapter are
built on it; an integration that needs to change what a send does uses it
too, never ``Signal``'s private attributes (a test enforces that)::

    from tocsin import hooks

    class Timing(hooks.SendHook):
        def observe(self, send: hooks.SendInfo) -> hooks.SendObserver:
            return MyObserver(send)

    undo = hooks.install(Timing())            # every signal
    undo = hooks.install(Timing(), signal)    # or one signal
    ...
    undo()

A hook has two parts, both optional:

* :meth:`SendHook.plan` changes *who* receives a send: it gets the
  :class:`Plan` the signal computed for the sender (its receivers, in call
  order) and returns the plan to use (the testing helpers mute receivers and
  add receivers this way, for one context only).
* :meth:`SendHook.observe` watches one send: the :class:`SendObserver` it
  returns is entered around the send, wraps each receiver call (sync in
  :meth:`~SendObserver.call`, async in :meth:`~SendObserver.acall`) and hears
  of on-commit receivers the send deferred (:meth:`~SendObserver.deferred`).

Costs: while no hook is installed, sends take their usual path and pay
nothing. Installing or removing a hook makes the signals concerned rebuild
their cached plans; their sends then take the hooked path, which builds a
:class:`SendInfo`, asks each hook, and wraps the receivers only when some
observer watches the send.

Hooks run in installation order: plan hooks one after the other (each gets
the previous one's plan), observers nested (the first installed is the
outermost). A hook must not raise unless it means to fail the send: an
exception from it propagates into the send like a receiver's.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    from .dispatcher import Signal
    from .oncommit import Deferred

__all__ = [
    "Later",
    "Method",
    "Plan",
    "SendHook",
    "SendInfo",
    "SendObserver",
    "install",
    "installed",
]

Method = Literal["send", "send_robust", "asend", "asend_robust"]
"""Which of the four sends a send is (:attr:`SendInfo.method`);
:meth:`~tocsin.dispatcher.Signal.send_with_awaiter` is a ``"send"``."""
Deref = Callable[[], Any]
"""A zero-argument callable that returns the receiver, or ``None`` once a
weakly connected receiver has been garbage collected."""


class Later(NamedTuple):
    """An on-commit receiver in a :class:`Plan` (a named tuple)."""

    deref: Deref
    """The receiver's deref (see :class:`Plan`)."""
    is_async: bool
    """Whether the receiver is async."""
    robust: bool
    """Log its failures after the commit (True) or raise them (False)."""


class Plan(NamedTuple):
    """The receivers one send reaches, in the order it calls them: a named tuple
    of three tuples.

    ``sync`` are called first, in order; then ``async_``, concurrently; the
    ``later`` ones are deferred to the send's transaction (or, outside a
    transaction, called at once after the others of their kind). Each receiver
    is a *deref*: a function taking no arguments that returns the receiver, or
    None once a weakly connected one has been garbage collected. Use
    ``plan._replace(...)`` to change a part.
    """

    sync: tuple[Deref, ...] = ()
    """The sync receivers, called first, one after the other."""
    async_: tuple[Deref, ...] = ()
    """The async receivers, run concurrently after the sync ones."""
    later: tuple[Later, ...] = ()
    """The on-commit receivers."""


class SendInfo:
    """One send, as hooks see it: what :meth:`SendHook.observe` gets."""

    __slots__ = ("method", "named", "sender", "signal")

    def __init__(self, signal: Signal, sender: object, named: dict[str, Any], method: Method):
        self.signal: Signal = signal
        """The signal sent."""
        self.sender: object = sender
        """The send's sender."""
        self.named: dict[str, Any] = named
        """The keyword arguments the receivers get, besides ``signal`` and ``sender``
        (the send's own dict, not a copy: do not change it)."""
        self.method = method
        """Which of the four sends it is."""

    def __repr__(self) -> str:
        return f"<SendInfo {self.method}({self.sender!r}) of {self.signal!r}>"


class SendObserver:
    """Watches one send (returned by :meth:`SendHook.observe`, one per send).

    It is a context manager: entered before the send calls anything, exited
    after it (with the exception the send raises, if any; returning a true
    value from ``__exit__`` does not swallow it). If several observers watch a
    send, the first installed is entered first and exited last. Override what
    you need; every method does nothing by default.
    """

    def __enter__(self) -> SendObserver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def call(self, receiver: Callable[..., Any], call: Callable[[], Any]) -> Any:
        """Around one sync receiver's call: *call* is a function taking no arguments
        that calls *receiver* (through the observers inside this one); return
        what ``call()`` returns, or raise."""
        return call()

    async def acall(self, receiver: Callable[..., Any], call: Callable[[], Awaitable[Any]]) -> Any:
        """Around one async receiver's run, in the task that runs it:
        return ``await call()``'s result (or raise)."""
        return await call()

    def deferred(self, receiver: Callable[..., Any], deferred: Deferred) -> None:
        """The send deferred this on-commit *receiver* to its transaction;
        *deferred* is the :class:`~tocsin.oncommit.Deferred` call that will run
        after the commit (its run is not observed)."""


class SendHook:
    """The base class of hooks: subclass it and override either method, or both."""

    def plan(self, signal: Signal, sender: object, plan: Plan) -> Plan:
        """The receivers a send (or ``has_listeners()``) from *sender* reaches.

        It gets the :class:`Plan` the signal computed (its receivers, in call
        order) and returns the plan to use. Called on every send of the signals
        this hook is installed on, and by ``has_listeners()``, in the sending
        thread or task: it may depend on the context (a context variable, say).
        Return *plan* itself to change nothing; anything but a :class:`Plan`
        fails the send with ``TypeError``.
        """
        return plan

    def observe(self, send: SendInfo) -> SendObserver | None:
        """A :class:`SendObserver` for this send, or None to leave it alone."""
        return None


# -- installation ------------------------------------------------------------------------


# One installation: (a token of its own, the hook). Installing a hook twice
# makes two, and each undo removes its own.
_Entry = tuple[object, SendHook]


class _Registry:
    """Which hooks are installed, and who must hear of a change."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # Replaced, never changed in place: readers take no lock.
        self.everywhere: tuple[_Entry, ...] = ()
        self.by_signal: weakref.WeakKeyDictionary[Signal, tuple[_Entry, ...]] = (
            weakref.WeakKeyDictionary()
        )
        # Called with the signal concerned, or None for every signal; the
        # dispatcher drops its cached plans there.
        self.on_change: Callable[[Signal | None], None] = _nothing


def _nothing(signal: Signal | None) -> None:
    pass


_registry = _Registry()


def install(hook: SendHook, signal: Signal | None = None) -> Callable[[], None]:
    """Install *hook* on every signal (those made later too), or on *signal* only;
    returns the undo, a function taking no arguments.

    Calling the undo a second time does nothing. Installing the same hook
    object twice installs it twice (each undo removes one). Safe from any
    thread, also while other threads send: a send already under way keeps the
    hooks it started with. A hook installed on one signal goes with that signal
    when it is garbage collected.

    :raises TypeError: if *hook* is not a :class:`SendHook`, or *signal* not a
        :class:`~tocsin.Signal`.
    """
    if not isinstance(hook, SendHook):
        raise TypeError(
            f"install() takes a tocsin.hooks.SendHook (subclass it); got {type(hook).__name__}."
        )
    if signal is not None and not hasattr(signal, "has_listeners"):
        raise TypeError(f"install() takes a Signal as signal=; got {type(signal).__name__}.")
    entry: _Entry = (object(), hook)
    with _registry.lock:
        if signal is None:
            _registry.everywhere = (*_registry.everywhere, entry)
        else:
            _registry.by_signal[signal] = (*_registry.by_signal.get(signal, ()), entry)
    _registry.on_change(signal)
    signal_ref = None if signal is None else weakref.ref(signal)

    def undo() -> None:
        target = None if signal_ref is None else signal_ref()
        if signal_ref is not None and target is None:
            return  # the signal is gone, and its hooks with it
        with _registry.lock:
            entries = (
                _registry.everywhere if target is None else _registry.by_signal.get(target, ())
            )
            if entry not in entries:
                return  # undone already
            remaining = tuple(e for e in entries if e is not entry)
            if target is None:
                _registry.everywhere = remaining
            elif remaining:
                _registry.by_signal[target] = remaining
            else:
                del _registry.by_signal[target]
        _registry.on_change(target)

    return undo


def installed(signal: Signal) -> tuple[SendHook, ...]:
    """The hooks that apply to *signal*'s sends now, in installation order
    (every-signal ones first): what the dispatcher reads when it builds a
    plan, and what tests check to see that nothing was left installed."""
    entries = (*_registry.everywhere, *_registry.by_signal.get(signal, ()))
    return tuple(hook for _token, hook in entries)


def set_listener(on_change: Callable[[Signal | None], None]) -> None:
    """For the dispatcher only (it drops the cached plans of the signals
    concerned): *on_change* is called after every install and undo."""
    _registry.on_change = on_change
