"""``tocsin.contrib.wsgi.RequestSignalsMiddleware``, under wsgiref's real server and validator.

Each test runs a small WSGI application behind the middleware, records the request signals and
what the application did in one list, and checks the order and the arguments. The servers run in
threads on 127.0.0.1 and are asked with httpx over real sockets; every wait is bounded.

mypy: the ``# type: ignore`` comments on lines that use the middleware mark where mypy
refuses it next to the standard ``wsgiref.types``; see the last test of this module.
"""

from __future__ import annotations

import gc
import io
import logging
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any
from wsgiref.handlers import SimpleHandler
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment
from wsgiref.util import FileWrapper, setup_testing_defaults
from wsgiref.validate import validator

import pytest

from tocsin.contrib.wsgi import RequestSignalsMiddleware
from tocsin.signals import request_started

from ._wsgi_support import LiveServer, Recorder, connected, get

Serve = Callable[[WSGIApplication], LiveServer]

# The apps pass a new list of headers each time: wsgiref adds Content-Length to the list given.
TEXT = ("Content-Type", "text/plain; charset=utf-8")


class Boom(Exception):
    """What the failing applications and receivers raise."""


class NotedBody(list[bytes]):
    """A response body (a list, so it has a length) that notes when the server closes it."""

    def __init__(self, chunks: Iterable[bytes], signals: Recorder) -> None:
        super().__init__(chunks)
        self.signals = signals

    def close(self) -> None:
        self.signals.note("app response closed")


class NotedFile(io.BytesIO):
    """A file to send with ``wsgi.file_wrapper``, which notes when it is closed."""

    def __init__(self, content: bytes, signals: Recorder) -> None:
        super().__init__(content)
        self.signals = signals

    def close(self) -> None:
        if not self.closed:
            self.signals.note("file closed")
        super().close()


def make_environ(path: str = "/") -> WSGIEnvironment:
    """An environ as a server would pass it, for calling the middleware directly."""
    environ: WSGIEnvironment = {"PATH_INFO": path}
    setup_testing_defaults(environ)
    return environ


def start_response(
    status: str, headers: list[tuple[str, str]], exc_info: Any = None
) -> Callable[[bytes], object]:
    """A server's ``start_response``, for calling the middleware directly."""
    return lambda data: None


def hello_app(signals: Recorder) -> WSGIApplication:
    """An application answering ``Hello`` in one chunk, noting its call and its close()."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        signals.note("app called", environ=environ)
        start_response("200 OK", [TEXT])
        return NotedBody([b"Hello"], signals)

    return app


def streaming_app(signals: Recorder) -> WSGIApplication:
    """An application answering with a generator, noting when the generator ends."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        signals.note("app called")
        start_response("200 OK", [TEXT])

        def body() -> Iterator[bytes]:
            try:
                yield b"Hello, "
                yield b"world"
            finally:
                signals.note("generator ended")

        return body()

    return app


# -- the lifecycle under a real server -------------------------------------------------


def test_plain_response(serve: Serve, signals: Recorder) -> None:
    """request_started comes before the app runs; request_finished once, after the server
    has sent the response and closed it."""
    server = serve(RequestSignalsMiddleware(hello_app(signals)))

    response = get(server.url + "/hello?name=ada")

    assert (response.status_code, response.text) == (200, "Hello")
    signals.wait_finished()
    assert signals.names == [
        "request_started",
        "app called",
        "app response closed",
        "request_finished",
    ]
    started, app_called, _, finished = signals.events
    environ = app_called.kwargs["environ"]
    assert started.sender is RequestSignalsMiddleware
    assert finished.sender is RequestSignalsMiddleware
    assert started.kwargs == {"environ": environ}  # the very environ the app gets
    assert finished.kwargs == {"environ": environ}
    assert (environ["PATH_INFO"], environ["QUERY_STRING"]) == ("/hello", "name=ada")


def test_streaming_response(serve: Serve, signals: Recorder) -> None:
    """A generator is streamed through the middleware; request_finished comes after it ends."""
    server = serve(RequestSignalsMiddleware(streaming_app(signals)))

    response = get(server.url)

    assert (response.status_code, response.text) == (200, "Hello, world")
    signals.wait_finished()
    assert signals.names == [
        "request_started",
        "app called",
        "generator ended",
        "request_finished",
    ]


