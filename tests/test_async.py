"""Tests of ``tocsin._async``: asend(), asend_robust(), and async receivers from sync code.

Every test drives its own event loop with ``asyncio.run``. Receivers that
"suspend" await ``asyncio.sleep`` or an ``asyncio.Event``; those that do not
return without ever yielding to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator
from typing import Any, TypeVar

import pytest

import tocsin
import tocsin._async
from tocsin import AsyncReceiversInLoopError, Signal

F = TypeVar("F", bound=Callable[..., Any])

COLOUR: contextvars.ContextVar[str] = contextvars.ContextVar("COLOUR")
SHAPE: contextvars.ContextVar[str] = contextvars.ContextVar("SHAPE")


def mark_async(func: F) -> F:
    """Mark a sync function as async, as ``inspect.markcoroutinefunction`` (3.12+) does."""
    mark: Callable[[F], F] | None = getattr(inspect, "markcoroutinefunction", None)
    if mark is not None:
        return mark(func)
    func.__dict__["_is_coroutine"] = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]
    return func


@pytest.fixture(params=["asgiref", "no asgiref"])
def asgiref_or_not(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with asgiref (as under Django), then with tocsin's own fallback."""
    if request.param == "asgiref":
        pytest.importorskip("asgiref.sync")
    else:
        monkeypatch.setattr(tocsin._async, "_asgiref_sync", lambda: None)
    return str(request.param)


class Stop(BaseException):
    """A BaseException that is not an Exception, like KeyboardInterrupt."""


def sync_receiver(name: str, log: list[str] | None = None) -> Callable[..., str]:
    """A sync receiver that logs its name and returns it."""

    def receive(**kwargs: Any) -> str:
        if log is not None:
            log.append(name)
        return name

    return receive


def async_receiver(
    name: str, log: list[str] | None = None, delay: float | None = None
) -> Callable[..., Coroutine[Any, Any, str]]:
    """An async receiver that logs its name, sleeps *delay* if given, and returns its name."""

    async def receive(**kwargs: Any) -> str:
        if log is not None:
            log.append(name)
        if delay is not None:
            await asyncio.sleep(delay)
        return name

    return receive


def connect_all(signal: Signal, receivers: list[Callable[..., Any]]) -> None:
    """Connect *receivers* strongly, in order."""
    for receiver in receivers:
        signal.connect(receiver, weak=False)


def responses(results: list[tuple[Any, Any]]) -> list[Any]:
    """The responses of a send, without the receivers."""
    return [response for _, response in results]


# -- asend: ordering and threads ----------------------------------------------------------


def test_asend_returns_sync_responses_first_then_async_in_connection_order() -> None:
    """asend() returns the sync responses, then the async ones, each in connection order."""
    signal = Signal()
    connect_all(
        signal,
        [
            async_receiver("async 1"),
            sync_receiver("sync 1"),
            async_receiver("async 2", delay=0.01),
            sync_receiver("sync 2"),
            async_receiver("async 3"),
        ],
    )
    results = asyncio.run(signal.asend(None))
    assert responses(results) == ["sync 1", "sync 2", "async 1", "async 2", "async 3"]


