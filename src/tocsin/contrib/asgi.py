"""Request signals for any ASGI application (Starlette, FastAPI, Litestar, Django, Quart).

::

    from tocsin.contrib.asgi import RequestSignalsMiddleware

    app = RequestSignalsMiddleware(app)

For every ``http`` request the middleware awaits, in this order:

* ``request_started.asend(sender=RequestSignalsMiddleware, scope=scope)`` before the
  application is called;
* ``got_request_exception.asend(sender=..., scope=scope, exception=exc)`` if the
  application raises; the exception then propagates unchanged;
* ``request_finished.asend(sender=..., scope=scope)`` exactly once: after the last body
  message of the response has been sent, or when the client disconnects, the request
  is cancelled, or the application fails (Django's ticket 35059 was a missing
  ``request_finished`` on cancellation).

The signals' sync receivers run in a worker thread, as in Django, unless a signal
opts in to calling them on the event loop (``request_started.sync_receivers_on_loop =
True``, for receivers known to be quick and never to block).

``websocket`` and ``lifespan`` scopes, and scope types it does not know, are passed
to the application untouched. It is a pure ASGI middleware: it does not read the
body and does not buffer the response.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .._async import _EAGER
from .._inspect import is_async
from ..signals import got_request_exception, request_finished, request_started

__all__ = ["RequestSignalsMiddleware"]

# Declared here, as Starlette and httpx do, so that nothing needs importing.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_NOBODY = object()

# Messages after which the response is complete (the last two are ASGI extensions).
_FINAL = {"http.response.body", "http.response.zerocopysend", "http.response.pathsend"}


class RequestSignalsMiddleware:
    """ASGI middleware that sends ``request_started``, ``request_finished`` and
    ``got_request_exception`` for every HTTP request.

    :param app: the ASGI application to wrap.
    """

    def __init__(self, app: ASGIApp) -> None:
        if not callable(app):
            raise TypeError(
                f"RequestSignalsMiddleware wraps an ASGI application (an async callable "
                f"taking scope, receive and send); got {type(app).__name__} {app!r}."
            )
        if not is_async(app) and _positional_count(app) == 2:
            raise TypeError(
                f"{app!r} looks like a WSGI application (environ, start_response); "
                f"wrap it with tocsin.contrib.wsgi.RequestSignalsMiddleware instead."
            )
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        await _Request(type(self), scope).run(self.app, receive, send)


def _positional_count(app: object) -> int | None:
    try:
        parameters = inspect.signature(app).parameters.values()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in parameters if p.kind in kinds)


class _Request:
    """One HTTP request going through the middleware."""

    __slots__ = ("finishing", "scope", "sender")

    def __init__(self, sender: type, scope: Scope) -> None:
        self.sender = sender
        self.scope = scope
        # The task sending request_finished, once started; _NOBODY if nobody listens.
        self.finishing: asyncio.Task[Any] | object | None = None

    async def run(self, app: ASGIApp, receive: Receive, send: Send) -> None:
        await request_started.asend(sender=self.sender, scope=self.scope)
        try:
            await app(self.scope, self._receiver(receive), self._sender(send))
        except Exception as exc:
            # Robustly: a failing receiver is logged, and must not replace the
            # application's exception, which propagates unchanged.
            await got_request_exception.asend_robust(
                sender=self.sender, scope=self.scope, exception=exc
            )
            raise
        finally:
            # Also when cancelled (CancelledError is not an Exception): the
            # signal goes out, and the request waits for its receivers.
            await self._finish()

    async def _finish(self) -> None:
        """Send ``request_finished``, once, in a task of its own.

        It may be sent from inside the application's ``send()`` or ``receive()``,
        in a task the application is about to cancel (Starlette's
        StreamingResponse cancels its sender once the client is gone): shielded,
        the receivers run to the end all the same.
        """
        finishing = self.finishing
        if finishing is None:
            if not request_finished.has_listeners(self.sender):
                self.finishing = _NOBODY
                return
            coroutine = request_finished.asend(sender=self.sender, scope=self.scope)
            loop = asyncio.get_running_loop()
            finishing = self.finishing = asyncio.Task(coroutine, loop=loop, **_EAGER)
        elif finishing is _NOBODY:
            return
        assert isinstance(finishing, asyncio.Task)
        if finishing.done():  # the usual case on 3.12+: the eager task is over already
            finishing.result()
        else:
            await asyncio.shield(finishing)

    def _sender(self, send: Send) -> Send:
        async def send_and_finish(message: Message) -> None:
            await send(message)
            if message.get("type") in _FINAL and not message.get("more_body", False):
                await self._finish()

        return send_and_finish

    def _receiver(self, receive: Receive) -> Receive:
        async def receive_and_notice() -> Message:
            message = await receive()
            if message.get("type") == "http.disconnect":
                await self._finish()
            return message

        return receive_and_notice
