"""Tests of on-commit receivers in the core: ``connect(receiver, on_commit=True)``.

No database here: the transaction is ``tocsin.testing.FakeTransaction``. The
tests of the scope protocol itself (``oncommit.bind()``, scope finders, a
``defer()`` that returns False, ``run_all()``'s ``await_`` and ``arun_all()``)
use :class:`Scope`, the smallest scope there is, which only keeps the calls.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from tocsin import Signal, oncommit, receiver
from tocsin.oncommit import Deferred, TransactionScope
from tocsin.testing import FakeTransaction


class Scope:
    """The smallest transaction scope: keeps the calls deferred to it.

    With ``active=False`` it says no transaction is in progress (``defer()``
    returns False), and the receivers are called at once.
    """

    def __init__(self, *, active: bool = True) -> None:
        self.active = active
        self.calls: list[Deferred] = []

    def defer(self, deferred: Deferred) -> bool:
        if not self.active:
            return False
        self.calls.append(deferred)
        return True


class Recorder:
    """Sync receivers that log ``(name, sender, named)`` when called and return a name."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object, dict[str, Any]]] = []

    def make(self, name: str) -> Callable[..., str]:
        def receive(sender: object, **named: Any) -> str:
            named.pop("signal")
            self.calls.append((name, sender, named))
            return f"{name} done"

        receive.__qualname__ = name
        return receive

    def make_async(self, name: str) -> Callable[..., Awaitable[str]]:
        async def receive(sender: object, **named: Any) -> str:
            await asyncio.sleep(0)
            named.pop("signal")
            self.calls.append((name, sender, named))
            return f"{name} done"

        receive.__qualname__ = name
        return receive

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]


class Boom(Exception):
    """What failing receivers raise."""


def failing(message: str) -> Callable[..., None]:
    def fail(**kwargs: Any) -> None:
        raise Boom(message)

    fail.__qualname__ = f"fail_{message}"
    return fail


@pytest.fixture
def signal() -> Signal:
    return Signal()


@pytest.fixture
def log() -> Recorder:
    return Recorder()


@pytest.fixture
def transaction() -> Iterator[FakeTransaction]:
    """A transaction bound for the whole test; rolled back after it, if the test
    did not end it."""
    transaction = FakeTransaction().begin()
    yield transaction
    if transaction.state == "active":
        transaction.rollback()


def responses_of(result: list[tuple[Any, Any]]) -> list[Any]:
    return [response for _, response in result]


# -- without a transaction ------------------------------------------------------------


def test_without_a_scope_an_on_commit_receiver_is_called_at_once(
    signal: Signal, log: Recorder
) -> None:
    """Outside a transaction there is nothing to wait for: the receiver runs
    during send(), and its real response is in the result."""
    later = log.make("later")
    signal.connect(later, on_commit=True)

    result = signal.send(sender="app", size=3)

    assert log.calls == [("later", "app", {"size": 3})]
    assert result == [(later, "later done")]


def test_without_a_scope_responses_follow_the_ordinary_receivers_of_their_kind(
    signal: Signal, log: Recorder
) -> None:
    """An on-commit receiver called at once joins the receivers of its kind
    (sync or async) after the ordinary ones, whatever the connection order."""
    sync_later = log.make("sync_later")
    async_later = log.make_async("async_later")
    sync_now = log.make("sync_now")
    async_now = log.make_async("async_now")
    signal.connect(sync_later, on_commit=True)
    signal.connect(async_later, on_commit=True)
    signal.connect(sync_now)
    signal.connect(async_now)

    result = signal.send(sender="app")

    assert result == [
        (sync_now, "sync_now done"),
        (sync_later, "sync_later done"),
        (async_now, "async_now done"),
        (async_later, "async_later done"),
    ]
    assert log.names() == ["sync_now", "sync_later", "async_now", "async_later"]


def test_a_scope_whose_defer_returns_false_makes_the_receiver_run_at_once(
    signal: Signal, log: Recorder
) -> None:
    """``defer()`` returning False means "no transaction in progress after all"."""
    later = log.make("later")
    signal.connect(later, on_commit=True)
    idle = Scope(active=False)

    with oncommit.bind(idle):
        result = signal.send(sender="app")

    assert result == [(later, "later done")]
    assert idle.calls == []


# -- with a transaction ---------------------------------------------------------------


def test_with_a_bound_scope_the_response_is_a_pending_deferred(
    signal: Signal, log: Recorder, transaction: FakeTransaction
) -> None:
    later = log.make("later")
    signal.connect(later, on_commit=True)

    result = signal.send(sender="app", size=3)

    assert log.calls == []
    [(receiver_, deferred)] = result
    assert receiver_ is later
    assert isinstance(deferred, Deferred)
    assert deferred.state == "pending"
    assert deferred.result is None
    assert deferred.exception is None
    assert (deferred.signal, deferred.receiver, deferred.sender) == (signal, later, "app")
    assert deferred.named == {"size": 3}
    assert transaction.pending == [deferred]
    assert "pending" in repr(deferred)


