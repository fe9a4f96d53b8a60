"""Request signals for any WSGI application (Flask, Django, Falcon, Bottle, plain WSGI).

::

    from tocsin.contrib.wsgi import RequestSignalsMiddleware

    app = RequestSignalsMiddleware(app)

For every request the middleware sends, in this order:

* ``request_started(sender=RequestSignalsMiddleware, environ=environ)`` before the
  application is called;
* ``got_request_exception(sender=..., environ=environ, exception=exc)`` if the
  application raises, while it is called or while its response is iterated; the
  exception then propagates unchanged;
* ``request_finished(sender=..., environ=environ)`` exactly once: when the server
  closes the response iterable (PEP 3333 makes it call ``close()``, also after an
  error), or at once if the application raised before returning a response.

A server (or another middleware) that never calls ``close()`` would lose
``request_finished``; so when the response iterable is garbage collected without
having been closed, the middleware closes it then, sends the signal and logs a
warning that names the culprit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from .._inspect import is_async
from ..signals import got_request_exception, request_finished, request_started

__all__ = ["RequestSignalsMiddleware"]

logger: logging.Logger = logging.getLogger("tocsin.contrib.wsgi")


class RequestSignalsMiddleware:
    """WSGI middleware that sends ``request_started``, ``request_finished`` and
    ``got_request_exception`` for every request.

    :param app: the WSGI application to wrap.
    """

    def __init__(self, app: WSGIApplication) -> None:
        if not callable(app):
            raise TypeError(
                f"RequestSignalsMiddleware wraps a WSGI application (a callable taking "
                f"environ and start_response); got {type(app).__name__} {app!r}."
            )
        if is_async(app):
            raise TypeError(
                f"{app!r} is an async callable, an ASGI application; wrap it with "
                f"tocsin.contrib.asgi.RequestSignalsMiddleware instead."
            )
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        sender = type(self)
        request_started.send(sender=sender, environ=environ)
        try:
            response = self.app(environ, start_response)
        except BaseException as exc:
            # There is no response for the server to close: finish here. A
            # BaseException (a gevent Timeout, say) is no application error,
            # but the request is over all the same.
            try:
                if isinstance(exc, Exception):
                    _report(sender, environ, exc)
            finally:
                request_finished.send(sender=sender, environ=environ)
            raise
        wrapper = _ClosingResponse if not hasattr(response, "__len__") else _SizedClosingResponse
        return wrapper(response, sender, environ)


def _report(sender: type, environ: WSGIEnvironment, exc: Exception) -> None:
    # Robustly: a failing receiver is logged, and must not replace the
    # application's exception, which propagates unchanged.
    got_request_exception.send_robust(sender=sender, environ=environ, exception=exc)


class _ClosingResponse:
    """The application's response iterable, with a ``close()`` that finishes the request."""

    def __init__(self, response: Iterable[bytes], sender: type, environ: WSGIEnvironment) -> None:
        self._response = response
        self._iterator: Iterator[bytes] | None = None
        self._sender = sender
        self._environ = environ
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._iterator is None:
            self._iterator = iter(self._response)
        try:
            return next(self._iterator)
        except StopIteration:
            raise
        except Exception as exc:
            _report(self._sender, self._environ, exc)
            raise

    def close(self) -> None:
        """Close the application's response, then send ``request_finished`` (once)."""
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._response, "close", None)
            if close is not None:
                close()
        finally:
            request_finished.send(sender=self._sender, environ=self._environ)

    def __del__(self) -> None:
        if self._closed:
            return
        logger.warning(
            "The response to %s %s was never closed: the WSGI server or a middleware "
            "in front of RequestSignalsMiddleware does not call close() (PEP 3333). "
            "Sending request_finished now, when the response is garbage collected.",
            self._environ.get("REQUEST_METHOD", "?"),
            self._environ.get("PATH_INFO", "?"),
        )
        try:
            self.close()
        except Exception:
            logger.exception("Error while finishing an unclosed response")


class _SizedClosingResponse(_ClosingResponse):
    """Keeps ``len()``, which servers use to set Content-Length for one-chunk responses."""

    def __len__(self) -> int:
        return len(self._response)  # type: ignore[arg-type]
