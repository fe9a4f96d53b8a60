"""A transaction without a database, for testing on-commit receivers.

:class:`FakeTransaction` is a transaction scope (:mod:`tocsin.oncommit`) that
behaves as the real integrations do (``tocsin.contrib.sqlalchemy``'s
``SessionScope``): calls wait at the innermost savepoint, a released savepoint
hands them to the level around it, a rolled back one drops them, and the
commit runs them in order with :func:`~tocsin.oncommit.run_all` (or
:func:`~tocsin.oncommit.arun_all`) once the transaction has ended. Re-exported
by :mod:`tocsin.testing`.
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import ExitStack
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Literal, Self

from . import oncommit
from ._inspect import describe, is_async
from .exceptions import AsyncReceiversInLoopError
from .oncommit import Deferred

__all__ = ["FakeTransaction", "Savepoint"]

TransactionState = Literal["new", "active", "committed", "rolled_back"]
SavepointState = Literal["active", "released", "rolled_back"]

# The innermost FakeTransaction begun in this context, to check that they end
# in the context that began them, innermost first, before anything changes.
_innermost: ContextVar[FakeTransaction | None] = ContextVar("tocsin_fake_transaction", default=None)


class FakeTransaction:
    """A database transaction, without the database: for testing on-commit receivers.

    While it is active, it is the transaction of every send made in the
    context that began it (it binds itself with :func:`tocsin.oncommit.bind`),
    so the receivers connected with ``on_commit=True`` wait for it: the send
    returns a :class:`~tocsin.oncommit.Deferred` for each, listed in
    :attr:`pending`. :meth:`commit` runs them, :meth:`rollback` drops them.

    As a context manager it commits when the block ends normally, and rolls
    back when it raises, as a database transaction does::

        with FakeTransaction() as transaction:
            order_paid.send(sender=Order, order=order)
            assert len(transaction.pending) == 1   # not called yet
        # committed: the on-commit receivers have run

    It can be driven by hand too: ``transaction = FakeTransaction().begin()``,
    then ``transaction.commit()`` or ``transaction.rollback()``. In async code,
    ``async with FakeTransaction():`` and ``await transaction.acommit()`` await
    async receivers in the running event loop.

    :meth:`savepoint` begins a nested level (``session.begin_nested()``, or a
    nested ``atomic()``): calls deferred inside it are dropped if it is rolled
    back, and join the level around it if it is released.

    **After the commit.** The calls run once the transaction has ended and
    unbound itself, in the order they were deferred, each once: a receiver
    that sends again is not deferred to a transaction that is over. As in the
    real integrations, a robust receiver's failure (the default) is logged to
    the ``tocsin`` logger and kept in its Deferred's ``exception``, and the
    other calls still run; a non-robust receiver's failure is raised from
    :meth:`commit` after every call has run (several together in an
    ``ExceptionGroup``). The transaction is committed all the same.

    **Contexts.** The binding is a context variable: asyncio tasks created
    while it is active (which copy the context) defer to it, other threads
    and tasks do not, and each can have a transaction of its own. It must end
    in the thread or task that began it, after the transactions begun inside
    it, as nested ``with`` statements do.

    **Once.** A FakeTransaction is begun once and ends once. Beginning it
    again, ending it twice, beginning a savepoint in it after it ended, or a
    send deferring to it after it ended (from a task that outlived it, say)
    raises ``RuntimeError``: make a new one for each transaction.

    Safe to use from several threads at once (sends from threads that copied
    the context defer to it concurrently).
    """

    def __init__(self) -> None:
        self.state: TransactionState = "new"
        """``"new"``, ``"active"`` (begun), then ``"committed"`` or ``"rolled_back"``."""
        self._deferred: list[Deferred] = []
        self._savepoints: list[Savepoint] = []  # the active ones, outermost first
        self._lock = threading.Lock()
        self._binding = ExitStack()
        self._token: Token[FakeTransaction | None] | None = None
        self._outer: FakeTransaction | None = None

    # -- what it holds ---------------------------------------------------------------

    @property
    def deferred(self) -> list[Deferred]:
        """Every call deferred to it, in order, whatever became of it since
        (a copy): check their ``state`` after the commit or the rollback."""
        with self._lock:
            return list(self._deferred)

    @property
    def pending(self) -> list[Deferred]:
        """The calls still waiting, in order (a copy): those the commit would run."""
        with self._lock:
            return [call for call in self._deferred if call.state == "pending"]

    def defer(self, deferred: Deferred) -> bool:
        """Keep *deferred* until the transaction ends (the
        :class:`~tocsin.oncommit.TransactionScope` protocol; sends call this).

        Raises ``RuntimeError`` if the transaction is not active: a send that
        finds it after it ended happened after the transaction, and the test
        should know.
        """
        with self._lock:
            if self.state != "active":
                raise RuntimeError(
                    f"a send deferred on-commit receiver {describe(deferred.receiver)} to a "
                    f"FakeTransaction, but {self._describe_state()}: the send happened outside "
                    f"the transaction (in a task or thread that copied its context, and "
                    f"outlived it?)."
                )
            self._deferred.append(deferred)
            for savepoint in self._savepoints:
                savepoint._deferred.append(deferred)
        return True

    # -- beginning and ending ----------------------------------------------------------

    def begin(self) -> Self:
        """Begin the transaction, and bind it in the current context; returns it.

        Raises ``RuntimeError`` if it has begun already.
        """
        with self._lock:
            if self.state != "new":
                raise RuntimeError(
                    f"FakeTransaction.begin(): {self._describe_state()}; a FakeTransaction "
                    f"is begun once: make a new one for the next transaction."
                )
            self._binding.enter_context(oncommit.bind(self))
            self._outer = _innermost.get()
            self._token = _innermost.set(self)
            self.state = "active"
        return self

    def commit(self) -> None:
        """Commit: end the transaction, then run the pending calls, in order.

        Robust receivers' failures are logged, the other calls still run, and
        non-robust ones' failures are raised after the last call (one as is,
        several as an ``ExceptionGroup``). Async receivers are run as
        ``send()`` runs them from sync code; in a running event loop, use
        :meth:`acommit`.

        Raises ``RuntimeError`` if the transaction is not active, or not
        ending in the thread or task that began it, after the transactions
        begun inside it; :class:`~tocsin.AsyncReceiversInLoopError` if called in
        a running event loop with an async receiver waiting. Nothing changes
        then: the transaction is still active.
        """
        oncommit.run_all(self._end("committed", "commit", refuse_async_in_loop=True))

    async def acommit(self) -> None:
        """:meth:`commit`, for async code: async receivers are awaited in the
        running event loop, sync ones called inline (as with SQLAlchemy's
        ``await session.commit()``)."""
        await oncommit.arun_all(self._end("committed", "acommit"))

    def rollback(self) -> None:
        """Roll back: end the transaction, and drop the pending calls; their
        receivers are never called.

        Raises ``RuntimeError`` as :meth:`commit` does.
        """
        for call in self._end("rolled_back", "rollback"):
            call.drop()

    def savepoint(self) -> Savepoint:
        """Begin a savepoint, nested in the innermost one still active, and
        return it: calls deferred from now until it ends wait in it.

        Raises ``RuntimeError`` if the transaction is not active.
        """
        with self._lock:
            if self.state != "active":
                raise RuntimeError(
                    f"FakeTransaction.savepoint(): {self._describe_state()}; "
                    f"begin a savepoint inside an active transaction."
                )
            savepoint = Savepoint(self, len(self._savepoints) + 1)
            self._savepoints.append(savepoint)
        return savepoint

    def _end(
        self, state: TransactionState, method: str, *, refuse_async_in_loop: bool = False
    ) -> list[Deferred]:
        """End the transaction as *state*, with its savepoints; unbind it.
        Returns the calls that were pending. Checks everything first."""
        with self._lock:
            if self.state != "active":
                raise RuntimeError(
                    f"FakeTransaction.{method}(): {self._describe_state()}; "
                    f"a FakeTransaction ends once: make a new one for the next transaction."
                )
            pending = [call for call in self._deferred if call.state == "pending"]
            if refuse_async_in_loop:
                _refuse_async_in_loop(pending)
            self._unbind(method)
            self.state = state
            for savepoint in self._savepoints:
                savepoint.state = "released" if state == "committed" else "rolled_back"
            self._savepoints.clear()
        return pending

    def _unbind(self, method: str) -> None:
        innermost = _innermost.get()
        if innermost is not self:
            inner = innermost
            while inner is not None and inner is not self:
                inner = inner._outer
            if inner is self:
                raise RuntimeError(
                    f"FakeTransaction.{method}(): {innermost!r} began inside this transaction "
                    f"and is still active: end it first."
                )
            raise self._elsewhere(method)
        assert self._token is not None
        try:
            _innermost.reset(self._token)
        except ValueError:  # a copy of the context that began it (a task's)
            raise self._elsewhere(method) from None
        self._binding.close()

    def _elsewhere(self, method: str) -> RuntimeError:
        return RuntimeError(
            f"FakeTransaction.{method}(): this transaction was begun in another thread or "
            f"asyncio task (another contextvars context): end it there."
        )

    def _describe_state(self) -> str:
        if self.state == "new":
            return "this transaction has not begun (use 'with FakeTransaction():', or begin())"
        if self.state == "active":
            return "this transaction is active"
        return f"this transaction has already {self.state.replace('_', ' ')}"

    # -- as a context manager ----------------------------------------------------------

    def __enter__(self) -> Self:
        return self.begin()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Commit, or roll back if the block raised; nothing if the block ended
        the transaction itself. If the commit is refused (an async receiver is
        waiting and an event loop is running), roll back, then raise."""
        if self.state != "active":
            return
        if exc_type is not None:
            self.rollback()
            return
        try:
            self.commit()
        except AsyncReceiversInLoopError as error:
            self.rollback()  # the block is over: the binding must not outlive it
            error.add_note("The with block's FakeTransaction was rolled back.")
            raise

    async def __aenter__(self) -> Self:
        return self.begin()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """:meth:`__exit__`, committing with :meth:`acommit`."""
        if self.state != "active":
            return
        if exc_type is not None:
            self.rollback()
            return
        await self.acommit()

    def __repr__(self) -> str:
        return f"<FakeTransaction {self.state.replace('_', ' ')}, {len(self.pending)} pending>"


