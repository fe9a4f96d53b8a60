"""Tests of receiver priority: ``Signal.connect(receiver, ..., priority=N)``.

Receivers with a higher priority are called first; equal priorities (0 by
default) keep connection order, so a program that never passes ``priority``
sees Django's order. Sync receivers still come before async ones, whatever
their priorities. The option survives everything that copies connections
(``receivers`` rows, their ``_replace()``), and a priority-0 connection keeps
the compact registry entry.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from _named_receivers import NamedReceivers, responses
from _named_receivers import NamedReceivers as Calls
from tocsin import Signal, receiver
from tocsin._connection import Connection as _Connection
from tocsin._django_rows import ExtendedRow as _ExtendedRow
from tocsin.oncommit import Deferred
from tocsin.testing import FakeTransaction


@pytest.fixture
def calls() -> Calls:
    return NamedReceivers(__name__)


class Sender:
    """A weakly referenceable object to send from."""


# -- order ----------------------------------------------------------------------------


def test_higher_priority_is_called_first(calls: Calls) -> None:
    signal = Signal()
    signal.connect(calls.sync("low"), priority=1)
    signal.connect(calls.sync("high"), priority=10)
    signal.connect(calls.sync("middle"), priority=5)
    assert responses(signal.send(None)) == ["high", "middle", "low"]
    assert calls.names == ["high", "middle", "low"]


def test_equal_priorities_keep_connection_order(calls: Calls) -> None:
    signal = Signal()
    for name in ("a", "b", "c"):
        signal.connect(calls.sync(name), priority=3)
    signal.connect(calls.sync("first"), priority=7)
    for name in ("d", "e"):
        signal.connect(calls.sync(name), priority=3)
    assert responses(signal.send(None)) == ["first", "a", "b", "c", "d", "e"]


def test_negative_priorities_come_after_the_default(calls: Calls) -> None:
    signal = Signal()
    signal.connect(calls.sync("last"), priority=-10)
    signal.connect(calls.sync("later"), priority=-1)
    signal.connect(calls.sync("default"))
    signal.connect(calls.sync("early"), priority=1)
    assert responses(signal.send(None)) == ["early", "default", "later", "last"]


def test_send_robust_follows_priorities(calls: Calls) -> None:
    signal = Signal()
    signal.connect(calls.sync("low"))
    signal.connect(calls.sync("high"), priority=2)
    assert responses(signal.send_robust(None)) == ["high", "low"]


def test_explicit_priority_zero_is_the_default(calls: Calls) -> None:
    signal = Signal()
    signal.connect(calls.sync("a"))
    signal.connect(calls.sync("b"), priority=0)
    signal.connect(calls.sync("c"))
    assert responses(signal.send(None)) == ["a", "b", "c"]


def test_sync_receivers_still_come_before_async_ones_in_send(calls: Calls) -> None:
    signal = Signal()
    signal.connect(calls.async_("async low"), priority=-5)
    signal.connect(calls.async_("async high"), priority=100)
    signal.connect(calls.sync("sync low"), priority=-5)
    signal.connect(calls.sync("sync high"), priority=1)
    # The async receivers' responses follow the sync ones', in priority order.
    assert responses(signal.send(None)) == ["sync high", "sync low", "async high", "async low"]
    assert calls.names[:2] == ["sync high", "sync low"]


def test_sync_receivers_still_come_before_async_ones_in_asend(calls: Calls) -> None:
    signal = Signal()
    signal.connect(calls.async_("async high"), priority=100)
    signal.connect(calls.sync("sync low"), priority=-5)
    signal.connect(calls.async_("async low"), priority=-5)
    signal.connect(calls.sync("sync high"), priority=1)
    result = asyncio.run(signal.asend(None))
    assert responses(result) == ["sync high", "sync low", "async high", "async low"]
    assert calls.names[:2] == ["sync high", "sync low"]
    result = asyncio.run(signal.asend_robust(None))
    assert responses(result) == ["sync high", "sync low", "async high", "async low"]


def test_async_receivers_run_in_priority_order(calls: Calls) -> None:
    signal = Signal()
    signal.connect(calls.async_("low"), priority=1)
    signal.connect(calls.async_("high"), priority=2)
    asyncio.run(signal.asend(None))
    # Each receiver runs up to its first await when its task starts.
    assert calls.names == ["high", "low"]


def test_on_commit_receivers_run_after_the_commit_in_priority_order(calls: Calls) -> None:
    signal = Signal()
    signal.connect(calls.sync("low"), on_commit=True, priority=-1)
    signal.connect(calls.sync("default"), on_commit=True)
    signal.connect(calls.sync("high"), on_commit=True, priority=1)
    signal.connect(calls.sync("now"), priority=-50)
    with FakeTransaction():
        result = signal.send(None)
        # The ordinary receiver is called now; the deferred ones follow it, in order.
        assert calls.names == ["now"]
        assert [r.__name__ for r, _ in result] == ["now", "high", "default", "low"]
        assert all(isinstance(response, Deferred) for response in responses(result)[1:])
    assert calls.names == ["now", "high", "default", "low"]


def test_on_commit_receivers_outside_a_transaction_keep_priority_order(calls: Calls) -> None:
    signal = Signal()
    signal.connect(calls.sync("low"), on_commit=True, priority=-1)
    signal.connect(calls.sync("high"), on_commit=True, priority=1)
    assert responses(signal.send(None)) == ["high", "low"]


def test_sender_filtered_receivers_follow_priorities(calls: Calls) -> None:
    signal = Signal()
    sender, other = Sender(), Sender()
    signal.connect(calls.sync("any low"), priority=-1)
    signal.connect(calls.sync("sender default"), sender=sender)
    signal.connect(calls.sync("other high"), sender=other, priority=50)
    signal.connect(calls.sync("sender high"), sender=sender, priority=9)
    signal.connect(calls.sync("any high"), priority=10)
    assert responses(signal.send(sender)) == [
        "any high",
        "sender high",
        "sender default",
        "any low",
    ]
    assert responses(signal.send(other)) == ["other high", "any high", "any low"]
    assert responses(signal.send(None)) == ["any high", "any low"]


def test_strong_and_bound_method_receivers_follow_priorities() -> None:
    class Listener:
        def method(self, **kwargs: Any) -> str:
            return "method"

    listener = Listener()
    signal = Signal()
    signal.connect(lambda **kwargs: "lambda", weak=False, priority=-1)
    signal.connect(listener.method, priority=2)
    signal.connect(lambda **kwargs: "strong", weak=False, dispatch_uid="strong", priority=1)
    assert responses(signal.send(None)) == ["method", "strong", "lambda"]


def test_priority_zero_connections_keep_djangos_order() -> None:
    """Without priorities, the order is exactly django.dispatch's."""
    django_dispatch = pytest.importorskip("django.dispatch")
    sender = Sender()
    order: dict[str, list[str]] = {"tocsin": [], "django": []}

    def connect_all(signal: Any, names: list[str]) -> list[Callable[..., None]]:
        held = []
        for index in range(12):
            name = f"r{index}"

            def receive(name: str = name, **kwargs: Any) -> None:
                names.append(name)

            held.append(receive)
            signal.connect(receive, sender=sender if index % 3 == 0 else None)
        return held

    signals = {"tocsin": Signal(), "django": django_dispatch.Signal()}
    held = {name: connect_all(signal, order[name]) for name, signal in signals.items()}
    for signal in signals.values():
        signal.send(sender)
        signal.send(None)
    assert order["tocsin"] == order["django"]
    assert order["tocsin"][:12] == [f"r{i}" for i in range(12)]
    assert held  # the receivers lived until here


