"""What the WSGI tests share: a recorder of the request signals, and wsgiref servers in threads.

Every wait is bounded by ``TIMEOUT``: the servers' sockets time out, the HTTP client times out,
and waiting for ``request_finished`` gives up.
"""

from __future__ import annotations

import gc
import io
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any, NamedTuple, cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import WSGIApplication

import httpx

from tocsin import Signal
from tocsin.signals import got_request_exception, request_finished, request_started

TIMEOUT = 5.0  # seconds

REQUEST_SIGNALS = {
    "request_started": request_started,
    "got_request_exception": got_request_exception,
    "request_finished": request_finished,
}


class Event(NamedTuple):
    """A request signal received (with its sender and arguments), or a note from a test's app."""

    name: str
    sender: object
    kwargs: Mapping[str, Any]


class Recorder:
    """Records, in order, the request signals it receives and the notes the test's app takes."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._finished = threading.Event()

    def receive(self, signal: Signal, sender: object, **kwargs: Any) -> None:
        """The receiver connected to the three request signals."""
        name = next(name for name, known in REQUEST_SIGNALS.items() if known is signal)
        self.events.append(Event(name, sender, kwargs))
        if signal is request_finished:
            self._finished.set()

    def note(self, what: str, **kwargs: Any) -> None:
        """Take a note of something the application did, in line with the signals."""
        self.events.append(Event(what, None, kwargs))

    @property
    def names(self) -> list[str]:
        """The names of the signals received and of the notes, in order."""
        return [event.name for event in self.events]

    def get(self, name: str) -> Event:
        """The one event called *name*."""
        [event] = [event for event in self.events if event.name == name]
        return event

    def wait_finished(self) -> None:
        """Wait (bounded) for ``request_finished``, then collect garbage, so that a response
        finished a second time (by the unclosed-response safety net) would be seen too."""
        assert self._finished.wait(TIMEOUT), f"no request_finished after {TIMEOUT}s: {self.names}"
        gc.collect()


@contextmanager
def connected(receiver: Callable[..., Any], *signals: Signal) -> Iterator[None]:
    """Connect *receiver* (strongly) to *signals* for the block, and disconnect it after."""
    with ExitStack() as stack:
        for signal in signals:
            signal.connect(receiver, weak=False)
            stack.callback(signal.disconnect, receiver)
        yield


@contextmanager
def recording() -> Iterator[Recorder]:
    """A recorder connected to the request signals for the block."""
    recorder = Recorder()
    with connected(recorder.receive, *REQUEST_SIGNALS.values()):
        yield recorder


class LiveServer(WSGIServer):
    """A wsgiref server on 127.0.0.1; tracebacks and ``wsgi.errors`` output go to ``errors``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.errors = io.StringIO()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class QuietHandler(WSGIRequestHandler):
    """wsgiref's request handler, with no access log, and its error output kept by the server."""

    timeout = TIMEOUT  # a connection that stalls cannot hold the server (and the test) forever

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def get_stderr(self) -> io.StringIO:
        return cast(LiveServer, self.server).errors


@contextmanager
def live_servers() -> Iterator[Callable[[WSGIApplication], LiveServer]]:
    """``serve(app)`` starts a wsgiref server for *app* in a thread; all stop after the block."""
    running: list[tuple[LiveServer, threading.Thread]] = []

    def serve(app: WSGIApplication) -> LiveServer:
        server = make_server(
            "127.0.0.1", 0, app, server_class=LiveServer, handler_class=QuietHandler
        )
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        thread.start()
        running.append((server, thread))
        return server

    try:
        yield serve
    finally:
        for server, thread in running:
            server.shutdown()
            thread.join(TIMEOUT)
            server.server_close()


def get(url: str) -> httpx.Response:
    """GET *url* with a real HTTP client (no proxies from the environment)."""
    with httpx.Client(trust_env=False, timeout=TIMEOUT) as client:
        return client.get(url)
