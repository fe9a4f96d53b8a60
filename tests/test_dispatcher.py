"""Tests of ``tocsin.dispatcher``: ``Signal`` and ``receiver``, from sync code.

Each test reads as a small example of how a signal behaves. Async sending is
covered in ``test_async.py``, memory in ``test_memory.py`` and concurrency in
``test_threads.py``.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import threading
import types
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from tocsin import Signal, receiver


def on_any(**kwargs: Any) -> str:
    return "on_any"


def on_other(**kwargs: Any) -> str:
    return "on_other"


def on_third(**kwargs: Any) -> str:
    return "on_third"


def echo(**kwargs: Any) -> dict[str, Any]:
    return kwargs


def fail(**kwargs: Any) -> None:
    raise ValueError("receiver failed")


class Sender:
    """A plain, weakly referenceable object to send from."""


class Listener:
    """An object whose methods are connected as receivers."""

    def method(self, **kwargs: Any) -> str:
        return "method"

    @classmethod
    def class_method(cls, **kwargs: Any) -> str:
        return "class_method"


class CallableObject:
    """A callable instance, connected as a receiver."""

    def __call__(self, **kwargs: Any) -> str:
        return "called"


class AsyncCallableObject:
    """A callable instance whose ``__call__`` is a coroutine function."""

    async def __call__(self, **kwargs: Any) -> str:
        return "awaited"


class Failing:
    """A callable object, and a method, that both raise."""

    def __call__(self, **kwargs: Any) -> None:
        raise ValueError("callable object failed")

    def method(self, **kwargs: Any) -> None:
        raise ValueError("method failed")


class SlottedCallable:
    """A callable that cannot be weakly referenced (no ``__weakref__`` slot)."""

    __slots__ = ()

    def __call__(self, **kwargs: Any) -> str:
        return "slotted"


def responses_of(signal: Signal, sender: object = None) -> list[Any]:
    """The responses of ``signal.send(sender)``, without the receivers."""
    return [response for _, response in signal.send(sender)]


# -- connect, send, disconnect ----------------------------------------------------------


def test_send_calls_receiver_with_signal_sender_and_named_arguments() -> None:
    """A receiver is called with ``signal``, ``sender`` and the named arguments of send()."""
    signal = Signal()
    signal.connect(echo)
    sender = Sender()
    assert signal.send(sender, colour="red") == [
        (echo, {"signal": signal, "sender": sender, "colour": "red"})
    ]


def test_send_without_receivers_returns_empty_list() -> None:
    """Sending a signal nobody listens to does nothing and returns ``[]``."""
    signal = Signal()
    assert signal.send(None) == []
    assert signal.send_robust(None) == []


def test_receivers_are_called_in_connection_order() -> None:
    """Receivers are called in the order they were connected."""
    signal = Signal()
    for func in (on_third, on_any, on_other):
        signal.connect(func)
    assert responses_of(signal) == ["on_third", "on_any", "on_other"]


def test_connecting_twice_is_ignored_and_keeps_first_place() -> None:
    """Connecting a receiver again is ignored: it is still called once, in its first place."""
    signal = Signal()
    signal.connect(on_any)
    signal.connect(on_other)
    signal.connect(on_any)
    assert responses_of(signal) == ["on_any", "on_other"]


def test_disconnect_removes_receiver_and_reports_it() -> None:
    """disconnect() returns True when it removed a connection and False otherwise."""
    signal = Signal()
    signal.connect(on_any)
    assert signal.disconnect(on_any) is True
    assert signal.disconnect(on_any) is False
    assert signal.send(None) == []


def test_disconnect_needs_the_sender_given_to_connect() -> None:
    """disconnect(r) leaves connect(r, sender=s) alone; disconnect(r, sender=s) removes it."""
    signal = Signal()
    sender = Sender()
    signal.connect(on_any, sender=sender)
    assert signal.disconnect(on_any) is False
    assert responses_of(signal, sender) == ["on_any"]
    assert signal.disconnect(on_any, sender=sender) is True
    assert signal.send(sender) == []


def test_has_listeners() -> None:
    """has_listeners() says whether anything is connected; by default only any-sender ones count."""
    signal = Signal()
    sender = Sender()
    assert not signal.has_listeners()
    signal.connect(on_any, sender=sender)
    assert signal.has_listeners(sender)
    assert not signal.has_listeners()
    assert not signal.has_listeners(Sender())
    signal.connect(on_other)
    assert signal.has_listeners()
    assert signal.has_listeners(Sender())


def test_exception_from_send_propagates_and_stops_the_send() -> None:
    """An exception raised by a receiver leaves send() at once; later receivers are not called."""
    signal = Signal()
    called = []
    signal.connect(fail)
    signal.connect(lambda **kwargs: called.append(1), weak=False)
    with pytest.raises(ValueError, match="receiver failed"):
        signal.send(None)
    assert called == []


def test_send_robust_returns_exceptions_and_calls_every_receiver() -> None:
    """send_robust() puts a receiver's exception in place of its response and goes on."""
    signal = Signal()
    signal.connect(fail)
    signal.connect(on_any)
    [(first, error), (second, response)] = signal.send_robust(None)
    assert first is fail
    assert isinstance(error, ValueError)
    assert error.__traceback__ is not None
    assert (second, response) == (on_any, "on_any")


