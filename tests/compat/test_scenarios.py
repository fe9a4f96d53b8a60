"""Scenarios run against django.dispatch 6.1 and tocsin, asserting the same results.

Every test takes the ``impl`` fixture, so it runs once as ``[django]`` and once
as ``[tocsin]``, and asserts literal expected values: the ``django`` run shows
that the expectation is Django's behaviour, the ``tocsin`` run that tocsin
matches it. Tests that also take ``use_caching`` run with ``Signal()`` and with
``Signal(use_caching=True)``, which must behave the same for ordinary senders.

tocsin's intended differences are in ``test_fixes.py``, which asserts Django's
behaviour and tocsin's side by side; any other failure of a ``[tocsin]`` run
here is a difference from Django 6.1 that nobody has declared intended.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import gc
import inspect
import logging
import threading
import warnings
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from asgiref.sync import markcoroutinefunction

from ._support import (
    RECEIVER_KINDS,
    Boom,
    Handler,
    Impl,
    make_receiver,
    responses,
)

# -- receivers and senders -------------------------------------------------------------


def first(**kwargs: Any) -> str:
    return "first"


def second(**kwargs: Any) -> str:
    return "second"


def third(**kwargs: Any) -> str:
    return "third"


def failing(**kwargs: Any) -> str:
    raise Boom("failing")


def echo(**kwargs: Any) -> dict[str, Any]:
    return kwargs


async def async_first(**kwargs: Any) -> str:
    return "async_first"


async def async_second(**kwargs: Any) -> str:
    await asyncio.sleep(0)
    return "async_second"


async def async_failing(**kwargs: Any) -> str:
    raise Boom("async_failing")


async def async_failing_too(**kwargs: Any) -> str:
    raise Boom("async_failing_too")


class Faulty:
    def fail(self, **kwargs: Any) -> str:
        raise Boom("fault")


class Sender:
    """A sender, as model classes are."""


class OtherSender:
    """Another sender."""


def outcome(results: list[tuple[Any, Any]]) -> list[Any]:
    """Responses, with exceptions shown as ``(type name, args)``."""
    return [
        (type(response).__name__, response.args)
        if isinstance(response, BaseException)
        else response
        for _, response in results
    ]


def run_catching(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """``asyncio.run(coroutine)``, or ``"raised <name>"`` for any exception, even CancelledError."""
    try:
        return asyncio.run(coroutine)
    except BaseException as exc:  # CancelledError too: report it, do not raise it
        return f"raised {type(exc).__name__}"


# -- connect and disconnect ------------------------------------------------------------


def test_disconnect_says_whether_it_removed(impl: Impl) -> None:
    """disconnect() returns True once, then False. (connect() returns None on Django and
    the receiver on tocsin: see test_fixes.py.)"""
    signal = impl.Signal()
    signal.connect(first)
    assert signal.disconnect(first) is True
    assert signal.disconnect(first) is False


def test_send_calls_receivers_in_connection_order(impl: Impl, use_caching: bool) -> None:
    """send() returns [(receiver, response), ...] in the order receivers were connected."""
    signal = impl.Signal(use_caching=use_caching)
    signal.connect(second)
    signal.connect(first)
    signal.connect(third)
    assert signal.send(Sender) == [(second, "second"), (first, "first"), (third, "third")]


def test_receivers_get_signal_sender_and_named_arguments(impl: Impl, use_caching: bool) -> None:
    """Receivers are called with signal=, sender= and send()'s keyword arguments."""
    signal = impl.Signal(use_caching=use_caching)
    signal.connect(echo)
    assert signal.send(Sender, a=1, b="two") == [
        (echo, {"signal": signal, "sender": Sender, "a": 1, "b": "two"})
    ]


def test_send_without_receivers_returns_an_empty_list(impl: Impl, use_caching: bool) -> None:
    """Every send method returns [] when nothing is connected."""
    signal = impl.Signal(use_caching=use_caching)
    assert signal.send(Sender) == []
    assert signal.send_robust(Sender) == []
    assert asyncio.run(signal.asend(Sender)) == []
    assert asyncio.run(signal.asend_robust(Sender)) == []


def test_sender_none_means_any_sender(impl: Impl) -> None:
    """A receiver connected without a sender hears every sender; send(None) reaches only those."""
    signal = impl.Signal()
    signal.connect(first)
    signal.connect(second, sender=Sender)
    assert responses(signal.send(Sender)) == ["first", "second"]
    assert responses(signal.send(OtherSender)) == ["first"]
    assert responses(signal.send(None)) == ["first"]


def test_senders_are_filtered_with_caching_too(impl: Impl, use_caching: bool) -> None:
    """Sender filtering gives the same answers with and without use_caching."""
    signal = impl.Signal(use_caching=use_caching)
    signal.connect(first, sender=Sender)
    assert responses(signal.send(Sender)) == ["first"]
    assert signal.send(OtherSender) == []
    signal.connect(second)
    assert responses(signal.send(OtherSender)) == ["second"]
    assert responses(signal.send(Sender)) == ["first", "second"]
    signal.disconnect(first, sender=Sender)
    assert responses(signal.send(Sender)) == ["second"]


