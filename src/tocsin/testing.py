"""Test helpers: see what a signal sent, mute signals, connect a receiver for a block.

::

    from tocsin.testing import ANY, capture, connected_to, muted

    with capture(post_save, sender=Todo) as sent:
        save_a_todo()
    sent.assert_sent_once_with(instance=ANY, created=True, raw=False, using="default",
                               update_fields=None)

    with muted(post_save, post_delete):     # no receiver is called
        load_fixtures()

    with connected_to(on_save, post_save, sender=Todo):
        ...                                 # on_save receives, and goes after the block

Every helper puts the signal back exactly as it found it: the same connections,
in the same order, weak or strong, with their senders and their options
(``on_commit``, ``priority``), and no stale per-sender cache.

*Global* (the default) means every thread and task sees the change, like any
``connect()``. ``local=True`` limits it to the current context: this thread, or
this asyncio task and the tasks it starts (they copy its ``contextvars``); other
threads and tasks see the signal unchanged. Local helpers work by laying an
overlay on the signal's plans: a hook (:mod:`tocsin.hooks`) installed on that
signal while some overlay exists and removed after.

``ANY`` is ``unittest.mock.ANY``, re-exported: it equals anything, for the
arguments an assertion does not care about. :class:`FakeTransaction` stands for
a database transaction, to test on-commit receivers.

See docs/testing.md for the full guide, and :mod:`tocsin.pytest_plugin` for
the fixtures.
"""

from __future__ import annotations

import fnmatch
import itertools
import sys
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple, Self, TypeVar, Unpack
from unittest.mock import ANY
from unittest.util import safe_repr

from . import hooks
from ._django_rows import ReceiverEntry
from ._fake_transaction import FakeTransaction, Savepoint
from ._inspect import check_receiver, describe
from ._options import NOW, ON_COMMIT_ROBUST, ConnectOptions, read_options
from ._refs import NONE_ID, Deref, make_id, strong_deref
from .dispatcher import Signal

__all__ = [
    "ANY",
    "Capture",
    "FakeTransaction",
    "Savepoint",
    "SentCall",
    "capture",
    "connected_to",
    "muted",
]

R = TypeVar("R", bound=Callable[..., Any])


# -- recording sends -------------------------------------------------------------------


class SentCall(NamedTuple):
    """One send a :class:`Capture` saw: its sender and its keyword arguments
    (everything the receivers got except ``signal`` and ``sender``)."""

    sender: Any
    kwargs: dict[str, Any]

    def __repr__(self) -> str:
        return _format_send(self.sender, self.kwargs)


class _Recorder:
    """The receiver a capture connects: records the send, returns None."""

    __slots__ = ("__weakref__", "calls")

    def __init__(self, calls: list[SentCall]) -> None:
        self.calls = calls

    def __call__(self, signal: Signal, sender: Any, **kwargs: Any) -> None:
        self.calls.append(SentCall(sender, kwargs))

    def __repr__(self) -> str:
        return "<tocsin.testing capture receiver>"


# A capture's receiver is called before the signal's own receivers, so that a
# send is recorded even when one of them raises.
_FIRST = 2**62
_uids = itertools.count(1)


