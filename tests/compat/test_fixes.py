"""tocsin's intended differences from django.dispatch 6.1, each shown on both.

Every test here runs the same steps on a Django signal and on a tocsin signal
and asserts what each does: Django's behaviour is part of the assertion, so a
change in either library shows up. The differences are the ones the maintainers
chose: fixes of Django's pitfalls, and the consequences of tocsin's design (a
dict of connections behind a ``receivers`` list, plans cached per sender key,
async receivers run in the caller's task until they wait), documented in
docs/coming-from-django.md.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import types
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ._support import DJANGO, TOCSIN, Boom, Unweakrefable, responses

# -- receivers and senders -------------------------------------------------------------


def good(**kwargs: Any) -> str:
    return "good"


def other(**kwargs: Any) -> str:
    return "other"


def no_kwargs(sender: object) -> str:
    return "no_kwargs"


def failing(**kwargs: Any) -> str:
    raise Boom("boom")


class FailingCallable:
    def __call__(self, **kwargs: Any) -> str:
        raise Boom("boom")


async def async_function(*, tag: str = "async function", **kwargs: Any) -> str:
    return tag


class AsyncCallable:
    async def __call__(self, **kwargs: Any) -> str:
        return "async callable"


class Sender:
    """A sender that can be weakly referenced, as model classes are."""


class Handler:
    """An object whose bound method is a sender."""

    def handle(self, **kwargs: Any) -> None:
        pass


class EqualSender:
    """Senders that are all equal to each other, as value objects are."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EqualSender)

    def __hash__(self) -> int:
        return 0


class UnhashableSender:
    """A sender that cannot be hashed, as a mutable value object may be."""

    __hash__ = None  # type: ignore[assignment]


@pytest.fixture
def django_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make django.dispatch see configured settings with DEBUG = True."""
    import django.conf

    monkeypatch.setattr(django.conf, "settings", types.SimpleNamespace(configured=True, DEBUG=True))


# -- receivers are validated at connect() ----------------------------------------------


def test_django_accepts_any_receiver_unless_debug() -> None:
    """Without settings.DEBUG, Django connects non-callables and receivers without **kwargs."""
    signal = DJANGO.Signal()
    assert signal.connect(42, weak=False) is None
    assert signal.connect(no_kwargs) is None
    with pytest.raises(TypeError, match="'int' object is not callable"):
        signal.send(Sender)


@pytest.mark.usefixtures("django_debug")
def test_django_validates_receivers_under_debug() -> None:
    """Under settings.DEBUG, Django raises TypeError and ValueError, without naming the receiver."""
    signal = DJANGO.Signal()
    with pytest.raises(TypeError, match=r"^Signal receivers must be callable\.$"):
        signal.connect(42, weak=False)
    with pytest.raises(ValueError, match=r"^Signal receivers must accept keyword arguments"):
        signal.connect(no_kwargs)


def test_tocsin_rejects_a_receiver_that_is_not_callable() -> None:
    """tocsin always raises TypeError at connect() for a non-callable, showing what it got."""
    signal = TOCSIN.Signal()
    with pytest.raises(TypeError, match=r"^Signal receivers must be callable\. Got int 42"):
        signal.connect(42, weak=False)
    assert signal.receivers == []


def test_tocsin_rejects_a_receiver_without_kwargs() -> None:
    """tocsin always raises ValueError at connect() for a receiver without **kwargs, naming it."""
    signal = TOCSIN.Signal()
    with pytest.raises(ValueError, match=r"must accept keyword arguments.*no_kwargs") as caught:
        signal.connect(no_kwargs)
    assert "add **kwargs" in str(caught.value)
    assert signal.receivers == []


def _message(connect: Callable[[], object]) -> tuple[type[BaseException], str]:
    try:
        connect()
    except Exception as err:
        return type(err), str(err)
    raise AssertionError("no error")


REFUSALS: dict[str, Callable[[Any], object]] = {
    "not callable": lambda impl: impl.Signal().connect(42, weak=False),
    "no **kwargs": lambda impl: impl.Signal().connect(no_kwargs),
    "not weakly referenceable": lambda impl: impl.Signal().connect(Unweakrefable("u")),
}


@pytest.mark.usefixtures("django_debug")
@pytest.mark.parametrize("refusal", list(REFUSALS))
def test_where_both_refuse_tocsins_message_begins_with_djangos(refusal: str) -> None:
    """Code and tests match on Django's text: tocsin keeps it, word for word, and adds its
    detail after it (Django checks the first two under DEBUG only; tocsin always does)."""
    django_type, django_message = _message(lambda: REFUSALS[refusal](DJANGO))
    tocsin_type, tocsin_message = _message(lambda: REFUSALS[refusal](TOCSIN))
    assert tocsin_type is django_type
    assert tocsin_message.startswith(django_message)
    assert len(tocsin_message) > len(django_message)  # ...and says what to do


def test_a_send_with_async_receivers_inside_a_running_loop_begins_with_djangos_message() -> None:
    """Django's send() fails there with asgiref's RuntimeError; tocsin's error is a
    RuntimeError whose message begins with the same text."""

    async def run(impl: Any) -> tuple[type[BaseException], str]:
        signal = impl.Signal()
        signal.connect(async_function)
        return _message(lambda: signal.send(Sender))

    django_type, django_message = asyncio.run(run(DJANGO))
    tocsin_type, tocsin_message = asyncio.run(run(TOCSIN))
    assert issubclass(django_type, RuntimeError)
    assert issubclass(tocsin_type, RuntimeError)
    assert tocsin_message.startswith(django_message)


# -- send_robust() with receivers that have no __qualname__ ----------------------------


@pytest.mark.parametrize(
    ("receiver", "name"),
    [
        (functools.partial(failing), "failing"),
        (FailingCallable(), "FailingCallable"),
    ],
    ids=["partial", "callable object"],
)
def test_send_robust_with_a_failing_receiver_without_qualname(
    receiver: Any, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Django's send_robust() crashes logging such a receiver; tocsin names it and goes on."""
    django_signal, tocsin_signal = DJANGO.Signal(), TOCSIN.Signal()
    for signal in (django_signal, tocsin_signal):
        signal.connect(receiver)
        signal.connect(good)

    with pytest.raises(AttributeError, match="__qualname__"):
        django_signal.send_robust(Sender)

    with caplog.at_level(logging.ERROR, logger=TOCSIN.logger):
        results = tocsin_signal.send_robust(Sender)
    assert [receiver for receiver, _ in results] == [receiver, good]
    failure, response = responses(results)
    assert isinstance(failure, Boom)
    assert response == "good"
    (record,) = [record for record in caplog.records if record.name == TOCSIN.logger]
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith("Error calling ")
    assert record.getMessage().endswith(" in Signal.send_robust() (boom)")
    assert name in record.getMessage()