def test_send_robust_lets_base_exceptions_through() -> None:
    """send_robust() catches Exception only: a KeyboardInterrupt still propagates."""
    signal = Signal()

    def interrupt(**kwargs: Any) -> None:
        raise KeyboardInterrupt

    signal.connect(interrupt)
    with pytest.raises(KeyboardInterrupt):
        signal.send_robust(None)


def test_receiver_connected_during_send_is_not_called_by_that_send() -> None:
    """A receiver connected or disconnected by another receiver takes effect from the next send."""
    signal = Signal()

    def connector(**kwargs: Any) -> str:
        signal.connect(on_other)
        signal.disconnect(on_third)
        return "connector"

    signal.connect(connector)
    signal.connect(on_third)
    assert responses_of(signal) == ["connector", "on_third"]
    assert responses_of(signal) == ["connector", "on_other"]


# -- sender filtering -------------------------------------------------------------------


def test_sender_filtered_receiver_only_hears_its_sender() -> None:
    """A receiver connected with sender=s is called for s only, compared by identity."""
    signal = Signal()
    sender, other = Sender(), Sender()
    signal.connect(on_any)
    signal.connect(on_other, sender=sender)
    assert responses_of(signal, sender) == ["on_any", "on_other"]
    assert responses_of(signal, other) == ["on_any"]
    assert responses_of(signal, None) == ["on_any"]


def test_same_receiver_for_two_senders_is_two_connections() -> None:
    """One receiver connected for two senders hears both, and each can be disconnected alone."""
    signal = Signal()
    first, second = Sender(), Sender()
    signal.connect(on_any, sender=first)
    signal.connect(on_any, sender=second)
    assert responses_of(signal, first) == ["on_any"]
    assert responses_of(signal, second) == ["on_any"]
    signal.disconnect(on_any, sender=first)
    assert responses_of(signal, first) == []
    assert responses_of(signal, second) == ["on_any"]


def test_sender_filtered_receivers_keep_connection_order_with_others() -> None:
    """Filtered and any-sender receivers are called together, in connection order."""
    signal = Signal()
    sender = Sender()
    signal.connect(on_third, sender=sender)
    signal.connect(on_any)
    signal.connect(on_other, sender=sender)
    assert responses_of(signal, sender) == ["on_third", "on_any", "on_other"]


def test_class_as_sender() -> None:
    """A class works as a sender, as Django's model signals use it."""
    signal = Signal()
    signal.connect(on_any, sender=Sender)
    assert responses_of(signal, Sender) == ["on_any"]
    assert responses_of(signal, Listener) == []


# -- dispatch_uid -----------------------------------------------------------------------


def test_dispatch_uid_deduplicates_different_receivers() -> None:
    """A second connection with the same dispatch_uid is ignored, even for another receiver."""
    signal = Signal()
    signal.connect(on_any, dispatch_uid="myapp.handler")
    signal.connect(on_other, dispatch_uid="myapp.handler")
    assert responses_of(signal) == ["on_any"]


def test_disconnect_by_dispatch_uid() -> None:
    """disconnect(dispatch_uid=...) removes the receiver connected with that uid."""
    signal = Signal()
    signal.connect(on_any, dispatch_uid="myapp.handler")
    assert signal.disconnect(dispatch_uid="myapp.handler") is True
    assert signal.send(None) == []