def test_commit_calls_the_receiver_and_the_deferred_is_done_with_its_result(
    signal: Signal, log: Recorder, transaction: FakeTransaction
) -> None:
    later = log.make("later")
    signal.connect(later, on_commit=True)
    [(_, deferred)] = signal.send(sender="app", size=3)

    transaction.commit()

    assert log.calls == [("later", "app", {"size": 3})]
    assert deferred.state == "done"
    assert deferred.result == "later done"
    assert deferred.exception is None


def test_a_deferred_records_when_its_receiver_ran_and_for_how_long(
    signal: Signal, transaction: FakeTransaction
) -> None:
    """``started`` is the wall-clock time the call began and ``duration`` its length
    in seconds, for a call that failed as for one that succeeded; both stay None
    until the call runs, and for a dropped call."""

    def slow(**kwargs: Any) -> None:
        time.sleep(0.02)

    fail = failing("late")
    signal.connect(slow, on_commit=True)
    signal.connect(fail, on_commit=True)
    [(_, done), (_, failed)] = signal.send(sender="app")
    [(_, dropped), _] = signal.send(sender="app")
    assert (done.started, done.duration) == (None, None)
    dropped.drop()

    before = time.time()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(logging.getLogger("tocsin"), "disabled", True)
        transaction.commit()
    after = time.time()

    assert done.started is not None
    assert done.duration is not None
    assert before <= done.started <= after
    assert 0.02 <= done.duration <= after - before
    assert failed.state == "failed"
    assert failed.started is not None
    assert done.started <= failed.started <= after
    assert failed.duration is not None
    assert 0 <= failed.duration < done.duration
    assert (dropped.started, dropped.duration) == (None, None)


def test_deferred_calls_run_in_the_order_of_the_sends(
    log: Recorder, transaction: FakeTransaction
) -> None:
    first, second = Signal(), Signal()
    on_first, on_second = log.make("on_first"), log.make("on_second")
    first.connect(on_first, on_commit=True)
    second.connect(on_second, on_commit=True)

    first.send(sender="a")
    second.send(sender="b")
    first.send(sender="c")
    assert log.calls == []

    transaction.commit()
    assert [(name, sender) for name, sender, _ in log.calls] == [
        ("on_first", "a"),
        ("on_second", "b"),
        ("on_first", "c"),
    ]


def test_ordinary_receivers_run_at_once_inside_a_transaction(
    signal: Signal, log: Recorder, transaction: FakeTransaction
) -> None:
    """Only on_commit=True receivers wait; the responses of the others come first."""
    later, now = log.make("later"), log.make("now")
    signal.connect(later, on_commit=True)
    signal.connect(now)

    result = signal.send(sender="app")

    assert log.names() == ["now"]
    assert result[0] == (now, "now done")
    assert result[1][0] is later
    assert isinstance(result[1][1], Deferred)
    transaction.commit()
    assert log.names() == ["now", "later"]


def test_rollback_drops_the_deferred_calls(
    signal: Signal, log: Recorder, transaction: FakeTransaction
) -> None:
    signal.connect(log.make("later"), on_commit=True, weak=False)
    [(_, deferred)] = signal.send(sender="app")

    transaction.rollback()

    assert deferred.state == "dropped"
    assert log.calls == []


def test_a_deferred_call_runs_only_once(
    signal: Signal, log: Recorder, transaction: FakeTransaction
) -> None:
    signal.connect(log.make("later"), on_commit=True, weak=False)
    [(_, deferred)] = signal.send(sender="app")
    deferred.run()

    with pytest.raises(RuntimeError, match="already run or been dropped"):
        deferred.run()
    oncommit.run_all([deferred])  # run_all skips what is not pending
    deferred.drop()  # too late to drop: it stays done

    assert log.names() == ["later"]
    assert deferred.state == "done"


def test_a_dropped_call_cannot_be_run(
    signal: Signal, log: Recorder, transaction: FakeTransaction
) -> None:
    signal.connect(log.make("later"), on_commit=True, weak=False)
    [(_, deferred)] = signal.send(sender="app")
    deferred.drop()

    with pytest.raises(RuntimeError, match="already run or been dropped"):
        deferred.run()
    assert log.calls == []


# -- failures ---------------------------------------------------------------------------