# -- use_caching, any sender, and sender_receivers_cache -------------------------------


@pytest.mark.parametrize(
    "sender",
    [None, Unweakrefable("unweakrefable"), "".join(["a", "str"])],
    ids=["None", "unweakrefable object", "str"],
)
def test_cached_signal_sends_from_senders_that_cannot_be_weakly_referenced(
    sender: object,
) -> None:
    """Django's cached signals raise TypeError for such senders; tocsin's send as uncached ones."""
    django_signal = DJANGO.Signal(use_caching=True)
    tocsin_signal = TOCSIN.Signal(use_caching=True)
    for signal in (django_signal, tocsin_signal):
        signal.connect(good)

    with pytest.raises(TypeError, match="cannot create weak reference"):
        django_signal.send(sender)
    with pytest.raises(TypeError, match="cannot create weak reference"):
        django_signal.send_robust(sender)
    with pytest.raises(TypeError, match="cannot create weak reference"):
        django_signal.has_listeners(sender)

    assert responses(tocsin_signal.send(sender)) == ["good"]
    assert responses(tocsin_signal.send_robust(sender)) == ["good"]
    assert responses(asyncio.run(tocsin_signal.asend(sender))) == ["good"]
    assert tocsin_signal.has_listeners(sender) is True


def test_cached_signal_filters_unweakrefable_senders_by_identity() -> None:
    """tocsin's cached signal matches a sender that cannot be weakly referenced by id()."""
    signal = TOCSIN.Signal(use_caching=True)
    sender, other = Unweakrefable("sender"), Unweakrefable("other")
    signal.connect(good, sender=sender)
    assert responses(signal.send(sender)) == ["good"]
    assert signal.send(other) == []
    assert signal.send(None) == []
    assert signal.has_listeners(None) is False


