"""Tests of ``tocsin.testing.FakeTransaction``: a transaction scope without a database.

It must behave as the real integrations do (``tocsin.contrib.sqlalchemy``):
calls run after the commit, in order, are dropped by a rollback, wait at the
innermost savepoint, and fail robustly or not; and it must refuse to be used
outside its life.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from _named_receivers import NamedReceivers, responses
from tocsin import AsyncReceiversInLoopError, Signal
from tocsin.oncommit import Deferred, TransactionScope
from tocsin.testing import FakeTransaction, Savepoint


class Boom(Exception):
    """What failing receivers raise."""


def failing(message: str) -> Callable[..., None]:
    def fail(**kwargs: Any) -> None:
        raise Boom(message)

    fail.__qualname__ = fail.__name__ = f"fail_{message}"
    return fail


@pytest.fixture
def calls() -> NamedReceivers:
    return NamedReceivers(__name__)


@pytest.fixture
def signal(calls: NamedReceivers) -> Signal:
    """A signal with an ordinary receiver "now" and an on-commit receiver "later"."""
    signal = Signal()
    signal.connect(calls.sync("now"))
    signal.connect(calls.sync("later"), on_commit=True)
    return signal


def states(deferred: list[Deferred]) -> list[str]:
    return [call.state for call in deferred]


def send_then_fail(signal: Signal) -> None:
    """The body of a block that raises after a send."""
    signal.send(sender=None)
    raise Boom("in the block")


# -- commit and rollback ----------------------------------------------------------------


def test_a_with_block_commits_at_its_end(signal: Signal, calls: NamedReceivers) -> None:
    """Inside the block the on-commit receiver waits; the end of the block runs it."""
    with FakeTransaction() as transaction:
        result = signal.send(sender=None)
        assert calls.names == ["now"]
        [now, deferred] = responses(result)
        assert now == "now"
        assert isinstance(deferred, Deferred)
        assert transaction.pending == [deferred]

    assert transaction.state == "committed"
    assert calls.names == ["now", "later"]
    assert (deferred.state, deferred.result) == ("done", "later")
    assert transaction.pending == []
    assert transaction.deferred == [deferred]


def test_begin_and_commit_by_hand_run_the_calls_in_the_order_of_the_sends(
    calls: NamedReceivers,
) -> None:
    first, second = Signal(), Signal()
    first.connect(calls.sync("first"), on_commit=True)
    second.connect(calls.sync("second"), on_commit=True)
    transaction = FakeTransaction()
    assert transaction.begin() is transaction

    first.send(sender=None)
    second.send(sender=None)
    first.send(sender=None)
    assert calls.names == []
    transaction.commit()

    assert calls.names == ["first", "second", "first"]
    assert states(transaction.deferred) == ["done"] * 3


def test_rollback_drops_the_calls(signal: Signal, calls: NamedReceivers) -> None:
    transaction = FakeTransaction().begin()
    [_, deferred] = responses(signal.send(sender=None))

    transaction.rollback()

    assert transaction.state == "rolled_back"
    assert deferred.state == "dropped"
    assert calls.names == ["now"]
    assert transaction.pending == []
    assert transaction.deferred == [deferred]


def test_an_exception_in_the_with_block_rolls_back_and_propagates(
    signal: Signal, calls: NamedReceivers
) -> None:
    with pytest.raises(Boom, match="in the block"), FakeTransaction() as transaction:
        send_then_fail(signal)

    assert transaction.state == "rolled_back"
    assert states(transaction.deferred) == ["dropped"]
    assert calls.names == ["now"]


def test_a_with_block_that_ended_the_transaction_itself_leaves_it_alone(
    signal: Signal, calls: NamedReceivers
) -> None:
    with FakeTransaction() as transaction:
        signal.send(sender=None)
        transaction.rollback()
    assert transaction.state == "rolled_back"
    assert calls.names == ["now"]


def test_it_is_bound_only_while_active(signal: Signal, calls: NamedReceivers) -> None:
    """Before begin() and after the end, sends find no transaction: the receiver runs at once."""
    transaction = FakeTransaction()
    assert responses(signal.send(sender=None)) == ["now", "later"]
    with transaction:
        assert isinstance(responses(signal.send(sender=None))[1], Deferred)
    assert responses(signal.send(sender=None)) == ["now", "later"]
    assert len(transaction.deferred) == 1


def test_a_receiver_that_sends_during_the_commit_is_not_deferred_to_it(
    calls: NamedReceivers,
) -> None:
    """The calls run once the transaction has ended: a send they make finds the
    transaction around it, or none."""
    inner_signal = Signal()
    inner_signal.connect(calls.sync("inner"), on_commit=True)

    def sends_again(**kwargs: Any) -> None:
        inner_signal.send(sender=None)

    outer_signal = Signal()
    outer_signal.connect(sends_again, on_commit=True)

    with FakeTransaction() as outer:
        with FakeTransaction() as inner:
            outer_signal.send(sender=None)
        assert len(inner.deferred) == 1
        assert [call.receiver for call in outer.pending] == [calls.receivers["inner"]]
    assert calls.names == ["inner"]

    with FakeTransaction():
        outer_signal.send(sender=None)
    assert calls.names == ["inner", "inner"]  # no transaction around: at once


def test_it_is_a_transaction_scope() -> None:
    assert isinstance(FakeTransaction(), TransactionScope)


def test_repr_says_the_state_and_what_is_pending(signal: Signal) -> None:
    transaction = FakeTransaction()
    assert repr(transaction) == "<FakeTransaction new, 0 pending>"
    with transaction:
        signal.send(sender=None)
        with transaction.savepoint() as savepoint:
            signal.send(sender=None)
            assert repr(transaction) == "<FakeTransaction active, 2 pending>"
            assert repr(savepoint) == "<Savepoint 1 active, 1 pending>"
        transaction.rollback()
    assert repr(transaction) == "<FakeTransaction rolled back, 0 pending>"
    assert repr(savepoint) == "<Savepoint 1 released, 0 pending>"


# -- savepoints -------------------------------------------------------------------------


def test_a_released_savepoint_hands_its_calls_to_the_transaction(
    signal: Signal, calls: NamedReceivers
) -> None:
    with FakeTransaction() as transaction:
        signal.send(sender="before")
        with transaction.savepoint() as savepoint:
            assert isinstance(savepoint, Savepoint)
            signal.send(sender="inside")
            assert [call.sender for call in savepoint.pending] == ["inside"]
        assert savepoint.state == "released"
        assert [call.sender for call in savepoint.pending] == ["inside"]  # still waiting
        signal.send(sender="after")
        assert calls.names == ["now"] * 3

    assert [call.sender for call in transaction.deferred] == ["before", "inside", "after"]
    assert states(transaction.deferred) == ["done"] * 3
    assert calls.names == ["now"] * 3 + ["later"] * 3


def test_a_rolled_back_savepoint_drops_exactly_its_calls(
    signal: Signal, calls: NamedReceivers
) -> None:
    with FakeTransaction() as transaction:
        signal.send(sender="before")
        savepoint = transaction.savepoint()
        signal.send(sender="inside")
        savepoint.rollback()
        signal.send(sender="after")

    assert savepoint.state == "rolled_back"
    assert [(call.sender, call.state) for call in transaction.deferred] == [
        ("before", "done"),
        ("inside", "dropped"),
        ("after", "done"),
    ]
    assert savepoint.deferred == [transaction.deferred[1]]
    assert savepoint.pending == []


def test_nested_savepoints_release_into_the_level_around_them(signal: Signal) -> None:
    """A released inner savepoint's calls belong to the outer one: rolling the
    outer one back drops them; an inner rollback drops only the inner calls."""
    with FakeTransaction() as transaction:
        signal.send(sender="root")
        outer = transaction.savepoint()
        signal.send(sender="outer")
        with transaction.savepoint() as released:
            assert released.depth == 2
            signal.send(sender="released")
        rolled_back = transaction.savepoint()
        signal.send(sender="rolled back")
        rolled_back.rollback()
        assert [call.sender for call in outer.pending] == ["outer", "released"]
        outer.rollback()
        with transaction.savepoint() as kept, transaction.savepoint():
            signal.send(sender="kept")

    assert (outer.state, released.state, rolled_back.state, kept.state) == (
        "rolled_back",
        "released",
        "rolled_back",
        "released",
    )
    assert [(call.sender, call.state) for call in transaction.deferred] == [
        ("root", "done"),
        ("outer", "dropped"),
        ("released", "dropped"),
        ("rolled back", "dropped"),
        ("kept", "done"),
    ]
    assert [call.sender for call in outer.deferred] == ["outer", "released", "rolled back"]


def test_a_savepoint_block_that_raises_rolls_back(signal: Signal) -> None:
    with FakeTransaction() as transaction:
        with pytest.raises(Boom), transaction.savepoint() as savepoint:
            send_then_fail(signal)
        assert savepoint.state == "rolled_back"
        signal.send(sender=None)
    assert states(transaction.deferred) == ["dropped", "done"]


def test_ending_an_outer_savepoint_ends_the_ones_inside_it(signal: Signal) -> None:
    """As in SQL: ROLLBACK TO (or RELEASE) a savepoint does the same to the later ones."""
    with FakeTransaction() as transaction:
        outer = transaction.savepoint()
        inner = transaction.savepoint()
        signal.send(sender="inner")
        outer.rollback()
        assert inner.state == "rolled_back"
        assert states(inner.deferred) == ["dropped"]

        outer = transaction.savepoint()
        inner = transaction.savepoint()
        signal.send(sender="released")
        outer.release()
        assert inner.state == "released"
        assert len(transaction.pending) == 1
        innermost = transaction.savepoint()
        assert innermost.depth == 1  # the others are over


def test_the_commit_releases_the_savepoints_still_active(signal: Signal) -> None:
    transaction = FakeTransaction().begin()
    savepoint = transaction.savepoint()
    signal.send(sender=None)
    transaction.commit()
    assert savepoint.state == "released"
    assert states(transaction.deferred) == ["done"]

    transaction = FakeTransaction().begin()
    savepoint = transaction.savepoint()
    signal.send(sender=None)
    transaction.rollback()
    assert savepoint.state == "rolled_back"
    assert states(transaction.deferred) == ["dropped"]


# -- misuse -----------------------------------------------------------------------------


def test_ending_twice_is_an_error() -> None:
    transaction = FakeTransaction().begin()
    transaction.commit()
    with pytest.raises(RuntimeError, match=r"commit\(\): this transaction has already committed"):
        transaction.commit()
    with pytest.raises(RuntimeError, match="already committed; a FakeTransaction ends once"):
        transaction.rollback()
    with pytest.raises(RuntimeError, match="already committed"):
        asyncio.run(transaction.acommit())

    transaction = FakeTransaction().begin()
    transaction.rollback()
    with pytest.raises(RuntimeError, match="already rolled back"):
        transaction.commit()


def test_beginning_twice_or_ending_before_beginning_is_an_error() -> None:
    transaction = FakeTransaction()
    with pytest.raises(RuntimeError, match=r"has not begun \(use 'with FakeTransaction\(\):'"):
        transaction.commit()
    with pytest.raises(RuntimeError, match="has not begun"):
        transaction.savepoint()
    transaction.begin()
    with pytest.raises(RuntimeError, match=r"begin\(\): this transaction is active"):
        transaction.begin()
    with pytest.raises(RuntimeError, match="is active"), transaction:
        pass
    transaction.commit()
    with pytest.raises(RuntimeError, match="already committed; a FakeTransaction is begun once"):
        transaction.begin()


def test_a_savepoint_after_the_end_is_an_error() -> None:
    with FakeTransaction() as transaction:
        savepoint = transaction.savepoint()
        savepoint.release()
        with pytest.raises(RuntimeError, match="already been released"):
            savepoint.release()
        with pytest.raises(RuntimeError, match=r"rollback\(\): this savepoint has already been"):
            savepoint.rollback()
    with pytest.raises(RuntimeError, match="already committed; begin a savepoint inside"):
        transaction.savepoint()


def test_a_send_that_finds_it_after_it_ended_is_an_error(
    signal: Signal, calls: NamedReceivers
) -> None:
    """A task created inside the block copied the binding; sending after the
    commit would defer to a transaction that is over."""

    async def send_later() -> None:
        await asyncio.sleep(0)
        signal.send(sender=None)

    async def main() -> None:
        with FakeTransaction():
            task = asyncio.create_task(send_later())
        await task

    with pytest.raises(RuntimeError, match="but this transaction has already committed: the send"):
        asyncio.run(main())
    assert calls.names == []  # deferring comes before calling any receiver


def test_ending_before_a_transaction_begun_inside_it_is_an_error() -> None:
    outer = FakeTransaction().begin()
    inner = FakeTransaction().begin()
    with pytest.raises(RuntimeError, match="began inside this transaction and is still active"):
        outer.commit()
    assert outer.state == "active"  # nothing changed
    inner.commit()
    outer.commit()
    assert (outer.state, inner.state) == ("committed", "committed")


def test_ending_it_in_another_thread_or_task_is_an_error(signal: Signal) -> None:
    """A context variable is reset where it was set; the failed end changes nothing."""
    transaction = FakeTransaction().begin()
    errors: list[BaseException] = []

    def commit_there() -> None:
        try:
            transaction.commit()
        except RuntimeError as error:
            errors.append(error)

    thread = threading.Thread(target=commit_there)
    thread.start()
    thread.join()

    async def in_a_task() -> None:
        transaction.rollback()  # the task's context is a copy

    with pytest.raises(RuntimeError, match="begun in another thread or asyncio task"):
        asyncio.run(in_a_task())

    [error] = errors
    assert "begun in another thread or asyncio task" in str(error)
    assert transaction.state == "active"
    signal.send(sender=None)
    transaction.commit()
    assert states(transaction.deferred) == ["done"]


# -- failures ---------------------------------------------------------------------------


def test_a_robust_failure_is_logged_and_the_other_calls_run(
    calls: NamedReceivers, caplog: pytest.LogCaptureFixture
) -> None:
    signal = Signal()
    signal.connect(failing("robust"), on_commit=True, weak=False)
    signal.connect(calls.sync("after"), on_commit=True)

    with caplog.at_level(logging.ERROR, logger="tocsin"), FakeTransaction() as transaction:
        signal.send(sender=None)

    assert transaction.state == "committed"
    [failed, done] = transaction.deferred
    assert (failed.state, str(failed.exception)) == ("failed", "robust")
    assert done.state == "done"
    assert calls.names == ["after"]
    [record] = caplog.records
    assert record.getMessage() == (f"Error calling {__name__}.fail_robust in on_commit() (robust)")
    assert record.exc_info is not None
    assert record.exc_info[1] is failed.exception


def test_a_non_robust_failure_is_raised_by_the_commit_after_the_other_calls(
    calls: NamedReceivers, caplog: pytest.LogCaptureFixture
) -> None:
    signal = Signal()
    signal.connect(failing("raised"), on_commit=True, robust=False, weak=False)
    signal.connect(calls.sync("after"), on_commit=True)

    with pytest.raises(Boom, match="raised") as raised, FakeTransaction() as transaction:
        signal.send(sender=None)

    assert transaction.state == "committed"  # committed all the same
    assert raised.value is transaction.deferred[0].exception
    assert calls.names == ["after"]
    assert caplog.records == []


def test_several_non_robust_failures_are_raised_together(calls: NamedReceivers) -> None:
    signal = Signal()
    signal.connect(failing("one"), on_commit=True, robust=False, weak=False)
    signal.connect(calls.sync("between"), on_commit=True)
    signal.connect(failing("two"), on_commit=True, robust=False, weak=False)
    transaction = FakeTransaction().begin()
    signal.send(sender=None)

    with pytest.raises(ExceptionGroup, match="on-commit receivers failed") as raised:
        transaction.commit()

    assert [str(error) for error in raised.value.exceptions] == ["one", "two"]
    assert calls.names == ["between"]


def test_a_send_that_fails_leaves_nothing_pending(calls: NamedReceivers) -> None:
    """The dispatcher drops the calls of a send that raised: they are not pending."""
    signal = Signal()
    signal.connect(calls.sync("later"), on_commit=True)
    signal.connect(failing("send"), weak=False)

    with FakeTransaction() as transaction:
        with pytest.raises(Boom):
            signal.send(sender=None)
        assert transaction.pending == []

    assert states(transaction.deferred) == ["dropped"]
    assert calls.names == []


# -- async receivers ---------------------------------------------------------------------


def test_commit_runs_an_async_receiver_from_sync_code(calls: NamedReceivers) -> None:
    signal = Signal()
    signal.connect(calls.async_("async"), on_commit=True)
    with FakeTransaction() as transaction:
        asyncio.run(signal.asend(sender=None))
        assert calls.names == []
    assert calls.names == ["async"]
    [deferred] = transaction.deferred
    assert (deferred.state, deferred.result) == ("done", "async")


def test_async_with_awaits_async_receivers_in_the_running_loop(calls: NamedReceivers) -> None:
    """As SQLAlchemy's ``await session.commit()`` does; sync receivers are called inline."""
    loops: list[asyncio.AbstractEventLoop] = []

    async def in_the_loop(**kwargs: Any) -> str:
        await asyncio.sleep(0)
        loops.append(asyncio.get_running_loop())
        return "awaited"

    signal = Signal()
    signal.connect(in_the_loop, on_commit=True)
    signal.connect(calls.sync("sync"), on_commit=True)

    async def main() -> asyncio.AbstractEventLoop:
        async with FakeTransaction() as transaction:
            await signal.asend(sender=None)
            assert loops == []
        assert [call.result for call in transaction.deferred] == ["awaited", "sync"]
        second = FakeTransaction().begin()
        await signal.asend(sender=None)
        await second.acommit()
        return asyncio.get_running_loop()

    loop = asyncio.run(main())
    assert loops == [loop, loop]
    assert calls.names == ["sync", "sync"]