# -- the option survives copies of the connections ------------------------------------


def test_priority_survives_saving_and_restoring_receivers(calls: Calls) -> None:
    signal = Signal()
    sender = Sender()
    signal.connect(calls.sync("low"), priority=-3)
    signal.connect(calls.sync("default"))
    signal.connect(calls.sync("high"), priority=3)
    signal.connect(calls.sync("sender high"), sender=sender, priority=2)
    signal.connect(calls.async_("async high"), priority=4)
    signal.connect(calls.sync("on commit"), on_commit=True, priority=8)
    # on-commit receivers outside a transaction run with the sync ones, after them
    expected_now = ["high", "sender high", "default", "low", "on commit", "async high"]
    assert responses(signal.send(sender)) == expected_now

    rows = signal.receivers
    signal.receivers = []
    assert signal.send(sender) == []
    signal.receivers = rows
    assert responses(signal.send(sender)) == expected_now
    priorities = {row.receiver().__name__: getattr(row, "priority", 0) for row in rows}
    assert priorities == {
        "low": -3,
        "default": 0,
        "high": 3,
        "sender high": 2,
        "async high": 4,
        "on commit": 8,
    }
    # The receiver that waits for the commit is still one.
    with FakeTransaction():
        result = signal.send(sender)
    assert [r.__name__ for r, _ in result][-1] == "on commit"
    assert isinstance(result[-1][1], Deferred)