def test_a_robust_receiver_failure_is_logged_and_kept(
    signal: Signal, log: Recorder, transaction: FakeTransaction, caplog: pytest.LogCaptureFixture
) -> None:
    """robust is the default: the error is logged to "tocsin", the commit goes
    on, and the Deferred is "failed" with the exception."""
    fail = failing("one")
    signal.connect(fail, on_commit=True)
    signal.connect(log.make("after"), on_commit=True, weak=False)
    [(_, deferred), (_, after)] = signal.send(sender="app")

    with caplog.at_level(logging.ERROR, logger="tocsin"):
        transaction.commit()  # does not raise

    assert deferred.state == "failed"
    assert isinstance(deferred.exception, Boom)
    assert after.state == "done"
    assert log.names() == ["after"]
    [record] = caplog.records
    assert record.name == "tocsin"
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith("Error calling ")
    assert "fail_one" in record.getMessage()
    assert "in on_commit() (one)" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[1] is deferred.exception


def test_robust_false_raises_from_run_all_after_the_other_calls_ran(
    signal: Signal, log: Recorder, transaction: FakeTransaction, caplog: pytest.LogCaptureFixture
) -> None:
    fail = failing("one")
    signal.connect(fail, on_commit=True, robust=False)
    signal.connect(log.make("after"), on_commit=True, weak=False)
    [(_, deferred), (_, after)] = signal.send(sender="app")

    with pytest.raises(Boom, match="one") as raised:
        transaction.commit()

    assert raised.value is deferred.exception
    assert deferred.state == "failed"
    assert after.state == "done"
    assert log.names() == ["after"]
    assert caplog.records == []  # raised, not logged


def test_several_non_robust_failures_raise_an_exception_group(
    signal: Signal, log: Recorder, transaction: FakeTransaction
) -> None:
    fail_one, fail_two = failing("one"), failing("two")
    signal.connect(fail_one, on_commit=True, robust=False)
    signal.connect(log.make("between"), on_commit=True, weak=False)
    signal.connect(fail_two, on_commit=True, robust=False)
    signal.send(sender="app")

    with pytest.raises(ExceptionGroup) as raised:
        transaction.commit()

    assert [str(e) for e in raised.value.exceptions] == ["one", "two"]
    assert all(isinstance(e, Boom) for e in raised.value.exceptions)
    assert log.names() == ["between"]


def test_robust_false_outside_a_transaction_raises_from_send(signal: Signal, log: Recorder) -> None:
    """Called at once, an on-commit receiver is an ordinary receiver of this send."""
    fail = failing("one")
    signal.connect(fail, on_commit=True, robust=False)

    with pytest.raises(Boom, match="one"):
        signal.send(sender="app")


# -- connect() arguments --------------------------------------------------------------


@pytest.mark.parametrize("robust", [True, False])
def test_robust_without_on_commit_is_a_type_error(signal: Signal, robust: bool) -> None:
    def receive(**kwargs: Any) -> None: ...

    with pytest.raises(TypeError, match="robust= applies only to on_commit=True"):
        signal.connect(receive, robust=robust)
    with pytest.raises(TypeError, match="robust= applies only to on_commit=True"):
        signal.connect(receive, on_commit=False, robust=robust)
    assert not signal.has_listeners()


@pytest.mark.parametrize("on_commit", [1, "yes", None])
def test_on_commit_must_be_a_bool(signal: Signal, on_commit: Any) -> None:
    def receive(**kwargs: Any) -> None: ...

    with pytest.raises(TypeError, match="on_commit must be True or False"):
        signal.connect(receive, on_commit=on_commit, robust=True)
    if on_commit:
        with pytest.raises(TypeError, match="on_commit must be True or False"):
            signal.connect(receive, on_commit=on_commit)
    assert not signal.has_listeners()


def test_robust_must_be_a_bool(signal: Signal) -> None:
    def receive(**kwargs: Any) -> None: ...

    with pytest.raises(TypeError, match="robust must be True or False"):
        signal.connect(receive, on_commit=True, robust=1)  # type: ignore[arg-type]
    assert not signal.has_listeners()


def test_the_receiver_decorator_passes_on_commit(
    log: Recorder, transaction: FakeTransaction
) -> None:
    signal = Signal()

    @receiver(signal, on_commit=True)
    def later(**kwargs: Any) -> str:
        log.calls.append(("later", None, {}))
        return "later done"

    [(_, deferred)] = signal.send(sender="app")
    assert isinstance(deferred, Deferred)
    transaction.commit()
    assert deferred.result == "later done"


# -- bind() and scope finders ------------------------------------------------------------


def test_bind_rejects_what_is_not_a_scope() -> None:
    with pytest.raises(TypeError, match="bind\\(\\) takes a transaction scope"):
        with oncommit.bind(object()):  # type: ignore[arg-type]
            pass