class Capture:
    """Records every send of *signal* (from *sender* only, if given) while active.

    Use it as a context manager (``with capture(signal) as sent:``), or call
    :meth:`start` and :meth:`stop`. The calls stay readable after the block,
    and the assertion methods read like ``unittest.mock``'s.

    While active, the capture is a receiver of the signal, strongly connected
    and called before the others: it makes ``has_listeners()`` true (so code
    that sends only when someone listens does send), and it appears in the
    responses of ``send()`` as ``(capture.receiver, None)``, first. A global
    capture is an ordinary connection with a private ``dispatch_uid``, which
    ``stop()`` disconnects; a local one is an overlay seen by the current
    context only.

    :param signal: the :class:`~tocsin.Signal` to watch.
    :param sender: record only what this object sends (compared by identity,
        as ``connect()`` does); ``None`` records every sender.
    :param local: record only the sends made in the current context (thread,
        or asyncio task and the tasks it starts).
    :raises TypeError: if *signal* is not a tocsin :class:`~tocsin.Signal`, or
        *local* is not a ``bool``.

    The arguments are kept as the attributes ``signal``, ``sender`` and
    ``local``. The assertions, named after ``unittest.mock``'s, raise
    ``AssertionError`` with a message that lists every recorded send; *sender*
    is ``ANY`` when left out, and an expected ``signal=`` raises ``TypeError``.
    """

    def __init__(self, signal: Signal, sender: object = None, *, local: bool = False) -> None:
        _check_signal(signal, "capture()")
        _check_flag(local, "local")
        self.signal = signal
        self.sender = sender
        self.local = local
        self.calls: list[SentCall] = []
        """Every send recorded, oldest first."""
        self.receiver: Callable[..., None] = _Recorder(self.calls)
        """The receiver that records: what ``send()``'s responses show."""
        self._stop: Callable[[], None] | None = None

    # -- starting and stopping ---------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether sends are being recorded."""
        return self._stop is not None

    def start(self) -> Self:
        """Start recording (again, after :meth:`stop`: the calls are kept), and
        return the capture.

        :raises RuntimeError: if it is already recording.
        """
        if self._stop is not None:
            raise RuntimeError(f"{self!r} is already recording; stop() it first.")
        if self.local:
            layer = _Layer(self.signal, receiver=self.receiver, sender=self.sender, first=True)
            _push(layer)
            self._stop = lambda: _pop(layer)
        else:
            self._stop = _connect_for_block(
                self.signal,
                self.receiver,
                self.sender,
                False,
                f"tocsin.testing.capture#{next(_uids)}",
                {"priority": _FIRST},
            )
        return self

    def stop(self) -> None:
        """Stop recording; the signal is as it was before :meth:`start`. Idempotent."""
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def clear(self) -> None:
        """Forget the calls recorded so far (``Mock.reset_mock()``'s part)."""
        self.calls.clear()

    @property
    def call_count(self) -> int:
        """How many sends were recorded."""
        return len(self.calls)

    # -- assertions --------------------------------------------------------------------

    def assert_sent(self, /, sender: object = ANY, **kwargs: Any) -> None:
        """Some recorded send came from *sender* with at least these keyword
        arguments (others may have been sent too). ``ANY`` matches anything."""
        __tracebackhide__ = True
        _check_expected(kwargs)
        if not any(_matches(call, sender, kwargs, exact=False) for call in self.calls):
            raise AssertionError(
                f"Expected {self._name()} to have been sent with at least "
                f"{_format_send(sender, kwargs)}.\n{self._sent()}"
            )

    def assert_sent_once(self) -> None:
        """Exactly one send was recorded."""
        __tracebackhide__ = True
        if len(self.calls) != 1:
            raise AssertionError(f"Expected {self._name()} to have been sent once.\n{self._sent()}")

    def assert_sent_once_with(self, /, sender: object = ANY, **kwargs: Any) -> None:
        """Exactly one send was recorded, from *sender* and with exactly these
        keyword arguments (no more, no fewer)."""
        __tracebackhide__ = True
        _check_expected(kwargs)
        if len(self.calls) != 1 or not _matches(self.calls[0], sender, kwargs, exact=True):
            message = (
                f"Expected {self._name()} to have been sent once with "
                f"{_format_send(sender, kwargs)}.\n{self._sent()}"
            )
            if len(self.calls) == 1:
                message += "\n" + _differences(self.calls[0], sender, kwargs)
            raise AssertionError(message)

    def assert_sent_with(self, /, sender: object = ANY, **kwargs: Any) -> None:
        """The last recorded send came from *sender*, with exactly these keyword arguments."""
        __tracebackhide__ = True
        _check_expected(kwargs)
        if not self.calls or not _matches(self.calls[-1], sender, kwargs, exact=True):
            message = (
                f"Expected the last send of {self._name()} to be "
                f"{_format_send(sender, kwargs)}.\n{self._sent()}"
            )
            if self.calls:
                message += "\n" + _differences(self.calls[-1], sender, kwargs)
            raise AssertionError(message)

    def assert_not_sent(self) -> None:
        """No send was recorded."""
        __tracebackhide__ = True
        if self.calls:
            raise AssertionError(f"Expected {self._name()} not to have been sent.\n{self._sent()}")

    def assert_sent_times(self, count: int, /) -> None:
        """Exactly *count* sends were recorded.

        :raises TypeError: if *count* is not an ``int`` of at least 0.
        """
        __tracebackhide__ = True
        if type(count) is not int or count < 0:
            raise TypeError(f"assert_sent_times() takes a count >= 0; got {count!r}.")
        if len(self.calls) != count:
            raise AssertionError(
                f"Expected {self._name()} to have been sent {_times(count)}.\n{self._sent()}"
            )

    # -- messages ----------------------------------------------------------------------

    def _name(self) -> str:
        return _signal_name(self.signal)

    def _sent(self) -> str:
        """What was recorded, for an assertion message."""
        scope = ""
        if self.sender is not None:
            scope = f" by {safe_repr(self.sender)}"
        if self.local:
            scope += " in the capturing context"
        if not self.calls:
            return f"It was never sent{scope}."
        lines = [f"It was sent {_times(len(self.calls))}{scope}:"]
        lines += [f"  {call!r}" for call in self.calls]
        return "\n".join(lines)

    def __repr__(self) -> str:
        state = "recording" if self.active else "stopped"
        return f"<Capture of {self._name()}: {_times(len(self.calls))}, {state}>"


