"""Receivers that run after the surrounding transaction commits.

``signal.connect(receiver, on_commit=True)`` asks for it. When such a receiver
is reached by a send, tocsin looks for the transaction the send happened in:

1. a scope bound with :func:`bind` in the current context, else
2. a scope that a *finder* (registered by an integration with
   :func:`add_scope_finder`) recognises from the send's sender and arguments:
   ``tocsin.contrib.sqlalchemy`` finds the session of any mapped instance
   among them.

With a scope, the call is recorded as a :class:`Deferred` (which is the
receiver's response in ``send()``'s result) and handed to the scope, which
runs it after the commit, or drops it on rollback. With no scope, there is no
transaction to wait for, and the receiver is called at once.

tocsin's core knows nothing about databases: a scope is any object with a
``defer(deferred)`` method (:class:`TransactionScope`). The guide, with
SQLAlchemy and with a transaction manager of your own, is docs/after-commit.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from ._inspect import describe
from ._log import logger

if TYPE_CHECKING:
    from .dispatcher import Signal

__all__ = [
    "Deferred",
    "ScopeFinder",
    "TransactionScope",
    "add_scope_finder",
    "arun_all",
    "bind",
    "find_scope",
    "run_all",
]

State = Literal["pending", "done", "failed", "dropped"]


class Deferred:
    """One on-commit receiver's call, waiting for its transaction to end.

    It is what ``send()`` returns as that receiver's response; tocsin makes it,
    not you. After the
    commit, :attr:`state` is ``"done"`` (and :attr:`result` holds what the
    receiver returned) or ``"failed"`` (and :attr:`exception` holds what it
    raised); after a rollback it is ``"dropped"``. :attr:`started` (a
    ``time.time()``) and :attr:`duration` (seconds) say when the receiver ran
    and for how long; both are None until it has run.
    """

    __slots__ = (
        "duration",
        "exception",
        "named",
        "receiver",
        "result",
        "robust",
        "sender",
        "signal",
        "started",
        "state",
    )

    def __init__(
        self,
        signal: Signal,
        receiver: Callable[..., Any],
        sender: object,
        named: Mapping[str, Any],
        robust: bool,
    ) -> None:
        self.signal: Signal = signal
        """The signal that was sent."""
        self.receiver: Callable[..., Any] = receiver
        """The on-commit receiver to call."""
        self.sender: object = sender
        """The send's sender."""
        self.named: dict[str, Any] = dict(named)
        """A copy of the send's keyword arguments."""
        self.robust: bool = robust
        """The connection's ``robust`` setting: a failure is logged (True) or raised (False)."""
        self.state: State = "pending"
        """``"pending"``, then ``"done"``, ``"failed"`` or ``"dropped"``."""
        self.result: Any = None
        """What the receiver returned, once :attr:`state` is ``"done"`` (else None)."""
        self.exception: BaseException | None = None
        """What the receiver raised, once :attr:`state` is ``"failed"`` (else None)."""
        self.started: float | None = None
        """When the receiver began to run, a ``time.time()`` timestamp; None until it
        has run, and for a dropped call."""
        self.duration: float | None = None
        """How long the receiver ran, in seconds (until its coroutine finished, for an
        async receiver); None until it has run, and for a dropped call."""

    def run(self, await_: Callable[[Awaitable[Any]], Any] | None = None) -> None:
        """Call the receiver now; the scope calls this after the commit.

        The receiver is called as ``receiver(signal=signal, sender=sender, **named)``.
        An async receiver's coroutine is awaited with *await_* when given (a
        function that waits for an awaitable from sync code, such as SQLAlchemy's
        greenlet ``await_``), else as ``send()`` runs async receivers from sync
        code. A failure is kept in :attr:`exception` (:attr:`state` becomes
        ``"failed"``); then a robust receiver's (the default) is logged, at
        ``ERROR`` with its traceback, to the ``tocsin`` logger, as
        ``Error calling <receiver> in on_commit() (<error>)``, and a non-robust
        receiver's is raised.

        :raises RuntimeError: if the call is not pending (it has run, or was dropped).
        """
        begun = self._begin()
        try:
            result = self.receiver(signal=self.signal, sender=self.sender, **self.named)
            if _is_awaitable(result):
                awaitable = result
                if await_ is not None:
                    result = await_(awaitable)
                else:
                    from . import _async  # imports asyncio: only when needed

                    result = _async.run_from_sync(lambda: awaitable)
        except Exception as err:
            if self._failed(err, begun):
                raise
        else:
            self._done(result, begun)

    async def arun(self) -> None:
        """:meth:`run` for a scope whose commit is a coroutine: an async
        receiver is awaited in the running event loop, in the caller's task;
        a sync receiver is called inline, on the loop's thread (as SQLAlchemy's
        ``AsyncSession`` does, through its greenlet). Failures are kept, logged
        or raised as by :meth:`run`.

        :raises RuntimeError: if the call is not pending (it has run, or was dropped).
        """
        begun = self._begin()
        try:
            result = self.receiver(signal=self.signal, sender=self.sender, **self.named)
            if _is_awaitable(result):
                result = await result
        except Exception as err:
            if self._failed(err, begun):
                raise
        else:
            self._done(result, begun)

    def _begin(self) -> float:
        """Check the call may run, note when it starts; the monotonic start."""
        if self.state != "pending":
            raise RuntimeError(f"this deferred call has already run or been dropped: {self!r}")
        # Wall-clock start, to place the call beside the send's own timestamps;
        # the duration from the monotonic clock, immune to clock changes.
        self.started = time.time()
        return time.perf_counter()

    def _done(self, result: Any, begun: float) -> None:
        self.duration = time.perf_counter() - begun
        self.state, self.result = "done", result

    def _failed(self, err: Exception, begun: float) -> bool:
        """Keep *err*; log it if the receiver is robust, else return True (raise it)."""
        self.duration = time.perf_counter() - begun
        self.state, self.exception = "failed", err
        if not self.robust:
            return True
        logger().error(
            "Error calling %s in on_commit() (%s)", describe(self.receiver), err, exc_info=err
        )
        return False

    def drop(self) -> None:
        """The transaction rolled back: mark a pending call ``"dropped"``; the
        receiver will never be called."""
        if self.state == "pending":
            self.state = "dropped"

    def __repr__(self) -> str:
        return f"<Deferred {describe(self.receiver)} {self.state}>"