def test_file_wrapper_response(serve: Serve, signals: Recorder) -> None:
    """A ``wsgi.file_wrapper`` response is sent whole; the file is closed, then request_finished."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        signals.note("app called")
        start_response("200 OK", [TEXT, ("Content-Length", "13")])
        file_wrapper = environ["wsgi.file_wrapper"]
        return file_wrapper(NotedFile(b"file contents", signals), 4)  # type: ignore[no-any-return]

    server = serve(RequestSignalsMiddleware(app))

    response = get(server.url + "/report.txt")

    assert (response.status_code, response.text) == (200, "file contents")
    signals.wait_finished()
    assert signals.names == ["request_started", "app called", "file closed", "request_finished"]


def test_app_raising_when_called(serve: Serve, signals: Recorder) -> None:
    """An app that raises instead of returning a response: got_request_exception with the
    exception, then request_finished at once; the exception propagates: the server says 500."""
    error = Boom("no response")

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        signals.note("app called")
        raise error

    server = serve(RequestSignalsMiddleware(app))

    response = get(server.url)

    assert response.status_code == 500
    signals.wait_finished()
    assert signals.names == [
        "request_started",
        "app called",
        "got_request_exception",
        "request_finished",
    ]
    raised = signals.get("got_request_exception")
    assert raised.sender is RequestSignalsMiddleware
    assert set(raised.kwargs) == {"environ", "exception"}
    assert raised.kwargs["exception"] is error
    assert "Boom: no response" in server.errors.getvalue()  # wsgiref logged what propagated


@pytest.mark.parametrize(
    ("chunks_before", "status", "body"),
    [(0, 500, None), (1, 200, "partial ")],
    ids=["before the first chunk", "after the first chunk"],
)
def test_iterable_raising_half_way(
    serve: Serve, signals: Recorder, chunks_before: int, status: int, body: str | None
) -> None:
    """A response iterable that raises while it is sent: got_request_exception, then
    request_finished exactly once (when the server closes the response after the error).
    Before the first chunk the server can still answer 500; after it, the body is cut short."""
    error = Boom("half-way")

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [TEXT])

        def body() -> Iterator[bytes]:
            yield from [b"partial "] * chunks_before
            raise error

        return body()

    server = serve(RequestSignalsMiddleware(app))

    response = get(server.url)

    assert response.status_code == status
    if body is not None:
        assert response.text == body
    signals.wait_finished()
    assert signals.names == ["request_started", "got_request_exception", "request_finished"]
    assert signals.get("got_request_exception").kwargs["exception"] is error
    assert "Boom: half-way" in server.errors.getvalue()


# -- wsgiref.validate ---------------------------------------------------------------------


@pytest.mark.parametrize("make_app", [hello_app, streaming_app], ids=["list", "generator"])
@pytest.mark.parametrize("validated", ["outside", "inside"])
def test_passes_wsgiref_validator(
    serve: Serve,
    signals: Recorder,
    make_app: Callable[[Recorder], WSGIApplication],
    validated: str,
) -> None:
    """wsgiref.validate finds nothing wrong, with the validator outside the middleware (checking
    what the middleware returns to the server) or inside it (checking what it does to the app)."""
    app = make_app(signals)
    if validated == "outside":
        stack = validator(RequestSignalsMiddleware(app))
    else:
        stack = RequestSignalsMiddleware(validator(app))
    server = serve(stack)

    response = get(server.url)

    assert response.status_code == 200
    signals.wait_finished()
    assert signals.names[0] == "request_started"
    assert signals.names[-1] == "request_finished"
    assert "got_request_exception" not in signals.names
    assert server.errors.getvalue() == ""  # no validation error, and no validator warning


# -- len() and Content-Length -----------------------------------------------------------


def test_len_is_kept_for_sized_responses(signals: Recorder) -> None:
    """A response with a length keeps it behind the middleware; a generator has none."""
    sized = RequestSignalsMiddleware(hello_app(signals))(make_environ(), start_response)
    unsized = RequestSignalsMiddleware(streaming_app(signals))(make_environ(), start_response)
    try:
        assert isinstance(sized, Sized)
        assert len(sized) == 1
        assert not isinstance(unsized, Sized)
    finally:
        for response in (sized, unsized):
            response.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("make_app", "content_length"),
    [(hello_app, "5"), (streaming_app, None)],
    ids=["list", "generator"],
)
def test_server_sets_content_length_from_len(
    serve: Serve,
    signals: Recorder,
    make_app: Callable[[Recorder], WSGIApplication],
    content_length: str | None,
) -> None:
    """wsgiref sets Content-Length for a one-chunk response because len() is kept; a
    generator is sent without it, delimited by the end of the connection."""
    server = serve(RequestSignalsMiddleware(make_app(signals)))

    response = get(server.url)

    assert response.headers.get("Content-Length") == content_length
    signals.wait_finished()


# -- wsgi.file_wrapper ------------------------------------------------------------------


class SendfileHandler(SimpleHandler):
    """wsgiref's handler (the one its server runs), noting each response offered to sendfile()."""

    offered: list[object]
    result: Iterable[bytes]  # set by wsgiref (typeshed leaves it out)

    def sendfile(self) -> bool:
        self.offered.append(self.result)
        return super().sendfile()  # wsgiref's own: False, "send it by iterating, then"


