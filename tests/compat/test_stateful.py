"""Random operation sequences on a Django signal and a tocsin signal, in lockstep.

A Hypothesis state machine connects and disconnects receivers from a pool
(functions, a failing function, a partial, a lambda, a callable object, bound
methods of two objects, sync and async) for senders from a pool (classes, an
instance, a bound method, equal value objects, an object that cannot be weakly
referenced), sends with every send method, asks ``has_listeners()``,
changes ``signal.receivers`` in place, drops receivers and senders (deletes the
only strong reference and collects garbage), and checks after every step that
both signals answered the same and list the same connections.

Receivers and senders are shared by the two signals and compared through
stable labels such as ``"f1#2"`` (the second ``f1`` the machine created), so
that bound methods, which are new objects on every send, compare by their
object and function.

tocsin's intended differences (see ``test_fixes.py``) are left out or modelled:

* ``connect()`` returns the receiver on tocsin, None on Django (checked, then
  compared as None);
* ``disconnect()`` with neither a receiver nor a dispatch_uid is never called,
  and no sender is unhashable (Django's sends raise ``TypeError`` for one,
  cached or not);
* where a cached Django signal raises ``TypeError`` for a sender its
  ``WeakKeyDictionary`` cannot hold (``None``, unweakrefable), or answers for
  an equal sender from another's cache entry, tocsin's answer is compared with
  a third signal, an uncached Django one;
* after ``signal.receivers`` is assigned or changed in place, the Django
  signals' caches are cleared (tocsin's updates at once);
* rows whose receiver or sender died are left out of the comparison of
  ``signal.receivers`` (reading tocsin's purges them, Django's lists them until
  its next purge);
* the muting machine restores ``saved + current`` rows to tocsin as they are,
  and to the Django signals without the dead rows and with only the first row
  of each lookup key, which is what tocsin keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import weakref
from collections.abc import Callable, Iterator
from types import MethodType
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ._support import DJANGO, TOCSIN, Boom, Unweakrefable, tagged

# -- the pools -------------------------------------------------------------------------

# Holders are what the machine keeps the only strong reference to, and drops.
# Each maps to the kind of object it holds.
HOLDERS = {
    "f1": "function",
    "f2": "function",
    "boom": "failing function",
    "partial": "partial",
    "lambda": "lambda",
    "callable": "callable object",
    "async1": "async function",
    "async2": "suspending async function",
    "async_boom": "failing async function",
    "obj1": "object",
    "obj2": "object",
}
# Receivers are holders themselves, or bound methods of the object holders.
RECEIVERS = sorted(
    [name for name, kind in HOLDERS.items() if kind != "object"]
    + ["obj1.handle", "obj1.ahandle", "obj2.handle"]
)
# "method" is a bound method kept alive by the machine; "method (fresh)" is a
# new bound method of the same object and function each time, which Django
# and tocsin match to "method" by (id(self), id(func)).
DROPPABLE_SENDERS = ["instance", "unweakrefable", "equal1", "equal2", "method"]
SENDERS = ["None", "Sender", "OtherSender", *DROPPABLE_SENDERS, "method (fresh)"]
# Senders that a cached Django signal may confuse with each other.
EQUAL_SENDERS = {"equal1", "equal2"}
DISPATCH_UIDS = [None, 0, "", "uid1", "uid2"]


class Sender:
    """A sender class."""


class OtherSender:
    """Another sender class."""


class SenderInstance:
    """Instances are senders that can be weakly referenced and dropped."""


class EqualSender:
    """Senders that are all equal to each other, as value objects are."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EqualSender)

    def __hash__(self) -> int:
        return 0


class SenderOwner:
    """An object whose bound method is a sender."""

    def notify(self) -> None:
        pass


class Target:
    """An object whose bound methods are receivers."""

    def __init__(self, label: str) -> None:
        self.label = label

    def handle(self, **kwargs: Any) -> str:
        return f"{self.label}.handle"

    async def ahandle(self, **kwargs: Any) -> str:
        await asyncio.sleep(0)
        return f"{self.label}.ahandle"