class Savepoint:
    """A savepoint of a :class:`FakeTransaction`, begun by its
    :meth:`~FakeTransaction.savepoint`.

    The calls deferred while it is active wait in it (or in a savepoint nested
    in it). :meth:`release` hands them to the level around it, where they wait
    for the transaction's commit; :meth:`rollback` drops them. As in SQL,
    releasing or rolling back a savepoint does the same to the savepoints
    still active inside it, and the end of the transaction ends every
    savepoint (released by the commit, rolled back by the rollback).

    As a context manager (``with transaction.savepoint():``) it is released
    when the block ends normally, and rolled back when it raises.
    """

    def __init__(self, transaction: FakeTransaction, depth: int) -> None:
        self.transaction = transaction
        """The transaction it belongs to."""
        self.depth = depth
        """1 for a savepoint of the transaction, 2 for one nested in it, and so on."""
        self.state: SavepointState = "active"
        """``"active"``, then ``"released"`` or ``"rolled_back"``."""
        self._deferred: list[Deferred] = []

    @property
    def deferred(self) -> list[Deferred]:
        """Every call deferred while it was active, in order (a copy)."""
        with self.transaction._lock:
            return list(self._deferred)

    @property
    def pending(self) -> list[Deferred]:
        """Its calls still waiting (a copy): while it is active, those its
        rollback would drop; once released, those its transaction's commit will run."""
        with self.transaction._lock:
            return [call for call in self._deferred if call.state == "pending"]

    def release(self) -> None:
        """Release it: its calls join the level around it.

        Raises ``RuntimeError`` if it has ended already.
        """
        self._end("released")

    def rollback(self) -> None:
        """Roll back to it: drop the calls deferred since it began.

        Raises ``RuntimeError`` if it has ended already.
        """
        self._end("rolled_back")

    def _end(self, state: SavepointState) -> None:
        transaction = self.transaction
        with transaction._lock:
            if self.state != "active":
                method = "release" if state == "released" else "rollback"
                raise RuntimeError(
                    f"Savepoint.{method}(): this savepoint has already been "
                    f"{self.state.replace('_', ' ')}."
                )
            index = transaction._savepoints.index(self)
            for savepoint in transaction._savepoints[index:]:
                savepoint.state = state
            del transaction._savepoints[index:]
            if state == "rolled_back":
                for call in self._deferred:
                    call.drop()  # only the pending ones: drop() leaves the others alone

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Release, or roll back if the block raised; nothing if it has ended already."""
        if self.state != "active":
            return
        if exc_type is not None:
            self.rollback()
        else:
            self.release()

    def __repr__(self) -> str:
        return (
            f"<Savepoint {self.depth} {self.state.replace('_', ' ')}, {len(self.pending)} pending>"
        )


def _refuse_async_in_loop(pending: list[Deferred]) -> None:
    """commit() would block the running event loop waiting for an async receiver."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    for call in pending:
        if is_async(call.receiver):
            raise AsyncReceiversInLoopError(
                f"FakeTransaction.commit() (or the end of a 'with' block) was called in a "
                f"running event loop, and the on-commit receiver {describe(call.receiver)} "
                f"is async: commit() cannot wait for it without blocking the loop. Use "
                f"'async with FakeTransaction()', or 'await transaction.acommit()'."
            )