def test_dispatch_uid_is_per_sender() -> None:
    """The same dispatch_uid with different senders makes separate connections."""
    signal = Signal()
    first, second = Sender(), Sender()
    signal.connect(on_any, sender=first, dispatch_uid="uid")
    signal.connect(on_other, sender=second, dispatch_uid="uid")
    assert responses_of(signal, first) == ["on_any"]
    assert responses_of(signal, second) == ["on_other"]
    assert signal.disconnect(sender=second, dispatch_uid="uid") is True
    assert responses_of(signal, first) == ["on_any"]


def test_dispatch_uid_and_plain_connection_of_same_receiver_are_distinct() -> None:
    """A receiver connected once plainly and once with a dispatch_uid is called twice."""
    signal = Signal()
    signal.connect(on_any)
    signal.connect(on_any, dispatch_uid="uid")
    assert responses_of(signal) == ["on_any", "on_any"]


# -- weak and strong references ---------------------------------------------------------


def test_weak_function_vanishes_after_gc() -> None:
    """A weakly connected function is disconnected once it is garbage collected."""
    signal = Signal()

    def local(**kwargs: Any) -> str:
        return "local"

    signal.connect(local)
    assert responses_of(signal) == ["local"]
    del local
    gc.collect()
    assert signal.send(None) == []
    assert not signal.has_listeners()


def test_weak_bound_method_lives_as_long_as_its_object() -> None:
    """A bound method stays connected while its object lives, though the method is a temporary."""
    signal = Signal()
    listener = Listener()
    signal.connect(listener.method)
    gc.collect()
    assert responses_of(signal) == ["method"]
    assert signal.disconnect(listener.method) is True
    signal.connect(listener.method)
    del listener
    gc.collect()
    assert signal.send(None) == []


def test_weak_classmethod_vanishes_with_its_class() -> None:
    """A classmethod receiver stays while its class lives and goes when the class is collected."""
    signal = Signal()

    class Local:
        @classmethod
        def handler(cls, **kwargs: Any) -> str:
            return cls.__name__

    signal.connect(Local.handler)
    gc.collect()
    assert responses_of(signal) == ["Local"]
    del Local
    gc.collect()
    assert signal.send(None) == []


def test_weak_classmethod_of_module_level_class_stays() -> None:
    """A classmethod of a long-lived class stays connected."""
    signal = Signal()
    signal.connect(Listener.class_method)
    gc.collect()
    assert responses_of(signal) == ["class_method"]
    assert signal.disconnect(Listener.class_method) is True


def test_weak_partial_vanishes_at_once() -> None:
    """A partial that nothing else references is gone as soon as connect() returns."""
    signal = Signal()
    signal.connect(functools.partial(echo, extra=1))
    gc.collect()
    assert signal.send(None) == []


def test_weak_partial_held_elsewhere_stays() -> None:
    """A partial that is still referenced stays connected and is called with its arguments."""
    signal = Signal()
    handler = functools.partial(echo, extra=1)
    signal.connect(handler)
    [(called, response)] = signal.send(None)
    assert called is handler
    assert response["extra"] == 1


def test_weak_false_keeps_receivers_alive() -> None:
    """With weak=False the signal keeps lambdas, partials and methods of dropped objects alive."""
    signal = Signal()
    signal.connect(lambda **kwargs: "lambda", weak=False)
    signal.connect(functools.partial(on_any), weak=False)
    signal.connect(Listener().method, weak=False)
    gc.collect()
    assert responses_of(signal) == ["lambda", "on_any", "method"]


def test_bound_method_whose_function_only_it_references_dies_with_it() -> None:
    """A bound method whose __func__ nothing else holds goes with the method, as in WeakMethod."""
    signal = Signal()
    listener = Listener()

    def make_method() -> Callable[..., Any]:
        def detached(self: Listener, **kwargs: Any) -> str:
            return "detached"

        return types.MethodType(detached, listener)

    method = make_method()
    signal.connect(method)
    assert responses_of(signal) == ["detached"]
    expected = weakref.WeakMethod(method)
    del method
    gc.collect()
    assert expected() is None
    assert signal.send(None) == []


def test_dead_sender_purges_its_receivers() -> None:
    """When a sender is collected, the receivers connected for it are removed, even strong ones."""
    signal = Signal()
    sender = Sender()
    signal.connect(on_any, sender=sender, weak=False)
    signal.connect(on_other, sender=sender)
    signal.connect(on_third)
    assert len(signal.receivers) == 3
    del sender
    gc.collect()
    [row] = signal.receivers
    assert row.receiver() is on_third
    assert responses_of(signal, Sender()) == ["on_third"]