def test_an_exception_in_an_async_with_block_rolls_back(calls: NamedReceivers) -> None:
    signal = Signal()
    signal.connect(calls.async_("async"), on_commit=True)

    async def send_then_fail() -> None:
        await signal.asend(sender=None)
        raise Boom("in the block")

    async def main() -> FakeTransaction:
        transaction = FakeTransaction()
        with pytest.raises(Boom):
            async with transaction:
                await send_then_fail()
        return transaction

    transaction = asyncio.run(main())
    assert transaction.state == "rolled_back"
    assert states(transaction.deferred) == ["dropped"]
    assert calls.names == []


def test_a_sync_commit_in_a_running_loop_with_an_async_receiver_is_refused(
    calls: NamedReceivers,
) -> None:
    """Waiting would block the loop: commit() raises before changing anything, and
    acommit() still works; a with block rolls back, its binding must end with it."""
    signal = Signal()
    signal.connect(calls.async_("async"), on_commit=True)
    signal.connect(calls.sync("sync"), on_commit=True)

    async def main() -> FakeTransaction:
        transaction = FakeTransaction().begin()
        await signal.asend(sender=None)
        with pytest.raises(
            AsyncReceiversInLoopError, match=r"receiver [\w.]+\.async is async"
        ) as refused:
            transaction.commit()
        assert "await transaction.acommit()" in str(refused.value)
        assert transaction.state == "active"
        await transaction.acommit()

        with pytest.raises(AsyncReceiversInLoopError) as refused, FakeTransaction() as block:
            await signal.asend(sender=None)
        assert refused.value.__notes__ == ["The with block's FakeTransaction was rolled back."]
        assert states(block.deferred) == ["dropped", "dropped"]

        with FakeTransaction():  # only sync receivers waiting: committed inline
            signal.disconnect(calls.receivers["async"])
            await signal.asend(sender=None)
        return transaction

    transaction = asyncio.run(main())
    assert states(transaction.deferred) == ["done", "done"]
    assert calls.names == ["async", "sync", "sync"]


