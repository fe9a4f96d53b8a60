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
``defer(deferred)`` method (:class:`TransactionScope`).
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

    It is what ``send()`` returns as that receiver's response. After the
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
        self.receiver: Callable[..., Any] = receiver
        self.sender: object = sender
        self.named: dict[str, Any] = dict(named)
        self.robust: bool = robust
        self.state: State = "pending"
        self.result: Any = None
        self.exception: BaseException | None = None
        self.started: float | None = None
        self.duration: float | None = None

    def run(self, await_: Callable[[Awaitable[Any]], Any] | None = None) -> None:
        """Call the receiver now; the scope calls this after the commit.

        An async receiver's coroutine is awaited with *await_* when given (an
        integration running inside an event loop passes its own), else on a
        private loop. A failure is logged and kept in :attr:`exception` when
        the receiver is robust (the default), and raised otherwise.
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
        ``AsyncSession`` does, through its greenlet).
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
        """The transaction rolled back: the receiver will never be called."""
        if self.state == "pending":
            self.state = "dropped"

    def __repr__(self) -> str:
        return f"<Deferred {describe(self.receiver)} {self.state}>"


@runtime_checkable
class TransactionScope(Protocol):
    """Where on-commit receivers wait: one transaction of some database layer."""

    def defer(self, deferred: Deferred) -> bool:
        """Keep *deferred* until the transaction ends; run it after a commit
        (in the order calls were deferred), drop it on rollback.

        Return False when there is no transaction in progress after all: the
        receiver is then called at once.
        """
        ...


ScopeFinder = Callable[[object, Mapping[str, Any]], TransactionScope | None]

_bound: contextvars.ContextVar[TransactionScope | None] = contextvars.ContextVar(
    "tocsin_transaction_scope", default=None
)
_finders: list[ScopeFinder] = []


@contextlib.contextmanager
def bind(scope: TransactionScope) -> Iterator[TransactionScope]:
    """Defer the on-commit receivers of every send in this block to *scope*.

    Bound in a context variable, so it follows the code (threads and asyncio
    tasks started inside see it only if they copy the context, as tasks do).
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

    Returns a function that unregisters it. Registering the same finder twice
    is ignored.
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
    """The scope a send belongs to, or None when it is outside any transaction."""
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
    """Run *deferred* in order; then raise what non-robust receivers raised.

    Every call runs even when an earlier one fails (Django stops at the
    first failure and loses the rest): one error is raised as it is, several
    as an ``ExceptionGroup``.
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
    """:func:`run_all` for a scope whose commit is a coroutine: each call with
    :meth:`Deferred.arun`, one after the other, in order.
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
