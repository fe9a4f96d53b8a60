"""tocsin.contrib.asgi.RequestSignalsMiddleware: what it sends, when, and what it leaves alone.

Most tests run in process through ``httpx.ASGITransport``; disconnects, cancellation
and the scopes it passes through are driven by hand with fake ``receive``/``send``;
the last ones run under a real uvicorn server with a real HTTP client.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest

from tocsin.contrib.asgi import Message, Receive, RequestSignalsMiddleware, Scope, Send
from tocsin.signals import request_finished, request_started

from ._asgi_support import (
    Recorder,
    connected,
    discard,
    get,
    http_scope,
    receiving,
    serving,
    wait_until,
)

START: Message = {"type": "http.response.start", "status": 200, "headers": []}


def body(data: bytes, *, more: bool = False) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": more}


# -- what is sent, and when ------------------------------------------------------------


def test_request_started_is_sent_before_the_app_runs(sent: Recorder) -> None:
    """request_started goes out first, with the middleware class as sender and the scope."""
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        sent.note("app called")
        scopes.append(scope)
        await send(START)
        await send(body(b"hello"))

    response = get(RequestSignalsMiddleware(app), "/hello")

    assert response.text == "hello"
    assert sent.log[:2] == ["request_started", "app called"]
    started = sent.only("request_started")
    assert started.sender is RequestSignalsMiddleware
    assert started.kwargs == {"scope": scopes[0]}
    assert started.kwargs["scope"]["path"] == "/hello"


def test_request_finished_is_sent_once_after_the_last_body_message(sent: Recorder) -> None:
    """request_finished goes out once, as soon as the last body message has been sent."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        sent.note("start sent")
        await send(body(b"hello"))
        sent.note("last body sent")

    get(RequestSignalsMiddleware(app))

    assert sent.log == ["request_started", "start sent", "request_finished", "last body sent"]
    finished = sent.only("request_finished")
    assert finished.sender is RequestSignalsMiddleware
    assert finished.kwargs == {"scope": sent.only("request_started").kwargs["scope"]}


def test_a_streamed_response_finishes_at_the_message_without_more_body(sent: Recorder) -> None:
    """Body messages with more_body=True do not finish the request; the last one does."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        for chunk in (b"one ", b"two "):
            await send(body(chunk, more=True))
            sent.note(f"sent {chunk.decode().strip()}")
        await send(body(b"three"))
        sent.note("sent three")

    response = get(RequestSignalsMiddleware(app))

    assert response.text == "one two three"
    assert sent.log == [
        "request_started",
        "sent one",
        "sent two",
        "request_finished",
        "sent three",
    ]


def test_an_app_that_returns_without_finishing_its_response_still_finishes(
    sent: Recorder,
) -> None:
    """If the app returns before its last body message, request_finished goes out then."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        await send(body(b"partial", more=True))
        sent.note("app returns")

    asyncio.run(RequestSignalsMiddleware(app)(http_scope(), receiving(), discard))

    assert sent.log == ["request_started", "app returns", "request_finished"]


def test_an_exception_sends_got_request_exception_then_request_finished(sent: Recorder) -> None:
    """An app error sends got_request_exception, then request_finished, and propagates."""
    error = RuntimeError("boom")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise error

    with pytest.raises(RuntimeError) as raised:
        get(RequestSignalsMiddleware(app))

    assert raised.value is error
    assert sent.signals() == ["request_started", "got_request_exception", "request_finished"]
    scope = sent.only("request_started").kwargs["scope"]
    failed = sent.only("got_request_exception")
    assert failed.sender is RequestSignalsMiddleware
    assert failed.kwargs == {"scope": scope, "exception": error}
    assert sent.only("request_finished").kwargs == {"scope": scope}