# -- contexts: threads and tasks --------------------------------------------------------------


def test_threads_each_have_their_own_transaction(signal: Signal) -> None:
    """Bound in a context variable: two threads inside their own transactions at
    the same time each defer to theirs."""
    both_inside = threading.Barrier(2, timeout=5)
    transactions: dict[str, FakeTransaction] = {}

    def work(name: str) -> None:
        with FakeTransaction() as transaction:
            transactions[name] = transaction
            both_inside.wait()
            signal.send(sender=name)
            signal.send(sender=name)
            both_inside.wait()

    threads = [threading.Thread(target=work, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for name in ("a", "b"):
        assert [call.sender for call in transactions[name].deferred] == [name, name]
        assert states(transactions[name].deferred) == ["done", "done"]


def test_a_thread_started_inside_does_not_see_it(signal: Signal, calls: NamedReceivers) -> None:
    with FakeTransaction() as transaction:
        thread = threading.Thread(target=signal.send, args=("thread",))
        thread.start()
        thread.join()
        assert calls.names == ["now", "later"]  # no transaction there: at once
    assert transaction.deferred == []


def test_asyncio_tasks_each_have_their_own_transaction(calls: NamedReceivers) -> None:
    signal = Signal()
    signal.connect(calls.async_("later"), on_commit=True)
    pending_inside: dict[str, list[object]] = {}

    async def work(name: str) -> FakeTransaction:
        async with FakeTransaction() as transaction:
            await signal.asend(sender=name)
            await asyncio.sleep(0)  # let the other task send meanwhile
            pending_inside[name] = [call.sender for call in transaction.pending]
        return transaction

    async def main() -> list[FakeTransaction]:
        return list(await asyncio.gather(work("a"), work("b")))

    a, b = asyncio.run(main())
    assert pending_inside == {"a": ["a"], "b": ["b"]}
    assert states(a.deferred) == states(b.deferred) == ["done"]
    assert calls.names == ["later", "later"]


def test_a_task_created_inside_defers_to_it(signal: Signal, calls: NamedReceivers) -> None:
    async def send() -> None:
        signal.send(sender="task")

    async def main() -> FakeTransaction:
        with FakeTransaction() as transaction:
            await asyncio.create_task(send())
            assert calls.names == ["now"]
        return transaction

    transaction = asyncio.run(main())
    assert [call.sender for call in transaction.deferred] == ["task"]
    assert calls.names == ["now", "later"]
