"""How async receivers are run: concurrently, in tasks only once they wait, and from sync code.

Django 6.1 runs async receivers as tasks of an ``asyncio.TaskGroup``: all of
them start before any is waited on, the first failure cancels the ones still
running, one failure is re-raised as is and several as an ``ExceptionGroup``.
tocsin keeps those semantics, but a task (and on Python 3.11 the trip through
the event loop that starts it) is most of what such a send costs, and most
receivers never wait. So the receivers first run one after the other in the
caller's task, in a *lane* (:func:`_lane`): a send to receivers that never wait
makes no task at all.

A receiver may capture ``asyncio.current_task()`` before it waits (entering
``asyncio.timeout()``, a ``TaskGroup`` or an anyio cancel scope does), so once
it has started in the caller's task it must go on in that task: the first
receiver that waits is run to its end by the caller's task (:class:`_Hosted`),
and each receiver after it gets a task of its own, as in Django (on Python
3.12+ created with ``eager_start=True``, so that one that does not wait
finishes at once). Cancellations are counted so that a timeout or a
``TaskGroup`` inside that first receiver act on it alone.

Contextvars follow Django 6.1: the receivers share one copy of the caller's
context, and whatever they set is copied back into the caller's context.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import sys
import threading
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import CoroutineType
from typing import Any, TypeVar

from ._compiled import speedups
from .exceptions import AsyncReceiversInLoopError

T = TypeVar("T")

# What turns a failing receiver's exception into its result (the robust sends).
OnError = Callable[[Any, Exception], Any]

_EAGER: dict[str, Any] = {"eager_start": True} if sys.version_info >= (3, 12) else {}


def restore_context(context: contextvars.Context) -> None:
    """Copy the values set in *context* into the current context."""
    if context == contextvars.copy_context():
        return  # nothing was set: the two share one mapping, so this test is O(1)
    for var, value in context.items():
        try:
            current = var.get()
        except LookupError:
            var.set(value)
            continue
        if current is not value and current != value:  # as Django compares
            var.set(value)


async def _lane(
    receivers: Sequence[Any],
    awaitables: list[Awaitable[Any]],
    results: list[tuple[Any, Any]],
    failed: list[BaseException],
) -> bool:
    """Await *awaitables* one after the other, appending ``(receiver, result)``.

    A failure is recorded in *failed* (in the order the receivers failed) and
    the lane goes on: every receiver starts, as under a TaskGroup. A receiver
    cancelled from inside gives None. ``start_concurrently()`` shortens the
    list when a receiver suspends, so that the lane ends with that receiver.
    Returns whether the last receiver was cancelled.
    """
    cancelled = False
    append = results.append
    for receiver, awaitable in zip(receivers, awaitables):  # noqa: B905 (cut short)
        cancelled = False
        try:
            append((receiver, await awaitable))
        except asyncio.CancelledError:
            append((receiver, None))
            cancelled = True
        except GeneratorExit:
            raise
        except BaseException as exc:
            append((receiver, None))
            failed.append(exc)
    return cancelled


async def _robust_lane(
    receivers: list[Any],
    signal: object,
    sender: object,
    named: dict[str, Any],
    on_error: OnError,
    results: list[tuple[Any, Any]],
    failed: list[BaseException],
) -> bool:
    """:func:`_lane` for the robust sends: each receiver is called in its turn,
    and its ``Exception`` becomes its result."""
    cancelled = False
    for receiver in receivers:
        cancelled = False
        try:
            results.append((receiver, await receiver(signal=signal, sender=sender, **named)))
        except Exception as exc:
            results.append((receiver, on_error(receiver, exc)))
        except asyncio.CancelledError:
            results.append((receiver, None))
            cancelled = True
        except GeneratorExit:
            raise
        except BaseException as exc:
            results.append((receiver, None))
            failed.append(exc)
    return cancelled


async def run_concurrently(
    receivers: Sequence[Any],
    signal: object,
    sender: object,
    named: dict[str, Any],
    on_error: OnError | None = None,
) -> list[tuple[Any, Any]]:
    """Await ``receiver(signal=, sender=, **named)`` for every receiver concurrently.

    Returns ``[(receiver, result), ...]`` in receiver order. With *on_error*, an
    ``Exception`` becomes ``on_error(receiver, exc)``'s result. Without, one failure is
    re-raised as is and several are raised together as an ``ExceptionGroup``;
    the first failure cancels the receivers still running, and they are waited
    for first, as Django 6.1's ``TaskGroup`` does. See :func:`start_concurrently`.
    """
    results = start_concurrently(receivers, signal, sender, named, on_error)
    if type(results) is list:
        return results
    return await results  # type: ignore[no-any-return,misc]


def start_concurrently(
    receivers: Sequence[Any],
    signal: object,
    sender: object,
    named: dict[str, Any],
    on_error: OnError | None = None,
) -> list[tuple[Any, Any]] | Awaitable[list[tuple[Any, Any]]]:
    """:func:`run_concurrently` without a coroutine of its own when no receiver
    waits: the results, or an awaitable of them if a receiver suspended.

    The receivers run one after the other in the caller's task, in one copy of
    the caller's context, for as long as none suspends: a send to receivers
    that never wait makes no task. The first receiver that suspends goes on in
    the caller's task (its ``asyncio.current_task()`` is the one it saw when it
    started), and each receiver after it runs in a task of its own; see
    :class:`_Hosted`.
    """
    results: list[tuple[Any, Any]] = []
    failed: list[BaseException] = []
    items: list[Any]
    if on_error is None:
        items = _make_awaitables(receivers, signal, sender, named)
        lane = _lane(receivers, items, results, failed)
    else:
        items = list(receivers)
        lane = _robust_lane(items, signal, sender, named, on_error, results, failed)
    context = contextvars.copy_context()
    caller = asyncio.current_task()
    cancels = caller.cancelling() if caller is not None else 0
    try:
        yielded = context.run(lane.send, None)
    except StopIteration:
        restore_context(context)
    else:
        # Receiver len(results) suspended: the lane ends with it, and the
        # receivers after it start in tasks of their own.
        after = len(results) + 1
        hosted = _Hosted(lane, context, caller, cancels, failed)
        if after == len(receivers):
            # The last one (a lone receiver, most often): no task to start.
            return hosted.finish(results, yielded, [], None)
        rest = list(zip(receivers[after:], items[after:], strict=True))
        del items[after:]

        def start(pair: tuple[Any, Any], outcome: list[Any]) -> Coroutine[Any, Any, bool]:
            # A lane of one receiver: it records a failure when it happens.
            receiver, item = pair
            if on_error is None:
                return _lane([receiver], [item], outcome, failed)
            return _robust_lane([receiver], signal, sender, named, on_error, outcome, failed)

        return hosted.finish(results, yielded, rest, start)
    if caller is not None and caller.cancelling() > cancels:
        # A receiver cancelled asyncio.current_task() (for it, its own task)
        # and finished without waiting: that cancels that receiver, not the send.
        return _taken_back(caller, caller.cancelling() - cancels, results, failed)
    if failed:
        _raise(failed)
    return results


async def _taken_back(
    caller: asyncio.Task[Any],
    count: int,
    results: list[tuple[Any, Any]],
    failed: list[BaseException],
) -> list[tuple[Any, Any]]:
    await _take_back(caller, count)
    if failed:
        _raise(failed)
    return results


def _raise(failed: list[BaseException]) -> None:
    if len(failed) == 1:
        raise failed[0]
    raise BaseExceptionGroup("unhandled errors in a TaskGroup", failed)


async def _take_back(caller: asyncio.Task[Any], count: int, pending: bool = True) -> None:
    """Take back *count* cancellations that receivers running in *caller*
    requested of their own task, and, if *pending*, the one still to be
    delivered because they finished before it was."""
    for _ in range(count):
        caller.uncancel()
    if pending:
        # Python 3.11 and 3.12 keep the request pending even so (3.13 drops it
        # once the count is 0): receive it here, not at the caller's next await.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)


# Makes the lane of one receiver (a task's), writing its result into the list.
_Start = Callable[[Any, list[Any]], Coroutine[Any, Any, bool]]


class _Hosted:
    """A send whose lane suspended: the rest of :func:`run_concurrently`.

    The receiver that suspended started in the caller's task, and whatever it
    did there (entered ``asyncio.timeout()``, a ``TaskGroup``, an anyio cancel
    scope) is bound to that task: so the caller's task goes on running it, step
    by step (:meth:`_drive`), in the send's context. The receivers after it
    each get a task of their own, as Django gives every receiver; on Python
    3.12+ the tasks start eagerly, so one that does not wait finishes at once.

    Its steps run in the caller's task, so the cancellations it requests of
    "its" task are requested of the caller's: ``_drive()`` counts those
    requested during its steps (it cancelled itself) and takes them back, as it
    takes back the one made to cancel the receiver when another fails. Any
    cancellation left is the caller's own: it propagates once every receiver
    has stopped.
    """

    __slots__ = (
        "caller",
        "cancels",
        "context",
        "failed",
        "hosting",
        "lane",
        "outcomes",
        "pairs",
        "requested",
        "seen",
        "self_cancels",
        "tasks",
    )

    def __init__(
        self,
        lane: Coroutine[Any, Any, bool],
        context: contextvars.Context,
        caller: asyncio.Task[Any] | None,
        cancels: int,
        failed: list[BaseException],
    ) -> None:
        self.lane = lane
        self.context = context
        self.caller = caller
        self.cancels = cancels  # the caller's cancelling() before the send
        self.failed = failed
        self.tasks: list[asyncio.Task[Any]] = []
        self.outcomes: list[list[Any]] = []  # each task's (receiver, result), once it has one
        self.pairs: list[tuple[Any, Any]] = []  # each task's (receiver, awaitable or receiver)
        self.hosting = False  # the caller's task is running the receiver (in _drive)
        self.requested = False  # the caller's task was cancelled, to cancel the receiver
        self.self_cancels = 0  # cancellations the receiver requested of "its" task
        self.seen = 0  # failures acted on so far

    async def finish(
        self,
        results: list[tuple[Any, Any]],
        yielded: Any,
        rest: list[Any],
        start: _Start | None,
    ) -> list[tuple[Any, Any]]:
        """Run the rest of the send; return all its results, *results* first."""
        try:
            await self.run(yielded, rest, start)
        finally:
            restore_context(self.context)
        return results + self.results() if rest else results

    async def run(self, yielded: Any, rest: list[Any], start: _Start | None) -> None:
        """Start *rest* in tasks (with *start*), run the suspended receiver to
        its end, wait for the tasks, then raise as a TaskGroup would."""
        caller = self.caller
        if caller is not None:
            # Cancellations requested while the receivers ran, before this one
            # suspended: its own, most likely (they will reach it at its wait).
            self.self_cancels = max(caller.cancelling() - self.cancels, 0)
        if rest:
            assert start is not None  # given with rest
            if _EAGER:
                # Started from the loop, right before this receiver's next
                # step: the steps then come in the order of Django's TaskGroup
                # (each receiver's first, then the second...).
                asyncio.get_running_loop().call_soon(self._start, rest, start)
            else:
                self._start(rest, start)  # their first steps come next anyway
        self._abort_soon()  # if receivers failed at once, before this one waited
        try:
            receiver_cancelled = await self._drive(yielded)
        except GeneratorExit:
            self._cancel_tasks()
            raise
        cancelled = self._caller_cancelled(receiver_cancelled)
        if cancelled:
            self._cancel_tasks()  # the caller was cancelled: so is every receiver
        else:
            self._abort_soon()  # the receiver failed
        if self.tasks:
            await _settle(self.tasks)
        if cancelled:
            raise asyncio.CancelledError
        if self.failed:
            _raise(self.failed)

    def _caller_cancelled(self, receiver_cancelled: bool) -> bool:
        """Whether the caller's task was cancelled while it ran the receiver.

        What is left of its cancellations once the receiver's own and ours are
        taken back (_drive did) is someone else's: the caller's, if the receiver
        ended cancelled. If it did not, the receiver handled it as a receiver
        awaited directly may (a TaskGroup inside it, which on Python 3.11 and
        3.12 can leave its task's count raised; or a receiver that swallows a
        cancellation): the count is put back and the send goes on.
        """
        caller = self.caller
        if caller is None or (left := caller.cancelling() - self.cancels) <= 0:
            return False
        if receiver_cancelled:
            return True
        for _ in range(left):
            caller.uncancel()
        return False

    def _start(self, rest: list[Any], start: _Start) -> None:
        loop = asyncio.get_running_loop()
        for pair in rest:
            outcome: list[Any] = []
            task = asyncio.Task(start(pair, outcome), loop=loop, context=self.context, **_EAGER)
            self.tasks.append(task)
            self.outcomes.append(outcome)
            self.pairs.append(pair)
            if not task.done():
                task.add_done_callback(self._on_done)
        self._abort_soon()

    def _abort_soon(self) -> None:
        """If receivers failed (at once), cancel the others from the loop: those
        already started get the turn they would get in Django's TaskGroup first."""
        if len(self.failed) > self.seen:
            self.seen = len(self.failed)
            asyncio.get_running_loop().call_soon(self._abort)

    def results(self) -> list[tuple[Any, Any]]:
        """The tasks' ``(receiver, result)``, in order (None for a receiver cancelled)."""
        return [
            outcome[0] if outcome else (pair[0], None)
            for pair, outcome in zip(self.pairs, self.outcomes, strict=True)
        ]

    @types.coroutine
    def _drive(self, yielded: Any) -> Generator[Any, Any, bool]:
        """Run the lane, whose last receiver suspended, to its end in the
        caller's task: what ``await`` would do, plus the context, and the count
        of the cancellations the receiver's steps request. Returns whether the
        receiver ended cancelled."""
        lane, caller, run = self.lane, self.caller, self.context.run
        step: Callable[[Any], Any]
        self.hosting = True
        try:
            while True:
                try:
                    value = yield yielded
                except GeneratorExit:
                    lane.close()
                    raise
                except BaseException as exc:  # a cancellation: for the receiver
                    step, value = lane.throw, exc
                else:
                    step = lane.send
                before = caller.cancelling() if caller is not None else 0
                try:
                    yielded = run(step, value)
                except StopIteration as stop:
                    receiver_cancelled: bool = stop.value
                    break
                finally:
                    if caller is not None and caller.cancelling() > before:
                        self.self_cancels += caller.cancelling() - before
        finally:
            self.hosting = False
        if caller is not None and (self.self_cancels or self.requested):
            # Ours was delivered (the caller's task was waiting here); one the
            # receiver requested of "its" task may still be pending.
            count = self.self_cancels + self.requested
            yield from _take_back(caller, count, bool(self.self_cancels)).__await__()
        return receiver_cancelled

    def _on_done(self, task: asyncio.Task[Any]) -> None:
        # The task's lane recorded its receiver's failure, if any, when it
        # happened; a TaskGroup acts on it from here, the event loop.
        if len(self.failed) > self.seen:
            self.seen = len(self.failed)
            self._abort()

    def _abort(self) -> None:
        """Cancel every receiver still running (from the event loop)."""
        self._cancel_tasks()
        if self.hosting and not self.requested and self.caller is not None:
            # The caller's task is waiting in _drive(): this cancels the
            # receiver's wait, and _drive() takes it back at the end.
            self.requested = True
            self.caller.cancel()

    def _cancel_tasks(self) -> None:
        for task in self.tasks:
            if not task.done():
                task.cancel()


