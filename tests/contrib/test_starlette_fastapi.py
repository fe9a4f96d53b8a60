"""The Starlette and FastAPI recipes of docs/frameworks/starlette-fastapi.md, tested.

Three ways to install the middleware, for each framework: ``app.add_middleware(...)``,
``middleware=[Middleware(...)]``, and wrapping the application object. The first two
put it inside Starlette's ``ServerErrorMiddleware`` (which turns errors into 500
responses), the third outside it; the tests show what that changes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi import HTTPException as FastAPIHTTPException
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from tocsin.contrib.asgi import ASGIApp, Message, Receive, RequestSignalsMiddleware, Scope, Send
from tocsin.signals import request_finished

from ._asgi_support import Recorder, connected, get, receiving, serving, wait_until

# -- the applications ------------------------------------------------------------------


async def bad_value(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("bad value", status_code=400)


def starlette_app(sent: Recorder, **options: Any) -> Starlette:
    """A Starlette app with the routes the tests use; *options* go to ``Starlette()``."""

    async def hello(request: Request) -> Response:
        return PlainTextResponse("hello")

    async def boom(request: Request) -> Response:
        raise RuntimeError("boom")

    async def forbidden(request: Request) -> Response:
        raise HTTPException(status_code=403)

    async def handled(request: Request) -> Response:
        raise ValueError("handled by an exception handler")

    async def stream(request: Request) -> Response:
        return StreamingResponse(chunks(sent))

    routes = [
        Route("/", hello),
        Route("/boom", boom),
        Route("/forbidden", forbidden),
        Route("/handled", handled),
        Route("/stream", stream),
    ]
    return Starlette(routes=routes, exception_handlers={ValueError: bad_value}, **options)


def fastapi_app(sent: Recorder, **options: Any) -> FastAPI:
    """The same routes in FastAPI; *options* go to ``FastAPI()``."""
    app = FastAPI(exception_handlers={ValueError: bad_value}, **options)

    @app.get("/", response_class=PlainTextResponse)
    async def hello() -> str:
        return "hello"

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.get("/forbidden")
    async def forbidden() -> None:
        raise FastAPIHTTPException(status_code=403)

    @app.get("/handled")
    async def handled() -> None:
        raise ValueError("handled by an exception handler")

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        return StreamingResponse(chunks(sent))

    return app


async def chunks(sent: Recorder) -> AsyncIterator[bytes]:
    for number in range(3):
        sent.note(f"chunk {number}")
        yield f"{number} ".encode()


# -- the recipes -----------------------------------------------------------------------


def starlette_add_middleware(sent: Recorder) -> ASGIApp:
    app = starlette_app(sent)
    app.add_middleware(RequestSignalsMiddleware)
    return app


def starlette_middleware_option(sent: Recorder) -> ASGIApp:
    return starlette_app(sent, middleware=[Middleware(RequestSignalsMiddleware)])


def starlette_wrapped(sent: Recorder) -> ASGIApp:
    return RequestSignalsMiddleware(starlette_app(sent))


def fastapi_add_middleware(sent: Recorder) -> ASGIApp:
    app = fastapi_app(sent)
    app.add_middleware(RequestSignalsMiddleware)
    return app


def fastapi_middleware_option(sent: Recorder) -> ASGIApp:
    return fastapi_app(sent, middleware=[Middleware(RequestSignalsMiddleware)])


def fastapi_wrapped(sent: Recorder) -> ASGIApp:
    return RequestSignalsMiddleware(fastapi_app(sent))


Recipe = Callable[[Recorder], ASGIApp]

# Inside ServerErrorMiddleware: the middleware sees route errors before the 500 is sent.
INSIDE: dict[str, Recipe] = {
    "starlette-add_middleware": starlette_add_middleware,
    "starlette-middleware_option": starlette_middleware_option,
    "fastapi-add_middleware": fastapi_add_middleware,
    "fastapi-middleware_option": fastapi_middleware_option,
}
# Outside it: route errors reach the middleware after the 500 has been sent.
WRAPPED: dict[str, Recipe] = {
    "starlette-wrapped": starlette_wrapped,
    "fastapi-wrapped": fastapi_wrapped,
}
ALL = INSIDE | WRAPPED


def responses_noted(app: ASGIApp, sent: Recorder) -> ASGIApp:
    """*app*, noting in the log when it sends a response's status line (as the server
    would see it)."""

    async def noting(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent.note(f"response {message['status']}")
            await send(message)

        await app(scope, receive, send_noting)

    return noting


# -- tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", ALL.values(), ids=ALL.keys())
def test_each_recipe_sends_the_request_signals(sent: Recorder, recipe: Recipe) -> None:
    """Installed any of the three ways, the middleware sends both signals with the scope."""
    response = get(recipe(sent), "/")

    assert response.text == "hello"
    assert sent.signals() == ["request_started", "request_finished"]
    assert {call.sender for call in sent.calls} == {RequestSignalsMiddleware}
    scope = sent.only("request_started").kwargs["scope"]
    assert sent.only("request_finished").kwargs["scope"] is scope
    assert scope["path"] == "/"


@pytest.mark.parametrize("recipe", INSIDE.values(), ids=INSIDE.keys())
def test_a_route_error_with_add_middleware(sent: Recorder, recipe: Recipe) -> None:
    """add_middleware: got_request_exception, request_finished, then Starlette's 500."""
    app = responses_noted(recipe(sent), sent)

    response = get(app, "/boom", raise_app_exceptions=False)

    assert response.status_code == 500
    assert sent.log == [
        "request_started",
        "got_request_exception",
        "request_finished",
        "response 500",
    ]
    exception = sent.only("got_request_exception").kwargs["exception"]
    assert isinstance(exception, RuntimeError)
    assert str(exception) == "boom"
    with pytest.raises(RuntimeError, match="boom"):  # what ServerErrorMiddleware re-raises
        get(app, "/boom")


