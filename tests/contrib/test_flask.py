"""The Flask recipe of docs/frameworks/flask.md, tested.

The recipe is one line: ``app.wsgi_app = RequestSignalsMiddleware(app.wsgi_app)``.

Each test runs the same small Flask app through Flask's test client, or under wsgiref in a
thread asked with httpx, and records the request signals and what Flask did in one list.

mypy: assigning to ``app.wsgi_app`` needs ``# type: ignore[method-assign]`` (Flask documents
the pattern; mypy dislikes assigning to a method), and, until the middleware's typing bug is
fixed (see test_wsgi.py), ``assignment`` and ``arg-type`` too.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator
from typing import Any

import flask
import pytest
from flask import Flask, request, stream_with_context

from tocsin.contrib.wsgi import RequestSignalsMiddleware

from ._wsgi_support import LiveServer, Recorder, get

Serve = Callable[[Flask], LiveServer]


class Boom(Exception):
    """What the failing view raises."""


@pytest.fixture
def app(signals: Recorder) -> Flask:
    """A Flask app with the recipe applied, whose views and teardown take notes."""
    app = Flask(__name__)
    app.wsgi_app = RequestSignalsMiddleware(app.wsgi_app)  # type: ignore[method-assign]

    @app.get("/")
    def index() -> str:
        signals.note("view")
        return "Hello"

    @app.get("/boom")
    def boom() -> str:
        signals.note("view")
        raise Boom("view failed")

    @app.get("/stream")
    def stream() -> flask.Response:
        def generate() -> Iterator[str]:
            yield "Hello, "
            yield request.args["name"]  # the request is still there while streaming
            signals.note("generated")

        return flask.Response(stream_with_context(generate()), mimetype="text/plain")

    @app.teardown_request
    def teardown(exc: BaseException | None) -> None:
        signals.note("teardown")

    return app


# -- Flask's test client ------------------------------------------------------------------


def test_with_the_test_client(app: Flask, signals: Recorder) -> None:
    """request_started before the view; request_finished when the test client's response is
    closed (``with`` closes it), after Flask's teardown_request."""
    with app.test_client().get("/") as response:
        assert response.data == b"Hello"
        assert signals.names == ["request_started", "view", "teardown"]

    assert signals.names == ["request_started", "view", "teardown", "request_finished"]
    started, *_, finished = signals.events
    assert started.sender is finished.sender is RequestSignalsMiddleware
    assert started.kwargs["environ"] is finished.kwargs["environ"]
    assert started.kwargs["environ"]["PATH_INFO"] == "/"


def test_test_client_response_left_open(
    app: Flask, signals: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A test-client response that is never closed finishes only when it is garbage collected,
    with the middleware's warning: use ``with client.get(...) as response:``."""
    caplog.set_level(logging.WARNING, logger="tocsin.contrib.wsgi")

    assert app.test_client().get("/").data == b"Hello"  # not closed
    gc.collect()

    assert signals.names == ["request_started", "view", "teardown", "request_finished"]
    assert any("GET / was never closed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("propagate", [False, True], ids=["Flask handles it", "propagated"])
def test_view_raising_with_the_test_client(app: Flask, signals: Recorder, propagate: bool) -> None:
    """A view that raises: Flask sends its own got_request_exception either way. By default
    Flask handles the exception and returns a 500, so the middleware sees a normal response:
    no tocsin got_request_exception, only request_finished. With PROPAGATE_EXCEPTIONS (the
    default when testing or debugging) the exception leaves Flask: tocsin sends
    got_request_exception, then request_finished, and the test client raises."""
    app.config["PROPAGATE_EXCEPTIONS"] = propagate
    flask_saw: list[BaseException] = []

    def on_flask_exception(sender: Flask, exception: BaseException, **extra: Any) -> None:
        flask_saw.append(exception)

    flask.got_request_exception.connect(on_flask_exception, app)
    try:
        if propagate:
            with pytest.raises(Boom):
                app.test_client().get("/boom")
        else:
            with app.test_client().get("/boom") as response:
                assert response.status_code == 500
    finally:
        flask.got_request_exception.disconnect(on_flask_exception, app)

    assert [type(e) for e in flask_saw] == [Boom]
    if propagate:
        assert signals.names == [
            "request_started",
            "view",
            "teardown",
            "got_request_exception",
            "request_finished",
        ]
        assert signals.get("got_request_exception").kwargs["exception"] is flask_saw[0]
    else:
        assert signals.names == ["request_started", "view", "teardown", "request_finished"]


def test_streaming_with_the_test_client(app: Flask, signals: Recorder) -> None:
    """A response streamed with stream_with_context: request_finished comes once, after the
    generator has finished (and after Flask's teardown, which it runs again when it ends)."""
    with app.test_client().get("/stream?name=ada") as response:
        assert response.data == b"Hello, ada"

    assert signals.names[0] == "request_started"
    assert signals.names[-1] == "request_finished"
    assert signals.names.count("request_finished") == 1
    assert signals.names.index("generated") < signals.names.index("request_finished")
    assert signals.names[-2] == "teardown"


# -- under a real server -----------------------------------------------------------------


def test_under_a_real_server(app: Flask, serve: Serve, signals: Recorder) -> None:
    """Under wsgiref, request_finished comes after the response has been sent and closed."""
    server = serve(app)

    response = get(server.url + "/")

    assert (response.status_code, response.text) == (200, "Hello")
    signals.wait_finished()
    assert signals.names == ["request_started", "view", "teardown", "request_finished"]


def test_streaming_under_a_real_server(app: Flask, serve: Serve, signals: Recorder) -> None:
    """Under wsgiref, a stream_with_context response is streamed, then request_finished."""
    server = serve(app)

    response = get(server.url + "/stream?name=ada")

    assert response.text == "Hello, ada"
    signals.wait_finished()
    assert signals.names[0] == "request_started"
    assert signals.names[-1] == "request_finished"
    assert signals.names.count("request_finished") == 1
    assert signals.names.index("generated") < signals.names.index("request_finished")


@pytest.mark.parametrize("propagate", [False, True], ids=["Flask handles it", "propagated"])
def test_view_raising_under_a_real_server(
    app: Flask, serve: Serve, signals: Recorder, caplog: pytest.LogCaptureFixture, propagate: bool
) -> None:
    """Under wsgiref the client gets a 500 either way: from Flask when it handles the
    exception (no tocsin got_request_exception), from wsgiref when it propagates (tocsin sends
    got_request_exception). request_finished comes once in both cases."""
    app.config["PROPAGATE_EXCEPTIONS"] = propagate
    server = serve(app)

    response = get(server.url + "/boom")

    assert response.status_code == 500
    signals.wait_finished()
    expected = ["request_started", "view", "teardown", "request_finished"]
    if propagate:
        expected.insert(3, "got_request_exception")
    assert signals.names == expected
    if propagate:
        assert "Boom: view failed" in server.errors.getvalue()  # wsgiref's traceback
    else:
        assert "Exception on /boom [GET]" in caplog.text  # Flask's log