def test_any_object_with_a_defer_method_is_a_scope() -> None:
    assert isinstance(Scope(), TransactionScope)
    assert not isinstance(object(), TransactionScope)


def test_bind_yields_the_scope_and_restores_the_outer_one(signal: Signal, log: Recorder) -> None:
    signal.connect(log.make("later"), on_commit=True, weak=False)
    outer, inner = Scope(), Scope()

    with oncommit.bind(outer) as bound:
        assert bound is outer
        with oncommit.bind(inner):
            signal.send(sender="inner")
        signal.send(sender="outer")
    signal.send(sender="none")

    assert [d.sender for d in inner.calls] == ["inner"]
    assert [d.sender for d in outer.calls] == ["outer"]
    assert [sender for _, sender, _ in log.calls] == ["none"]


@pytest.fixture
def finders() -> Iterator[Callable[[oncommit.ScopeFinder], Callable[[], None]]]:
    """``add_scope_finder``, with every finder it added removed after the test."""
    removers: list[Callable[[], None]] = []

    def add(finder: oncommit.ScopeFinder) -> Callable[[], None]:
        remove = oncommit.add_scope_finder(finder)
        removers.append(remove)
        return remove

    yield add
    for remove in removers:
        remove()


def test_a_scope_finder_gets_the_sender_and_the_arguments(
    signal: Signal,
    log: Recorder,
    finders: Callable[[oncommit.ScopeFinder], Callable[[], None]],
) -> None:
    scope = Scope()
    asked: list[tuple[object, dict[str, Any]]] = []

    def find(sender: object, named: Any) -> TransactionScope | None:
        asked.append((sender, dict(named)))
        return scope if named.get("in_transaction") else None

    finders(find)
    signal.connect(log.make("later"), on_commit=True, weak=False)

    [(_, deferred)] = signal.send(sender="app", in_transaction=True)
    signal.send(sender="app", in_transaction=False)

    assert asked == [("app", {"in_transaction": True}), ("app", {"in_transaction": False})]
    assert scope.calls == [deferred]
    assert log.calls == [("later", "app", {"in_transaction": False})]


def test_a_scope_finder_is_asked_only_when_an_on_commit_receiver_is_reached(
    signal: Signal,
    log: Recorder,
    finders: Callable[[oncommit.ScopeFinder], Callable[[], None]],
) -> None:
    asked: list[object] = []

    def find(sender: object, named: Any) -> TransactionScope | None:
        asked.append(sender)
        return None

    finders(find)
    signal.connect(log.make("now"), weak=False)
    signal.connect(log.make("later"), sender="other", on_commit=True, weak=False)

    signal.send(sender="app")
    assert asked == []
    signal.send(sender="other")
    assert asked == ["other"]


def test_a_bound_scope_comes_before_the_finders(
    signal: Signal,
    log: Recorder,
    finders: Callable[[oncommit.ScopeFinder], Callable[[], None]],
) -> None:
    asked: list[object] = []
    found = Scope()

    def find(sender: object, named: Any) -> TransactionScope | None:
        asked.append(sender)
        return found

    finders(find)
    signal.connect(log.make("later"), on_commit=True, weak=False)
    bound = Scope()

    with oncommit.bind(bound):
        signal.send(sender="app")

    assert asked == []
    assert len(bound.calls) == 1
    assert found.calls == []


def test_removing_a_scope_finder(
    signal: Signal,
    log: Recorder,
    finders: Callable[[oncommit.ScopeFinder], Callable[[], None]],
) -> None:
    scope = Scope()

    def find(sender: object, named: Any) -> TransactionScope | None:
        return scope

    remove = finders(find)
    signal.connect(log.make("later"), on_commit=True, weak=False)
    signal.send(sender="deferred")
    remove()
    remove()  # removing twice is harmless
    signal.send(sender="at once")

    assert [d.sender for d in scope.calls] == ["deferred"]
    assert [sender for _, sender, _ in log.calls] == ["at once"]


def test_registering_a_scope_finder_twice_registers_it_once(
    signal: Signal,
    log: Recorder,
    finders: Callable[[oncommit.ScopeFinder], Callable[[], None]],
) -> None:
    asked: list[object] = []

    def find(sender: object, named: Any) -> TransactionScope | None:
        asked.append(sender)
        return None

    remove = finders(find)
    finders(find)
    signal.connect(log.make("later"), on_commit=True, weak=False)
    signal.send(sender="app")
    assert asked == ["app"]

    remove()  # one removal removes it
    signal.send(sender="app")
    assert asked == ["app"]


def test_add_scope_finder_takes_a_callable() -> None:
    with pytest.raises(TypeError, match="add_scope_finder\\(\\) takes a callable"):
        oncommit.add_scope_finder("finder")  # type: ignore[arg-type]