def held_by_this_thread(signal: Signal) -> bool:
    """Whether the calling thread holds ``signal.lock`` (a reentrant lock)."""
    acquired: list[bool] = []

    def try_lock() -> None:
        got = signal.lock.acquire(blocking=False)
        if got:
            signal.lock.release()
        acquired.append(got)

    thread = threading.Thread(target=try_lock)
    thread.start()
    thread.join()
    return not acquired[0]


def finalized_receiver(signal: Signal, record: list[bool]) -> type:
    """A callable receiver class whose ``__del__`` records whether *signal*'s lock is held."""

    class Handler:
        def __call__(self, **kwargs: Any) -> None:
            pass

        def __del__(self) -> None:
            record.append(held_by_this_thread(signal))

    return Handler


def test_receiver_finalizer_does_not_run_under_the_signal_lock() -> None:
    """A receiver released when its sender dies is finalized after the signal's lock is released.

    Its ``__del__`` (or a ``weakref.finalize`` callback) may use the signal,
    which must not find its registry half-way through a change.
    """
    signal = Signal()
    lock_held_in_finalizer: list[bool] = []
    Handler = finalized_receiver(signal, lock_held_in_finalizer)
    sender = Sender()
    signal.connect(Handler(), sender=sender, weak=False)
    del sender
    gc.collect()
    signal.connect(on_any)  # purges the connection of the dead sender
    assert lock_held_in_finalizer == [False]


def test_receiver_finalizer_does_not_run_under_the_lock_when_receivers_are_replaced() -> None:
    """Assigning ``receivers`` releases the old receivers after the signal's lock is released."""
    signal = Signal()
    lock_held_in_finalizer: list[bool] = []
    Handler = finalized_receiver(signal, lock_held_in_finalizer)
    signal.connect(Handler(), weak=False)
    signal.receivers = []
    assert lock_held_in_finalizer == [False]


# -- the receivers attribute ----------------------------------------------------------------


def test_receivers_rows_have_django_6_layout() -> None:
    """Signal.receivers lists ``(lookup_key, receiver, sender_ref, is_async)`` rows, as Django 6."""
    signal = Signal()
    sender = Sender()
    signal.connect(on_any)
    signal.connect(on_other, sender=sender, weak=False, dispatch_uid="uid")
    signal.connect(AsyncCallableObject(), weak=False)
    weak_row, strong_row, async_row = signal.receivers

    lookup_key, ref, sender_ref, is_async = weak_row
    assert lookup_key == (id(on_any), id(None))
    assert isinstance(ref, weakref.ref)
    assert ref() is on_any
    assert (sender_ref, is_async) == (None, False)

    assert strong_row.lookup_key == ("uid", id(sender))
    assert strong_row.receiver is on_other
    assert strong_row.sender_ref is not None
    assert strong_row.sender_ref() is sender
    assert strong_row.is_async is False

    assert async_row.is_async is True


def test_receivers_row_of_bound_method_is_a_weak_method() -> None:
    """A weakly connected bound method shows as a ``weakref.WeakMethod`` keyed by (self, func)."""
    signal = Signal()
    listener = Listener()
    signal.connect(listener.method)
    [row] = signal.receivers
    assert row.lookup_key == ((id(listener), id(Listener.method)), id(None))
    assert isinstance(row.receiver, weakref.WeakMethod)
    assert row.receiver() == listener.method


def test_assigning_receivers_replaces_connections() -> None:
    """Assigning to ``receivers`` replaces the signal's connections, e.g. to restore them."""
    signal = Signal()
    sender = Sender()
    signal.connect(on_any)
    signal.connect(on_other, sender=sender, weak=False)
    saved = signal.receivers
    signal.receivers = []
    assert signal.send(sender) == []
    assert not signal.has_listeners(sender)
    signal.receivers = saved
    assert responses_of(signal, sender) == ["on_any", "on_other"]
    assert responses_of(signal) == ["on_any"]
    assert signal.disconnect(on_other, sender=sender) is True
    assert responses_of(signal, sender) == ["on_any"]