def test_priority_survives_a_copied_list_of_rows(calls: Calls) -> None:
    signal = Signal()
    signal.connect(calls.sync("default"))
    signal.connect(calls.sync("high"), priority=1)
    saved = list(signal.receivers)
    signal.disconnect(calls.receivers["high"])
    assert responses(signal.send(None)) == ["default"]
    signal.receivers = saved
    assert responses(signal.send(None)) == ["high", "default"]


def test_priority_survives_replace(calls: Calls) -> None:
    signal = Signal()
    signal.connect(calls.sync("default"))
    signal.connect(calls.sync("high"), priority=5)
    rows = signal.receivers
    row = rows[1]
    assert type(row) is _ExtendedRow
    replaced = row._replace(is_async=False)
    assert type(replaced) is _ExtendedRow
    assert replaced.priority == 5
    assert replaced == row
    # A replaced receiver keeps the row's priority.
    new = calls.sync("new")
    other = Signal()
    other.receivers = [rows[0], row._replace(receiver=weakref.ref(new))]
    assert responses(other.send(None)) == ["new", "default"]


def test_priority_survives_changing_the_receivers_list_in_place(calls: Calls) -> None:
    signal = Signal()
    signal.connect(calls.sync("default"))
    signal.connect(calls.sync("high"), priority=5)
    signal.connect(calls.sync("other"))
    rows = signal.receivers
    del rows[2]  # written back, as in Django
    assert responses(signal.send(None)) == ["high", "default"]


def test_rows_without_priority_are_plain_django_rows(calls: Calls) -> None:
    signal = Signal()
    signal.connect(calls.sync("default"))
    signal.connect(calls.sync("zero"), priority=0)
    assert [type(row).__name__ for row in signal.receivers] == ["ReceiverEntry"] * 2


# -- changing a priority ---------------------------------------------------------------


def test_reconnecting_with_a_new_priority(calls: Calls) -> None:
    signal = Signal()
    first = calls.sync("first")
    signal.connect(first, priority=10)
    signal.connect(calls.sync("second"))
    assert responses(signal.send(None)) == ["first", "second"]
    assert signal.disconnect(first)
    signal.connect(first, priority=-10)
    assert responses(signal.send(None)) == ["second", "first"]
    assert signal.disconnect(first)
    signal.connect(first, priority=1)
    assert responses(signal.send(None)) == ["first", "second"]


def test_connecting_again_with_another_priority_is_ignored(calls: Calls) -> None:
    """As for any duplicate connection, the first one wins and keeps its priority."""
    signal = Signal()
    first = calls.sync("first")
    signal.connect(first, priority=-1)
    signal.connect(calls.sync("second"))
    signal.connect(first, priority=100)
    assert responses(signal.send(None)) == ["second", "first"]
    assert len(signal.receivers) == 2


def test_dispatch_uid_connection_with_priority(calls: Calls) -> None:
    signal = Signal()
    signal.connect(calls.sync("default"))
    signal.connect(calls.sync("high"), dispatch_uid="uid", priority=1)
    assert responses(signal.send(None)) == ["high", "default"]
    assert signal.disconnect(dispatch_uid="uid")
    assert responses(signal.send(None)) == ["default"]