def test_the_first_finder_that_finds_a_scope_wins(
    signal: Signal,
    log: Recorder,
    finders: Callable[[oncommit.ScopeFinder], Callable[[], None]],
) -> None:
    scope = Scope()
    asked: list[str] = []

    def finds_nothing(sender: object, named: Any) -> TransactionScope | None:
        asked.append("nothing")
        return None

    def finds(sender: object, named: Any) -> TransactionScope | None:
        asked.append("finds")
        return scope

    def never_asked(sender: object, named: Any) -> TransactionScope | None:
        asked.append("never")
        return Scope()

    finders(finds_nothing)
    finders(finds)
    finders(never_asked)
    signal.connect(log.make("later"), on_commit=True, weak=False)

    signal.send(sender="app")

    assert asked == ["nothing", "finds"]
    assert len(scope.calls) == 1


# -- the bound scope is a context variable ----------------------------------------------


def test_an_asyncio_task_created_inside_bind_sees_the_scope(signal: Signal, log: Recorder) -> None:
    """A task copies the context when it is created, so a send it makes later,
    even after the block has ended, still goes to the bound scope."""
    signal.connect(log.make("later"), on_commit=True, weak=False)
    scope = Scope()

    async def send_later() -> list[tuple[Any, Any]]:
        await asyncio.sleep(0)
        return signal.send(sender="task")

    async def main() -> list[tuple[Any, Any]]:
        with oncommit.bind(scope):
            task = asyncio.create_task(send_later())
        return await task

    [(_, deferred)] = asyncio.run(main())

    assert isinstance(deferred, Deferred)
    assert scope.calls == [deferred]
    assert log.calls == []


def test_a_thread_started_inside_bind_does_not_see_the_scope(signal: Signal, log: Recorder) -> None:
    later = log.make("later")
    signal.connect(later, on_commit=True)
    scope = Scope()
    results: list[list[tuple[Any, Any]]] = []

    with oncommit.bind(scope):
        thread = threading.Thread(target=lambda: results.append(signal.send(sender="thread")))
        thread.start()
        thread.join()

    assert results == [[(later, "later done")]]
    assert scope.calls == []
    assert [sender for _, sender, _ in log.calls] == ["thread"]


# -- async on-commit receivers -----------------------------------------------------------


def test_an_async_on_commit_receiver_is_deferred_and_run_by_run_all_without_a_loop(
    signal: Signal, log: Recorder, transaction: FakeTransaction
) -> None:
    later = log.make_async("later")
    signal.connect(later, on_commit=True)

    [(receiver_, deferred)] = signal.send(sender="app")
    assert receiver_ is later
    assert deferred.state == "pending"
    assert log.calls == []

    transaction.commit()  # no event loop is running: run_all runs one

    assert log.names() == ["later"]
    assert deferred.state == "done"
    assert deferred.result == "later done"


def test_run_all_awaits_async_receivers_with_the_given_await(signal: Signal, log: Recorder) -> None:
    """An integration may pass its own way to await (SQLAlchemy's greenlets do)."""
    signal.connect(log.make_async("later"), on_commit=True, weak=False)
    scope = Scope()
    with oncommit.bind(scope):
        [(_, deferred)] = signal.send(sender="app")
    awaited: list[Awaitable[Any]] = []

    def await_(awaitable: Awaitable[Any]) -> Any:
        awaited.append(awaitable)

        async def main() -> Any:
            return await awaitable

        return asyncio.run(main())

    oncommit.run_all(scope.calls, await_)

    assert len(awaited) == 1
    assert deferred.result == "later done"


def test_a_failing_async_on_commit_receiver_is_logged(
    signal: Signal, transaction: FakeTransaction, caplog: pytest.LogCaptureFixture
) -> None:
    async def fail_async(**kwargs: Any) -> None:
        raise Boom("async")

    signal.connect(fail_async, on_commit=True)
    [(_, deferred)] = signal.send(sender="app")

    with caplog.at_level(logging.ERROR, logger="tocsin"):
        transaction.commit()

    assert deferred.state == "failed"
    assert isinstance(deferred.exception, Boom)
    assert "in on_commit() (async)" in caplog.records[0].getMessage()