def _make_awaitables(
    receivers: Sequence[Any], signal: object, sender: object, named: dict[str, Any]
) -> list[Awaitable[Any]]:
    """Call every receiver before any runs, as Django does.

    If calling one fails, no receiver runs: the error propagates and the
    coroutines already made are closed.
    """
    awaitables: list[Awaitable[Any]] = []
    try:
        if "signal" in named:  # let Python raise its TypeError, as Django's call does
            for receiver in receivers:
                awaitables.append(receiver(signal=signal, sender=sender, **named))
        elif (
            speedups is not None
            and type(receivers) is list
            and speedups.call_each(receivers, signal, sender, named, awaitables) is None
        ):
            pass  # the same calls, made in C from one tuple of names (tocsin._speedups)
        else:
            # The keyword arguments merged once, as in send(); each call still
            # gets a dict of its own.
            arguments = {"signal": signal, "sender": sender, **named}
            for receiver in receivers:
                awaitables.append(receiver(**arguments))
    except BaseException:
        for made in awaitables:
            if type(made) is CoroutineType:
                made.close()
        raise
    return awaitables


async def _settle(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Wait for *tasks*. Cancelling the caller cancels them all, and waits for
    them, before it propagates, as a TaskGroup does."""
    try:
        if pending := {task for task in tasks if not task.done()}:
            await asyncio.wait(pending)
    except asyncio.CancelledError:
        for task in tasks:
            if not task.done():
                task.cancel()
        if pending := {task for task in tasks if not task.done()}:
            await asyncio.wait(pending)
        raise


# -- sync -> async and async -> sync -------------------------------------------------


def _asgiref_sync() -> Any:
    try:
        from asgiref import sync
    except ImportError:
        return None
    return sync


def check_no_running_loop(what: str) -> None:
    """Refuse to block a running event loop's thread waiting for async receivers."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    # asgiref's message first: Django's send() fails with it here, and code
    # catching the RuntimeError may match on it.
    raise AsyncReceiversInLoopError(
        f"You cannot use AsyncToSync in the same thread as an async event loop - just "
        f"await the async function directly. {what} has async receivers and was called "
        f"from a thread whose event loop is running; it cannot wait for them without "
        f"blocking that loop. Use 'await signal.asend(...)' (or asend_robust) in async code."
    )


def run_from_sync(make_coroutine: Callable[[], Awaitable[T]]) -> T:
    """Run an async function to completion from sync code.

    With asgiref installed (it is whenever Django is), this is
    ``async_to_sync``, so that code running under ``sync_to_async`` sends to
    async receivers on the application's own event loop, as Django does.
    Without it, a private event loop runs in the calling thread.
    """

    async def main() -> T:
        return await make_coroutine()

    sync = _asgiref_sync()
    if sync is not None:
        result: T = sync.async_to_sync(main)()
        return result
    context = contextvars.copy_context()
    try:
        with asyncio.Runner() as runner:
            return runner.run(main(), context=context)
    finally:
        restore_context(context)


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _sync_executor() -> ThreadPoolExecutor:
    # One thread, like asgiref's thread-sensitive mode: sync receivers called
    # from asend() never run concurrently with each other.
    global _executor  # noqa: PLW0603
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tocsin-sync")
        return _executor


async def run_sync_off_loop(func: Callable[[], T]) -> T:
    """Run blocking *func* without blocking the event loop, as Django's asend() does."""
    sync = _asgiref_sync()
    if sync is not None:
        result: T = await sync.sync_to_async(func)()
        return result
    context = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(_sync_executor(), functools.partial(context.run, func))
    finally:
        restore_context(context)