def test_cached_signal_has_listeners_for_none() -> None:
    """Django's cached has_listeners() raises TypeError even with no receivers; tocsin answers."""
    with pytest.raises(TypeError, match="cannot create weak reference to 'NoneType'"):
        DJANGO.Signal(use_caching=True).has_listeners()
    assert TOCSIN.Signal(use_caching=True).has_listeners() is False


def test_cached_signal_tells_equal_senders_apart() -> None:
    """Django's WeakKeyDictionary cache gives an equal sender another's receivers; tocsin's not."""
    django_signal = DJANGO.Signal(use_caching=True)
    tocsin_signal = TOCSIN.Signal(use_caching=True)
    sender, equal_sender = EqualSender(), EqualSender()
    for signal in (django_signal, tocsin_signal):
        signal.connect(good, sender=sender)
        assert responses(signal.send(sender)) == ["good"]

    assert responses(django_signal.send(equal_sender)) == ["good"]
    assert django_signal.has_listeners(equal_sender) is True
    uncached = DJANGO.Signal()
    uncached.connect(good, sender=sender)
    assert uncached.send(equal_sender) == []

    assert tocsin_signal.send(equal_sender) == []
    assert tocsin_signal.has_listeners(equal_sender) is False


def test_unhashable_senders(use_caching: bool) -> None:
    """Django's sends look the sender up in a dict, cached or not: TypeError; tocsin sends."""
    django_signal = DJANGO.Signal(use_caching=use_caching)
    tocsin_signal = TOCSIN.Signal(use_caching=use_caching)
    sender = UnhashableSender()
    for signal in (django_signal, tocsin_signal):
        signal.connect(good)
        signal.connect(other, sender=sender)

    with pytest.raises(TypeError, match="unhashable type: 'UnhashableSender'"):
        django_signal.send(sender)
    with pytest.raises(TypeError, match="unhashable type: 'UnhashableSender'"):
        django_signal.send_robust(sender)
    with pytest.raises(TypeError, match="unhashable type: 'UnhashableSender'"):
        asyncio.run(django_signal.asend(sender))
    if use_caching:
        with pytest.raises(TypeError, match="unhashable type: 'UnhashableSender'"):
            django_signal.has_listeners(sender)
    else:
        assert django_signal.has_listeners(sender) is True

    assert responses(tocsin_signal.send(sender)) == ["good", "other"]
    assert responses(tocsin_signal.send_robust(sender)) == ["good", "other"]
    assert responses(asyncio.run(tocsin_signal.asend(sender))) == ["good", "other"]
    assert tocsin_signal.has_listeners(sender) is True
    assert responses(tocsin_signal.send(Sender)) == ["good"]


def test_assigning_receivers_updates_a_cached_signal_at_once() -> None:
    """Django's cached signal answers from its stale cache until it is cleared; tocsin's at once."""
    django_signal = DJANGO.Signal(use_caching=True)
    tocsin_signal = TOCSIN.Signal(use_caching=True)
    for signal in (django_signal, tocsin_signal):
        signal.connect(good, sender=Sender)
        signal.connect(other, sender=Sender)
        assert responses(signal.send(Sender)) == ["good", "other"]
        signal.receivers = signal.receivers[1:]

    assert responses(django_signal.send(Sender)) == ["good", "other"]
    with django_signal.lock:
        django_signal.sender_receivers_cache.clear()
    assert responses(django_signal.send(Sender)) == ["other"]

    assert responses(tocsin_signal.send(Sender)) == ["other"]


def test_sender_receivers_cache_is_keyed_by_sender_key_and_always_filled(
    use_caching: bool,
) -> None:
    """Django caches by sender, only with use_caching; tocsin caches plans by sender key always."""
    django_signal = DJANGO.Signal(use_caching=use_caching)
    tocsin_signal = TOCSIN.Signal(use_caching=use_caching)
    handler = Handler()
    method = handler.handle
    for signal in (django_signal, tocsin_signal):
        signal.connect(good, sender=Sender)
        signal.connect(other, sender=method)
        assert responses(signal.send(Sender)) == ["good"]
        assert responses(signal.send(handler.handle)) == ["other"]
        assert responses(signal.send(method)) == ["other"]

    assert list(django_signal.sender_receivers_cache) == ([Sender, method] if use_caching else [])

    cache = tocsin_signal.sender_receivers_cache
    assert id(Sender) in cache
    assert (id(handler), id(Handler.handle)) in cache
    assert Sender not in cache
    assert method not in cache