def test_arun_awaits_an_async_receiver_in_the_running_loop_and_task(
    signal: Signal, transaction: FakeTransaction
) -> None:
    """For a commit that is a coroutine: no private loop, no other thread, no
    task of its own (SQLAlchemy's AsyncSession awaits in the caller's task too)."""
    seen: list[tuple[str, object, object]] = []

    async def later_async(**kwargs: Any) -> str:
        await asyncio.sleep(0)
        seen.append(("async", asyncio.get_running_loop(), asyncio.current_task()))
        return "awaited"

    def later_sync(**kwargs: Any) -> str:
        seen.append(("sync", asyncio.get_running_loop(), threading.current_thread()))
        return "called"

    signal.connect(later_async, on_commit=True)
    signal.connect(later_sync, on_commit=True)
    [(_, async_call), (_, sync_call)] = signal.send(sender="app")

    async def main() -> list[tuple[str, object, object]]:
        await sync_call.arun()
        await async_call.arun()
        loop = asyncio.get_running_loop()
        return [("sync", loop, threading.current_thread()), ("async", loop, asyncio.current_task())]

    assert asyncio.run(main()) == seen
    assert (sync_call.state, sync_call.result) == ("done", "called")
    assert (async_call.state, async_call.result) == ("done", "awaited")
    assert async_call.duration is not None
    assert async_call.started is not None


def test_arun_keeps_failures_and_runs_once(
    signal: Signal, transaction: FakeTransaction, caplog: pytest.LogCaptureFixture
) -> None:
    """arun() records and logs as run() does: robust logged, non-robust raised."""

    async def fail_async(**kwargs: Any) -> None:
        raise Boom("async")

    signal.connect(fail_async, on_commit=True)
    signal.connect(failing("strict"), on_commit=True, robust=False, weak=False)
    [(_, robust), (_, strict)] = signal.send(sender="app")

    with caplog.at_level(logging.ERROR, logger="tocsin"):
        asyncio.run(robust.arun())
    with pytest.raises(Boom, match="strict"):
        asyncio.run(strict.arun())
    with pytest.raises(RuntimeError, match="already run or been dropped"):
        asyncio.run(robust.arun())

    assert (robust.state, str(robust.exception)) == ("failed", "async")
    assert (strict.state, str(strict.exception)) == ("failed", "strict")
    [record] = caplog.records
    assert record.getMessage().endswith("in on_commit() (async)")
    assert record.exc_info is not None
    assert record.exc_info[1] is robust.exception