@runtime_checkable
class TransactionScope(Protocol):
    """Where on-commit receivers wait: one transaction of some database layer.

    A ``typing.Protocol`` of one method, checkable with ``isinstance()``.
    """

    def defer(self, deferred: Deferred) -> bool:
        """Keep *deferred* until the transaction ends; run it after a commit
        (in the order calls were deferred), drop it on rollback; return True.

        Return False when there is no transaction in progress after all: the
        receiver is then called at once, during the send.
        """
        ...


ScopeFinder = Callable[[object, Mapping[str, Any]], TransactionScope | None]
"""What :func:`add_scope_finder` takes: ``finder(sender, named)`` returns the scope
of the transaction a send belongs to, from its sender and keyword arguments, or None."""

_bound: contextvars.ContextVar[TransactionScope | None] = contextvars.ContextVar(
    "tocsin_transaction_scope", default=None
)
_finders: list[ScopeFinder] = []


@contextlib.contextmanager
def bind(scope: TransactionScope) -> Iterator[TransactionScope]:
    """Defer the on-commit receivers of every send in this block to *scope*.

    A context manager; the ``with`` statement gets *scope*. Bound in a context
    variable, so it follows the code: asyncio tasks created inside the block see
    it (they copy the context), other threads do not. An inner ``bind()`` wins
    over an outer one until it ends, and any ``bind()`` over the finders.

    :raises TypeError: if *scope* has no ``defer()`` method.
    """
    if not isinstance(scope, TransactionScope):
        raise TypeError(
            f"bind() takes a transaction scope (an object with a defer(deferred) method); "
            f"got {type(scope).__name__} {scope!r}."
        )
    token = _bound.set(scope)
    try:
        yield scope
    finally:
        _bound.reset(token)


def add_scope_finder(finder: ScopeFinder) -> Callable[[], None]:
    """Register *finder*, called as ``finder(sender, named)`` on sends that
    reach an on-commit receiver outside :func:`bind`; it returns a scope or None.

    Finders are asked in the order they were registered, and the first scope
    one returns wins; with none, the receiver is called at once. Registering
    the same finder twice is ignored.

    :returns: a function, taking no arguments, that unregisters *finder*.
    :raises TypeError: if *finder* is not callable.
    """
    if not callable(finder):
        raise TypeError(f"add_scope_finder() takes a callable; got {type(finder).__name__}.")
    if finder not in _finders:
        _finders.append(finder)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            _finders.remove(finder)

    return remove


def find_scope(sender: object, named: Mapping[str, Any]) -> TransactionScope | None:
    """The scope a send belongs to, or None when it is outside any transaction:
    the scope of the innermost :func:`bind` block, else the first one a finder
    returns."""
    scope = _bound.get()
    if scope is not None:
        return scope
    for finder in list(_finders):
        scope = finder(sender, named)
        if scope is not None:
            return scope
    return None


def run_all(
    deferred: list[Deferred], await_: Callable[[Awaitable[Any]], Any] | None = None
) -> None:
    """Run *deferred* in order, with :meth:`Deferred.run`, skipping the calls
    that are not pending; then raise what non-robust receivers raised.

    Every call runs even when an earlier one fails (Django's ``on_commit()``
    stops at the first failure and loses the rest): one error is raised as it
    is, several as ``ExceptionGroup("on-commit receivers failed", [...])``.
    """
    errors: list[Exception] = []
    for call in deferred:
        if call.state != "pending":
            continue
        try:
            call.run(await_)
        except Exception as err:
            errors.append(err)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ExceptionGroup("on-commit receivers failed", errors)


async def arun_all(deferred: list[Deferred]) -> None:
    """:func:`run_all` for a scope whose commit is a coroutine: each pending call
    with :meth:`Deferred.arun`, one after the other, in order; then it raises as
    :func:`run_all` does.
    """
    errors: list[Exception] = []
    for call in deferred:
        if call.state != "pending":
            continue
        try:
            await call.arun()
        except Exception as err:
            errors.append(err)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ExceptionGroup("on-commit receivers failed", errors)


def _is_awaitable(value: object) -> bool:
    if value is None:
        return False  # the common answer, without importing inspect
    import inspect

    return inspect.isawaitable(value)