@pytest.mark.parametrize("recipe", WRAPPED.values(), ids=WRAPPED.keys())
def test_a_route_error_when_the_app_is_wrapped(sent: Recorder, recipe: Recipe) -> None:
    """Wrapped app: Starlette's 500, request_finished, then got_request_exception."""
    app = responses_noted(recipe(sent), sent)

    response = get(app, "/boom", raise_app_exceptions=False)

    assert response.status_code == 500
    assert sent.log == [
        "request_started",
        "response 500",
        "request_finished",
        "got_request_exception",
    ]
    assert isinstance(sent.only("got_request_exception").kwargs["exception"], RuntimeError)


def test_a_catch_all_exception_handler_still_sends_got_request_exception(
    sent: Recorder,
) -> None:
    """A handler for Exception runs outside the middleware: the error passes through."""

    async def sorry(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("sorry", status_code=500)

    async def boom(request: Request) -> Response:
        raise RuntimeError("boom")

    app = Starlette(routes=[Route("/boom", boom)], exception_handlers={Exception: sorry})
    app.add_middleware(RequestSignalsMiddleware)

    response = get(responses_noted(app, sent), "/boom", raise_app_exceptions=False)

    assert response.text == "sorry"
    assert sent.log == [
        "request_started",
        "got_request_exception",
        "request_finished",
        "response 500",
    ]


def test_receivers_see_what_routing_added_to_the_scope(sent: Recorder) -> None:
    """The scope is the framework's own dict: by request_finished it holds the route."""
    app = fastapi_add_middleware(sent)

    get(app, "/")

    scope = sent.only("request_finished").kwargs["scope"]
    assert scope["app"] is app
    assert scope["route"].path == "/"
    assert scope["endpoint"].__name__ == "hello"


@pytest.mark.parametrize("path", ["/forbidden", "/handled", "/missing"])
@pytest.mark.parametrize("recipe", ALL.values(), ids=ALL.keys())
def test_errors_the_app_handles_send_no_got_request_exception(
    sent: Recorder, recipe: Recipe, path: str
) -> None:
    """HTTPException, a handled exception and a 404 are responses, not errors."""
    response = get(recipe(sent), path)

    assert response.status_code in {400, 403, 404}
    assert sent.signals() == ["request_started", "request_finished"]


def test_a_fastapi_validation_error_sends_no_got_request_exception(sent: Recorder) -> None:
    """FastAPI answers a request that fails validation with a 422 itself: no error passes."""
    response = get(fastapi_add_middleware(sent), "/items/not-a-number")

    assert response.status_code == 422
    assert sent.signals() == ["request_started", "request_finished"]


@pytest.mark.parametrize("recipe", ALL.values(), ids=ALL.keys())
def test_a_streaming_response_finishes_after_its_last_chunk(sent: Recorder, recipe: Recipe) -> None:
    """A StreamingResponse gets request_finished once, after its last chunk."""
    response = get(recipe(sent), "/stream")

    assert response.text == "0 1 2 "
    assert sent.log == ["request_started", "chunk 0", "chunk 1", "chunk 2", "request_finished"]


def test_an_async_request_finished_receiver_runs_to_the_end_after_streaming(
    sent: Recorder,
) -> None:
    """An async request_finished receiver is not cancelled after a StreamingResponse."""
    cleanup: list[str] = []

    async def close_session(sender: object, **kwargs: Any) -> None:
        cleanup.append("started")
        await asyncio.sleep(0.01)  # closing a database session, say
        cleanup.append("done")

    with connected(close_session, request_finished):
        response = get(starlette_add_middleware(sent), "/stream")

    assert response.text == "0 1 2 "
    assert cleanup == ["started", "done"]


def test_wrapping_the_app_keeps_its_lifespan(sent: Recorder) -> None:
    """A wrapped Starlette app still runs its lifespan: the middleware passes it through."""
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    answers: list[Message] = []

    async def send(message: Message) -> None:
        answers.append(message)

    app = RequestSignalsMiddleware(Starlette(lifespan=lifespan))
    receive = receiving({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"})
    asyncio.run(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send))

    assert events == ["startup", "shutdown"]
    assert [answer["type"] for answer in answers] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert sent.calls == []


def test_a_streaming_response_aborted_by_the_client_under_uvicorn(sent: Recorder) -> None:
    """Under uvicorn, a client leaving an endless StreamingResponse: request_finished once."""

    async def ticks() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"tick\n"
                await asyncio.sleep(0.005)
        finally:
            sent.note("stream stopped")

    async def endless(request: Request) -> Response:
        return StreamingResponse(ticks())

    app = Starlette(routes=[Route("/stream", endless)])
    app.add_middleware(RequestSignalsMiddleware)

    with serving(app) as url, httpx.Client(timeout=5) as client:
        with client.stream("GET", f"{url}/stream") as response:
            assert next(response.iter_raw()).startswith(b"tick")
        wait_until(lambda: "stream stopped" in sent.log)

    assert sent.log == ["request_started", "request_finished", "stream stopped"]