def test_asend_passes_signal_sender_and_named_arguments() -> None:
    """Async receivers are called with ``signal``, ``sender`` and the named arguments."""
    signal = Signal()

    async def echo(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    signal.connect(echo)
    assert asyncio.run(signal.asend("sender", size=3)) == [
        (echo, {"signal": signal, "sender": "sender", "size": 3})
    ]


def test_asend_without_receivers_returns_empty_list() -> None:
    """asend() and asend_robust() with nobody listening return ``[]``."""
    signal = Signal()
    assert asyncio.run(signal.asend(None)) == []
    assert asyncio.run(signal.asend_robust(None)) == []


def test_asend_honours_sender_filtering() -> None:
    """asend() calls only the receivers connected for the sender, or for any sender."""
    signal = Signal()
    sender, other = object(), object()
    signal.connect(async_receiver("mine"), sender=sender, weak=False)
    signal.connect(async_receiver("any"), weak=False)
    assert responses(asyncio.run(signal.asend(sender))) == ["mine", "any"]
    assert responses(asyncio.run(signal.asend(other))) == ["any"]


def test_sync_receivers_in_asend_run_off_the_event_loop_thread(asgiref_or_not: str) -> None:
    """asend() calls sync receivers in another thread, so that they cannot block the loop."""
    signal = Signal()
    threads: list[int] = []

    def record_thread(**kwargs: Any) -> None:
        threads.append(threading.get_ident())

    connect_all(signal, [record_thread, async_receiver("async")])
    signal.connect(record_thread, dispatch_uid="second connection")

    async def main() -> int:
        await signal.asend(None)
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert len(threads) == 2
    assert loop_thread not in threads
    assert threads[0] == threads[1]


def test_failing_sync_receiver_in_asend_stops_the_send() -> None:
    """An exception from a sync receiver in asend() propagates, and async receivers are not run."""
    signal = Signal()
    log: list[str] = []

    def fail(**kwargs: Any) -> None:
        raise ValueError("sync failure")

    connect_all(signal, [fail, async_receiver("async", log)])
    with pytest.raises(ValueError, match="sync failure"):
        asyncio.run(signal.asend(None))
    assert log == []


# -- asend: concurrency -------------------------------------------------------------------


def test_suspending_async_receivers_run_concurrently() -> None:
    """Ten receivers that each sleep 50 ms run at once: together they take far less than 0.5 s."""
    signal = Signal()
    running = 0
    most_running = 0

    def make(index: int) -> Callable[..., Coroutine[Any, Any, int]]:
        async def receive(**kwargs: Any) -> int:
            nonlocal running, most_running
            running += 1
            most_running = max(most_running, running)
            await asyncio.sleep(0.05)
            running -= 1
            return index

        return receive

    connect_all(signal, [make(index) for index in range(10)])
    started = time.perf_counter()
    results = asyncio.run(signal.asend(None))
    elapsed = time.perf_counter() - started
    assert responses(results) == list(range(10))
    assert most_running == 10
    assert elapsed < 0.3


def test_every_receiver_starts_before_any_is_waited_on() -> None:
    """Each receiver starts, in connection order, before the first one to suspend resumes."""
    signal = Signal()
    log: list[str] = []
    gate = asyncio.Event()

    async def waits(**kwargs: Any) -> str:
        log.append("waits: start")
        await gate.wait()
        log.append("waits: resumed")
        return "waits"

    async def opens(**kwargs: Any) -> str:
        log.append("opens")
        gate.set()
        return "opens"

    connect_all(signal, [waits, async_receiver("quick", log), opens])
    assert responses(asyncio.run(signal.asend(None))) == ["waits", "quick", "opens"]
    assert log == ["waits: start", "quick", "opens", "waits: resumed"]


def test_receivers_that_never_suspend() -> None:
    """Async receivers that return without suspending are all called, in connection order."""
    signal = Signal()
    log: list[str] = []
    connect_all(signal, [async_receiver(f"r{index}", log) for index in range(5)])
    assert responses(asyncio.run(signal.asend(None))) == ["r0", "r1", "r2", "r3", "r4"]
    assert log == ["r0", "r1", "r2", "r3", "r4"]


def test_mixture_of_suspending_and_non_suspending_receivers() -> None:
    """Suspending and non-suspending receivers mix: all start in order; responses keep it."""
    signal = Signal()
    log: list[str] = []
    connect_all(
        signal,
        [
            async_receiver("quick 1", log),
            async_receiver("slow 1", log, delay=0.02),
            async_receiver("quick 2", log),
            async_receiver("yields", log, delay=0),
            async_receiver("slow 2", log, delay=0.01),
            async_receiver("quick 3", log),
        ],
    )
    expected = ["quick 1", "slow 1", "quick 2", "yields", "slow 2", "quick 3"]
    assert responses(asyncio.run(signal.asend(None))) == expected
    assert log == expected


def test_a_receiver_can_suspend_many_times() -> None:
    """A receiver that suspends again and again gets the values it awaits."""
    signal = Signal()

    async def counts(**kwargs: Any) -> int:
        total = 0
        for step in range(20):
            await asyncio.sleep(0)
            total += await asyncio.sleep(0, result=step)
        return total

    connect_all(signal, [counts, counts])
    signal.connect(counts, dispatch_uid="again")
    assert responses(asyncio.run(signal.asend(None))) == [190, 190]


# -- asend: failures -----------------------------------------------------------------------


@pytest.mark.parametrize("suspend_first", [False, True])
def test_one_failure_is_reraised_as_is(suspend_first: bool) -> None:
    """When one async receiver fails, asend() re-raises that very exception, not a group."""
    signal = Signal()
    error = ValueError("async failure")

    async def fail(**kwargs: Any) -> None:
        if suspend_first:
            await asyncio.sleep(0)
        raise error

    connect_all(signal, [async_receiver("before"), fail, async_receiver("after")])
    with pytest.raises(ValueError, match="async failure") as info:
        asyncio.run(signal.asend(None))
    assert info.value is error


def test_several_failures_raise_an_exception_group() -> None:
    """When several async receivers fail, asend() raises an ExceptionGroup of their exceptions."""
    signal = Signal()
    first, second = ValueError("first"), KeyError("second")

    async def fail_first(**kwargs: Any) -> None:
        raise first

    async def fail_second(**kwargs: Any) -> None:
        raise second

    connect_all(signal, [fail_first, async_receiver("fine"), fail_second])
    with pytest.raises(ExceptionGroup) as info:
        asyncio.run(signal.asend(None))
    assert list(info.value.exceptions) == [first, second]


def test_failures_after_first_one_are_cancelled_like_a_task_group() -> None:
    """A receiver that would fail after the first failure is cancelled instead, as in TaskGroup."""
    signal = Signal()
    log: list[str] = []
    error = ValueError("at once")

    async def fail_at_once(**kwargs: Any) -> None:
        raise error

    async def fail_later(**kwargs: Any) -> None:
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            log.append("cancelled")
            raise
        raise KeyError("later")

    connect_all(signal, [fail_at_once, fail_later])
    with pytest.raises(ValueError, match="at once") as info:
        asyncio.run(signal.asend(None))
    assert info.value is error
    assert log == ["cancelled"]


@pytest.mark.parametrize("suspend_first", [False, True])
def test_failure_cancels_receivers_still_suspended(suspend_first: bool) -> None:
    """A failure cancels the receivers still waiting, after every receiver was started."""
    signal = Signal()
    log: list[str] = []

    def waiter(name: str) -> Callable[..., Coroutine[Any, Any, None]]:
        async def wait_forever(**kwargs: Any) -> None:
            log.append(f"{name} started")
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                log.append(f"{name} cancelled")
                raise

        return wait_forever

    async def fail(**kwargs: Any) -> None:
        log.append("fail started")
        if suspend_first:
            await asyncio.sleep(0)
        raise ValueError("async failure")

    connect_all(signal, [waiter("first"), fail, waiter("last")])
    with pytest.raises(ValueError, match="async failure"):
        asyncio.run(signal.asend(None))
    assert log[:3] == ["first started", "fail started", "last started"]
    assert sorted(log[3:]) == ["first cancelled", "last cancelled"]


def test_receiver_failing_when_called_stops_every_receiver_from_starting() -> None:
    """A receiver whose call itself fails (bad arguments) fails asend() before any receiver
    runs, as in Django, which calls them all before it starts any."""
    signal = Signal()
    log: list[str] = []

    async def first(**kwargs: Any) -> None:
        log.append("first started")

    async def needs_colour(*, colour: str, **kwargs: Any) -> None:
        log.append("needs_colour started")

    async def last(**kwargs: Any) -> None:
        log.append("last started")

    connect_all(signal, [first, needs_colour, last])
    # filterwarnings=error: a coroutine left un-awaited would fail this test.
    with pytest.raises(TypeError, match="colour"):
        asyncio.run(signal.asend(None))
    assert log == []
    responses = signal.send_robust(None)
    assert responses[0][1] is None
    assert isinstance(responses[1][1], TypeError)


def test_asend_robust_returns_exceptions_and_logs_them(caplog: pytest.LogCaptureFixture) -> None:
    """asend_robust() returns each exception as the response, logs it, and runs every receiver."""
    signal = Signal()
    sync_error, early_error, late_error = ValueError("sync"), KeyError("early"), OSError("late")

    def sync_fail(**kwargs: Any) -> None:
        raise sync_error

    async def early_fail(**kwargs: Any) -> None:
        raise early_error

    async def late_fail(**kwargs: Any) -> None:
        await asyncio.sleep(0)
        raise late_error

    connect_all(
        signal,
        [sync_fail, early_fail, async_receiver("slow", delay=0.01), late_fail, sync_receiver("ok")],
    )
    with caplog.at_level(logging.ERROR, logger="tocsin"):
        results = asyncio.run(signal.asend_robust(None))
    assert responses(results) == [sync_error, "ok", early_error, "slow", late_error]
    assert [record.name for record in caplog.records] == ["tocsin"] * 3
    logged = {record.exc_info[1] for record in caplog.records if record.exc_info}
    assert logged == {sync_error, early_error, late_error}


def test_asend_robust_lets_base_exceptions_through() -> None:
    """asend_robust() catches Exception only; other BaseExceptions still propagate."""
    signal = Signal()

    async def stop(**kwargs: Any) -> None:
        raise Stop

    connect_all(signal, [stop])
    with pytest.raises(Stop):
        asyncio.run(signal.asend_robust(None))


# A KeyboardInterrupt that escapes a task's step leaves CPython 3.11's recursion
# counter off (plain asyncio does the same), so it is raised before suspending only.
@pytest.mark.parametrize(
    ("error_type", "suspend_first"), [(Stop, False), (Stop, True), (KeyboardInterrupt, False)]
)
def test_base_exception_from_async_receiver_propagates(
    error_type: type[BaseException], suspend_first: bool
) -> None:
    """A KeyboardInterrupt-like BaseException from an async receiver propagates out of asend()."""
    signal = Signal()
    log: list[str] = []

    async def waits(**kwargs: Any) -> None:
        try:
            await asyncio.sleep(10)
        finally:
            log.append("waits: finished")

    async def interrupt(**kwargs: Any) -> None:
        if suspend_first:
            await asyncio.sleep(0)
        raise error_type

    connect_all(signal, [waits, interrupt])

    async def main() -> None:
        await signal.asend(None)

    with pytest.raises(error_type):
        asyncio.run(main())
    assert log == ["waits: finished"]


@pytest.mark.parametrize("count", [1, 2], ids=["alone", "two"])
def test_cancelling_the_caller_cancels_suspended_receivers(count: int) -> None:
    """Cancelling the task that awaits asend() cancels the receivers it is waiting for
    (a lone receiver is awaited without asyncio.wait(): the same outcome)."""
    signal = Signal()
    log: list[str] = []
    started = 0

    def waiter(name: str) -> Callable[..., Coroutine[Any, Any, None]]:
        async def wait_forever(**kwargs: Any) -> None:
            nonlocal started
            started += 1
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                log.append(f"{name} cancelled")
                raise

        return wait_forever

    connect_all(signal, [waiter("first"), waiter("second")][:count])

    async def main() -> None:
        task = asyncio.create_task(signal.asend(None))
        while started < count:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert sorted(log) == ["first cancelled", "second cancelled"][:count]


def test_the_callers_cancellation_propagates_even_if_a_later_receiver_swallows_it() -> None:
    """A receiver in a task of its own (not the first to wait) that catches the
    cancellation and returns cannot cancel the cancellation of the task awaiting
    asend(), as under a TaskGroup."""
    signal = Signal()
    finished: list[str] = []

    async def waits(**kwargs: Any) -> None:
        await asyncio.Event().wait()

    async def swallow(**kwargs: Any) -> str:
        with contextlib.suppress(asyncio.CancelledError):  # swallowed
            await asyncio.Event().wait()
        finished.append("stubborn")
        return "done anyway"

    connect_all(signal, [waits, swallow])

    async def main() -> None:
        task = asyncio.create_task(signal.asend(None))
        for _ in range(5):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()

    asyncio.run(main())
    assert finished == ["stubborn"]


def test_the_first_receiver_to_wait_swallowing_the_callers_cancellation_is_awaited_directly() -> (
    None
):
    """The first receiver that waits goes on in the caller's task: if it catches
    the caller's cancellation and returns, asend() goes on as if the receiver had
    been awaited directly (a departure from Django's task per receiver)."""
    signal = Signal()

    async def swallow(**kwargs: Any) -> str:
        with contextlib.suppress(asyncio.CancelledError):  # swallowed
            await asyncio.Event().wait()
        return "done anyway"

    connect_all(signal, [swallow, async_receiver("later", delay=0.01)])

    async def main() -> list[Any]:
        task = asyncio.create_task(signal.asend(None))
        for _ in range(5):
            await asyncio.sleep(0)
        task.cancel()
        results = await task
        current = asyncio.current_task()
        assert current is not None
        assert current.cancelling() == 0
        return responses(results)

    assert asyncio.run(main()) == ["done anyway", "later"]


@pytest.mark.parametrize("count", [1, 2], ids=["alone", "two"])
def test_a_receiver_cancelled_from_inside_after_waiting_gives_none(count: int) -> None:
    """A receiver whose own task is cancelled after it suspended (not the caller's)
    gives None, and asend() returns normally."""
    signal = Signal()

    async def cancels_itself(**kwargs: Any) -> str:
        await asyncio.sleep(0)
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)
        return "not reached"

    async def other(**kwargs: Any) -> str:
        await asyncio.sleep(0)
        return "other"

    connect_all(signal, [cancels_itself, other][:count])
    assert responses(asyncio.run(signal.asend(None))) == [None, "other"][:count]