def test_an_exception_in_the_middle_of_a_streamed_body(sent: Recorder) -> None:
    """An app that fails half-way through its body gets the same two signals, in that order."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        await send(body(b"half", more=True))
        raise ValueError("the other half is missing")

    with pytest.raises(ValueError, match="other half"):
        get(RequestSignalsMiddleware(app))

    assert sent.signals() == ["request_started", "got_request_exception", "request_finished"]


def test_an_exception_after_the_response_is_sent_comes_after_request_finished(
    sent: Recorder,
) -> None:
    """An error after the last body message comes after request_finished, not re-sent."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        await send(body(b"done"))
        raise LookupError("the background task failed")

    with pytest.raises(LookupError):
        get(RequestSignalsMiddleware(app))

    assert sent.signals() == ["request_started", "request_finished", "got_request_exception"]


def test_a_failing_request_started_receiver_stops_the_request(sent: Recorder) -> None:
    """A raising request_started receiver stops the request, as in Django: no app call."""
    called: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        called.append(scope)

    def refuse(sender: object, **kwargs: Any) -> None:
        raise PermissionError("not now")

    with connected(refuse, request_started), pytest.raises(PermissionError):
        asyncio.run(RequestSignalsMiddleware(app)(http_scope(), receiving(), discard))

    assert called == []
    assert not {"got_request_exception", "request_finished"} & set(sent.signals())


def test_sync_and_async_receivers_both_work(sent: Recorder) -> None:
    """Async receivers run on the event loop; sync receivers run too, off the loop's thread."""
    loop_thread: list[int] = []
    sync_threads: list[tuple[str, int]] = []

    def sync_receiver(signal: object, sender: object, **kwargs: Any) -> None:
        name = "started" if signal is request_started else "finished"
        sync_threads.append((name, threading.get_ident()))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        loop_thread.append(threading.get_ident())
        await send(START)
        await send(body(b"hello"))

    with connected(sync_receiver, request_started, request_finished):
        get(RequestSignalsMiddleware(app))

    assert sent.signals() == ["request_started", "request_finished"]  # the async receiver
    assert [name for name, _ in sync_threads] == ["started", "finished"]
    assert all(thread != loop_thread[0] for _, thread in sync_threads)