def test_str_and_int_senders_match_by_identity_not_value(impl: Impl) -> None:
    """A sender is matched by id(): an equal but distinct str or int is another sender."""
    name, same_name = "".join(["my", "app"]), "".join(["my", "app"])
    number, same_number = int("1234567"), int("1234567")
    assert name == same_name
    assert name is not same_name
    assert number == same_number
    assert number is not same_number
    signal = impl.Signal()
    signal.connect(first, sender=name)
    signal.connect(second, sender=number)
    assert responses(signal.send(name)) == ["first"]
    assert signal.send(same_name) == []
    assert responses(signal.send(number)) == ["second"]
    assert signal.send(same_number) == []


def test_bound_method_sender_matches_by_self_and_function(impl: Impl) -> None:
    """Django keys a bound-method sender by (id(self), id(func)), as it keys receivers."""
    signal = impl.Signal()
    handler = Handler("handler")
    method = handler.handle
    signal.connect(first, sender=method)
    assert handler.handle is not method
    assert responses(signal.send(handler.handle)) == ["first"]
    assert signal.has_listeners(handler.handle) is True


def test_receiver_connected_for_any_sender_and_one_sender_is_called_twice(
    impl: Impl, use_caching: bool
) -> None:
    """connect(r) and connect(r, sender=A) are two connections, so send(A) calls r twice."""
    signal = impl.Signal(use_caching=use_caching)
    signal.connect(first)
    signal.connect(first, sender=Sender)
    assert responses(signal.send(Sender)) == ["first", "first"]
    assert responses(signal.send(OtherSender)) == ["first"]


def test_dispatch_uid_deduplicates_per_sender(impl: Impl, use_caching: bool) -> None:
    """A second connection with the same dispatch_uid and sender is ignored."""
    signal = impl.Signal(use_caching=use_caching)
    signal.connect(first, dispatch_uid="uid")
    signal.connect(second, dispatch_uid="uid")
    signal.connect(second, sender=Sender, dispatch_uid="uid")
    assert responses(signal.send(Sender)) == ["first", "second"]
    assert signal.disconnect(dispatch_uid="uid") is True
    assert responses(signal.send(Sender)) == ["second"]
    assert signal.disconnect(dispatch_uid="uid", sender=Sender) is True
    assert signal.send(Sender) == []


def test_same_receiver_with_two_dispatch_uids_is_called_twice(
    impl: Impl, use_caching: bool
) -> None:
    """The dispatch_uid, not the receiver, identifies a connection made with one."""
    signal = impl.Signal(use_caching=use_caching)
    signal.connect(first, dispatch_uid="a")
    signal.connect(first, dispatch_uid="b")
    assert responses(signal.send(Sender)) == ["first", "first"]
    assert signal.disconnect(first) is False
    assert signal.disconnect(dispatch_uid="a") is True


@pytest.mark.parametrize("uid", [None, 0, "", False], ids=repr)
def test_falsy_dispatch_uid_is_ignored(impl: Impl, use_caching: bool, uid: object) -> None:
    """A falsy dispatch_uid (0, "", False) counts as no dispatch_uid at all."""
    signal = impl.Signal(use_caching=use_caching)
    signal.connect(first, dispatch_uid=uid)
    signal.connect(second, dispatch_uid=uid)
    signal.connect(first, dispatch_uid=uid)
    assert responses(signal.send(Sender)) == ["first", "second"]
    assert signal.disconnect(second, dispatch_uid=uid) is True
    assert responses(signal.send(Sender)) == ["first"]


def test_duplicate_connect_is_ignored_and_the_first_keeps_its_place(
    impl: Impl, use_caching: bool
) -> None:
    """Connecting a receiver again is a no-op: it is called once, where it was first put."""
    signal = impl.Signal(use_caching=use_caching)
    signal.connect(first)
    signal.connect(second)
    signal.connect(first)
    assert responses(signal.send(Sender)) == ["first", "second"]
    assert len(signal.receivers) == 2


def test_duplicate_connect_keeps_the_first_weak_flag(impl: Impl, use_caching: bool) -> None:
    """A weak connection stays weak when the same receiver is connected again with weak=False."""
    signal = impl.Signal(use_caching=use_caching)
    owner, receiver = make_receiver("function")
    signal.connect(receiver)
    signal.connect(receiver, weak=False)
    del owner, receiver
    gc.collect()
    assert signal.send(Sender) == []


def test_reconnecting_after_disconnect_puts_the_receiver_last(
    impl: Impl, use_caching: bool
) -> None:
    """A receiver disconnected and connected again moves to the end of the order."""
    signal = impl.Signal(use_caching=use_caching)
    signal.connect(first)
    signal.connect(second)
    signal.disconnect(first)
    signal.connect(first)
    assert responses(signal.send(Sender)) == ["second", "first"]


def test_disconnect_needs_the_sender_given_to_connect(impl: Impl, use_caching: bool) -> None:
    """disconnect(r) does not remove connect(r, sender=A); disconnect(r, sender=A) does."""
    signal = impl.Signal(use_caching=use_caching)
    signal.connect(first, sender=Sender)
    assert signal.disconnect(first) is False
    assert responses(signal.send(Sender)) == ["first"]
    assert signal.disconnect(first, sender=Sender) is True
    assert signal.send(Sender) == []