@pytest.mark.parametrize("count", [1, 2], ids=["alone", "two"])
def test_a_timeout_around_asend_stops_slow_receivers(count: int) -> None:
    """asyncio.timeout() around asend() cancels the receivers and raises TimeoutError."""
    signal = Signal()
    cancelled: list[str] = []

    def slow() -> Callable[..., Coroutine[Any, Any, None]]:
        async def sleep(**kwargs: Any) -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append("slow")
                raise

        return sleep

    connect_all(signal, [slow() for _ in range(count)])

    async def main() -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await signal.asend(None)
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0

    asyncio.run(main())
    assert cancelled == ["slow"] * count


# -- asend: contextvars ---------------------------------------------------------------------


def test_contextvars_set_by_async_receivers_are_visible_after_asend() -> None:
    """What async receivers set in contextvars, before or after suspending, the caller then sees."""
    signal = Signal()

    async def set_colour(**kwargs: Any) -> None:
        COLOUR.set("red")

    async def set_shape_later(**kwargs: Any) -> None:
        await asyncio.sleep(0)
        SHAPE.set("square")

    connect_all(signal, [set_colour, set_shape_later])

    async def main() -> tuple[str, str]:
        await signal.asend(None)
        return COLOUR.get(), SHAPE.get()

    assert asyncio.run(main()) == ("red", "square")