def run_wsgiref_handler(app: WSGIApplication) -> SendfileHandler:
    """Handle one request to *app* with wsgiref's handler, in memory."""
    handler = SendfileHandler(io.BytesIO(), io.BytesIO(), io.StringIO(), make_environ())
    handler.offered = []
    handler.run(app)
    return handler


def test_file_wrapper_is_hidden_from_the_server(signals: Recorder) -> None:
    """Behind the middleware, a ``wsgi.file_wrapper`` response is no longer an instance of the
    server's file wrapper, so a server cannot send it with sendfile(). wsgiref never does anyway
    (its sendfile() returns False): with wsgiref nothing is lost, and the file is sent whole."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [TEXT])
        return FileWrapper(NotedFile(b"file contents", signals))

    bare = run_wsgiref_handler(app)
    behind = run_wsgiref_handler(RequestSignalsMiddleware(app))

    assert len(bare.offered) == 1
    assert isinstance(bare.offered[0], FileWrapper)
    assert behind.offered == []
    for handler in (bare, behind):
        stdout = handler.stdout
        assert isinstance(stdout, io.BytesIO)
        assert stdout.getvalue().endswith(b"\r\n\r\nfile contents")
    assert signals.names == [
        "file closed",  # the bare app's
        "request_started",
        "file closed",
        "request_finished",
    ]


# -- servers and middleware that never call close() ---------------------------------------


def test_unclosed_response_is_finished_when_collected(
    signals: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A response that nobody closes is closed, and request_finished sent, when it is garbage
    collected, with a warning on the ``tocsin.contrib.wsgi`` logger that names the request."""
    caplog.set_level(logging.WARNING, logger="tocsin.contrib.wsgi")
    middleware = RequestSignalsMiddleware(hello_app(signals))

    response = middleware(make_environ("/forgotten"), start_response)
    assert b"".join(response) == b"Hello"  # a careless server: it never calls close()
    assert signals.names == ["request_started", "app called"]

    del response
    gc.collect()

    assert signals.names == [
        "request_started",
        "app called",
        "app response closed",
        "request_finished",
    ]
    [record] = [r for r in caplog.records if r.name == "tocsin.contrib.wsgi"]
    assert record.levelno == logging.WARNING
    assert "GET /forgotten was never closed" in record.getMessage()