def _signal_name(signal: Signal) -> str:
    """``module.attribute`` of *signal*, for messages; never raises."""
    from .introspect import signal_name

    try:
        return signal_name(signal)
    except Exception:  # a module attribute that fails when looked at
        pass
    for module_name, module in list(sys.modules.items()):
        try:
            namespace = vars(module)
        except TypeError:
            continue
        for attribute, value in list(namespace.items()):
            if value is signal:
                return f"{module_name}.{attribute}"
    return f"<Signal at {id(signal):#x}>"


def capture(signal: Signal, sender: object = None, *, local: bool = False) -> Capture:
    """A :class:`Capture` of *signal*: ``with capture(post_save, sender=Todo) as sent:``."""
    return Capture(signal, sender, local=local)


def _check_expected(kwargs: dict[str, Any]) -> None:
    if "signal" in kwargs:
        raise TypeError(
            "the signal is not recorded with each send (a capture watches one signal); "
            "leave signal= out of the expected arguments."
        )


def _matches(call: SentCall, sender: object, kwargs: dict[str, Any], *, exact: bool) -> bool:
    if not _equal(sender, call.sender):
        return False
    if exact and kwargs.keys() != call.kwargs.keys():
        return False
    return all(
        name in call.kwargs and _equal(value, call.kwargs[name]) for name, value in kwargs.items()
    )


def _equal(expected: object, actual: object) -> bool:
    # The expected value goes on the left, so that ANY's __eq__ is the one used.
    return bool(expected == actual)


def _differences(call: SentCall, sender: object, kwargs: dict[str, Any]) -> str:
    lines = []
    if not _equal(sender, call.sender):
        lines.append(f"  sender: expected {safe_repr(sender)}, sent {safe_repr(call.sender)}")
    for name, value in kwargs.items():
        if name not in call.kwargs:
            lines.append(f"  {name}: expected {safe_repr(value)}, not sent")
        elif not _equal(value, call.kwargs[name]):
            lines.append(
                f"  {name}: expected {safe_repr(value)}, sent {safe_repr(call.kwargs[name])}"
            )
    for name, value in call.kwargs.items():
        if name not in kwargs:
            lines.append(f"  {name}: sent {safe_repr(value)}, not expected")
    return "Differences:\n" + "\n".join(lines)


def _format_send(sender: object, kwargs: dict[str, Any]) -> str:
    arguments = [f"sender={safe_repr(sender)}"]
    arguments += [f"{name}={safe_repr(value)}" for name, value in kwargs.items()]
    return f"send({', '.join(arguments)})"


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


# -- muting -----------------------------------------------------------------------------


