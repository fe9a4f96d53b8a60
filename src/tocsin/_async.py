"""How async receivers are run: concurrently, each in its own task, and from sync code.

Django 6.1 runs async receivers as tasks of an ``asyncio.TaskGroup``: all of
them start before any is waited on, the first failure cancels the ones still
running, one failure is re-raised as is and several as an ``ExceptionGroup``.
tocsin keeps those semantics, and on Python 3.12+ creates the tasks with
``eager_start=True``: a receiver runs at once, up to its first real wait, and
one that never waits is finished without a trip through the event loop. That
is where most of the cost of Django's ``asend()`` goes.

Each receiver must have a task of its own, even one that never waits: code
such as ``asyncio.timeout()`` or a ``TaskGroup`` inside a receiver acts on
``asyncio.current_task()``, and running the receiver inside the caller's task
would make a timeout cancel the caller instead.

Contextvars follow Django 6.1: the receivers share one copy of the caller's
context, and whatever they set is copied back into the caller's context.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import CoroutineType
from typing import Any, TypeVar

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


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


async def _robust(
    receiver: Any, signal: object, sender: object, named: dict[str, Any], on_error: OnError
) -> Any:
    try:
        return await receiver(signal=signal, sender=sender, **named)
    except Exception as exc:
        return on_error(receiver, exc)


async def run_concurrently(
    receivers: Sequence[Any],
    signal: object,
    sender: object,
    named: dict[str, Any],
    on_error: OnError | None = None,
) -> list[Any]:
    """Await ``receiver(signal=, sender=, **named)`` for every receiver concurrently.

    Returns the results in receiver order. With *on_error*, an ``Exception``
    becomes ``on_error(receiver, exc)``'s result. Without, one failure is
    re-raised as is and several are raised together as an ``ExceptionGroup``;
    the first failure cancels the receivers still running, and they are waited
    for first, as Django 6.1's ``TaskGroup`` does.
    """
    loop = asyncio.get_running_loop()
    awaitables = _make_awaitables(receivers, signal, sender, named, on_error)
    context = contextvars.copy_context()
    tasks: list[asyncio.Task[Any]] = []
    failed: list[asyncio.Task[Any]] = []  # in the order they failed, as in a TaskGroup

    def on_done(task: asyncio.Task[Any]) -> None:
        # Called from the event loop, never at once, also for a task that
        # failed eagerly: receivers that already took a step still get the
        # turn they would get in Django's TaskGroup before the cancel.
        if _failed(task):
            failed.append(task)
            _cancel(tasks)

    pending = False
    try:
        for awaitable in awaitables:
            task = asyncio.Task(awaitable, loop=loop, context=context, **_EAGER)
            tasks.append(task)
            if not task.done():
                if len(awaitables) > 1:  # alone, it has no other receiver to cancel
                    task.add_done_callback(on_done)
                pending = True
            elif _failed(task):
                loop.call_soon(on_done, task)
            # (A task that succeeded eagerly needs no callback at all.)
        if pending:
            await _settle(tasks)
    finally:
        restore_context(context)
    results: list[Any] = []
    for task in tasks:
        if task.cancelled():
            results.append(None)  # cancelled from inside: None, as under a TaskGroup
        elif task.exception() is None:
            results.append(task.result())
        elif task not in failed:
            failed.append(task)  # failed eagerly, and on_done has not run yet
    if failed:
        errors = [error for task in failed if (error := task.exception()) is not None]
        if len(errors) == 1:
            raise errors[0]
        raise BaseExceptionGroup("unhandled errors in a TaskGroup", errors)
    return results


def _failed(task: asyncio.Task[Any]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is not None


def _make_awaitables(
    receivers: Sequence[Any],
    signal: object,
    sender: object,
    named: dict[str, Any],
    on_error: OnError | None,
) -> list[Coroutine[Any, Any, Any]]:
    """Call every receiver before any runs, as Django does.

    If calling one fails (not robust), no receiver runs: the error propagates
    and the coroutines already made are closed.
    """
    if on_error is not None:
        return [_robust(r, signal, sender, named, on_error) for r in receivers]
    awaitables: list[Coroutine[Any, Any, Any]] = []
    try:
        for receiver in receivers:
            awaitable = receiver(signal=signal, sender=sender, **named)
            if type(awaitable) is not CoroutineType and not asyncio.iscoroutine(awaitable):
                awaitable = _await(awaitable)  # a Future, or an object with __await__
            awaitables.append(awaitable)
    except BaseException:
        for made in awaitables:
            made.close()
        raise
    return awaitables


def _cancel(tasks: Sequence[asyncio.Task[Any]]) -> None:
    for task in tasks:
        if not task.done():
            task.cancel()


async def _settle(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Wait for *tasks*. Cancelling the caller cancels them all, and waits for
    them, before it propagates, as a TaskGroup does."""
    if len(tasks) == 1:
        await _settle_one(tasks[0])
        return
    try:
        if pending := {task for task in tasks if not task.done()}:
            await asyncio.wait(pending)
    except asyncio.CancelledError:
        _cancel(tasks)
        if pending := {task for task in tasks if not task.done()}:
            await asyncio.wait(pending)
        raise


async def _settle_one(task: asyncio.Task[Any]) -> None:
    """:func:`_settle` for a single task, the common case (one async receiver,
    such as a remote publisher), without ``asyncio.wait()``'s future and
    callbacks. Awaiting a task forwards a cancellation of the caller to it and
    comes back once it has stopped; the caller's ``cancelling()`` count tells a
    cancellation of the caller (re-raised, even if the receiver swallowed it)
    from one of the receiver alone (its result is None)."""
    caller = asyncio.current_task()
    assert caller is not None  # run_concurrently() runs in a task
    cancels = caller.cancelling()
    try:
        await task
    except asyncio.CancelledError:
        if not task.done():  # cancelled before the task could take the request
            task.cancel()
            await asyncio.wait([task])
            raise
        if caller.cancelling() > cancels:
            raise
    except Exception:
        pass  # run_concurrently() reads the failure from the task
    else:
        if caller.cancelling() > cancels:
            raise asyncio.CancelledError


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