def test_async_receivers_share_one_context_with_the_callers_values() -> None:
    """Receivers see the caller's values and what earlier receivers set, even while suspended."""
    signal = Signal()
    seen: list[str] = []
    colour_set = asyncio.Event()

    async def sets_after_suspending(**kwargs: Any) -> None:
        await asyncio.sleep(0)
        COLOUR.set("blue")
        colour_set.set()

    async def reads(**kwargs: Any) -> None:
        seen.append(SHAPE.get())
        await colour_set.wait()
        seen.append(COLOUR.get())

    connect_all(signal, [sets_after_suspending, reads])

    async def main() -> None:
        SHAPE.set("circle")
        await signal.asend(None)

    asyncio.run(main())
    assert seen == ["circle", "blue"]


def test_contextvars_are_restored_when_a_receiver_fails() -> None:
    """What receivers set before one failed is still visible to the caller."""
    signal = Signal()

    async def set_colour(**kwargs: Any) -> None:
        COLOUR.set("green")

    async def fail(**kwargs: Any) -> None:
        raise ValueError("failure")

    connect_all(signal, [set_colour, fail])

    async def main() -> str:
        with pytest.raises(ValueError, match="failure"):
            await signal.asend(None)
        return COLOUR.get()

    assert asyncio.run(main()) == "green"