@contextmanager
def muted(*signals: Signal, local: bool = False) -> Iterator[None]:
    """While active, sending one of *signals* calls none of the receivers
    connected when the block started, and returns ``[]``.

    Global (the default): the receivers are set aside (the rows of
    ``signal.receivers``) and put back on exit, exactly: same order, weak or
    strong, senders, ``on_commit`` and ``priority``; the per-sender caches are
    rebuilt. Receivers connected inside the block (a :func:`capture`, a
    :func:`connected_to`, or code under test) are called as usual, and those
    still connected on exit are kept, after the restored ones. A receiver that
    was set aside is not connected inside the block: ``disconnect()`` returns
    False for it there, and it is back after.

    ``local=True``: only sends made in the current context (this thread, or
    this asyncio task and the tasks it starts) are muted; every other thread
    and task sees the signal unchanged. Receivers connected after the block
    started are called, as in global mode.

    Also a decorator (``@muted(post_save)``), like factory_boy's ``mute_signals``.
    It works for the four send methods, and ``has_listeners()`` does not count
    the muted receivers.

    :raises TypeError: if no signal is given, or if one is not a tocsin
        :class:`~tocsin.Signal`.
    """
    if not signals:
        raise TypeError("muted() needs at least one signal: muted(post_save, post_delete).")
    for signal in signals:
        _check_signal(signal, "muted()")
    _check_flag(local, "local")
    with ExitStack() as stack:
        for signal in dict.fromkeys(signals):  # each once, in the order given
            if local:
                layer = _Layer(signal, muted=_receivers_now(signal))
                _push(layer)
                stack.callback(_pop, layer)
            else:
                stack.callback(_set_aside(signal))
        yield


class _Aside:
    """The rows one global mute set aside, until it puts them back."""

    def __init__(self, rows: list[ReceiverEntry]) -> None:
        self.rows = rows


# signal -> its global mutes now active (so that a helper that ends inside
# one can take its own row out of what the mute will put back).
_asides: dict[Signal, list[_Aside]] = {}
_asides_lock = threading.Lock()


def _set_aside(signal: Signal) -> Callable[[], None]:
    """Disconnect every receiver of *signal*; returns what puts them back."""
    with signal.lock:
        aside = _Aside(list(signal.receivers))
        signal.receivers = []
        with _asides_lock:
            _asides.setdefault(signal, []).append(aside)

    def put_back() -> None:
        with _asides_lock:
            mutes = _asides[signal]
            mutes.remove(aside)
            if not mutes:
                del _asides[signal]
        with signal.lock:
            # Connected during the block: kept, after. The setter keeps the
            # first row of a lookup key, so a receiver both set aside and
            # connected again inside the block gets its original row back.
            during = list(signal.receivers)
            signal.receivers = [*aside.rows, *during]

    return put_back


def _forget(signal: Signal, lookup_key: tuple[Hashable, Hashable]) -> None:
    """A helper's connection ended while a global mute had set it aside (the
    blocks were not nested): the mute must not put it back."""
    with _asides_lock:
        for aside in _asides.get(signal, ()):
            aside.rows = [row for row in aside.rows if row.lookup_key != lookup_key]


# -- connecting for a block -------------------------------------------------------------


@contextmanager
def connected_to(
    receiver: R,
    signal: Signal,
    sender: object = None,
    *,
    local: bool = False,
    weak: bool = True,
    dispatch_uid: Hashable = None,
    **options: Unpack[ConnectOptions],
) -> Iterator[R]:
    """Connect *receiver* to *signal* for the block, and disconnect it after.

    The arguments are ``Signal.connect()``'s; the block's value is *receiver*
    (handy with a ``unittest.mock.Mock``). The block holds *receiver*, so a
    weakly connected lambda stays connected until the end.

    If the same connection (receiver, or ``dispatch_uid``, and sender) already
    exists, it is left as it is, options included, and is not disconnected
    after; ``dispatch_uid`` taken by another receiver raises ``ValueError``.

    ``local=True``: *receiver* gets only the sends made in the current context
    (this thread, or this asyncio task and the tasks it starts), after the
    signal's own receivers, and appears only in the responses of those sends.
    The registry is not touched, so ``priority`` and ``dispatch_uid`` do not
    apply there.

    A context manager, and a decorator. The options after *signal*, but
    *local*, are ``connect()``'s, its own (``on_commit``, ``robust``,
    ``priority``) included.

    :raises TypeError: if *receiver* is a signal and *signal* is not (the
        arguments are the other way round), if *local* or *weak* is not a
        ``bool``, or if ``local=True`` comes with a *dispatch_uid* or a
        ``priority``; and what ``connect()`` raises.
    :raises ValueError: if *dispatch_uid* is already connected to another
        receiver.
    """
    if _is_signal(receiver) and not _is_signal(signal):
        raise TypeError(
            "connected_to() takes the receiver first, then the signal: "
            "connected_to(receiver, signal, sender=...)."
        )
    _check_signal(signal, "connected_to()")
    _check_flag(local, "local")
    _check_flag(weak, "weak")
    checked = read_options(options, "connected_to()")
    if local:
        if dispatch_uid or checked.priority:
            raise TypeError(
                "connected_to(local=True) does not change the signal's connections, so "
                "dispatch_uid= and priority= do not apply: a local receiver is called after "
                "the signal's own receivers."
            )
        layer = _Layer(
            signal,
            receiver=receiver,
            sender=sender,
            is_async=check_receiver(receiver),
            on_commit=checked.on_commit,
        )
        _push(layer)
        try:
            yield receiver
        finally:
            _pop(layer)
        return
    disconnect = _connect_for_block(signal, receiver, sender, weak, dispatch_uid, options)
    try:
        yield receiver
    finally:
        disconnect()