def test_arun_all_runs_every_pending_call_in_order_then_raises(
    signal: Signal, log: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """run_all()'s rules, awaited: it skips what is not pending, runs every call
    even after a failure, logs the robust failures, then raises the others."""
    signal.connect(log.make_async("first"), on_commit=True, weak=False)
    signal.connect(failing("one"), on_commit=True, robust=False, weak=False)
    signal.connect(log.make("dropped"), on_commit=True, weak=False)
    signal.connect(failing("logged"), on_commit=True, weak=False)
    signal.connect(log.make("last"), on_commit=True, weak=False)
    scope = Scope()
    with oncommit.bind(scope):
        signal.send(sender="app")
    scope.calls[2].drop()

    with caplog.at_level(logging.ERROR, logger="tocsin"), pytest.raises(Boom, match="one"):
        asyncio.run(oncommit.arun_all(scope.calls))

    assert log.names() == ["first", "last"]
    assert [call.state for call in scope.calls] == ["done", "failed", "dropped", "failed", "done"]
    assert [record.getMessage()[-len("(logged)") :] for record in caplog.records] == ["(logged)"]
    asyncio.run(oncommit.arun_all(scope.calls))  # nothing is pending any more
    assert log.names() == ["first", "last"]


def test_arun_all_raises_several_failures_as_a_group(signal: Signal) -> None:
    signal.connect(failing("one"), on_commit=True, robust=False, weak=False)
    signal.connect(failing("two"), on_commit=True, robust=False, weak=False)
    scope = Scope()
    with oncommit.bind(scope):
        signal.send(sender="app")

    with pytest.raises(ExceptionGroup, match="on-commit receivers failed") as raised:
        asyncio.run(oncommit.arun_all(scope.calls))

    assert [str(error) for error in raised.value.exceptions] == ["one", "two"]


def test_asend_without_a_scope_awaits_async_on_commit_receivers(
    signal: Signal, log: Recorder
) -> None:
    sync_later = log.make("sync_later")
    async_later = log.make_async("async_later")
    signal.connect(async_later, on_commit=True)
    signal.connect(sync_later, on_commit=True)

    result = asyncio.run(signal.asend(sender="app"))

    assert result == [(sync_later, "sync_later done"), (async_later, "async_later done")]
    assert sorted(log.names()) == ["async_later", "sync_later"]


def test_asend_with_a_scope_defers_sync_and_async_on_commit_receivers(
    signal: Signal, log: Recorder
) -> None:
    now = log.make_async("now")
    sync_later = log.make("sync_later")
    async_later = log.make_async("async_later")
    signal.connect(sync_later, on_commit=True)
    signal.connect(async_later, on_commit=True)
    signal.connect(now)

    with FakeTransaction():
        result = asyncio.run(signal.asend(sender="app"))  # the loop's task copies the binding

        assert result[0] == (now, "now done")
        assert [r for r, _ in result[1:]] == [sync_later, async_later]
        assert all(isinstance(d, Deferred) and d.state == "pending" for _, d in result[1:])
        assert log.names() == ["now"]

    assert log.names() == ["now", "sync_later", "async_later"]
    assert [d.result for _, d in result[1:]] == ["sync_later done", "async_later done"]


def test_send_robust_with_on_commit_receivers(
    signal: Signal, log: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Outside a transaction a failure is send_robust()'s to catch; inside one,
    the response is a Deferred."""
    fail = failing("now")
    signal.connect(fail, on_commit=True, robust=False)

    with caplog.at_level(logging.ERROR, logger="tocsin"):
        [(_, error)] = signal.send_robust(sender="app")
    assert isinstance(error, Boom)
    assert "in Signal.send_robust()" in caplog.records[0].getMessage()

    with FakeTransaction() as transaction:
        [(_, deferred)] = signal.send_robust(sender="app")
        assert isinstance(deferred, Deferred)
        assert transaction.pending == [deferred]
        with pytest.raises(Boom):
            transaction.commit()  # robust=False: the commit raises, send_robust or not


def test_asend_robust_with_on_commit_receivers(
    signal: Signal, log: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    async def fail_async(**kwargs: Any) -> None:
        raise Boom("async")

    later = log.make("later")
    signal.connect(fail_async, on_commit=True)
    signal.connect(later, on_commit=True)

    with caplog.at_level(logging.ERROR, logger="tocsin"):
        result = asyncio.run(signal.asend_robust(sender="app"))
    assert result[0] == (later, "later done")
    assert result[1][0] is fail_async
    assert isinstance(result[1][1], Boom)

    with FakeTransaction() as transaction:
        result = asyncio.run(signal.asend_robust(sender="app"))
        assert [d for _, d in result] == transaction.pending
        assert len(result) == 2
        transaction.rollback()


# -- what else on-commit receivers are part of -------------------------------------------


def test_has_listeners_counts_on_commit_receivers(signal: Signal, log: Recorder) -> None:
    later = log.make("later")
    signal.connect(later, on_commit=True)
    assert signal.has_listeners()
    assert signal.has_listeners("app")

    only_app = Signal()
    only_app.connect(later, sender="app", on_commit=True)
    assert only_app.has_listeners("app")
    assert not only_app.has_listeners("other")


def test_a_sender_filtered_on_commit_receiver(
    signal: Signal, log: Recorder, transaction: FakeTransaction
) -> None:
    class Sender:
        pass

    other = Sender()
    signal.connect(log.make("later"), sender=Sender, on_commit=True, weak=False)

    assert signal.send(sender=other) == []
    [(_, deferred)] = signal.send(sender=Sender)
    assert transaction.pending == [deferred]
    assert deferred.sender is Sender


def test_a_garbage_collected_on_commit_receiver_is_not_called(
    signal: Signal, log: Recorder, transaction: FakeTransaction
) -> None:
    later = log.make("later")
    signal.connect(later, on_commit=True)
    del later
    gc.collect()

    assert signal.send(sender="app") == []
    assert transaction.deferred == []
    assert not signal.has_listeners()


def test_disconnecting_an_on_commit_receiver(
    signal: Signal, log: Recorder, transaction: FakeTransaction
) -> None:
    later = log.make("later")
    signal.connect(later, on_commit=True)
    signal.connect(later, sender="app", on_commit=True)

    assert signal.disconnect(later)
    assert signal.disconnect(later, sender="app")
    assert not signal.disconnect(later)

    assert signal.send(sender="app") == []
    assert transaction.deferred == []


def test_saved_receivers_assigned_back_keep_the_on_commit_mode(
    signal: Signal, log: Recorder, transaction: FakeTransaction
) -> None:
    """The save/clear/restore dance of Django test code keeps receivers deferred."""
    later = log.make("later")
    fail = failing("raised")
    signal.connect(later, on_commit=True)
    signal.connect(fail, sender="app", on_commit=True, robust=False)

    rows = signal.receivers
    signal.receivers = []
    assert signal.send(sender="app") == []
    signal.receivers = rows

    [(r1, deferred), (r2, raising)] = signal.send(sender="app")
    assert (r1, r2) == (later, fail)
    assert isinstance(deferred, Deferred)
    assert isinstance(raising, Deferred)
    assert log.calls == []
    with pytest.raises(Boom):  # robust=False survived too
        transaction.commit()
    assert deferred.state == "done"


def test_receivers_rows_of_on_commit_receivers_have_django_s_layout(
    signal: Signal, log: Recorder
) -> None:
    later = log.make("later")
    signal.connect(later, on_commit=True)

    [row] = signal.receivers
    _lookup_key, ref, sender_ref, is_async = row
    assert ref() is later
    assert sender_ref is None
    assert is_async is False


def test_on_commit_receivers_on_another_signal_copied_from_rows(
    signal: Signal, log: Recorder, transaction: FakeTransaction
) -> None:
    later = log.make("later")
    signal.connect(later, on_commit=True)
    copy = Signal()

    copy.receivers = signal.receivers

    [(_, deferred)] = copy.send(sender="app")
    assert isinstance(deferred, Deferred)


def test_connecting_without_on_commit_is_unaffected_by_a_bound_scope(
    signal: Signal, log: Recorder, transaction: FakeTransaction
) -> None:
    """Django-compatible code (no on_commit) sees no difference inside a transaction."""
    now, async_now = log.make("now"), log.make_async("async_now")
    signal.connect(now)
    signal.connect(async_now)

    assert signal.send(sender="app") == [(now, "now done"), (async_now, "async_now done")]
    assert signal.send_robust(sender="app") == [
        (now, "now done"),
        (async_now, "async_now done"),
    ]
    assert asyncio.run(signal.asend(sender="app")) == [
        (now, "now done"),
        (async_now, "async_now done"),
    ]
    assert transaction.deferred == []
    [row, async_row] = signal.receivers
    assert type(row) is type(async_row)
    assert len(row) == 4


def test_live_receivers_include_on_commit_receivers(signal: Signal, log: Recorder) -> None:
    now, later = log.make("now"), log.make("later")
    async_now, async_later = log.make_async("async_now"), log.make_async("async_later")
    signal.connect(later, on_commit=True)
    signal.connect(async_later, on_commit=True)
    signal.connect(now)
    signal.connect(async_now)

    sync, async_ = signal._live_receivers("app")

    assert sync == [now, later]
    assert async_ == [async_now, async_later]


# -- a send that fails defers nothing ----------------------------------------------


def test_a_send_whose_receiver_raises_drops_its_on_commit_calls() -> None:
    """ "The remaining receivers are not called" holds for on-commit ones too,
    whether or not there is a transaction: they never run at commit."""
    signal = Signal()
    recorder = Recorder()

    def fail(sender: object, **named: Any) -> None:
        raise Boom("first receiver fails")

    later = recorder.make("later")
    signal.connect(fail)
    signal.connect(later, on_commit=True)
    with FakeTransaction() as transaction:
        with pytest.raises(Boom):
            signal.send(sender=None)
        assert [call.state for call in transaction.deferred] == ["dropped"]
    assert recorder.calls == []


def test_send_refused_inside_a_running_loop_defers_nothing() -> None:
    """AsyncReceiversInLoopError is raised "before calling anything": the
    on-commit receiver does not run at commit either."""
    signal = Signal()
    recorder = Recorder()
    async_receiver = recorder.make_async("async")
    later = recorder.make("later")
    signal.connect(async_receiver)
    signal.connect(later, on_commit=True)
    with FakeTransaction() as transaction:

        async def main() -> None:
            with pytest.raises(RuntimeError):
                signal.send(sender=None)

        asyncio.run(main())
        assert transaction.pending == []
    assert recorder.calls == []


def test_an_asend_that_fails_drops_its_on_commit_calls() -> None:
    signal = Signal()
    recorder = Recorder()

    async def fail(sender: object, **named: Any) -> None:
        raise Boom("async receiver fails")

    later = recorder.make("later")
    signal.connect(fail)
    signal.connect(later, on_commit=True)
    with FakeTransaction() as transaction:

        async def main() -> None:
            with pytest.raises(Boom):
                await signal.asend(sender=None)

        asyncio.run(main())
        assert transaction.pending == []
    assert recorder.calls == []


@pytest.mark.parametrize("value", [0, None, "", []])
def test_a_falsy_on_commit_that_is_not_a_bool_is_refused(value: Any) -> None:
    signal = Signal()
    with pytest.raises(TypeError, match="on_commit must be True or False"):
        signal.connect(Recorder().make("r"), on_commit=value)


def test_a_row_changed_with_replace_keeps_its_on_commit_mode() -> None:
    """Rows are NamedTuples; code that edits one with _replace() and assigns it
    back keeps an on-commit receiver an on-commit receiver."""
    signal = Signal()
    recorder = Recorder()
    later = recorder.make("later")
    signal.connect(later, on_commit=True)
    signal.receivers = [signal.receivers[0]._replace(is_async=False)]
    with FakeTransaction():
        [(_, response)] = signal.send(sender=None)
        assert isinstance(response, Deferred)
        assert recorder.calls == []
    assert recorder.calls == [("later", None, {})]