def test_receivers_can_be_copied_to_another_signal() -> None:
    """Rows read from one signal can be assigned to another, which then calls the same receivers."""
    signal, copy = Signal(), Signal()
    sender = Sender()
    signal.connect(on_any)
    signal.connect(on_other, sender=sender)
    copy.receivers = signal.receivers
    assert responses_of(copy, sender) == ["on_any", "on_other"]


def test_rows_copied_to_another_signal_still_die_with_their_receiver() -> None:
    """A weak receiver copied into another signal's ``receivers`` is dropped there when collected.

    Otherwise the dead row keeps its lookup key, and a new receiver that happens
    to get the dead one's id() is silently not connected.
    """
    signal, copy = Signal(), Signal()

    def make_receiver(tag: str) -> Callable[..., str]:
        def receive(**kwargs: Any) -> str:
            return tag

        return receive

    doomed = make_receiver("doomed")
    signal.connect(doomed)
    copy.receivers = signal.receivers
    doomed_id = id(doomed)
    del doomed
    gc.collect()

    # CPython hands the freed memory to the next function of the same size.
    kept = []
    for attempt in range(10_000):
        newcomer = make_receiver(f"newcomer {attempt}")
        if id(newcomer) == doomed_id:
            break
        kept.append(newcomer)
    else:  # no function reused the id: the dead row must be gone all the same
        assert copy.receivers == []
        return
    copy.connect(newcomer)
    assert responses_of(copy) == [f"newcomer {attempt}"]
    assert len(copy.receivers) == 1


def test_receivers_append_and_insert_are_written_back() -> None:
    """append() and insert() on ``receivers`` connect, at the position given."""
    signal, source = Signal(), Signal()
    source.connect(on_any)
    source.connect(on_other)
    row_any, row_other = source.receivers
    signal.connect(on_third)
    signal.receivers.append(row_any)
    assert responses_of(signal) == ["on_third", "on_any"]
    signal.receivers.insert(0, row_other)
    assert responses_of(signal) == ["on_other", "on_third", "on_any"]


def test_receivers_del_and_clear_are_written_back() -> None:
    """``del receivers[i]`` and ``receivers.clear()`` disconnect."""
    signal = Signal()
    for func in (on_any, on_other, on_third):
        signal.connect(func)
    del signal.receivers[1]
    assert responses_of(signal) == ["on_any", "on_third"]
    signal.receivers.clear()
    assert signal.send(None) == []


def test_receivers_in_place_add_is_written_back() -> None:
    """``signal.receivers += rows`` connects the rows, after the existing ones."""
    signal, source = Signal(), Signal()
    source.connect(on_other)
    signal.connect(on_any)
    signal.receivers += source.receivers
    assert responses_of(signal) == ["on_any", "on_other"]


def test_receivers_pop_remove_and_setitem_are_written_back() -> None:
    """pop(), remove() and item assignment on ``receivers`` change the connections too."""
    signal, source = Signal(), Signal()
    source.connect(on_third)
    for func in (on_any, on_other):
        signal.connect(func)
    signal.receivers[0] = source.receivers[0]
    assert responses_of(signal) == ["on_third", "on_other"]
    popped = signal.receivers.pop()
    assert responses_of(signal) == ["on_third"]
    signal.receivers.append(popped)
    rows = signal.receivers
    rows.remove(rows[0])
    assert responses_of(signal) == ["on_other"]


def test_receivers_accepts_django_5_three_tuple_rows() -> None:
    """Rows in Django <= 5.2's layout ``(lookup_key, receiver, is_async)`` are accepted."""
    signal = Signal()
    sender = Sender()
    signal.receivers = [
        ((id(on_any), id(None)), weakref.ref(on_any), False),
        ((id(on_other), id(sender)), on_other, False),
    ]
    assert responses_of(signal) == ["on_any"]
    assert responses_of(signal, sender) == ["on_any", "on_other"]
    assert signal.disconnect(on_other, sender=sender) is True
    assert signal.disconnect(on_any) is True
    assert signal.send(sender) == []


def test_receivers_rejects_rows_of_other_lengths() -> None:
    """A row that is neither 3 nor 4 items long is refused with ValueError."""
    signal = Signal()
    with pytest.raises(ValueError, match="lookup_key, receiver, sender_ref, is_async"):
        signal.receivers = [((id(on_any), id(None)), on_any)]