def _connect_for_block(
    signal: Signal,
    receiver: Callable[..., Any],
    sender: object,
    weak: bool,
    dispatch_uid: Hashable,
    options: ConnectOptions,
) -> Callable[[], None]:
    """Connect; returns what undoes it (a no-op if the connection existed)."""
    lookup_key = _lookup_key(receiver, sender, dispatch_uid)
    with signal.lock:  # no other thread connects between the check and connect()
        existing = next((row for row in signal.receivers if row.lookup_key == lookup_key), None)
        held = None if existing is None else _dereference(existing)
        if held is None:  # not connected, or dead (connect() replaces it)
            existing = None
            signal.connect(receiver, sender, weak, dispatch_uid, **options)
    if existing is not None:
        # connect() would ignore the call; check what it would have checked.
        check_receiver(receiver)
        if make_id(held) != make_id(receiver):
            raise ValueError(
                f"dispatch_uid {dispatch_uid!r} is already connected to "
                f"{describe(held)}, so connected_to() cannot connect {describe(receiver)} "
                f"with it; use another dispatch_uid."
            )
        return _nothing

    def disconnect() -> None:
        if not signal.disconnect(receiver, sender, dispatch_uid):
            _forget(signal, lookup_key)

    return disconnect


def _nothing() -> None:
    pass


def _lookup_key(
    receiver: object, sender: object, dispatch_uid: Hashable
) -> tuple[Hashable, Hashable]:
    """The ``lookup_key`` of the row ``connect()`` makes."""
    identity = dispatch_uid if dispatch_uid else make_id(receiver)
    return identity, NONE_ID if sender is None else make_id(sender)


def _dereference(row: ReceiverEntry) -> Any:
    """The receiver of a ``receivers`` row, or None if it died."""
    ref = row.receiver
    return ref() if isinstance(ref, weakref.ref) else ref


# -- context-local overlays --------------------------------------------------------------


@dataclass(eq=False)
class _Layer:
    """What one local helper changes for its context: a mute, or a receiver."""

    signal: Signal
    # A mute: the receivers it mutes, by Django's identity key (make_id).
    muted: dict[Hashable, Deref] | None = None
    # A receiver: called for sends from *sender* (None: any).
    receiver: Any = None
    sender: object = None
    is_async: bool = False
    on_commit: int = NOW
    first: bool = False
    # Cleared on exit: a task started inside the block and still running after
    # it holds a copy of the context, but the layer no longer applies.
    active: bool = True


# The layers of the current context, in the order they were entered.
_layers: ContextVar[tuple[_Layer, ...]] = ContextVar("tocsin.testing.layers", default=())


def _receivers_now(signal: Signal) -> dict[Hashable, Deref]:
    """The receivers connected to *signal* now, by make_id(), held as the
    signal holds them (weakly or not)."""
    held: dict[Hashable, Deref] = {}
    for row in signal.receivers:
        ref = row.receiver
        if isinstance(ref, weakref.ref):
            receiver = ref()
            if receiver is not None:
                held[make_id(receiver)] = ref
        else:
            held[make_id(ref)] = strong_deref(ref)
    return held