class CallableReceiver:
    def __init__(self, label: str) -> None:
        self.label = label

    def __call__(self, **kwargs: Any) -> str:
        return self.label


def make_holder(kind: str, label: str) -> object:
    """A new object of *kind*; as a receiver it returns (or raises with) *label*."""

    def function(**kwargs: Any) -> str:
        return label

    def failing(**kwargs: Any) -> str:
        raise Boom(label)

    async def async_function(**kwargs: Any) -> str:
        return label

    async def suspending(**kwargs: Any) -> str:
        await asyncio.sleep(0)
        return label

    async def async_failing(**kwargs: Any) -> str:
        raise Boom(label)

    factories: dict[str, Callable[[], object]] = {
        "function": lambda: function,
        "failing function": lambda: failing,
        "partial": lambda: functools.partial(tagged, tag=label),
        "lambda": lambda: lambda **kwargs: label,
        "callable object": lambda: CallableReceiver(label),
        "async function": lambda: async_function,
        "suspending async function": lambda: suspending,
        "failing async function": lambda: async_failing,
        "object": lambda: Target(label),
    }
    return factories[kind]()


def make_id(target: object) -> object:
    """Django's identity key of a receiver."""
    if isinstance(target, MethodType):
        return (id(target.__self__), id(target.__func__))
    return id(target)


def describe_exception(exc: BaseException) -> object:
    if isinstance(exc, BaseExceptionGroup):
        return (type(exc).__name__, str(exc), [describe_exception(e) for e in exc.exceptions])
    return (type(exc).__name__, exc.args)


def is_caching_type_error(outcome: object) -> bool:
    """Whether *outcome* is Django's TypeError for a sender its cache cannot hold."""
    match outcome:
        case ("raised", ("TypeError", (str() as message,))):
            return message.startswith("cannot create weak reference")
    return False


def is_dead_row(row: Any) -> bool:
    """Whether a ``signal.receivers`` row's receiver or sender has died."""
    _, stored, sender_ref, _ = row
    receiver_died = isinstance(stored, weakref.ref) and stored() is None
    return receiver_died or (sender_ref is not None and sender_ref() is None)


def rows_tocsin_keeps(rows: list[Any]) -> list[Any]:
    """What tocsin keeps of rows assigned to ``signal.receivers``: live ones, one per key.

    Its registry is a dict keyed like Django's lookup key: a dead row is dropped
    and a key's first row wins (test_fixes.py:
    test_restoring_saved_rows_with_current_ones_keeps_one_row_per_key and
    test_a_dead_row_assigned_to_receivers_is_dropped).
    """
    kept: list[Any] = []
    keys: set[object] = set()
    for row in rows:
        if not is_dead_row(row) and row[0] not in keys:
            keys.add(row[0])
            kept.append(row)
    return kept


# -- the machine -----------------------------------------------------------------------