def test_clearing_sender_receivers_cache_is_harmless() -> None:
    """``sender_receivers_cache.clear()``, which Django code calls, changes nothing visible."""
    signal = Signal(use_caching=True)
    sender = Sender()
    signal.connect(on_any, sender=sender)
    signal.connect(on_other)
    assert responses_of(signal, sender) == ["on_any", "on_other"]
    signal.sender_receivers_cache.clear()
    assert responses_of(signal, sender) == ["on_any", "on_other"]
    signal.sender_receivers_cache.clear()
    assert signal.has_listeners(sender)


# -- the receiver decorator ---------------------------------------------------------------


def test_receiver_decorator_connects_and_returns_the_function() -> None:
    """``@receiver(signal)`` connects the function and returns it unchanged."""
    signal = Signal()

    @receiver(signal)
    def handler(**kwargs: Any) -> str:
        return "handler"

    assert responses_of(signal) == ["handler"]
    assert handler(sender=None) == "handler"


def test_receiver_decorator_passes_connect_arguments() -> None:
    """Keyword arguments of ``receiver`` (sender, weak, dispatch_uid) go to connect()."""
    signal = Signal()
    sender = Sender()
    receiver(signal, sender=sender, weak=False)(lambda **kwargs: "lambda")
    receiver(signal, dispatch_uid="uid")(on_any)
    receiver(signal, dispatch_uid="uid")(on_other)
    gc.collect()
    assert responses_of(signal, sender) == ["lambda", "on_any"]
    assert responses_of(signal) == ["on_any"]


@pytest.mark.parametrize("container", [list, tuple])
def test_receiver_decorator_accepts_several_signals(
    container: Callable[[list[Signal]], Any],
) -> None:
    """``@receiver([a, b])`` and ``@receiver((a, b))`` connect to every signal given."""
    first, second = Signal(), Signal()
    receiver(container([first, second]))(on_any)
    assert responses_of(first) == ["on_any"]
    assert responses_of(second) == ["on_any"]


@pytest.mark.parametrize("bad", ["post_save", 42, [Signal(), "post_save"]])
def test_receiver_decorator_rejects_what_is_not_a_signal(bad: Any) -> None:
    """``receiver`` raises TypeError at once when given something that is not a signal."""
    with pytest.raises(TypeError, match="takes a signal or a list or tuple of signals"):
        receiver(bad)


# -- validation -------------------------------------------------------------------------


def test_connect_rejects_non_callable() -> None:
    """Connecting something that cannot be called raises TypeError."""
    signal = Signal()
    not_callable: Any = "not a function"
    with pytest.raises(TypeError, match="must be callable"):
        signal.connect(not_callable)


def test_connect_rejects_receiver_without_kwargs_and_names_it() -> None:
    """A receiver without ``**kwargs`` is refused with a ValueError naming it."""
    signal = Signal()

    def no_kwargs(sender: object) -> None:
        pass

    with pytest.raises(ValueError, match=r"no_kwargs.*\*\*kwargs") as info:
        signal.connect(no_kwargs)
    assert "test_connect_rejects_receiver_without_kwargs_and_names_it.<locals>.no_kwargs" in str(
        info.value
    )


def test_connect_checks_kwargs_of_methods_partials_and_callable_objects() -> None:
    """The ``**kwargs`` check also reads bound methods, partials and ``__call__``."""

    class Strict:
        def method(self, sender: object) -> None:
            pass

        def __call__(self, sender: object) -> None:
            pass

    def two_args(sender: object, extra: object) -> None:
        pass

    signal = Signal()
    strict = Strict()
    for bad in (strict.method, strict, functools.partial(two_args, extra=1)):
        with pytest.raises(ValueError, match="kwargs"):
            signal.connect(bad, weak=False)
    assert signal.receivers == []


def test_connect_rejects_unhashable_dispatch_uid() -> None:
    """An unhashable dispatch_uid raises TypeError that says what to use instead."""
    signal = Signal()
    unhashable: Any = ["myapp", "handler"]
    with pytest.raises(TypeError, match="dispatch_uid must be hashable"):
        signal.connect(on_any, dispatch_uid=unhashable)


def test_connect_non_weakrefable_receiver_suggests_weak_false() -> None:
    """A receiver that cannot be weakly referenced is refused with a hint to use weak=False."""
    signal = Signal()
    with pytest.raises(TypeError, match="weak=False"):
        signal.connect(SlottedCallable())
    signal.connect(SlottedCallable(), weak=False)
    assert responses_of(signal) == ["slotted"]