# -- references and lifetime -----------------------------------------------------------


@pytest.mark.parametrize("kind", RECEIVER_KINDS)
def test_weak_receivers_vanish_when_collected(impl: Impl, use_caching: bool, kind: str) -> None:
    """A weakly connected function, bound method, partial or lambda goes when collected."""
    signal = impl.Signal(use_caching=use_caching)
    owner, receiver = make_receiver(kind)
    signal.connect(receiver)
    assert responses(signal.send(Sender)) == [kind]
    del owner, receiver
    gc.collect()
    assert signal.send(Sender) == []
    assert signal.has_listeners(Sender) is False
    assert signal.receivers == []


@pytest.mark.parametrize("kind", RECEIVER_KINDS)
def test_strong_receivers_survive_collection(impl: Impl, use_caching: bool, kind: str) -> None:
    """weak=False keeps a receiver alive for as long as it is connected."""
    signal = impl.Signal(use_caching=use_caching)
    owner, receiver = make_receiver(kind)
    signal.connect(receiver, weak=False)
    del owner, receiver
    gc.collect()
    assert responses(signal.send(Sender)) == [kind]


def test_receivers_of_a_collected_sender_are_purged(impl: Impl, use_caching: bool) -> None:
    """When a sender is collected, the connections made for it go on the next send."""
    signal = impl.Signal(use_caching=use_caching)
    sender = Handler("sender")
    signal.connect(first, sender=sender)
    signal.connect(second)
    assert responses(signal.send(sender)) == ["first", "second"]
    del sender
    gc.collect()
    assert responses(signal.send(Sender)) == ["second"]
    assert [row[1]() for row in signal.receivers] == [second]


# -- changing the receivers during a send ----------------------------------------------


def test_receiver_disconnecting_itself_still_runs_this_time(impl: Impl, use_caching: bool) -> None:
    """A receiver that disconnects itself is called by this send, not by the next."""
    signal = impl.Signal(use_caching=use_caching)

    def once(**kwargs: Any) -> str:
        signal.disconnect(once)
        return "once"

    signal.connect(once)
    signal.connect(first)
    assert responses(signal.send(Sender)) == ["once", "first"]
    assert responses(signal.send(Sender)) == ["first"]


def test_receiver_disconnecting_a_later_one_does_not_skip_it_this_time(
    impl: Impl, use_caching: bool
) -> None:
    """send() calls the receivers that were connected when it started."""
    signal = impl.Signal(use_caching=use_caching)

    def remove_second(**kwargs: Any) -> str:
        signal.disconnect(second)
        return "remove_second"

    signal.connect(remove_second)
    signal.connect(second)
    assert responses(signal.send(Sender)) == ["remove_second", "second"]
    assert responses(signal.send(Sender)) == ["remove_second"]


def test_receiver_connected_during_send_is_called_from_the_next_send(
    impl: Impl, use_caching: bool
) -> None:
    """A receiver connected by another receiver misses the send in progress."""
    signal = impl.Signal(use_caching=use_caching)

    def add_first(**kwargs: Any) -> str:
        signal.connect(first)
        return "add_first"

    signal.connect(add_first)
    assert responses(signal.send(Sender)) == ["add_first"]
    assert responses(signal.send(Sender)) == ["add_first", "first"]


def test_receivers_can_send_signals(impl: Impl, use_caching: bool) -> None:
    """A receiver may send another signal, or the same one again, and get its results."""
    signal = impl.Signal(use_caching=use_caching)
    other = impl.Signal(use_caching=use_caching)
    other.connect(first)

    def relay(sender: object, depth: int = 0, **kwargs: Any) -> object:
        if depth < 2:
            return responses(signal.send(sender, depth=depth + 1))
        return responses(other.send(sender))

    signal.connect(relay)
    assert responses(signal.send(Sender)) == [[[["first"]]]]


# -- errors ----------------------------------------------------------------------------


def test_send_propagates_the_first_exception_and_skips_the_rest(
    impl: Impl, use_caching: bool
) -> None:
    """An exception in a receiver leaves send() at once; later receivers are not called."""
    signal = impl.Signal(use_caching=use_caching)
    called = []

    def record(**kwargs: Any) -> None:
        called.append("record")

    signal.connect(first)
    signal.connect(failing)
    signal.connect(record)
    with pytest.raises(Boom, match="failing"):
        signal.send(Sender)
    assert called == []


