"""Memory tests of ``tocsin.dispatcher`` and ``tocsin._refs``: what a signal keeps alive.

A weakly connected receiver must be kept alive by nothing but its owner, and
connecting and disconnecting must not leave anything behind.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import tracemalloc
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tocsin import Signal


class Owner:
    """An object whose bound method is connected as a receiver."""

    def method(self, **kwargs: Any) -> str:
        return "method"

    async def async_method(self, **kwargs: Any) -> str:
        return "async method"


class CallableObject:
    """A callable instance connected as a receiver."""

    def __call__(self, **kwargs: Any) -> str:
        return "called"


class Sender:
    """A weakly referenceable sender."""


def make_function() -> Callable[..., str]:
    """A fresh function that nothing but the caller references."""

    def receive(**kwargs: Any) -> str:
        return "function"

    return receive


def make_async_function() -> Callable[..., Any]:
    """A fresh coroutine function that nothing but the caller references."""

    async def receive(**kwargs: Any) -> str:
        return "async function"

    return receive


# What to connect (the receiver, and the object whose death must disconnect it).
Target = tuple[Callable[..., Any], object]


def function_target() -> Target:
    receive = make_function()
    return receive, receive


def async_function_target() -> Target:
    receive = make_async_function()
    return receive, receive


def method_target() -> Target:
    owner = Owner()
    return owner.method, owner


def async_method_target() -> Target:
    owner = Owner()
    return owner.async_method, owner


def callable_object_target() -> Target:
    handler = CallableObject()
    return handler, handler


TARGETS = {
    "function": function_target,
    "async function": async_function_target,
    "bound method": method_target,
    "async bound method": async_method_target,
    "callable object": callable_object_target,
}


def let_the_sync_thread_move_on() -> None:
    """Run one more sync receiver through asend(), on the one thread that runs them.

    That thread (asgiref's or tocsin's single-thread executor) drops its
    reference to the job it finished, which holds the receivers it called and
    their responses, only when it moves on: for a moment after asend() has
    returned, a sync receiver may still be alive. Running a second job makes
    sure the first is gone.
    """

    def noop(**kwargs: Any) -> None:
        pass

    flush = Signal()
    flush.connect(noop)
    asyncio.run(flush.asend(None))


def use_signal(signal: Signal, how: str, sender: object) -> None:
    """Exercise *signal* in one of the ways a caller may use it."""
    if how == "connect only":
        return
    if how == "send":
        assert len(signal.send(sender)) == 1
    elif how == "send_robust":
        assert len(signal.send_robust(sender)) == 1
    elif how == "asend":
        assert len(asyncio.run(signal.asend(sender))) == 1
        let_the_sync_thread_move_on()
    elif how == "asend_robust":
        assert len(asyncio.run(signal.asend_robust(sender))) == 1
        let_the_sync_thread_move_on()
    elif how == "has_listeners":
        assert signal.has_listeners(sender)
    elif how == "receivers":
        assert len(signal.receivers) == 1
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize(
    "how",
    ["connect only", "send", "send_robust", "asend", "asend_robust", "has_listeners", "receivers"],
)
@pytest.mark.parametrize("filtered", [False, True], ids=["any sender", "one sender"])
def test_no_strong_reference_is_kept_to_a_weak_receiver(
    target: str, how: str, filtered: bool
) -> None:
    """A weakly connected receiver dies once its owner lets go, however the signal was used."""
    signal = Signal()
    sender = Sender()
    receive, owner = TARGETS[target]()
    signal.connect(receive, sender=sender if filtered else None)
    use_signal(signal, how, sender)
    witness = weakref.ref(owner)
    del receive, owner
    gc.collect()
    assert witness() is None
    assert signal.send(sender) == []
    assert signal.receivers == []


def test_no_strong_reference_is_kept_to_a_sender() -> None:
    """Connecting for a sender and sending from it does not keep the sender alive."""
    signal = Signal(use_caching=True)
    sender = Sender()
    signal.connect(make_function(), sender=sender, weak=False)
    signal.send(sender)
    signal.has_listeners(sender)
    witness = weakref.ref(sender)
    del sender
    gc.collect()
    assert witness() is None


def test_strong_receiver_of_a_dead_sender_is_released() -> None:
    """A receiver connected with weak=False for a sender is freed once that sender is gone."""
    signal = Signal()
    sender = Sender()
    handler = CallableObject()
    signal.connect(handler, sender=sender, weak=False)
    signal.send(sender)
    witness = weakref.ref(handler)
    del handler, sender
    gc.collect()
    signal.connect(make_function(), weak=False)  # purges the dead connection
    gc.collect()
    assert witness() is None


def test_exceptions_returned_by_send_robust_do_not_pin_weak_receivers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once the caller drops send_robust()'s results, a failing weak receiver can die."""
    # pytest's log capture would keep the logged traceback, and the receiver with it.
    monkeypatch.setattr(logging.getLogger("tocsin"), "disabled", True)
    signal = Signal()

    class Failing:
        def __call__(self, **kwargs: Any) -> None:
            raise ValueError("failure")

    handler = Failing()
    signal.connect(handler)
    results = signal.send_robust(None)
    assert isinstance(results[0][1], ValueError)
    witness = weakref.ref(handler)
    del handler, results
    gc.collect()
    assert witness() is None