def _push(layer: _Layer) -> None:
    _install(layer.signal)
    _layers.set((*_layers.get(), layer))


def _pop(layer: _Layer) -> None:
    layer.active = False
    # Not ContextVar.reset(): blocks may end out of order, or in another
    # context than the one they started in (a fixture's teardown).
    layers = _layers.get()
    if layer in layers:
        _layers.set(tuple(other for other in layers if other is not layer))
    _uninstall(layer.signal)


def _layers_of(signal: Signal) -> tuple[_Layer, ...]:
    layers = _layers.get()
    if not layers:
        return ()
    return tuple(layer for layer in layers if layer.signal is signal and layer.active)


class _OverlayHook(hooks.SendHook):
    """The layers of the current context, laid over one signal's plans."""

    def plan(self, signal: Signal, sender: object, plan: hooks.Plan) -> hooks.Plan:
        layers = _layers_of(signal)
        return _overlay(plan, layers, sender) if layers else plan


class _Installed:
    """The overlay hook on one signal, and how many layers need it."""

    def __init__(self, uninstall: Callable[[], None]) -> None:
        self.count = 0
        self.uninstall = uninstall


_installed: dict[Signal, _Installed] = {}
_installed_lock = threading.Lock()


def _install(signal: Signal) -> None:
    with _installed_lock:
        installed = _installed.get(signal)
        if installed is None:
            installed = _installed[signal] = _Installed(hooks.install(_OverlayHook(), signal))
        installed.count += 1


def _uninstall(signal: Signal) -> None:
    with _installed_lock:
        installed = _installed[signal]
        installed.count -= 1
        if installed.count:
            return
        del _installed[signal]
        installed.uninstall()


def _overlay(plan: hooks.Plan, layers: tuple[_Layer, ...], sender: object) -> hooks.Plan:
    """*plan* as this context sees it through *layers*."""
    sync, async_, later = plan
    mutes = [layer for layer in layers if layer.muted is not None]
    if mutes:

        def audible(deref: Deref) -> bool:
            receiver = deref()
            return receiver is not None and not any(_mutes(m, receiver) for m in mutes)

        sync = tuple(filter(audible, sync))
        async_ = tuple(filter(audible, async_))
        later = tuple(item for item in later if audible(item.deref))
        # A receiver layered before a mute is muted by it too.
        last_mute = max(i for i, layer in enumerate(layers) if layer.muted is not None)
        layers = layers[last_mute + 1 :]
    first: list[Deref] = []
    sync_added: list[Deref] = []
    async_added: list[Deref] = []
    later_added: list[hooks.Later] = []
    sender_key: Hashable = None
    for layer in layers:
        if layer.sender is not None:
            if sender_key is None:
                sender_key = make_id(sender)
            if make_id(layer.sender) != sender_key:
                continue
        deref = strong_deref(layer.receiver)
        if layer.on_commit:
            robust = layer.on_commit == ON_COMMIT_ROBUST
            later_added.append(hooks.Later(deref, layer.is_async, robust))
        elif layer.is_async:
            async_added.append(deref)
        else:
            (first if layer.first else sync_added).append(deref)
    return hooks.Plan((*first, *sync, *sync_added), (*async_, *async_added), (*later, *later_added))


def _mutes(layer: _Layer, receiver: object) -> bool:
    assert layer.muted is not None
    key = make_id(receiver)
    deref = layer.muted.get(key)
    if deref is None:
        return False
    held = deref()
    # The id() of a receiver that died may be reused by a new one.
    return held is not None and make_id(held) == key


# -- checks --------------------------------------------------------------------------------


def _check_signal(signal: object, where: str) -> None:
    if isinstance(signal, Signal):
        return
    hint = ""
    if isinstance(signal, (list, tuple, set, frozenset)):
        hint = " Pass each signal as its own argument: muted(post_save, post_delete)."
    elif type(signal).__module__.startswith("django."):
        # In a Django project, what is missing is the integration, not an import.
        hint = (
            " tocsin.testing works with tocsin signals: put 'tocsin.contrib.django' first in"
            " INSTALLED_APPS (or call tocsin.contrib.django.install()) to make Django's signals"
            " tocsin's, or import tocsin's own from tocsin."
        )
    elif callable(signal) and where == "connected_to()":
        hint = " The receiver comes first: connected_to(receiver, signal)."
    raise TypeError(f"{where} takes a tocsin Signal; got {type(signal).__name__} {signal!r}.{hint}")