class SignalMachine(RuleBasedStateMachine):
    """One django.dispatch Signal and one tocsin Signal, driven by the same operations."""

    def __init__(self) -> None:
        super().__init__()
        self.use_caching = False
        self.signals: dict[str, Any] = {}
        self.holders: dict[str, object] = {}
        self.senders: dict[str, object] = {"Sender": Sender, "OtherSender": OtherSender}
        self.generations: dict[str, int] = {}
        # The arguments of every connect() made, to make some again.
        self.connected: list[tuple[str, str, bool, object]] = []
        # id() (or a bound method's make_id()) -> label of every receiver
        # holder and sender created; an entry is only replaced when its object
        # has died and the id is reused.
        self.labels: dict[object, str] = {id(Sender): "Sender", id(OtherSender): "OtherSender"}

    # -- helpers -----------------------------------------------------------------------

    def _new_label(self, name: str) -> str:
        self.generations[name] = self.generations.get(name, 0) + 1
        return f"{name}#{self.generations[name]}"

    def _holder(self, name: str) -> object:
        if name not in self.holders:
            label = self._new_label(name)
            holder = make_holder(HOLDERS[name], label)
            self.holders[name] = holder
            self.labels[id(holder)] = label
        return self.holders[name]

    def _receiver(self, name: str) -> Any:
        holder_name, _, method = name.partition(".")
        holder = self._holder(holder_name)
        return getattr(holder, method) if method else holder

    def _sender(self, name: str) -> object:
        if name == "None":
            return None
        if name == "method (fresh)":
            method = self._sender("method")
            assert isinstance(method, MethodType)
            return getattr(method.__self__, method.__func__.__name__)
        if name not in self.senders:
            label = self._new_label(name)
            sender: object
            if name == "instance":
                sender = SenderInstance()
            elif name == "unweakrefable":
                sender = Unweakrefable(label)
            elif name in EQUAL_SENDERS:
                sender = EqualSender()
            else:
                sender = SenderOwner().notify
            self.senders[name] = sender
            self.labels[make_id(sender)] = label
        return self.senders[name]

    def _label(self, target: object) -> str:
        if target is None:
            return "None"
        if isinstance(target, MethodType):
            return f"{self._label(target.__self__)}.{target.__func__.__name__}"
        return self.labels.get(id(target), "<unknown>")

    def _describe(self, value: object) -> object:
        if isinstance(value, list):
            return [
                (
                    self._label(receiver),
                    describe_exception(response)
                    if isinstance(response, BaseException)
                    else response,
                )
                for receiver, response in value
            ]
        return value

    def _attempt(self, action: Callable[[Any], Any], signal: Any) -> object:
        try:
            value = action(signal)
        except Exception as exc:
            return ("raised", describe_exception(exc))
        return ("returned", self._describe(value))

    def _check(self, action: Callable[[Any], Any], sender: str | None = None) -> None:
        """Run *action* on every signal and check that tocsin answers as Django does.

        *sender* names the sender that a send or ``has_listeners()`` asks about.
        """
        outcomes = {name: self._attempt(action, signal) for name, signal in self.signals.items()}
        expected = outcomes["django"]
        if self.use_caching and (is_caching_type_error(expected) or sender in EQUAL_SENDERS):
            # Intended differences: compare with the uncached Django signal.
            expected = outcomes["reference"]
        assert outcomes["tocsin"] == expected

    def _forget_django_caches(self) -> None:
        """Clear the Django signals' caches, stale once ``receivers`` is changed.

        tocsin's signal needs no clearing (test_fixes.py:
        test_assigning_receivers_updates_a_cached_signal_at_once).
        """
        for name, signal in self.signals.items():
            if name != "tocsin":
                with signal.lock:
                    signal.sender_receivers_cache.clear()

    # -- rules -------------------------------------------------------------------------

    @initialize(use_caching=st.booleans())
    def create_signals(self, use_caching: bool) -> None:
        """A Django and a tocsin signal, with or without use_caching, and an uncached Django one."""
        self.use_caching = use_caching
        self.signals = {
            "django": DJANGO.Signal(use_caching=use_caching),
            "tocsin": TOCSIN.Signal(use_caching=use_caching),
            "reference": DJANGO.Signal(),
        }

    @rule(
        receiver=st.sampled_from(RECEIVERS),
        sender=st.sampled_from(SENDERS),
        weak=st.booleans(),
        dispatch_uid=st.sampled_from(DISPATCH_UIDS),
    )
    def connect(self, receiver: str, sender: str, weak: bool, dispatch_uid: object) -> None:
        """connect() a receiver from the pool, creating it if it was dropped."""
        self.connected.append((receiver, sender, weak, dispatch_uid))
        target, sender_object = self._receiver(receiver), self._sender(sender)

        def connect(signal: Any) -> object:
            returned = signal.connect(
                target, sender=sender_object, weak=weak, dispatch_uid=dispatch_uid
            )
            # A documented difference: tocsin returns the receiver (so that
            # @signal.connect works as a decorator), Django None.
            if signal is self.signals["tocsin"]:
                assert returned is target
                return None
            return returned

        self._check(connect)

    @rule(
        receiver=st.sampled_from([None, *RECEIVERS]),
        sender=st.sampled_from(SENDERS),
        dispatch_uid=st.sampled_from(DISPATCH_UIDS),
    )
    def disconnect(self, receiver: str | None, sender: str, dispatch_uid: object) -> None:
        """disconnect() by receiver or dispatch_uid (never with neither: a documented fix)."""
        assume(receiver is not None or dispatch_uid)
        target = None if receiver is None else self._receiver(receiver)
        sender_object = self._sender(sender)
        self._check(
            lambda signal: signal.disconnect(
                target, sender=sender_object, dispatch_uid=dispatch_uid
            )
        )

    @rule(sender=st.sampled_from(SENDERS), robust=st.booleans())
    def send(self, sender: str, robust: bool) -> None:
        """send() or send_robust(), from sync code."""
        sender_object = self._sender(sender)
        if robust:
            self._check(lambda signal: signal.send_robust(sender_object, extra=1), sender)
        else:
            self._check(lambda signal: signal.send(sender_object, extra=1), sender)

    @rule(sender=st.sampled_from(SENDERS), robust=st.booleans())
    def asend(self, sender: str, robust: bool) -> None:
        """asend() or asend_robust(), in a new event loop."""
        sender_object = self._sender(sender)
        if robust:
            self._check(lambda signal: asyncio.run(signal.asend_robust(sender_object)), sender)
        else:
            self._check(lambda signal: asyncio.run(signal.asend(sender_object)), sender)

    @rule(robust=st.booleans())
    def send_from_equal_senders(self, robust: bool) -> None:
        """send() from one equal sender, then from the other (a cached Django signal mixes them)."""
        self.send("equal1", robust)
        self.send("equal2", robust)

    @rule(sender=st.sampled_from(SENDERS))
    def has_listeners(self, sender: str) -> None:
        """has_listeners() for a sender, or for None."""
        sender_object = self._sender(sender)
        self._check(lambda signal: signal.has_listeners(sender_object), sender)

    @rule(
        position=st.integers(min_value=0, max_value=30),
        reverse=st.booleans(),
        sender=st.sampled_from(SENDERS),
    )
    def change_receivers_in_place(self, position: int, reverse: bool, sender: str) -> None:
        """Send, reverse a freshly read signal.receivers or delete a live row of it, send again."""
        self.send(sender, robust=True)
        for signal in self.signals.values():
            rows = signal.receivers
            live = [index for index, row in enumerate(rows) if not is_dead_row(row)]
            if reverse:
                rows.reverse()
            elif live:
                del rows[live[position % len(live)]]
        self._forget_django_caches()
        self.send(sender, robust=True)

    @rule(holder=st.sampled_from(sorted(HOLDERS)))
    def drop_receiver(self, holder: str) -> None:
        """Delete the only strong reference to a receiver (or its object) and collect."""
        self.holders.pop(holder, None)
        gc.collect()

    @rule(sender=st.sampled_from(DROPPABLE_SENDERS))
    def drop_sender(self, sender: str) -> None:
        """Delete the only strong reference to a sender and collect."""
        self.senders.pop(sender, None)
        gc.collect()

    # -- invariants --------------------------------------------------------------------

    def _describe_row(self, row: Any) -> tuple[object, ...]:
        (identity, sender_key), stored, sender_ref, is_async = row
        weak = isinstance(stored, weakref.ref)
        receiver = stored() if weak else stored
        if receiver is None:
            key: object = "<dead receiver>"
        elif identity == make_id(receiver):
            key = "receiver"
        else:
            key = ("dispatch_uid", identity)
        sender = "any" if sender_key == id(None) else self.labels.get(sender_key, "<unknown>")
        if sender_ref is None:
            sender_state = "no sender ref"
        else:
            sender_state = "live sender" if sender_ref() is not None else "dead sender"
        return (key, self._label(receiver), weak, sender, sender_state, is_async)

    @invariant()
    def same_connections(self) -> None:
        """Both signals list the same live connections, in the same order."""
        # Rows whose receiver or sender is dead are left out: Django lists them
        # until it next purges, tocsin never does (test_fixes.py:
        # test_reading_receivers_purges_dead_connections).
        rows = {
            name: [
                described
                for described in map(self._describe_row, self.signals[name].receivers)
                if "<dead receiver>" not in described and "dead sender" not in described
            ]
            for name in ("django", "tocsin")
        }
        assert rows["tocsin"] == rows["django"]


