"""Helpers for the tests of the ASGI middleware: a recorder of the request signals,
fake server callables, in-process requests, and a real uvicorn server in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import uvicorn

from tocsin import Signal
from tocsin.contrib.asgi import ASGIApp, Message, Receive, Scope
from tocsin.signals import got_request_exception, request_finished, request_started

# Bounds, so that a broken test fails instead of hanging.
START_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0
WAIT_TIMEOUT = 5.0

REQUEST_SIGNALS = {
    request_started: "request_started",
    got_request_exception: "got_request_exception",
    request_finished: "request_finished",
}


@dataclasses.dataclass
class Call:
    """One request signal received: its name, sender and keyword arguments."""

    signal: str
    sender: object
    kwargs: dict[str, Any]


class Recorder:
    """The request signals sent while it is connected, in order.

    ``log`` interleaves the signals' names with the notes that test applications
    add with :meth:`note`, so that a test can assert what happened in which order.
    """

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.log: list[str] = []

    async def receiver(self, signal: Signal, sender: object, **kwargs: Any) -> None:
        name = REQUEST_SIGNALS[signal]
        self.calls.append(Call(name, sender, kwargs))
        self.log.append(name)

    def note(self, text: str) -> None:
        self.log.append(text)

    def signals(self) -> list[str]:
        return [call.signal for call in self.calls]

    def only(self, name: str) -> Call:
        """The one call of signal *name*; fails if it was sent more or less than once."""
        calls = [call for call in self.calls if call.signal == name]
        assert len(calls) == 1, f"{name} sent {len(calls)} times: {self.signals()}"
        return calls[0]


@contextlib.contextmanager
def connected(receiver: Callable[..., Any], *signals: Signal) -> Iterator[None]:
    """Connect *receiver* (strongly) to *signals* for the duration of the block."""
    for signal in signals:
        signal.connect(receiver, weak=False)
    try:
        yield
    finally:
        for signal in signals:
            signal.disconnect(receiver)


@contextlib.contextmanager
def recording() -> Iterator[Recorder]:
    """Record the three request signals for the duration of the block."""
    recorder = Recorder()
    with connected(recorder.receiver, *REQUEST_SIGNALS):
        yield recorder


# -- in process ------------------------------------------------------------------------


def get(app: ASGIApp, path: str = "/", *, raise_app_exceptions: bool = True) -> httpx.Response:
    """GET *path* from *app*, in process, through ``httpx.ASGITransport``."""

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.get(path)

    return asyncio.run(main())


def http_scope(path: str = "/") -> Scope:
    """The scope of a plain HTTP GET request."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


def receiving(*messages: Message) -> Receive:
    """A server's ``receive``: *messages* in order, then ``http.disconnect`` for ever,
    as uvicorn does once the client has gone."""
    pending = list(messages)

    async def receive() -> Message:
        await asyncio.sleep(0)
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    return receive


async def discard(message: Message) -> None:
    """A server's ``send`` that drops every message."""


# -- under a real server ---------------------------------------------------------------


@contextlib.contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    """Serve *app* with uvicorn on a free port of 127.0.0.1; yield its base URL.

    Lifespan is off and logging is not configured (uvicorn's loggers log warnings
    and errors to the root logger, where pytest captures them). On exit the server
    is told to stop and is waited for, a bounded time.
    """
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        log_level="warning",
        log_config=None,
        ws="none",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), timeout=START_TIMEOUT)
        assert server.started, "uvicorn stopped before it started serving"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT)
        assert not thread.is_alive(), f"uvicorn did not stop within {STOP_TIMEOUT} s"


def wait_until(condition: Callable[[], bool], timeout: float = WAIT_TIMEOUT) -> None:
    """Poll *condition* until it is true; fail after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s")
        time.sleep(0.005)