# -- async callables -------------------------------------------------------------------


def test_object_with_async_call_is_an_async_receiver() -> None:
    """Django calls it as sync and returns an un-awaited coroutine; tocsin awaits it."""
    django_signal, tocsin_signal = DJANGO.Signal(), TOCSIN.Signal()
    receiver = AsyncCallable()
    for signal in (django_signal, tocsin_signal):
        signal.connect(receiver)

    assert [row[3] for row in django_signal.receivers] == [False]
    ((_, coroutine),) = django_signal.send(Sender)
    assert isinstance(coroutine, Coroutine)
    coroutine.close()

    assert [row[3] for row in tocsin_signal.receivers] == [True]
    assert tocsin_signal.send(Sender) == [(receiver, "async callable")]
    assert asyncio.run(tocsin_signal.asend(Sender)) == [(receiver, "async callable")]


def test_partial_of_an_async_function_is_an_async_receiver_in_both() -> None:
    """A functools.partial of an async function is awaited by Django 6.1 and by tocsin."""
    receiver = functools.partial(async_function, tag="partial")
    for impl in (DJANGO, TOCSIN):
        signal = impl.Signal()
        signal.connect(receiver)
        assert [row[3] for row in signal.receivers] == [True]
        assert signal.send(Sender) == [(receiver, "partial")]
        assert asyncio.run(signal.asend(Sender)) == [(receiver, "partial")]


def test_partial_of_an_async_callable_object_is_an_async_receiver() -> None:
    """Django calls a partial of an async callable object as sync; tocsin awaits it."""
    receiver = functools.partial(AsyncCallable())
    django_signal, tocsin_signal = DJANGO.Signal(), TOCSIN.Signal()
    for signal in (django_signal, tocsin_signal):
        signal.connect(receiver)

    ((_, coroutine),) = django_signal.send(Sender)
    assert isinstance(coroutine, Coroutine)
    coroutine.close()

    assert tocsin_signal.send(Sender) == [(receiver, "async callable")]


# -- disconnect() with nothing to disconnect -------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [{}, {"sender": Sender}, {"dispatch_uid": ""}, {"dispatch_uid": 0}],
    ids=["no arguments", "sender only", "empty dispatch_uid", "zero dispatch_uid"],
)
def test_disconnect_with_neither_receiver_nor_dispatch_uid(arguments: dict[str, Any]) -> None:
    """Django returns False, whatever is connected; tocsin raises TypeError."""
    django_signal, tocsin_signal = DJANGO.Signal(), TOCSIN.Signal()
    for signal in (django_signal, tocsin_signal):
        signal.connect(good)

    assert django_signal.disconnect(**arguments) is False
    with pytest.raises(TypeError, match="needs the receiver to disconnect, or the dispatch_uid"):
        tocsin_signal.disconnect(**arguments)
    assert responses(tocsin_signal.send(Sender)) == ["good"]


# -- connect() as a decorator ------------------------------------------------------------


def test_connect_used_as_a_decorator_keeps_the_function() -> None:
    """A blinker habit: ``@signal.connect`` above a function. Django's connect() returns None,
    so the name is silently bound to None; tocsin's returns the receiver."""
    django_signal, tocsin_signal = DJANGO.Signal(), TOCSIN.Signal()

    @django_signal.connect  # type: ignore[untyped-decorator]
    def on_django(**kwargs: Any) -> str:
        return "django"

    @tocsin_signal.connect  # type: ignore[untyped-decorator]
    def on_tocsin(**kwargs: Any) -> str:
        return "tocsin"

    assert on_django is None
    assert callable(on_tocsin)
    assert tocsin_signal.send(Sender) == [(on_tocsin, "tocsin")]


def test_a_name_passed_as_use_caching_is_refused() -> None:
    """Another habit: ``Signal("order_placed")``. Django takes the name as use_caching=True;
    tocsin refuses anything but a bool, saying that signals have no name."""
    django_signal = DJANGO.Signal("order_placed")
    assert django_signal.use_caching == "order_placed"
    with pytest.raises(TypeError, match=r"not a name; got 'order_placed'. Signals have no name"):
        TOCSIN.Signal("order_placed")
    with pytest.raises(TypeError, match=r"use_caching must be True or False; got 1"):
        TOCSIN.Signal(1)