# -- send() and send_robust() with async receivers --------------------------------------------


def test_send_from_sync_code_runs_async_receivers(asgiref_or_not: str) -> None:
    """send() from sync code runs the async receivers to completion, after the sync ones."""
    signal = Signal()
    connect_all(
        signal,
        [
            async_receiver("async 1", delay=0.01),
            sync_receiver("sync"),
            async_receiver("async 2"),
        ],
    )
    assert responses(signal.send(None)) == ["sync", "async 1", "async 2"]


def test_send_robust_from_sync_code_catches_async_failures(asgiref_or_not: str) -> None:
    """send_robust() from sync code returns the exceptions of failing async receivers."""
    signal = Signal()
    error = ValueError("async failure")

    async def fail(**kwargs: Any) -> None:
        await asyncio.sleep(0)
        raise error

    connect_all(signal, [fail, async_receiver("ok")])
    assert responses(signal.send_robust(None)) == [error, "ok"]


def test_send_from_sync_code_raises_async_failure(asgiref_or_not: str) -> None:
    """send() from sync code re-raises the exception of a failing async receiver."""
    signal = Signal()

    async def fail(**kwargs: Any) -> None:
        await asyncio.sleep(0)
        raise ValueError("async failure")

    connect_all(signal, [fail])
    with pytest.raises(ValueError, match="async failure"):
        signal.send(None)