class MutingSignalMachine(SignalMachine):
    """SignalMachine plus factory_boy's mute_signals, with deaths while muted."""

    def __init__(self) -> None:
        super().__init__()
        self.paused: dict[str, list[Any]] | None = None

    @precondition(lambda self: self.paused is None)
    @rule()
    def mute(self) -> None:
        """Save signal.receivers and assign [], as mute_signals' __enter__ does."""
        self.paused = {name: signal.receivers for name, signal in self.signals.items()}
        for signal in self.signals.values():
            signal.receivers = []
        # factory_boy clears the caches only on restore: a cached Django signal
        # would answer from its stale cache meanwhile.
        self._forget_django_caches()

    @precondition(lambda self: self.paused is not None and self.connected)
    @rule(index=st.integers(min_value=0, max_value=100))
    def connect_again(self, index: int) -> None:
        """connect() again, while muted, as made before: saved and current rows share a key."""
        self.connect(*self.connected[index % len(self.connected)])

    @precondition(lambda self: self.paused is not None)
    @rule()
    def reverse_saved_receivers(self) -> None:
        """Reverse the saved lists in place: detached, they no longer change the signals."""
        assert self.paused is not None
        for paused in self.paused.values():
            paused.reverse()

    @precondition(lambda self: self.paused is not None)
    @rule()
    def unmute(self) -> None:
        """Restore saved + current rows and clear the cache, as mute_signals' __exit__ does."""
        assert self.paused is not None
        for name, signal in self.signals.items():
            rows = self.paused[name] + signal.receivers
            # tocsin keeps one row per key, the Django signals get what it keeps.
            signal.receivers = rows if name == "tocsin" else rows_tocsin_keeps(rows)
            with signal.lock:
                signal.sender_receivers_cache.clear()
        self.paused = None