# -- receivers that cannot be weakly referenced ----------------------------------------


def test_weakly_connecting_an_unweakrefable_receiver_raises_type_error() -> None:
    """Both raise TypeError; tocsin's message names the receiver and suggests weak=False."""
    receiver = Unweakrefable("unweakrefable")
    with pytest.raises(TypeError, match=r"^cannot create weak reference to 'Unweakrefable'"):
        DJANGO.Signal().connect(receiver)
    with pytest.raises(
        TypeError,
        match=r"^cannot create weak reference to 'Unweakrefable' object.*weak=False",
    ):
        TOCSIN.Signal().connect(receiver)

    for impl in (DJANGO, TOCSIN):
        signal = impl.Signal()
        signal.connect(receiver, weak=False)
        assert signal.send(Sender) == [(receiver, "unweakrefable")]


# -- dispatch_uid and the receiver decorator -------------------------------------------


def test_unhashable_dispatch_uid() -> None:
    """Django compares lookup keys with ==, so a list works; tocsin keys a dict, so TypeError."""
    django_signal, tocsin_signal = DJANGO.Signal(), TOCSIN.Signal()

    django_signal.connect(good, dispatch_uid=["uid"])
    django_signal.connect(other, dispatch_uid=["uid"])
    assert responses(django_signal.send(Sender)) == ["good"]
    assert django_signal.disconnect(dispatch_uid=["uid"]) is True

    with pytest.raises(TypeError, match=r"dispatch_uid must be hashable, got list \['uid'\]"):
        tocsin_signal.connect(good, dispatch_uid=["uid"])
    with pytest.raises(TypeError, match="dispatch_uid must be hashable"):
        tocsin_signal.disconnect(dispatch_uid=["uid"])
    assert tocsin_signal.receivers == []


@pytest.mark.parametrize("target", [None, [None]], ids=["None", "list holding None"])
def test_receiver_decorator_checks_its_signals_when_called(target: object) -> None:
    """Django's receiver() fails when its decorator is applied; tocsin's raises TypeError first."""
    decorate = DJANGO.receiver(target)
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'connect'"):
        decorate(good)

    with pytest.raises(TypeError, match="takes a signal or a list or tuple of signals"):
        TOCSIN.receiver(target)


# -- Signal.receivers: a list made from tocsin's dict ----------------------------------


def test_restoring_saved_rows_with_current_ones_keeps_one_row_per_key() -> None:
    """Django keeps both rows of a receiver saved and connected again; tocsin keeps the first."""
    django_signal, tocsin_signal = DJANGO.Signal(), TOCSIN.Signal()
    for signal in (django_signal, tocsin_signal):
        signal.connect(good)
        signal.connect(other)
        paused = signal.receivers  # factory_boy's mute_signals...
        signal.receivers = []
        signal.connect(good)
        signal.receivers = paused + signal.receivers  # ...and its restore
        with signal.lock:
            signal.sender_receivers_cache.clear()

    assert responses(django_signal.send(Sender)) == ["good", "other", "good"]
    assert len(django_signal.receivers) == 3
    assert django_signal.disconnect(good) is True
    assert responses(django_signal.send(Sender)) == ["other", "good"]

    assert responses(tocsin_signal.send(Sender)) == ["good", "other"]
    assert len(tocsin_signal.receivers) == 2
    assert tocsin_signal.disconnect(good) is True
    assert responses(tocsin_signal.send(Sender)) == ["other"]


def test_receivers_list_is_a_snapshot_detached_by_the_next_change() -> None:
    """Django's list is its storage, showing later connections; tocsin's is a copy they detach."""
    django_signal, tocsin_signal = DJANGO.Signal(), TOCSIN.Signal()
    rows: dict[Any, list[Any]] = {}
    for signal in (django_signal, tocsin_signal):
        signal.connect(good)
        rows[signal] = signal.receivers
        signal.connect(other)
        del rows[signal][0]

    assert [row[1]() for row in rows[django_signal]] == [other]
    assert responses(django_signal.send(Sender)) == ["other"]

    assert rows[tocsin_signal] == []
    assert responses(tocsin_signal.send(Sender)) == ["good", "other"]