def test_send_from_sync_code_copies_contextvars_back(asgiref_or_not: str) -> None:
    """send() from sync code makes what async receivers set visible to the caller."""
    signal = Signal()

    async def set_colour(**kwargs: Any) -> None:
        await asyncio.sleep(0)
        COLOUR.set("purple")

    connect_all(signal, [set_colour])

    def main() -> str:
        signal.send(None)
        return COLOUR.get()

    assert contextvars.copy_context().run(main) == "purple"


@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_send_in_running_loop_refuses_before_calling_anything(method: str) -> None:
    """send() inside a running loop with async receivers raises before calling any receiver."""
    signal = Signal()
    log: list[str] = []
    connect_all(signal, [sync_receiver("sync", log), async_receiver("async", log)])

    async def main() -> None:
        with pytest.raises(AsyncReceiversInLoopError, match="asend") as info:
            getattr(signal, method)(None)
        assert isinstance(info.value, RuntimeError)
        assert isinstance(info.value, tocsin.TocsinError)

    asyncio.run(main())
    assert log == []


def test_send_in_running_loop_with_only_sync_receivers_works() -> None:
    """Inside a running loop, send() with sync receivers only calls them directly."""
    signal = Signal()
    connect_all(signal, [sync_receiver("sync")])

    async def main() -> list[Any]:
        return responses(signal.send(None))

    assert asyncio.run(main()) == ["sync"]


def test_send_from_sync_receiver_called_by_asend(asgiref_or_not: str) -> None:
    """A sync receiver run by asend() (off the loop) may itself send() to async receivers."""
    inner, outer = Signal(), Signal()
    connect_all(inner, [async_receiver("inner async", delay=0)])

    def relay(**kwargs: Any) -> list[Any]:
        return responses(inner.send(None))

    connect_all(outer, [relay])
    assert responses(asyncio.run(outer.asend(None))) == [["inner async"]]


# -- awaitables that are not coroutines -------------------------------------------------------


class Answer:
    """An awaitable that is not a coroutine: it suspends once, then returns 42."""

    def __await__(self) -> Generator[Any, Any, int]:
        yield None
        return 42


class Immediate:
    """An awaitable whose ``__await__`` is a plain iterator that never suspends."""

    def __await__(self) -> Iterator[Any]:
        return iter(())


def test_async_receiver_returning_object_with_await() -> None:
    """An async receiver may return any object with ``__await__``; its result is the response."""
    signal = Signal()

    @mark_async
    def answer(**kwargs: Any) -> Awaitable[int]:
        return Answer()

    @mark_async
    def immediate(**kwargs: Any) -> Immediate:
        return Immediate()

    connect_all(signal, [answer, immediate])
    assert signal.receivers[0].is_async
    assert responses(asyncio.run(signal.asend(None))) == [42, None]


def test_async_receiver_returning_future_of_running_loop() -> None:
    """An async receiver may return an ``asyncio.Future``, resolved later or already done."""
    signal = Signal()

    @mark_async
    def pending(**kwargs: Any) -> asyncio.Future[str]:
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_result, "pending")
        return future

    @mark_async
    def done(**kwargs: Any) -> asyncio.Future[str]:
        future = asyncio.get_running_loop().create_future()
        future.set_result("done")
        return future

    connect_all(signal, [pending, done])
    assert responses(asyncio.run(signal.asend(None))) == ["pending", "done"]


def test_async_receiver_returning_failed_future() -> None:
    """A Future that fails makes asend() raise its exception, and asend_robust() return it."""
    signal = Signal()
    error = ValueError("future failed")

    @mark_async
    def failed(**kwargs: Any) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_exception, error)
        return future

    connect_all(signal, [failed])
    with pytest.raises(ValueError, match="future failed"):
        asyncio.run(signal.asend(None))
    assert responses(asyncio.run(signal.asend_robust(None))) == [error]


# -- task-bound asyncio features inside receivers -----------------------------------------------


def test_receiver_can_use_asyncio_timeout() -> None:
    """``asyncio.timeout`` inside a receiver times out that receiver only, as in Django."""
    signal = Signal()

    async def times_out(**kwargs: Any) -> str:
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(10)
        except TimeoutError:
            return "timed out"
        return "finished"

    connect_all(signal, [times_out, async_receiver("other", delay=0)])
    assert responses(asyncio.run(signal.asend(None))) == ["timed out", "other"]


def test_receiver_can_use_a_task_group() -> None:
    """A ``TaskGroup`` inside a receiver reports its failures to that receiver, as in Django."""
    signal = Signal()

    async def fail_soon() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("child failed")

    async def groups(**kwargs: Any) -> str:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(asyncio.sleep(10))
                group.create_task(fail_soon())
        except ExceptionGroup as errors:
            return f"caught {errors.exceptions[0]}"
        return "finished"

    connect_all(signal, [groups])
    assert responses(asyncio.run(signal.asend(None))) == ["caught child failed"]