# -- the argument ----------------------------------------------------------------------


@pytest.mark.parametrize("priority", [1.0, 0.0, "1", None, True, False])
def test_priority_must_be_an_int(priority: Any, calls: Calls) -> None:
    signal = Signal()
    with pytest.raises(TypeError, match="priority must be an int"):
        signal.connect(calls.sync("r"), priority=priority)
    assert signal.receivers == []
    with pytest.raises(TypeError, match="priority must be an int"):
        receiver(signal, priority=priority)(calls.sync("decorated"))
    assert signal.receivers == []


def test_int_subclass_priority_is_refused(calls: Calls) -> None:
    class Level(int):
        pass

    signal = Signal()
    with pytest.raises(TypeError, match="priority must be an int"):
        signal.connect(calls.sync("r"), priority=Level(1))


def test_large_priorities(calls: Calls) -> None:
    signal = Signal()
    signal.connect(calls.sync("small"), priority=-(2**80))
    signal.connect(calls.sync("big"), priority=2**80)
    signal.connect(calls.sync("default"))
    assert responses(signal.send(None)) == ["big", "default", "small"]


# -- @receiver ------------------------------------------------------------------------


def test_receiver_decorator_passes_priority() -> None:
    first, second = Signal(), Signal()

    @receiver(first)
    def plain(**kwargs: Any) -> str:
        return "plain"

    @receiver([first, second], priority=4)
    def urgent(**kwargs: Any) -> str:
        return "urgent"

    @receiver(second, priority=-4)
    def late(**kwargs: Any) -> str:
        return "late"

    @receiver(second)
    def middle(**kwargs: Any) -> str:
        return "middle"

    assert responses(first.send(None)) == ["urgent", "plain"]
    assert responses(second.send(None)) == ["urgent", "middle", "late"]


# -- memory ---------------------------------------------------------------------------


def test_priority_zero_receiver_takes_the_compact_entry(calls: Calls) -> None:
    signal = Signal()
    signal.connect(calls.sync("default"))
    signal.connect(calls.sync("zero"), priority=0)
    entries = list(signal._registry.values())
    assert [type(entry) for entry in entries] == [weakref.ref, weakref.ref]
    assert [entry() for entry in entries] == [calls.receivers["default"], calls.receivers["zero"]]


@pytest.mark.parametrize("priority", [1, -1])
def test_nonzero_priority_receiver_takes_a_connection(priority: int, calls: Calls) -> None:
    signal = Signal()
    signal.connect(calls.sync("r"), priority=priority)
    (entry,) = signal._registry.values()
    assert type(entry) is _Connection
    assert entry.priority == priority
    assert entry.ref() is calls.receivers["r"]


def test_restored_priority_zero_rows_take_the_compact_entry(calls: Calls) -> None:
    signal = Signal()
    signal.connect(calls.sync("default"))
    signal.connect(calls.sync("high"), priority=1)
    signal.receivers = signal.receivers
    default, high = signal._registry.values()
    assert type(default) is weakref.ref
    assert type(high) is _Connection
    assert high.priority == 1


def test_a_weak_receiver_with_priority_is_still_weak() -> None:
    signal = Signal()

    def collected(**kwargs: Any) -> None:
        pass

    signal.connect(collected, priority=3)
    del collected
    assert signal.send(None) == []
    assert signal.receivers == []


def test_async_on_commit_receivers_with_priority(calls: Calls) -> None:
    signal = Signal()
    signal.connect(calls.async_("async late"), on_commit=True, priority=-1)
    signal.connect(calls.async_("async early"), on_commit=True, priority=1)
    signal.connect(calls.sync("sync"), on_commit=True)
    with FakeTransaction():
        result = asyncio.run(signal.asend(None))
        assert [r.__name__ for r, _ in result] == ["async early", "sync", "async late"]
        assert calls.names == []
    assert calls.names == ["async early", "sync", "async late"]