def test_reading_receivers_purges_dead_connections() -> None:
    """Django lists a collected receiver's row until its next purge; reading tocsin's purges it."""
    django_signal, tocsin_signal = DJANGO.Signal(), TOCSIN.Signal()

    def collected(**kwargs: Any) -> str:
        return "collected"

    for signal in (django_signal, tocsin_signal):
        signal.connect(collected)
        signal.connect(good)
    del collected
    gc.collect()

    assert [row[1]() for row in django_signal.receivers] == [None, good]
    assert responses(django_signal.send(Sender)) == ["good"]
    assert [row[1]() for row in django_signal.receivers] == [good]

    assert [row[1]() for row in tocsin_signal.receivers] == [good]


def test_a_dead_row_assigned_to_receivers_is_dropped() -> None:
    """Django keeps an assigned dead row, which blocks a receiver with its key; tocsin drops it."""

    # What restoring saved rows gives when their receiver died meanwhile and a
    # new function took its memory; built here without waiting for CPython.
    def collected(**kwargs: Any) -> str:
        return "collected"

    dead_ref = weakref.ref(collected)
    del collected
    gc.collect()
    django_signal, tocsin_signal = DJANGO.Signal(), TOCSIN.Signal()
    for signal in (django_signal, tocsin_signal):
        signal.receivers = [((id(good), id(None)), dead_ref, None, False)]
        signal.connect(good)

    assert [row[1]() for row in django_signal.receivers] == [None]
    assert django_signal.send(Sender) == []

    assert [row[1]() for row in tocsin_signal.receivers] == [good]
    assert responses(tocsin_signal.send(Sender)) == ["good"]


# -- _live_receivers() -----------------------------------------------------------------


def test_patching_live_receivers_does_not_intercept_send(monkeypatch: pytest.MonkeyPatch) -> None:
    """Django's send() calls _live_receivers(), which tracers patch; tocsin's send() does not."""
    seen: list[tuple[str, object]] = []
    for impl in (DJANGO, TOCSIN):
        original: Callable[..., tuple[list[Any], list[Any]]] = impl.Signal._live_receivers

        def traced(
            self: Any,
            sender: object,
            name: str = impl.name,
            original: Callable[..., tuple[list[Any], list[Any]]] = original,
        ) -> tuple[list[Any], list[Any]]:
            seen.append((name, sender))
            return original(self, sender)

        monkeypatch.setattr(impl.Signal, "_live_receivers", traced)

    django_signal, tocsin_signal = DJANGO.Signal(), TOCSIN.Signal()
    for signal in (django_signal, tocsin_signal):
        signal.connect(good)
        assert responses(signal.send(Sender)) == ["good"]
    assert seen == [("django", Sender)]

    assert tocsin_signal._live_receivers(Sender) == ([good], [])
    assert seen == [("django", Sender), ("tocsin", Sender)]


# -- async receivers run at once, in the caller's task until they wait ------------------


def test_async_receivers_start_before_tasks_already_scheduled() -> None:
    """Django's receiver tasks start after tasks scheduled earlier; tocsin's eagerly, at once."""

    async def main(signal: Any) -> list[str]:
        events: list[str] = []

        async def receiver(**kwargs: Any) -> None:
            events.append("receiver")

        async def background() -> None:
            events.append("background")

        signal.connect(receiver)
        task = asyncio.create_task(background())
        await signal.asend(Sender)
        await task
        return events

    assert asyncio.run(main(DJANGO.Signal())) == ["background", "receiver"]
    assert asyncio.run(main(TOCSIN.Signal())) == ["receiver", "background"]


def test_async_receivers_run_in_the_callers_task_until_they_wait() -> None:
    """Django runs each async receiver in a task of its own from its first line;
    tocsin runs it in the caller's task, and the first receiver that waits goes
    on there (those after it get tasks of their own)."""

    async def main(signal: Any) -> list[bool]:
        tasks: list[asyncio.Task[Any] | None] = []

        async def record_task(**kwargs: Any) -> None:
            tasks.append(asyncio.current_task())
            await asyncio.sleep(0)
            tasks.append(asyncio.current_task())

        signal.connect(record_task)
        await signal.asend(Sender)
        return [task is asyncio.current_task() for task in tasks]

    assert asyncio.run(main(DJANGO.Signal())) == [False, False]
    assert asyncio.run(main(TOCSIN.Signal())) == [True, True]