def test_middleware_in_front_that_drops_close(
    serve: Serve, signals: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A middleware in front that buffers the response and drops it without close(): the
    response is finished when it is collected (here at once, before the body is sent), once,
    with the warning."""
    caplog.set_level(logging.WARNING, logger="tocsin.contrib.wsgi")

    def buffering(app: WSGIApplication) -> WSGIApplication:
        def buffered(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            return list(app(environ, start_response))  # the mistake: no close()

        return buffered

    server = serve(buffering(RequestSignalsMiddleware(streaming_app(signals))))

    response = get(server.url + "/buffered")

    assert response.text == "Hello, world"
    signals.wait_finished()
    assert signals.names == [
        "request_started",
        "app called",
        "generator ended",
        "request_finished",
    ]
    assert any("GET /buffered was never closed" in r.getMessage() for r in caplog.records)


# -- bad input and failing receivers ----------------------------------------------------


@pytest.mark.parametrize("app", [None, "myproject.wsgi:application", 42])
def test_non_callable_app_is_refused(app: object) -> None:
    """Wrapping something that is not a WSGI application fails at once, saying what it got."""
    with pytest.raises(TypeError, match="wraps a WSGI application") as raised:
        RequestSignalsMiddleware(app)  # type: ignore[arg-type]
    assert f"got {type(app).__name__} {app!r}" in str(raised.value)


def test_failing_request_started_receiver_propagates(signals: Recorder) -> None:
    """A request_started receiver that raises: the exception propagates out of the middleware,
    the app is not called, and neither got_request_exception nor request_finished is sent (as
    in Django, whose handler sends request_started before there is a response to close)."""

    def fail(sender: object, **kwargs: Any) -> None:
        raise Boom("receiver failed")

    middleware = RequestSignalsMiddleware(hello_app(signals))
    with connected(fail, request_started), pytest.raises(Boom, match="receiver failed"):
        middleware(make_environ(), start_response)
    gc.collect()

    assert signals.names == ["request_started"]


def test_failing_request_started_receiver_under_a_server(serve: Serve, signals: Recorder) -> None:
    """Under a server, a failing request_started receiver makes a 500, as any app error does."""

    def fail(sender: object, **kwargs: Any) -> None:
        raise Boom("receiver failed")

    server = serve(RequestSignalsMiddleware(hello_app(signals)))
    with connected(fail, request_started):
        response = get(server.url)
    gc.collect()

    assert response.status_code == 500
    assert "Boom: receiver failed" in server.errors.getvalue()
    assert signals.names == ["request_started"]


class Timeout(BaseException):
    """Like ``gevent.Timeout``, which a worker raises in a request that takes too long: a
    BaseException, not an Exception, after which the worker goes on serving."""


def test_app_raising_a_base_exception_still_finishes_the_request(signals: Recorder) -> None:
    """An app interrupted by a BaseException (a gevent or eventlet timeout) still gets its
    request_finished, so that what request_started set up is released; the exception
    propagates, and got_request_exception, as in Django, is only for Exceptions."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        raise Timeout

    middleware = RequestSignalsMiddleware(app)
    with pytest.raises(Timeout):
        middleware(make_environ(), start_response)

    assert signals.names == ["request_started", "request_finished"]


# -- typing ------------------------------------------------------------------------------


def test_the_middleware_type_checks_as_a_wsgi_application(signals: Recorder) -> None:
    """mypy should accept the middleware around, and as, a ``wsgiref.types.WSGIApplication``.

    It does not yet: the middleware's own ``StartResponse`` types ``exc_info`` as
    ``tuple[type, BaseException, TracebackType | None] | None``, which does not accept
    typeshed's ``tuple[None, None, None]``, so both lines below need an ignore. When that is
    fixed, mypy (``warn_unused_ignores``, part of strict) reports these ignores, and those in
    this module and in test_flask.py, as unused: delete them.
    """
    app = hello_app(signals)
    wrapped: WSGIApplication = RequestSignalsMiddleware(app)
    validated: WSGIApplication = validator(RequestSignalsMiddleware(app))

    assert callable(wrapped)
    assert callable(validated)


def test_an_asgi_application_is_refused_with_a_pointer_to_the_asgi_middleware() -> None:
    """Wrapping an async (ASGI) callable by mistake fails at once, naming the right middleware."""

    async def asgi_app(scope: object, receive: object, send: object) -> None:
        pass

    with pytest.raises(TypeError, match=r"tocsin\.contrib\.asgi"):
        RequestSignalsMiddleware(asgi_app)  # type: ignore[arg-type]