def _is_signal(value: object) -> bool:
    return isinstance(value, Signal)


def _check_flag(value: object, name: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {value!r}.")


# -- registry snapshots (the pytest plugin's check) -------------------------------------------


class _Row(NamedTuple):
    """A connection, compared as exact restoration requires."""

    lookup_key: tuple[Hashable, Hashable]
    weak: bool
    receiver: Any  # the weak reference, or the receiver itself
    sender_ref: Any
    is_async: bool
    on_commit: int
    priority: int

    def alive(self) -> bool:
        if self.weak and self.receiver() is None:
            return False
        return self.sender_ref is None or self.sender_ref() is not None

    def same(self, other: _Row) -> bool:
        if self.weak != other.weak:
            return False
        if self.weak:
            same_receiver = self.receiver() is other.receiver() or self.receiver == other.receiver
        else:
            same_receiver = self.receiver is other.receiver
        return (
            same_receiver
            and self.lookup_key == other.lookup_key
            and self.sender_ref == other.sender_ref
            and self.is_async == other.is_async
            and self.on_commit == other.on_commit
            and self.priority == other.priority
        )

    def name(self) -> str:
        """The receiver's ``module.qualname`` (``""`` once a weak one is gone)."""
        receiver = self.receiver() if self.weak else self.receiver
        return "" if receiver is None else describe(receiver)

    def describe(self) -> str:
        receiver = self.receiver() if self.weak else self.receiver
        sender = "any sender" if self.sender_ref is None else f"sender {self.sender_ref()!r}"
        strength = "weak" if self.weak else "strong"
        return f"{describe(receiver)} ({strength}, {sender})"


def _rows(signal: Signal) -> list[_Row]:
    return [
        _Row(
            row.lookup_key,
            isinstance(row.receiver, weakref.ref),
            row.receiver,
            row.sender_ref,
            row.is_async,
            getattr(row, "on_commit", NOW),
            getattr(row, "priority", 0),
        )
        for row in signal.receivers
    ]


class _Snapshot:
    """The connections of every signal alive, to compare with later ones.

    *ignore* are ``fnmatch`` patterns of receiver names (``module.qualname``):
    connections of matching receivers are left out of the comparison.
    """

    def __init__(self, signals: Iterable[Signal] | None = None, ignore: Iterable[str] = ()):
        if signals is None:
            from .introspect import all_signals

            signals = all_signals()
        self._ignore = tuple(ignore)
        # The signals are held weakly: a test may check that one is collected.
        self._rows = [(weakref.ref(s), self._kept(_rows(s))) for s in signals]

    def _kept(self, rows: list[_Row]) -> list[_Row]:
        if not self._ignore:
            return rows
        return [row for row in rows if not _matches_any(row.name(), self._ignore)]

    def changes(self) -> list[str]:
        """One line per signal whose connections differ now, saying how."""
        found = []
        for signal_ref, before in self._rows:
            signal = signal_ref()
            if signal is None:
                continue
            after = self._kept(_rows(signal))
            change = _compare(
                [row for row in before if row.alive()], [row for row in after if row.alive()]
            )
            if change:
                found.append(f"{_signal_name(signal)}: {change}")
        return found


def _matches_any(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _compare(before: list[_Row], after: list[_Row]) -> str:
    if len(before) == len(after) and all(a.same(b) for a, b in zip(before, after, strict=True)):
        return ""
    old = {row.lookup_key: row for row in before}
    new = {row.lookup_key: row for row in after}
    parts = []
    added = [row.describe() for key, row in new.items() if key not in old]
    removed = [row.describe() for key, row in old.items() if key not in new]
    changed = [row.describe() for key, row in new.items() if key in old and not row.same(old[key])]
    if added:
        parts.append("connected " + ", ".join(added))
    if removed:
        parts.append("disconnected " + ", ".join(removed))
    if changed:
        parts.append("connected differently: " + ", ".join(changed))
    if not parts:
        parts.append("the same receivers, in another order")
    return "; ".join(parts)