# -- nothing left behind -------------------------------------------------------------------


def retained_bytes(work: Callable[[int], None], iterations: int) -> int:
    """Bytes that ``work(iterations)`` leaves allocated, after garbage collection (tracemalloc)."""
    work(100)  # warm up: first-time allocations (caches, specialisation) are not leaks
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        work(iterations)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return after - before


def connect_disconnect_loops(signal: Signal) -> Iterator[tuple[str, Callable[[int], None]]]:
    """Loops that connect and disconnect in the ways a caller may."""
    owner, sender = Owner(), Sender()
    receive, async_receive = make_function(), make_async_function()

    def weak_function(n: int) -> None:
        for _ in range(n):
            signal.connect(receive)
            signal.disconnect(receive)

    def weak_method(n: int) -> None:
        for _ in range(n):
            signal.connect(owner.method)
            signal.disconnect(owner.method)

    def strong_for_sender(n: int) -> None:
        for _ in range(n):
            signal.connect(receive, sender=sender, weak=False)
            signal.disconnect(receive, sender=sender)

    def dispatch_uid(n: int) -> None:
        for _ in range(n):
            signal.connect(receive, dispatch_uid="uid")
            signal.disconnect(dispatch_uid="uid")

    def async_receiver(n: int) -> None:
        for _ in range(n):
            signal.connect(async_receive)
            signal.disconnect(async_receive)

    def with_sends(n: int) -> None:
        for _ in range(n):
            signal.connect(receive)
            signal.connect(owner.method, sender=sender)
            signal.send(sender)
            signal.send(None)
            signal.disconnect(receive)
            signal.disconnect(owner.method, sender=sender)

    yield "weak function", weak_function
    yield "weak bound method", weak_method
    yield "strong receiver for a sender", strong_for_sender
    yield "dispatch_uid", dispatch_uid
    yield "async receiver", async_receiver
    yield "connect, send and disconnect", with_sends


@pytest.mark.parametrize("loop", [name for name, _ in connect_disconnect_loops(Signal())])
def test_connect_disconnect_loop_retains_nothing(loop: str) -> None:
    """10,000 rounds of connect and disconnect leave (next to) no memory behind."""
    signal = Signal()
    signal.connect(make_function(), weak=False)  # a receiver that stays throughout
    work = dict(connect_disconnect_loops(signal))[loop]
    assert retained_bytes(work, 10_000) < 1024


def test_short_lived_receivers_retain_nothing() -> None:
    """10,000 receivers connected weakly and then dropped leave (next to) no memory behind."""
    signal = Signal()

    def work(n: int) -> None:
        for _ in range(n):
            signal.connect(make_function())  # dies at once
            signal.connect(Owner().method)  # dies at once too
            signal.send(None)

    assert retained_bytes(work, 10_000) < 1024


# -- purging dead connections -----------------------------------------------------------------


def test_dead_receivers_are_purged_from_the_registry_on_next_connect() -> None:
    """Connections of collected receivers are removed from the registry by the next connect()."""
    signal = Signal()
    keep = make_function()
    signal.connect(keep)
    owners = [Owner() for _ in range(50)]
    functions = [make_function() for _ in range(50)]
    for owner, function in zip(owners, functions, strict=True):
        signal.connect(owner.method)
        signal.connect(function, sender=owner)
    assert len(signal._registry) == 101
    del owners, functions, owner, function
    gc.collect()
    # Collection only flags the signal; the next connect() purges under its lock.
    other = make_function()
    signal.connect(other)
    assert list(signal._registry.values()) == [weakref.ref(keep), weakref.ref(other)]


def test_dead_senders_are_purged_from_the_registry_on_next_connect() -> None:
    """Connections for collected senders are removed by the next connect(), even strong ones."""
    signal = Signal()
    keep = make_function()
    senders = [Sender() for _ in range(50)]
    for sender in senders:
        signal.connect(keep, sender=sender, weak=False)
    assert len(signal._registry) == 50
    del senders, sender
    gc.collect()
    signal.connect(keep)
    assert len(signal._registry) == 1
    assert signal.send(Sender()) == [(keep, "function")]


def test_dead_receivers_are_purged_by_disconnect_and_send() -> None:
    """disconnect() and the first send() after a collection purge dead connections too."""
    signal = Signal()
    keep = make_function()
    signal.connect(keep)
    doomed = make_function()
    signal.connect(doomed)
    del doomed
    gc.collect()
    signal.send(None)
    assert len(signal._registry) == 1
    doomed = make_function()
    signal.connect(doomed)
    del doomed
    gc.collect()
    signal.disconnect(keep)
    assert signal._registry == {}