# -- tasks only for receivers that wait ----------------------------------------------------------


def test_receivers_that_do_not_wait_run_in_the_callers_task() -> None:
    """A send to receivers that never wait makes no task: each runs in the caller's task."""
    signal = Signal()
    seen: list[asyncio.Task[Any] | None] = []

    async def record(**kwargs: Any) -> None:
        seen.append(asyncio.current_task())

    connect_all(signal, [record, record])
    signal.connect(record, dispatch_uid="again")

    async def main() -> asyncio.Task[Any] | None:
        await signal.asend(None)
        return asyncio.current_task()

    caller = asyncio.run(main())
    assert seen == [caller, caller]


def test_each_receiver_keeps_the_task_it_started_in() -> None:
    """asyncio.current_task() inside a receiver is the same before and after it
    waits; the first to wait keeps the caller's task, each later one has its own."""
    signal = Signal()
    tasks: dict[str, tuple[object, object]] = {}

    def waiter(name: str) -> Callable[..., Coroutine[Any, Any, None]]:
        async def wait(**kwargs: Any) -> None:
            before = asyncio.current_task()
            await asyncio.sleep(0.001)
            tasks[name] = (before, asyncio.current_task())

        return wait

    connect_all(signal, [async_receiver("quick"), waiter("first"), waiter("second")])

    async def main() -> asyncio.Task[Any] | None:
        await signal.asend(None)
        return asyncio.current_task()

    caller = asyncio.run(main())
    assert tasks["first"] == (caller, caller)
    before, after = tasks["second"]
    assert before is after
    assert before is not caller


@pytest.mark.parametrize("position", [0, 1], ids=["first to wait", "second to wait"])
def test_a_timeout_entered_before_waiting_acts_on_that_receiver_alone(position: int) -> None:
    """A receiver that enters asyncio.timeout() and then waits times out alone,
    whether it runs on in the caller's task or in a task of its own."""
    signal = Signal()

    async def times_out(**kwargs: Any) -> str:
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(10)
        except TimeoutError:
            return "timed out"
        return "finished"

    receivers = [async_receiver("waits", delay=0.02)]
    receivers.insert(position, times_out)
    connect_all(signal, receivers)

    async def main() -> list[Any]:
        results = responses(await signal.asend(None))
        current = asyncio.current_task()
        assert current is not None
        assert current.cancelling() == 0
        await asyncio.sleep(0)  # no cancellation is left pending for the caller
        return results

    expected: list[Any] = ["waits"]
    expected.insert(position, "timed out")
    assert asyncio.run(main()) == expected


def test_a_receiver_that_cancels_its_task_before_waiting_does_not_cancel_the_send() -> None:
    """asyncio.current_task().cancel() in a receiver that then returns without
    waiting cancels nothing else: the caller goes on, uncancelled."""
    signal = Signal()

    async def cancels_itself(**kwargs: Any) -> str:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        return "returned"

    connect_all(signal, [cancels_itself, async_receiver("next")])

    async def main() -> list[Any]:
        results = responses(await signal.asend(None))
        await asyncio.sleep(0)  # would raise CancelledError if the request were left
        current = asyncio.current_task()
        assert current is not None
        assert current.cancelling() == 0
        return results

    assert asyncio.run(main()) == ["returned", "next"]


def test_a_context_variable_token_set_before_waiting_resets_after_it() -> None:
    """The first receiver to wait runs all its steps in the send's one context, so a
    token from before its wait resets after it."""
    signal = Signal()

    async def sets_and_resets(**kwargs: Any) -> str:
        token = COLOUR.set("inside")
        await asyncio.sleep(0)
        value = COLOUR.get()
        COLOUR.reset(token)
        return value

    connect_all(signal, [sets_and_resets])

    async def main() -> tuple[list[Any], str]:
        COLOUR.set("outside")
        results = responses(await signal.asend(None))
        return results, COLOUR.get()

    assert asyncio.run(main()) == (["inside"], "outside")


