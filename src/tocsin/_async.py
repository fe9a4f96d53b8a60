"""How async receivers are run: concurrently, cheaply, and from sync code.

Django 6.1 starts every async receiver as an ``asyncio`` task in a
``TaskGroup``. A task costs a few microseconds, which is why Django's
``asend()`` with ten receivers that never suspend is ~19x slower than awaiting
them one after another. tocsin starts the receivers *eagerly* instead: one
generator drives them in order with ``yield from`` (no task, no exception per
receiver), and only a receiver that really suspends is moved into a task of
its own, so that the next one can start. The result is the same concurrency
as Django's (every receiver starts before any is waited on; failures cancel
the ones still running) at close to the cost of a plain ``await`` loop.

Contextvars follow Django 6.1: the receivers share one copy of the caller's
context, and whatever they set is copied back into the caller's context.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import types
from collections.abc import Awaitable, Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .exceptions import AsyncReceiversInLoopError

T = TypeVar("T")

# What a failing receiver is turned into under send_robust/asend_robust;
# ``None`` means "re-raise".
ErrorHandler = Callable[[Any, Exception], Any] | None
Call = Callable[[Any], Awaitable[Any]]


def restore_context(context: contextvars.Context) -> None:
    """Copy the values set in *context* into the current context."""
    for var, value in context.items():
        try:
            if var.get() is value:
                continue
        except LookupError:
            pass
        var.set(value)


class _Abort(Exception):
    """Raised inside the task group to cancel receivers still running."""


class _Cursor:
    __slots__ = ("detached", "index")

    def __init__(self) -> None:
        self.index = 0
        self.detached = False


@types.coroutine
def _drive(
    receivers: Sequence[Any],
    start: int,
    call: Call,
    results: list[Any],
    cursor: _Cursor,
    on_error: ErrorHandler,
) -> Generator[Any, Any, None]:
    """Run receivers ``start..`` in order; ``yield from`` costs nothing when none suspends.

    If receiver *i* suspends, the caller moves this generator into a task
    (``cursor.detached``) and starts receiver *i + 1* with a new generator; this
    one finishes receiver *i* and stops.
    """
    for index in range(start, len(receivers)):
        cursor.index = index
        receiver = receivers[index]
        try:
            awaitable: Any = call(receiver)
            if type(awaitable) is not types.CoroutineType:
                awaitable = awaitable.__await__()
            results[index] = yield from awaitable
        except Exception as exc:
            if on_error is None:
                raise
            results[index] = on_error(receiver, exc)
        if cursor.detached:
            return


@types.coroutine
def _resume(gen: Generator[Any, Any, None], yielded: Any) -> Generator[Any, Any, None]:
    """Hand-written ``yield from`` for a generator that has already yielded *yielded*."""
    while True:
        try:
            value = yield yielded
        except BaseException as exc:
            try:
                yielded = gen.throw(exc)
            except StopIteration:
                return
        else:
            try:
                yielded = gen.send(value)
            except StopIteration:
                return


async def _finish(gen: Generator[Any, Any, None], yielded: Any) -> None:
    await _resume(gen, yielded)


def _start_all(
    receivers: Sequence[Any],
    call: Call,
    results: list[Any],
    on_error: ErrorHandler,
    suspended: list[tuple[Generator[Any, Any, None], Any]],
    errors: list[BaseException],
) -> None:
    """Start every receiver; collect the suspended ones and the failures."""
    start = 0
    while start < len(receivers):
        cursor = _Cursor()
        gen = _drive(receivers, start, call, results, cursor, on_error)
        try:
            yielded = gen.send(None)
        except StopIteration:
            return
        except Exception as exc:  # only reached when not robust
            errors.append(exc)
        except BaseException:
            # KeyboardInterrupt and friends stop everything at once.
            for other, _ in suspended:
                other.close()
            raise
        else:
            cursor.detached = True
            suspended.append((gen, yielded))
        start = cursor.index + 1


async def run_concurrently(
    receivers: Sequence[Any], call: Call, on_error: ErrorHandler = None
) -> list[Any]:
    """Await ``call(r)`` for every receiver concurrently; results in receiver order.

    One failure is re-raised as is; several are raised together as an
    ``ExceptionGroup``, as Django 6.1's ``TaskGroup`` does.
    """
    results: list[Any] = [None] * len(receivers)
    suspended: list[tuple[Generator[Any, Any, None], Any]] = []
    errors: list[BaseException] = []
    context = contextvars.copy_context()
    try:
        context.run(_start_all, receivers, call, results, on_error, suspended, errors)
        if suspended:
            await _wait_for(suspended, errors, context)
    finally:
        restore_context(context)
    if errors:
        if len(errors) == 1:
            raise errors[0]
        raise BaseExceptionGroup("unhandled errors in a TaskGroup", errors)
    return results


async def _wait_for(
    suspended: list[tuple[Generator[Any, Any, None], Any]],
    errors: list[BaseException],
    context: contextvars.Context,
) -> None:
    try:
        async with asyncio.TaskGroup() as group:
            for gen, yielded in suspended:
                group.create_task(_finish(gen, yielded), context=context)
            if errors:
                # Let each task take its first step, then cancel them all,
                # as a TaskGroup whose first task failed at once would.
                await asyncio.sleep(0)
                raise _Abort
    except BaseExceptionGroup as group_error:
        errors.extend(e for e in group_error.exceptions if not isinstance(e, _Abort))


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
    raise AsyncReceiversInLoopError(
        f"{what} has async receivers and was called from a thread whose event loop is "
        f"running; it cannot wait for them without blocking that loop. "
        f"Use 'await signal.asend(...)' (or asend_robust) in async code."
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