def test_send_robust_returns_exceptions_in_place_of_responses(
    impl: Impl, use_caching: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """send_robust() calls every receiver and returns a failing one's exception, traceback set."""
    signal = impl.Signal(use_caching=use_caching)
    signal.connect(first)
    signal.connect(failing)
    signal.connect(second)
    results = signal.send_robust(Sender)
    assert [receiver for receiver, _ in results] == [first, failing, second]
    assert outcome(results) == ["first", ("Boom", ("failing",)), "second"]
    assert results[1][1].__traceback__ is not None


def test_send_robust_logs_each_failure_at_error_level(
    impl: Impl, caplog: pytest.LogCaptureFixture
) -> None:
    """Each failure is logged with Django's message, naming the receiver by its qualname."""
    signal = impl.Signal()
    faulty = Faulty()
    signal.connect(failing)
    signal.connect(faulty.fail)
    with caplog.at_level(logging.ERROR, logger=impl.logger):
        results = signal.send_robust(Sender)
    records = [record for record in caplog.records if record.name == impl.logger]
    assert [(record.levelno, record.getMessage()) for record in records] == [
        (logging.ERROR, "Error calling failing in Signal.send_robust() (failing)"),
        (logging.ERROR, "Error calling Faulty.fail in Signal.send_robust() (fault)"),
    ]
    assert [record.exc_info[1] if record.exc_info else None for record in records] == [
        response for _, response in results
    ]


def test_send_robust_lets_base_exceptions_through(impl: Impl, use_caching: bool) -> None:
    """send_robust() catches Exception only: KeyboardInterrupt still propagates."""
    signal = impl.Signal(use_caching=use_caching)
    called = []

    def interrupt(**kwargs: Any) -> None:
        raise KeyboardInterrupt

    def record(**kwargs: Any) -> None:
        called.append("record")

    signal.connect(interrupt)
    signal.connect(record)
    with pytest.raises(KeyboardInterrupt):
        signal.send_robust(Sender)
    assert called == []


@pytest.mark.parametrize("count", [1, 2], ids=["one receiver", "two"])
def test_signal_is_not_allowed_as_a_named_argument(
    impl: Impl, caplog: pytest.LogCaptureFixture, count: int
) -> None:
    """send(sender, signal=...) raises TypeError when calling a receiver; send_robust returns it
    (for every receiver)."""
    signal = impl.Signal()
    for receiver in (first, second)[:count]:
        signal.connect(receiver)
    with pytest.raises(TypeError, match="multiple values for keyword argument 'signal'"):
        signal.send(Sender, signal="mine")
    found = responses(signal.send_robust(Sender, signal="mine"))
    assert len(found) == count
    assert all(isinstance(response, TypeError) for response in found)


@pytest.mark.parametrize("count", [1, 3], ids=["one receiver", "three"])
def test_a_receiver_is_called_one_frame_below_the_send(impl: Impl, count: int) -> None:
    """send() calls sync receivers itself, with no frame between: a receiver's warning
    with stacklevel=3 points at the line that sent, as Django's own receivers count on
    (setting_changed's warning for a complex setting)."""
    signal = impl.Signal()

    def make(name: str) -> Callable[..., None]:
        def warn(**kwargs: Any) -> None:
            warnings.warn(name, UserWarning, stacklevel=3)

        return warn

    receivers = [make(f"receiver {n}") for n in range(count)]
    for receiver in receivers:
        signal.connect(receiver)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
        signal.send(Sender)
    assert [(w.filename, w.lineno) for w in caught] == [(__file__, line)] * count


@pytest.mark.parametrize("robust", [False, True], ids=["send", "send_robust"])
def test_a_receiver_that_changes_its_kwargs_changes_nothing_for_the_next(
    impl: Impl, robust: bool
) -> None:
    """Each receiver gets keyword arguments of its own: one that adds, removes or
    replaces some leaves the next receiver's as the send gave them."""
    signal = impl.Signal()
    seen: list[dict[str, Any]] = []

    def meddle(**kwargs: Any) -> None:
        seen.append(dict(kwargs))
        kwargs["extra"] = 1
        kwargs.pop("value")
        kwargs["sender"] = "changed"

    def look(**kwargs: Any) -> None:
        seen.append(dict(kwargs))

    signal.connect(meddle, weak=False)
    signal.connect(look, weak=False)
    send = signal.send_robust if robust else signal.send
    send(Sender, value=42)
    expected = {"signal": signal, "sender": Sender, "value": 42}
    assert seen == [expected, expected]


# -- has_listeners and the receiver decorator -----------------------------------------


def test_has_listeners_counts_live_receivers_for_a_sender(impl: Impl) -> None:
    """has_listeners(A) counts receivers for A or any sender; has_listeners() only the latter."""
    signal = impl.Signal()
    assert signal.has_listeners() is False
    signal.connect(first, sender=Sender)
    assert signal.has_listeners() is False
    assert signal.has_listeners(Sender) is True
    assert signal.has_listeners(OtherSender) is False
    owner, receiver = make_receiver("function")
    signal.connect(receiver)
    assert signal.has_listeners() is True
    assert signal.has_listeners(OtherSender) is True
    del owner, receiver
    gc.collect()
    assert signal.has_listeners() is False
    assert signal.has_listeners(OtherSender) is False
    signal.connect(async_first)
    assert signal.has_listeners() is True


def test_has_listeners_with_caching(impl: Impl) -> None:
    """has_listeners(A) gives the same answers on a signal with use_caching=True."""
    signal = impl.Signal(use_caching=True)
    assert signal.has_listeners(Sender) is False
    signal.connect(first, sender=Sender)
    assert signal.has_listeners(Sender) is True
    assert signal.has_listeners(OtherSender) is False
    signal.disconnect(first, sender=Sender)
    assert signal.has_listeners(Sender) is False


@pytest.mark.parametrize("container", ["signal", "list", "tuple"])
def test_receiver_decorator_connects_to_one_or_several_signals(impl: Impl, container: str) -> None:
    """@receiver takes a signal, a list or a tuple, forwards options, returns the function."""
    signals = [impl.Signal(), impl.Signal()]
    target: object = {"signal": signals[0], "list": signals, "tuple": tuple(signals)}[container]
    connected = signals[:1] if container == "signal" else signals

    def decorated(**kwargs: Any) -> str:
        return "decorated"

    assert impl.receiver(target, sender=Sender, dispatch_uid="uid")(decorated) is decorated
    assert [responses(signal.send(Sender)) for signal in signals] == [
        ["decorated"] if signal in connected else [] for signal in signals
    ]
    assert [signal.disconnect(dispatch_uid="uid", sender=Sender) for signal in connected] == [
        True for _ in connected
    ]


def test_receiver_decorator_reads_its_list_of_signals_when_applied(impl: Impl) -> None:
    """receiver([...]) connects to the signals in the list when it decorates, not when called."""
    signals = [impl.Signal()]
    decorate = impl.receiver(signals)
    signals.append(impl.Signal())
    decorate(first)
    assert [signal.has_listeners() for signal in signals] == [True, True]


# -- async receivers -------------------------------------------------------------------


def test_asend_returns_sync_results_then_async_results(impl: Impl, use_caching: bool) -> None:
    """asend() returns the sync receivers' results, then the async ones', each in order."""
    signal = impl.Signal(use_caching=use_caching)
    signal.connect(async_first)
    signal.connect(first)
    signal.connect(async_second)
    signal.connect(second)
    assert asyncio.run(signal.asend(Sender)) == [
        (first, "first"),
        (second, "second"),
        (async_first, "async_first"),
        (async_second, "async_second"),
    ]


def test_asend_robust_returns_exceptions_and_logs_them(
    impl: Impl, caplog: pytest.LogCaptureFixture
) -> None:
    """asend_robust() returns the exceptions of failing sync and async receivers, and logs them."""
    signal = impl.Signal()
    signal.connect(failing)
    signal.connect(async_failing)
    signal.connect(first)
    signal.connect(async_first)
    with caplog.at_level(logging.ERROR, logger=impl.logger):
        results = asyncio.run(signal.asend_robust(Sender))
    assert [receiver for receiver, _ in results] == [failing, first, async_failing, async_first]
    assert outcome(results) == [
        ("Boom", ("failing",)),
        "first",
        ("Boom", ("async_failing",)),
        "async_first",
    ]
    assert [record.getMessage() for record in caplog.records if record.name == impl.logger] == [
        "Error calling failing in Signal.send_robust() (failing)",
        "Error calling async_failing in Signal.send_robust() (async_failing)",
    ]


def test_asend_runs_async_receivers_concurrently(impl: Impl) -> None:
    """Async receivers run at the same time: each can wait for something the other does."""
    signal = impl.Signal()
    ping_seen, pong_seen = asyncio.Event(), asyncio.Event()

    async def ping(**kwargs: Any) -> str:
        ping_seen.set()
        await pong_seen.wait()
        return "ping"

    async def pong(**kwargs: Any) -> str:
        pong_seen.set()
        await ping_seen.wait()
        return "pong"

    signal.connect(ping)
    signal.connect(pong)

    async def main() -> list[tuple[Any, Any]]:
        results: list[tuple[Any, Any]] = await asyncio.wait_for(signal.asend(Sender), 5)
        return results

    assert responses(asyncio.run(main())) == ["ping", "pong"]


def test_async_receiver_can_use_asyncio_timeout(impl: Impl) -> None:
    """asyncio.timeout() inside an async receiver times out that receiver, not the caller."""
    signal = impl.Signal()

    async def slow(**kwargs: Any) -> str:
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(5)
        except TimeoutError:
            return "timed out"
        return "finished"

    signal.connect(slow)
    assert run_catching(signal.asend(Sender)) == [(slow, "timed out")]


def test_async_receiver_can_use_a_task_group(impl: Impl) -> None:
    """A TaskGroup inside an async receiver reports its children's failures to that receiver."""
    signal = impl.Signal()

    async def child() -> None:
        await asyncio.sleep(0)
        raise Boom("child")

    async def supervise(**kwargs: Any) -> str:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(child())
                await asyncio.sleep(5)
        except ExceptionGroup as failures:
            return f"caught {failures.exceptions!r}"
        return "finished"

    signal.connect(supervise)
    assert responses(run_catching(signal.asend(Sender))) == ["caught (Boom('child'),)"]


def test_asend_reraises_a_single_failure_as_is(impl: Impl) -> None:
    """When one async receiver fails, asend() raises its exception, not an ExceptionGroup."""
    signal = impl.Signal()
    signal.connect(async_first)
    signal.connect(async_failing)
    signal.connect(async_second)
    with pytest.raises(Boom, match="async_failing"):
        asyncio.run(signal.asend(Sender))


def test_asend_raises_several_failures_as_an_exception_group(impl: Impl) -> None:
    """When several async receivers fail, asend() raises an ExceptionGroup of their exceptions."""
    signal = impl.Signal()
    signal.connect(async_failing)
    signal.connect(async_first)
    signal.connect(async_failing_too)
    with pytest.raises(ExceptionGroup) as caught:
        asyncio.run(signal.asend(Sender))
    assert str(caught.value) == "unhandled errors in a TaskGroup (2 sub-exceptions)"
    assert [exc.args for exc in caught.value.exceptions] == [
        ("async_failing",),
        ("async_failing_too",),
    ]


def test_exception_group_lists_failures_in_the_order_they_happened(impl: Impl) -> None:
    """The ExceptionGroup holds the failures in the order the receivers failed."""
    signal = impl.Signal()

    async def fails_late(**kwargs: Any) -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        raise Boom("late")

    async def fails_early(**kwargs: Any) -> None:
        await asyncio.sleep(0)
        raise Boom("early")

    signal.connect(fails_late)
    signal.connect(fails_early)
    with pytest.raises(ExceptionGroup) as caught:
        asyncio.run(signal.asend(Sender))
    assert [exc.args for exc in caught.value.exceptions] == [("early",), ("late",)]


def test_a_suspended_receiver_resumes_before_another_ones_failure_cancels_it(impl: Impl) -> None:
    """A failure is handled on the event loop: a receiver already suspended still gets its turn."""
    signal = impl.Signal()
    events: list[str] = []

    async def suspends_then_fails(**kwargs: Any) -> None:
        await asyncio.sleep(0)
        events.append("resumed")
        raise Boom("after resuming")

    async def suspends_twice(**kwargs: Any) -> None:
        await asyncio.sleep(0)
        events.append("resumed once")
        await asyncio.sleep(0)
        events.append("resumed twice")

    async def fails_at_once(**kwargs: Any) -> None:
        raise Boom("at once")

    signal.connect(suspends_then_fails)
    signal.connect(suspends_twice)
    signal.connect(fails_at_once)
    with pytest.raises(ExceptionGroup) as caught:
        asyncio.run(signal.asend(Sender))
    assert [exc.args for exc in caught.value.exceptions] == [("at once",), ("after resuming",)]
    assert events == ["resumed", "resumed once"]


def test_async_receiver_raising_cancelled_error_at_once_gives_none(impl: Impl) -> None:
    """An async receiver raising CancelledError before it awaits counts as cancelled: None."""
    signal = impl.Signal()

    async def cancelled(**kwargs: Any) -> str:
        raise asyncio.CancelledError

    signal.connect(cancelled)
    signal.connect(async_first)
    assert run_catching(signal.asend(Sender)) == [(cancelled, None), (async_first, "async_first")]


def test_asend_stops_at_a_failing_sync_receiver(impl: Impl) -> None:
    """A failing sync receiver ends asend() before any async receiver is called."""
    signal = impl.Signal()
    called = []

    async def record(**kwargs: Any) -> None:
        called.append("record")

    signal.connect(record)
    signal.connect(failing)
    with pytest.raises(Boom, match="failing"):
        asyncio.run(signal.asend(Sender))
    assert called == []


def test_receiver_failing_when_called_stops_asend_before_the_others_are_called(
    impl: Impl,
) -> None:
    """asend() calls every async receiver first: one failing when called stops them all."""
    signal = impl.Signal()
    called: list[str] = []

    async def body(**kwargs: Any) -> None:
        called.append("body")

    @functools.wraps(body)
    def fails_when_called(**kwargs: Any) -> Coroutine[Any, Any, None]:
        raise Boom("when called")

    async def record(**kwargs: Any) -> None:
        called.append("record")

    signal.connect(markcoroutinefunction(fails_when_called))
    signal.connect(record)
    with pytest.raises(Boom, match="when called"):
        asyncio.run(signal.asend(Sender))
    assert called == []


def test_asend_calls_sync_receivers_off_the_loop_in_one_thread(impl: Impl) -> None:
    """asend() calls the sync receivers together, in a worker thread, not on the loop's."""
    signal = impl.Signal()
    threads: list[threading.Thread] = []

    def record(**kwargs: Any) -> None:
        threads.append(threading.current_thread())

    def record_too(**kwargs: Any) -> None:
        threads.append(threading.current_thread())

    signal.connect(record)
    signal.connect(record_too)
    asyncio.run(signal.asend(Sender))
    assert len(threads) == 2
    assert threads[0] is threads[1]
    assert threads[0] is not threading.current_thread()


def test_asend_makes_receivers_contextvars_visible_to_the_caller(impl: Impl) -> None:
    """Context variables set by sync and async receivers are set in the caller after asend()."""
    signal = impl.Signal()
    from_sync: contextvars.ContextVar[str] = contextvars.ContextVar("from_sync", default="unset")
    from_async: contextvars.ContextVar[str] = contextvars.ContextVar("from_async", default="unset")

    def set_sync(**kwargs: Any) -> None:
        from_sync.set("sync")

    async def set_async(**kwargs: Any) -> None:
        await asyncio.sleep(0)
        from_async.set("async")

    signal.connect(set_sync)
    signal.connect(set_async)

    async def main() -> tuple[str, str]:
        await signal.asend(Sender)
        return from_sync.get(), from_async.get()

    assert asyncio.run(main()) == ("sync", "async")


def test_asend_restores_contextvars_by_equality(impl: Impl) -> None:
    """A receiver setting a value equal to the caller's leaves the caller's object in place."""
    signal = impl.Signal()
    var: contextvars.ContextVar[list[int]] = contextvars.ContextVar("var")

    async def set_equal(**kwargs: Any) -> None:
        var.set([1])

    signal.connect(set_equal)

    async def main() -> bool:
        original = [1]
        var.set(original)
        await signal.asend(Sender)
        return var.get() is original

    assert asyncio.run(main()) is True


def test_send_from_sync_code_awaits_async_receivers(
    impl: Impl, use_caching: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """send() and send_robust() run async receivers to completion, after the sync ones."""
    signal = impl.Signal(use_caching=use_caching)
    signal.connect(async_second)
    signal.connect(first)
    signal.connect(async_first)
    assert signal.send(Sender) == [
        (first, "first"),
        (async_second, "async_second"),
        (async_first, "async_first"),
    ]
    signal.connect(async_failing)
    assert outcome(signal.send_robust(Sender)) == [
        "first",
        "async_second",
        "async_first",
        ("Boom", ("async_failing",)),
    ]
    with pytest.raises(Boom, match="async_failing"):
        signal.send(Sender)


def test_send_makes_async_receivers_contextvars_visible_to_the_caller(impl: Impl) -> None:
    """Context variables set by async receivers during send() are set in the caller after it."""
    signal = impl.Signal()
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def set_var(**kwargs: Any) -> None:
        var.set("async")

    signal.connect(set_var)

    def caller() -> str:
        signal.send(Sender)
        return var.get()

    assert contextvars.copy_context().run(caller) == "async"


def test_send_with_async_receivers_inside_a_running_loop_raises_runtime_error(
    impl: Impl,
) -> None:
    """send() and send_robust() cannot wait for async receivers from the loop's own thread."""
    signal = impl.Signal()
    signal.connect(first)
    signal.connect(async_first)

    async def main() -> list[str]:
        raised = []
        for method in (signal.send, signal.send_robust):
            try:
                method(Sender)
            except RuntimeError:
                raised.append(method.__name__)
        return raised

    assert asyncio.run(main()) == ["send", "send_robust"]


def test_send_inside_a_running_loop_with_only_sync_receivers_works(impl: Impl) -> None:
    """Without async receivers, send() may be called from async code."""
    signal = impl.Signal()
    signal.connect(first)

    async def main() -> list[tuple[Any, Any]]:
        results: list[tuple[Any, Any]] = signal.send(Sender)
        return results

    assert asyncio.run(main()) == [(first, "first")]


def test_function_marked_with_markcoroutinefunction_is_an_async_receiver(impl: Impl) -> None:
    """A plain function marked with inspect.markcoroutinefunction() is awaited like async def."""
    signal = impl.Signal()

    def marked(**kwargs: Any) -> Coroutine[Any, Any, str]:
        return async_first(**kwargs)

    markcoroutinefunction(marked)
    assert inspect.iscoroutinefunction(marked)
    signal.connect(marked)
    assert [row[3] for row in signal.receivers] == [True]
    assert responses(asyncio.run(signal.asend(Sender))) == ["async_first"]


def test_coroutine_marked_receivers_are_all_called_before_any_is_awaited(impl: Impl) -> None:
    """asend() calls every async receiver (making its awaitable) before it runs any of them."""
    signal = impl.Signal()
    events: list[str] = []

    def marked(name: str) -> Callable[..., Any]:
        async def body(**kwargs: Any) -> str:
            events.append(f"{name} runs")
            return name

        @functools.wraps(body)
        def call(**kwargs: Any) -> Coroutine[Any, Any, str]:
            events.append(f"{name} called")
            return body(**kwargs)

        return markcoroutinefunction(call)

    one, two = marked("one"), marked("two")
    signal.connect(one)
    signal.connect(two)
    assert responses(asyncio.run(signal.asend(Sender))) == ["one", "two"]
    assert events == ["one called", "two called", "one runs", "two runs"]


# -- Django's data model ---------------------------------------------------------------


def test_receivers_rows_are_django_6_four_tuples(impl: Impl) -> None:
    """signal.receivers lists (lookup_key, receiver or ref, sender ref, is_async) tuples."""
    signal = impl.Signal()
    handler = Handler("handler")
    signal.connect(first)
    signal.connect(second, sender=Sender, weak=False)
    signal.connect(async_first, dispatch_uid="uid")
    signal.connect(handler.handle)
    rows = signal.receivers
    assert isinstance(rows, list)
    assert [len(row) for row in rows] == [4, 4, 4, 4]
    (key1, ref1, sender1, async1), (key2, ref2, sender2, async2) = rows[:2]
    (key3, ref3, sender3, async3), (key4, ref4, sender4, async4) = rows[2:]
    assert key1 == (id(first), id(None))
    assert isinstance(ref1, weakref.ref)
    assert ref1() is first
    assert (sender1, async1) == (None, False)
    assert key2 == (id(second), id(Sender))
    assert ref2 is second
    assert isinstance(sender2, weakref.ref)
    assert sender2() is Sender
    assert async2 is False
    assert key3 == ("uid", id(None))
    assert isinstance(ref3, weakref.ref)
    assert ref3() is async_first
    assert (sender3, async3) == (None, True)
    assert key4 == ((id(handler), id(Handler.handle)), id(None))
    assert isinstance(ref4, weakref.WeakMethod)
    assert ref4() == handler.handle
    assert (sender4, async4) == (None, False)


def test_receivers_can_be_saved_cleared_and_restored(impl: Impl, use_caching: bool) -> None:
    """factory_boy's mute_signals: save receivers, assign [], restore, clear the cache."""
    signal = impl.Signal(use_caching=use_caching)
    signal.connect(first)
    signal.connect(second, sender=Sender)
    assert responses(signal.send(Sender)) == ["first", "second"]

    paused = signal.receivers
    signal.receivers = []
    assert signal.send(Sender) == []
    signal.connect(third)
    assert responses(signal.send(Sender)) == ["third"]

    signal.receivers = paused + signal.receivers
    with signal.lock:
        signal.sender_receivers_cache.clear()
    assert responses(signal.send(Sender)) == ["first", "second", "third"]
    assert signal.disconnect(second, sender=Sender) is True
    assert responses(signal.send(Sender)) == ["first", "third"]


def test_changing_a_freshly_read_receivers_list_in_place_changes_the_signal(impl: Impl) -> None:
    """Add-ons edit signal.receivers in place: popping, reordering, adding rows takes effect."""
    signal = impl.Signal()
    signal.connect(first)
    signal.connect(second)
    signal.connect(third)
    rows = signal.receivers
    removed = rows.pop(0)
    assert responses(signal.send(Sender)) == ["second", "third"]
    rows.reverse()
    assert responses(signal.send(Sender)) == ["third", "second"]
    rows.append(removed)
    assert responses(signal.send(Sender)) == ["third", "second", "first"]
    del rows[1:]
    assert responses(signal.send(Sender)) == ["third"]
    assert [row[1]() for row in signal.receivers] == [third]


def test_a_saved_receivers_list_is_detached_once_another_is_assigned(impl: Impl) -> None:
    """After signal.receivers = [...], changing the list saved before does not touch the signal."""
    signal = impl.Signal()
    signal.connect(first)
    paused = signal.receivers
    signal.receivers = []
    signal.connect(second)
    paused.clear()
    assert responses(signal.send(Sender)) == ["second"]


def test_restored_rows_of_collected_receivers_and_senders_are_purged(impl: Impl) -> None:
    """Rows restored after their receiver or sender died are purged by the next send."""
    signal = impl.Signal()
    sender = Handler("sender")
    owner, receiver = make_receiver("function")
    signal.connect(first, sender=sender)
    signal.connect(receiver)
    paused = signal.receivers
    signal.receivers = []
    del sender, owner, receiver
    gc.collect()
    signal.receivers = paused
    assert signal.send(Sender) == []
    assert signal.receivers == []


def test_a_row_whose_sender_died_never_matches_a_new_sender_with_its_id(impl: Impl) -> None:
    """A row with a dead sender ref is skipped, even if a new sender has the dead one's id."""
    # What restoring saved rows gives when their sender died meanwhile and a new
    # object took its memory; built here without waiting for CPython to reuse it.
    dead = Handler("dead")
    dead_ref = weakref.ref(dead)
    del dead
    new_sender = Handler("new")
    signal = impl.Signal()
    signal.receivers = [((id(first), id(new_sender)), first, dead_ref, False)]
    assert signal.send(new_sender) == []
    assert signal.has_listeners(new_sender) is False


def test_receivers_can_be_read_and_assigned_while_holding_the_lock(impl: Impl) -> None:
    """Code holding signal.lock may read and assign signal.receivers without deadlocking."""
    signal = impl.Signal()
    signal.connect(first)
    done: list[object] = []

    def use_under_lock() -> None:
        try:
            with signal.lock:
                rows = list(signal.receivers)
                signal.receivers = rows
                done.append(len(rows))
        except RuntimeError as exc:  # the lock was released under it, below
            done.append(exc)

    worker = threading.Thread(target=use_under_lock, daemon=True)
    worker.start()
    worker.join(timeout=5)
    deadlocked = worker.is_alive()
    # After a deadlock (a non-reentrant lock taken twice), free the worker
    # rather than leave it stuck: any thread may release a threading.Lock. It
    # then fails releasing the lock itself, records that and ends.
    for _ in range(100):
        if not worker.is_alive():
            break
        with contextlib.suppress(RuntimeError):
            signal.lock.release()
        worker.join(timeout=0.05)
    assert not worker.is_alive()
    assert not deadlocked, "reading signal.receivers while holding signal.lock deadlocked"
    assert done == [1]
    assert responses(signal.send(Sender)) == ["first"]