def test_disconnect_without_receiver_or_uid_is_a_type_error() -> None:
    """disconnect() with neither a receiver nor a dispatch_uid raises TypeError."""
    signal = Signal()
    with pytest.raises(TypeError, match="dispatch_uid"):
        signal.disconnect()


def test_failed_connect_leaves_signal_unchanged() -> None:
    """A connect() that raises connects nothing."""
    signal = Signal()
    unhashable: Any = {"unhashable": True}
    with pytest.raises(TypeError):
        signal.connect(on_any, dispatch_uid=unhashable)
    assert signal.receivers == []
    assert not signal.has_listeners()


# -- detecting async receivers ------------------------------------------------------------


def run_async_send(signal: Signal) -> list[Any]:
    """The responses of ``signal.asend(None)``, run to completion."""
    return [response for _, response in asyncio.run(signal.asend(None))]


def test_callable_object_with_async_call_is_async() -> None:
    """An object whose class defines ``async def __call__`` is an async receiver."""
    signal = Signal()
    handler = AsyncCallableObject()
    signal.connect(handler)
    assert signal.receivers[0].is_async is True
    assert run_async_send(signal) == ["awaited"]
    assert responses_of(signal) == ["awaited"]


def test_partial_of_async_function_is_async() -> None:
    """A partial of a coroutine function, through any number of layers, is an async receiver."""

    async def add(value: int, **kwargs: Any) -> int:
        return value + 1

    signal = Signal()
    handler = functools.partial(functools.partial(add), 41)
    signal.connect(handler)
    assert signal.receivers[0].is_async is True
    assert run_async_send(signal) == [42]


def test_partial_of_async_callable_object_is_async() -> None:
    """A partial of an object with ``async def __call__`` is an async receiver."""
    signal = Signal()
    signal.connect(functools.partial(AsyncCallableObject()), weak=False)
    assert signal.receivers[0].is_async is True
    assert run_async_send(signal) == ["awaited"]


def test_sync_callable_object_and_class_are_sync() -> None:
    """Sync callable objects, and classes (whose call makes an instance), are sync receivers."""

    class Event:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

    signal = Signal()
    signal.connect(CallableObject(), weak=False)
    signal.connect(Event)
    assert [row.is_async for row in signal.receivers] == [False, False]
    called, event = responses_of(signal)
    assert called == "called"
    assert isinstance(event, Event)


def test_asgiref_marked_coroutine_function_is_async() -> None:
    """A sync function marked with asgiref's markcoroutinefunction is an async receiver."""
    asgiref_sync = pytest.importorskip("asgiref.sync")

    async def work() -> str:
        return "marked"

    def marked(**kwargs: Any) -> Coroutine[Any, Any, str]:
        return work()

    asgiref_sync.markcoroutinefunction(marked)
    signal = Signal()
    signal.connect(marked)
    assert signal.receivers[0].is_async is True
    assert run_async_send(signal) == ["marked"]


# -- send_robust logging ------------------------------------------------------------------


def test_send_robust_logs_to_tocsin_logger_with_exc_info(caplog: pytest.LogCaptureFixture) -> None:
    """A send_robust() failure is logged as an error to 'tocsin', with its name and exc_info."""
    signal = Signal()
    signal.connect(fail)
    with caplog.at_level(logging.ERROR, logger="tocsin"):
        [(_, error)] = signal.send_robust(None)
    [record] = caplog.records
    assert record.name == "tocsin"
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert record.exc_info[1] is error
    assert record.getMessage() == "Error calling fail in Signal.send_robust() (receiver failed)"


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: functools.partial(fail), f"functools.partial({__name__}.fail)"),
        (Failing, f"{__name__}.Failing instance"),
        (lambda: Failing().method, "Failing.method"),
    ],
)
def test_send_robust_log_names_partials_and_callable_objects(
    caplog: pytest.LogCaptureFixture, make: Callable[[], Any], name: str
) -> None:
    """The log message names partials, callable objects and methods (Django's crashed on some)."""
    signal = Signal()
    signal.connect(make(), weak=False)
    with caplog.at_level(logging.ERROR, logger="tocsin"):
        [(_, error)] = signal.send_robust(None)
    [record] = caplog.records
    assert name in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[1] is error


# -- caching --------------------------------------------------------------------------------