def test_sync_receivers_run_on_the_loop_when_the_signals_opt_in(
    sent: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With sync_receivers_on_loop set on the request signals, their sync receivers
    are called on the event loop's thread, in order with the async ones."""
    monkeypatch.setattr(request_started, "sync_receivers_on_loop", True)
    monkeypatch.setattr(request_finished, "sync_receivers_on_loop", True)
    sync_threads: list[tuple[str, int]] = []
    loop_thread: list[int] = []

    def sync_receiver(signal: object, sender: object, **kwargs: Any) -> None:
        name = "started" if signal is request_started else "finished"
        sync_threads.append((name, threading.get_ident()))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        loop_thread.append(threading.get_ident())
        await send(START)
        await send(body(b"hello"))

    with connected(sync_receiver, request_started, request_finished):
        get(RequestSignalsMiddleware(app))

    assert sent.signals() == ["request_started", "request_finished"]
    assert sync_threads == [("started", loop_thread[0]), ("finished", loop_thread[0])]


def test_receivers_can_listen_to_this_middleware_only(sent: Recorder) -> None:
    """The sender is the middleware's class (or subclass), so receivers can filter on it."""

    class MyMiddleware(RequestSignalsMiddleware):
        pass

    senders: list[object] = []

    async def only_mine(sender: object, **kwargs: Any) -> None:
        senders.append(sender)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        await send(body(b""))

    request_finished.connect(only_mine, sender=MyMiddleware, weak=False)
    try:
        get(RequestSignalsMiddleware(app))
        get(MyMiddleware(app))
    finally:
        request_finished.disconnect(only_mine, sender=MyMiddleware)

    assert senders == [MyMiddleware]
    assert [call.sender for call in sent.calls] == [
        RequestSignalsMiddleware,
        RequestSignalsMiddleware,
        MyMiddleware,
        MyMiddleware,
    ]


# -- what passes through ---------------------------------------------------------------

OTHER_SCOPES: dict[str, Scope] = {
    "websocket": {"type": "websocket", "path": "/ws", "headers": [], "subprotocols": []},
    "lifespan": {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
    "unknown type": {"type": "webtransport", "path": "/"},
    "no type": {"path": "/"},
}


@pytest.mark.parametrize("scope", OTHER_SCOPES.values(), ids=OTHER_SCOPES.keys())
def test_other_scopes_reach_the_app_untouched(sent: Recorder, scope: Scope) -> None:
    """Non-http scopes reach the app with the server's own receive and send; no signal."""
    before = dict(scope)
    seen: list[tuple[Scope, Receive, Send]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope, receive, send))

    receive = receiving()
    asyncio.run(RequestSignalsMiddleware(app)(scope, receive, discard))

    [(app_scope, app_receive, app_send)] = seen
    assert app_scope is scope
    assert app_scope == before
    assert app_receive is receive
    assert app_send is discard
    assert sent.calls == []


def test_a_lifespan_conversation_passes_through(sent: Recorder) -> None:
    """The app answers lifespan messages through the middleware as it would without it."""
    answers: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def send(message: Message) -> None:
        answers.append(message)

    receive = receiving({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"})
    asyncio.run(RequestSignalsMiddleware(app)({"type": "lifespan"}, receive, send))

    assert answers == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]
    assert sent.calls == []


def test_an_exception_in_a_websocket_app_propagates_without_signals(sent: Recorder) -> None:
    """A websocket app's exception propagates as it is; got_request_exception is for HTTP."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise ConnectionResetError("socket gone")

    with pytest.raises(ConnectionResetError, match="socket gone"):
        asyncio.run(RequestSignalsMiddleware(app)(OTHER_SCOPES["websocket"], receiving(), discard))

    assert sent.calls == []


# -- disconnects and cancellation ------------------------------------------------------


def test_a_client_disconnect_sends_request_finished_once(sent: Recorder) -> None:
    """http.disconnect sends request_finished before the app sees it, and only once."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while (message := await receive())["type"] != "http.disconnect":
            sent.note(message["type"])
        sent.note("app saw http.disconnect")
        await receive()  # asking again changes nothing
        sent.note("app returns")

    receive = receiving({"type": "http.request", "body": b"", "more_body": False})
    asyncio.run(RequestSignalsMiddleware(app)(http_scope(), receive, discard))

    assert sent.log == [
        "request_started",
        "http.request",
        "request_finished",
        "app saw http.disconnect",
        "app returns",
    ]


@pytest.mark.parametrize("response_started", [False, True], ids=["before", "mid-body"])
def test_cancelling_the_request_sends_request_finished_once(
    sent: Recorder, response_started: bool
) -> None:
    """A cancelled request still gets request_finished once; its task ends cancelled."""

    async def main() -> None:
        waiting = asyncio.Event()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if response_started:
                await send(START)
                await send(body(b"half", more=True))
            waiting.set()
            await asyncio.Event().wait()  # for ever

        async with asyncio.timeout(5):
            task = asyncio.create_task(
                RequestSignalsMiddleware(app)(http_scope(), receiving(), discard)
            )
            await waiting.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert task.cancelled()

    asyncio.run(main())

    assert sent.signals() == ["request_started", "request_finished"]


def test_request_finished_receivers_are_not_cancelled_with_the_request(sent: Recorder) -> None:
    """A request cancelled while request_finished's receivers run lets them finish."""
    cleanup: list[str] = []

    async def slow_cleanup(sender: object, **kwargs: Any) -> None:
        cleanup.append("started")
        await asyncio.sleep(0.05)
        cleanup.append("done")

    async def main() -> None:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await send(START)
            await send(body(b"sent, then cancelled"))

        async with asyncio.timeout(5):
            task = asyncio.create_task(
                RequestSignalsMiddleware(app)(http_scope(), receiving(), discard)
            )
            while not cleanup:
                await asyncio.sleep(0)
            task.cancel()  # while slow_cleanup sleeps
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.1)  # room for slow_cleanup to finish, if it still runs

    with connected(slow_cleanup, request_finished):
        asyncio.run(main())

    assert sent.signals() == ["request_started", "request_finished"]
    assert cleanup == ["started", "done"]


# -- under a real server ---------------------------------------------------------------


def test_a_request_under_uvicorn(sent: Recorder) -> None:
    """Under uvicorn, a request gets request_started and request_finished with uvicorn's scope."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        await send(body(b"hello"))

    with serving(RequestSignalsMiddleware(app)) as url, httpx.Client(timeout=5) as client:
        response = client.get(f"{url}/hello?x=1")
        wait_until(lambda: len(sent.calls) == 2)

    assert response.text == "hello"
    assert sent.signals() == ["request_started", "request_finished"]
    scope = sent.only("request_started").kwargs["scope"]
    assert sent.only("request_finished").kwargs["scope"] is scope
    assert (scope["path"], scope["query_string"]) == ("/hello", b"x=1")
    assert scope["client"][0] == "127.0.0.1"


def test_an_app_error_under_uvicorn(sent: Recorder) -> None:
    """Under uvicorn, an app error sends both error signals, and the client gets a 500."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    with serving(RequestSignalsMiddleware(app)) as url, httpx.Client(timeout=5) as client:
        response = client.get(url)
        wait_until(lambda: len(sent.calls) == 3)

    assert response.status_code == 500
    assert sent.signals() == ["request_started", "got_request_exception", "request_finished"]
    exception = sent.only("got_request_exception").kwargs["exception"]
    assert isinstance(exception, RuntimeError)
    assert str(exception) == "boom"


def test_a_client_that_aborts_a_streamed_response_under_uvicorn(sent: Recorder) -> None:
    """A client aborting an endless stream: request_finished once; the server goes on."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # Streams ticks until the client goes away; answers "hello" on other paths.
        if scope["path"] != "/stream":
            await send(START)
            await send(body(b"hello"))
            return
        # Sending to a closed connection does not fail under uvicorn (h11), so the
        # app watches receive() for http.disconnect, as Starlette's StreamingResponse does.
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            await send(START)
            while not gone.is_set():
                await send(body(b"tick\n", more=True))
                await asyncio.sleep(0.005)
        finally:
            watcher.cancel()
            sent.note("stream ended")

    with serving(RequestSignalsMiddleware(app)) as url, httpx.Client(timeout=5) as client:
        with client.stream("GET", f"{url}/stream") as response:
            assert response.status_code == 200
            assert next(response.iter_raw()).startswith(b"tick")
        # Leaving the block closed the connection in the middle of the body.
        wait_until(lambda: "stream ended" in sent.log)
        assert sent.log == ["request_started", "request_finished", "stream ended"]

        assert client.get(f"{url}/").text == "hello"
        wait_until(lambda: len(sent.calls) == 4)

    assert sent.signals() == ["request_started", "request_finished"] * 2
    assert [call.kwargs["scope"]["path"] for call in sent.calls] == ["/stream"] * 2 + ["/"] * 2


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize("app", [None, "myproject.asgi:app", 42], ids=["None", "str", "int"])
def test_a_non_callable_app_is_refused(app: Any) -> None:
    """Wrapping something that is not callable fails at once, saying what is expected."""
    with pytest.raises(TypeError) as raised:
        RequestSignalsMiddleware(app)
    message = str(raised.value)
    assert "ASGI application" in message
    assert "scope, receive and send" in message
    assert type(app).__name__ in message


def test_a_wsgi_application_is_refused_with_a_pointer_to_the_wsgi_middleware() -> None:
    """Wrapping a WSGI callable by mistake fails at once, naming the right middleware."""

    def wsgi_app(environ: dict[str, object], start_response: object) -> list[bytes]:
        return [b""]

    with pytest.raises(TypeError, match=r"tocsin\.contrib\.wsgi"):
        RequestSignalsMiddleware(wsgi_app)  # type: ignore[arg-type]