@pytest.mark.parametrize("robust", [False, True], ids=["asend", "asend_robust"])
def test_a_failure_cancels_the_first_receiver_to_wait(robust: bool) -> None:
    """When a receiver in its own task fails, the first receiver to wait, running in
    the caller's task, is cancelled, and the caller is not."""
    signal = Signal()
    log: list[str] = []

    async def waits(**kwargs: Any) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            log.append("cancelled")
            raise

    async def fails(**kwargs: Any) -> None:
        await asyncio.sleep(0.001)
        raise ValueError("failure")

    connect_all(signal, [waits, fails])

    async def main() -> None:
        if robust:
            with pytest.raises(asyncio.TimeoutError):
                async with asyncio.timeout(0.05):
                    await signal.asend_robust(None)
        else:
            with pytest.raises(ValueError, match="failure"):
                await signal.asend(None)
        current = asyncio.current_task()
        assert current is not None
        assert current.cancelling() == 0
        await asyncio.sleep(0)

    asyncio.run(main())
    assert log == ["cancelled"]


# -- sync receivers on the event loop (opt-in) --------------------------------------------------


@pytest.mark.parametrize("method", ["asend", "asend_robust"])
def test_sync_receivers_on_loop_run_in_the_loops_thread(method: str) -> None:
    """With sync_receivers_on_loop, asend() calls sync receivers directly, in the
    event loop's thread and the caller's context, in order, before the async ones."""
    signal = Signal()
    signal.sync_receivers_on_loop = True
    threads: list[int] = []
    colours: list[str] = []

    def record(**kwargs: Any) -> str:
        threads.append(threading.get_ident())
        colours.append(COLOUR.get())
        COLOUR.set("set by a sync receiver")
        return "sync"

    connect_all(signal, [async_receiver("async"), record, sync_receiver("sync 2")])

    async def main() -> tuple[list[Any], int, str]:
        COLOUR.set("caller's")
        results = responses(await getattr(signal, method)(None))
        return results, threading.get_ident(), COLOUR.get()

    results, loop_thread, colour = asyncio.run(main())
    assert results == ["sync", "sync 2", "async"]
    assert threads == [loop_thread]
    assert colours == ["caller's"]
    assert colour == "set by a sync receiver"


def test_sync_receivers_on_loop_failures() -> None:
    """On the loop, a failing sync receiver stops asend() before the async receivers,
    and asend_robust() returns its exception, as off the loop."""
    signal = Signal()
    signal.sync_receivers_on_loop = True
    log: list[str] = []
    error = ValueError("sync failure")

    def fail(**kwargs: Any) -> None:
        raise error

    connect_all(signal, [fail, async_receiver("async", log)])
    with pytest.raises(ValueError, match="sync failure"):
        asyncio.run(signal.asend(None))
    assert log == []
    assert responses(asyncio.run(signal.asend_robust(None))) == [error, "async"]


def test_sync_receivers_on_loop_is_off_by_default_and_per_signal() -> None:
    """Signals hop to a thread for sync receivers unless that very signal opts in."""
    assert Signal.sync_receivers_on_loop is False
    opted, other = Signal(), Signal()
    opted.sync_receivers_on_loop = True
    assert other.sync_receivers_on_loop is False


def test_asend_with_a_signal_argument_raises_pythons_type_error() -> None:
    """``signal=`` among the named arguments makes each call raise Python's TypeError
    ("multiple values"), as in Django, before any receiver runs."""
    signal = Signal()
    log: list[str] = []
    connect_all(signal, [async_receiver("first", log), async_receiver("second", log)])
    with pytest.raises(TypeError, match="multiple values"):
        asyncio.run(signal.asend(None, signal="mine"))
    assert log == []


@pytest.mark.parametrize("position", [0, 1], ids=["first to wait", "second to wait"])
def test_an_anyio_cancel_scope_entered_before_waiting_acts_on_that_receiver_alone(
    position: int,
) -> None:
    """anyio's cancel scopes (httpx's timeouts use them) are bound to the task they are
    entered in: a receiver that enters one and then waits exits it in the same task."""
    anyio = pytest.importorskip("anyio")
    signal = Signal()

    async def fails_after(**kwargs: Any) -> str:
        try:
            with anyio.fail_after(0.01):
                await asyncio.sleep(10)
        except TimeoutError:
            return "timed out"
        return "finished"

    receivers = [async_receiver("waits", delay=0.02)]
    receivers.insert(position, fails_after)
    connect_all(signal, receivers)

    async def main() -> list[Any]:
        results = responses(await signal.asend(None))
        current = asyncio.current_task()
        assert current is not None
        assert current.cancelling() == 0
        return results

    expected: list[Any] = ["waits"]
    expected.insert(position, "timed out")
    assert asyncio.run(main()) == expected