def test_use_caching_works_with_none_sender() -> None:
    """``use_caching=True`` works when sending from None (Django's cache cannot)."""
    signal = Signal(use_caching=True)
    signal.connect(on_any)
    signal.connect(on_other, sender=Sender())
    assert responses_of(signal, None) == ["on_any"]
    assert responses_of(signal, None) == ["on_any"]


@pytest.mark.parametrize("sender", [(1, "tuple"), 12345, "a string"])
def test_use_caching_works_with_non_weakrefable_senders(sender: object) -> None:
    """``use_caching=True`` works with senders that cannot be weakly referenced."""
    signal = Signal(use_caching=True)
    signal.connect(on_any, sender=sender)
    signal.connect(on_other)
    assert responses_of(signal, sender) == ["on_any", "on_other"]
    assert responses_of(signal, sender) == ["on_any", "on_other"]
    assert responses_of(signal, None) == ["on_other"]
    assert signal.disconnect(on_any, sender=sender) is True
    assert responses_of(signal, sender) == ["on_other"]


def test_cache_follows_connect_and_disconnect() -> None:
    """A cached sender sees receivers connected and disconnected after it was cached."""
    signal = Signal(use_caching=True)
    sender = Sender()
    signal.connect(on_any, sender=sender)
    assert responses_of(signal, sender) == ["on_any"]
    signal.connect(on_other)
    assert responses_of(signal, sender) == ["on_any", "on_other"]
    signal.disconnect(on_any, sender=sender)
    assert responses_of(signal, sender) == ["on_other"]


def test_many_distinct_senders_do_not_grow_the_cache() -> None:
    """Only senders with connections of their own get a cached plan; all others share one."""
    signal = Signal(use_caching=True)
    anchor = Sender()
    signal.connect(on_any, sender=anchor)
    signal.connect(on_other)
    senders = [Sender() for _ in range(1000)]
    for sender in senders:
        assert responses_of(signal, sender) == ["on_other"]
    assert responses_of(signal, anchor) == ["on_any", "on_other"]
    assert len(signal.sender_receivers_cache) == 2


def test_short_lived_senders_do_not_grow_the_cache() -> None:
    """Senders created, sent from and dropped in batches leave no plan behind."""
    signal = Signal()
    signal.connect(on_any, sender=Sender)
    for _ in range(4):
        batch = [Sender() for _ in range(500)]
        for sender in batch:
            signal.send(sender)
        del batch
        assert len(signal.sender_receivers_cache) <= 1


def test_bound_method_senders_are_matched_as_django_does() -> None:
    """A bound method sender is keyed by (instance, function), so a fresh bound method matches."""

    class Handler:
        def handle(self, **kwargs: Any) -> None: ...

    handler = Handler()
    signal = Signal()
    method = handler.handle
    signal.connect(on_any, sender=method)
    assert responses_of(signal, handler.handle) == ["on_any"]
    assert responses_of(signal, Handler().handle) == []
    assert signal.disconnect(on_any, sender=handler.handle)


def test_a_dead_senders_id_reused_by_a_bound_method_finds_no_stale_plan() -> None:
    """Plans are cached only for senders with connections, so an id() reused by a
    temporary bound method can never pick up another sender's plan."""

    class Handler:
        def handle(self, **kwargs: Any) -> None: ...

    handler = Handler()
    method = handler.handle  # the sender is held weakly, as in Django: keep it alive
    signal = Signal()
    signal.connect(on_any, sender=method)
    signal.connect(on_other)
    for _ in range(200):
        assert responses_of(signal, Sender()) == ["on_other"]
        assert responses_of(signal, handler.handle) == ["on_any", "on_other"]


def test_signal_lock_is_reentrant_for_receivers_and_cache() -> None:
    """Code holding signal.lock may read and assign receivers and the cache, as with Django."""
    signal = Signal()
    signal.connect(on_any)
    with signal.lock:
        saved = signal.receivers
        signal.receivers = []
        cache = signal.sender_receivers_cache
        signal.sender_receivers_cache = cache
    assert responses_of(signal, None) == []
    signal.receivers = saved
    assert responses_of(signal, None) == ["on_any"]


def test_a_saved_receivers_list_is_detached_once_the_signal_changes() -> None:
    """Changing a list saved before the signal changed does not undo that change."""
    signal = Signal()
    signal.connect(on_any)
    paused = signal.receivers
    signal.receivers = []
    signal.connect(on_other)
    paused.clear()
    assert responses_of(signal, None) == ["on_other"]