SETTINGS = settings(
    max_examples=200,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@contextlib.contextmanager
def collections_only_when_asked() -> Iterator[None]:
    """Collect garbage only in gc.collect() calls, and make those cheap.

    A receiver can outlive its last strong reference in a garbage cycle (a
    traceback frame of an earlier send_robust(), say). An automatic collection
    between the Django and the tocsin half of an operation would then kill it
    half-way; with automatic collection off, it dies in the next drop's
    gc.collect(), for both signals at once. Freezing what exists before the run
    keeps each of those collections to the objects the machine creates.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


@pytest.fixture
def quiet_loggers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Silence the send_robust() failure logs, thousands of them."""
    for name in (DJANGO.logger, TOCSIN.logger):
        monkeypatch.setattr(logging.getLogger(name), "disabled", True)


@pytest.mark.usefixtures("quiet_loggers")
def test_random_operation_sequences_match_django() -> None:
    """Random connect/disconnect/send/drop sequences give the same results on both signals."""
    with collections_only_when_asked():
        run_state_machine_as_test(SignalMachine, settings=SETTINGS)


@pytest.mark.usefixtures("quiet_loggers")
def test_random_sequences_with_muting_match_django() -> None:
    """The same, with receivers saved, cleared and restored as factory_boy's mute_signals does."""
    with collections_only_when_asked():
        run_state_machine_as_test(
            MutingSignalMachine, settings=settings(SETTINGS, max_examples=100)
        )
