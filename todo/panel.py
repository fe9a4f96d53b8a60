"""The live signal panel: every signal a browser's requests send, shown in that browser.

How a send finds its browser:

1. :class:`PanelRequestMiddleware`, the outermost layer, gives each request a
   :class:`RequestEvents` in a context variable, before
   ``RequestSignalsMiddleware`` sends ``request_started``. The variable follows
   the request into the worker threads that run sync endpoints and sync
   receivers (they copy the context).
2. :class:`PanelTracer`, a ``tocsin.tracing.Tracer`` subscribed while the app
   runs, describes each send made in that context and hands it to the request.
3. The browser's panel id lives in its session, which is only read further in:
   :class:`PanelSessionMiddleware`, just inside Starlette's ``SessionMiddleware``,
   attaches the id to the request, and what was sent before then (the
   ``request_started``) is published at that moment.
4. :class:`Hub` keeps each browser's recent events and feeds its open streams
   (``GET /signals/stream``, server-sent events). Sends happen on the event loop
   and in worker threads: events reach a stream's asyncio queue through
   ``loop.call_soon_threadsafe``.

A send outside any request, or in another browser's request, never reaches a panel.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import datetime
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, MutableMapping
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tocsin import oncommit, tracing
from tocsin.introspect import signal_name
from tocsin.signals import CLEANSED_SUBSTITUTE, cleanse_credentials, post_init, pre_init

log = logging.getLogger("todo.panel")

HISTORY = 200  # events kept per browser, replayed to a page that opens its stream
MAX_BROWSERS = 1000  # browsers whose history is kept (the least recently active go)
QUEUE_SIZE = 500  # events waiting for a slow stream; the oldest are dropped
ARGUMENT_MAX = 200  # characters of an argument's repr
KEEP_ALIVE = 15.0  # seconds between keep-alive comments on an idle stream
# Requests the panel does not show: its own stream, and static files.
UNTRACKED = ("/signals/", "/static/")
# Besides cleanse_credentials()'s names (api, token, key, secret, password, signature).
_ALSO_SECRET = re.compile(r"cookie|session|authorization", re.IGNORECASE)

Event = dict[str, Any]


# -- describing a send -------------------------------------------------------------------


def _cut(text: str, limit: int = ARGUMENT_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception as error:
        return f"<{type(value).__name__} (repr failed: {type(error).__name__})>"


def describe_object(value: object) -> str:
    """A class or function by its qualified name, anything else by its repr."""
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        return str(getattr(value, "__qualname__", value))
    return _safe_repr(value)


def describe_receiver(receiver: Callable[..., Any]) -> str:
    """``module.qualname`` of a receiver (seen through bound methods and partials)."""
    func = getattr(receiver, "func", None)  # functools.partial
    if func is not None and hasattr(receiver, "args"):
        return f"partial({describe_receiver(func)})"
    module = getattr(receiver, "__module__", None)
    name = getattr(receiver, "__qualname__", None)
    if name is None:
        return f"{type(receiver).__qualname__} instance"
    return f"{module}.{name}" if module else str(name)


def describe_scope(scope: Mapping[str, Any]) -> str:
    """An ASGI scope as ``METHOD path``: never its headers or cookies."""
    if scope.get("type") == "http":
        return f"{scope.get('method', '?')} {scope.get('path', '?')}"
    return f"<{scope.get('type', '?')} scope>"


def describe_argument(name: str, value: object) -> str:
    """One keyword argument of a send, safe to show: secrets masked, cut to 200 characters."""
    if cleanse_credentials({name: None})[name] is not None or _ALSO_SECRET.search(name):
        return CLEANSED_SUBSTITUTE
    if isinstance(value, HTTPConnection):
        return f"<{type(value).__name__} {describe_scope(value.scope)}>"
    if isinstance(value, Mapping):
        if name == "scope" or {"type", "asgi"} <= value.keys():
            return describe_scope(value)
        cleansed = {
            key: CLEANSED_SUBSTITUTE if isinstance(key, str) and _ALSO_SECRET.search(key) else item
            for key, item in cleanse_credentials(value).items()
        }
        return _cut(_safe_repr(cleansed))
    if isinstance(value, (set, frozenset)):
        # update_fields: the same set in the same order every time.
        kind = type(value).__name__
        items = ", ".join(sorted(_safe_repr(item) for item in value))
        return _cut(f"{kind}({{{items}}})" if value else f"{kind}()")
    return _cut(_safe_repr(value))


def _error(exception: BaseException | None) -> str | None:
    if exception is None:
        return None
    message = str(exception)
    return _cut(f"{type(exception).__name__}: {message}" if message else type(exception).__name__)


def describe_send(event: tracing.SendEvent, started: float, request: str) -> Event | None:
    """What the panel shows of one send, as JSON-ready data; None to leave it out."""
    if event.signal in (pre_init, post_init) and not event.calls and event.exception is None:
        return None  # one per object built or loaded, and nobody listens: noise
    name = signal_name(event.signal)
    receivers = []
    for call in event.calls:
        deferred = isinstance(call.response, oncommit.Deferred)
        receivers.append(
            {
                "name": describe_receiver(call.receiver),
                "ms": None if deferred else round(call.duration * 1000, 3),
                "deferred": deferred,
                "error": _error(call.exception),
            }
        )
    at = datetime.datetime.fromtimestamp(started, datetime.UTC)
    return {
        "signal": name if name.startswith("<") else name.rsplit(".", 1)[-1],
        "name": name,
        "method": event.method,
        "sender": describe_object(event.sender),
        "args": {key: describe_argument(key, value) for key, value in event.named.items()},
        "receivers": receivers,
        "error": _error(event.exception),
        "ms": round(event.duration * 1000, 3),
        "at": at.isoformat(timespec="milliseconds"),
        "request": request,
    }


# -- the hub: each browser's events, and its open streams ----------------------------------


class Subscription:
    """One open stream: an asyncio queue on the loop that serves it."""

    def __init__(self, hub: Hub, panel_id: str, backlog: list[Event]) -> None:
        self.hub = hub
        self.panel_id = panel_id
        self.backlog = backlog
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_SIZE)

    def offer(self, event: Event | None) -> None:
        """Queue *event* (None: the end); callable from any thread."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody reads
            self.loop.call_soon_threadsafe(self._put, event)

    def _put(self, event: Event | None) -> None:
        if self.queue.full():
            self.queue.get_nowait()  # a stream that does not keep up loses the oldest
        self.queue.put_nowait(event)

    async def next(self, timeout: float) -> Event | None:
        """The next event, None at the end; raises TimeoutError after *timeout* seconds."""
        return await asyncio.wait_for(self.queue.get(), timeout)

    def close(self) -> None:
        self.hub.unsubscribe(self)


class Hub:
    """Each browser's recent events, by panel id, and the streams open on them."""

    def __init__(self) -> None:
        # In each event's id, so that a reconnecting stream never skips events
        # because the numbering restarted with the server.
        self.epoch = secrets.token_hex(4)
        self._lock = threading.Lock()
        self._count = 0
        self._history: collections.OrderedDict[str, collections.deque[tuple[int, Event]]] = (
            collections.OrderedDict()
        )
        self._streams: dict[str, set[Subscription]] = {}
        self.closed = False

    def publish(self, panel_id: str, event: Event) -> None:
        """Add *event* to the browser's history and send it to its streams (any thread)."""
        with self._lock:
            self._count += 1
            event = {**event, "id": f"{self.epoch}.{self._count}"}
            history = self._history.get(panel_id)
            if history is None:
                history = self._history[panel_id] = collections.deque(maxlen=HISTORY)
                while len(self._history) > MAX_BROWSERS:
                    self._history.popitem(last=False)
            else:
                self._history.move_to_end(panel_id)
            history.append((self._count, event))
            streams = tuple(self._streams.get(panel_id, ()))
        for stream in streams:
            stream.offer(event)

    def history(self, panel_id: str) -> list[Event]:
        """The browser's recent events, oldest first."""
        with self._lock:
            return [event for _, event in self._history.get(panel_id, ())]

    def subscribe(self, panel_id: str, after: str | None = None) -> Subscription:
        """Open a stream on the loop that calls this; it starts with the events after
        the event id *after* (all the history when None, or from another epoch)."""
        since = self._number(after)
        with self._lock:
            backlog = [event for number, event in self._history.get(panel_id, ()) if number > since]
            stream = Subscription(self, panel_id, backlog)
            if self.closed:
                stream.offer(None)
            else:
                self._streams.setdefault(panel_id, set()).add(stream)
        return stream

    def unsubscribe(self, stream: Subscription) -> None:
        with self._lock:
            streams = self._streams.get(stream.panel_id)
            if streams is not None:
                streams.discard(stream)
                if not streams:
                    del self._streams[stream.panel_id]

    def streams(self) -> int:
        """How many streams are open."""
        with self._lock:
            return sum(len(s) for s in self._streams.values())

    def open(self) -> None:
        with self._lock:
            self.closed = False

    def close(self) -> None:
        """End every open stream (the server is stopping); new ones end at once."""
        with self._lock:
            self.closed = True
            streams = [s for group in self._streams.values() for s in group]
            self._streams.clear()
        for stream in streams:
            stream.offer(None)

    def _number(self, event_id: str | None) -> int:
        epoch, _, number = (event_id or "").partition(".")
        if epoch != self.epoch or not number.isdigit() or len(number) > 18:
            return 0
        return int(number)


# -- attributing sends to requests ---------------------------------------------------------


class RequestEvents:
    """The events of one request, published to its browser's panel once known."""

    __slots__ = ("_lock", "_pending", "label", "panel", "panel_id")

    def __init__(self, panel: Panel, label: str) -> None:
        self.panel = panel
        self.label = label
        self.panel_id: str | None = None
        self._pending: list[Event] = []
        self._lock = threading.Lock()

    def add(self, event: Event) -> None:
        with self._lock:
            panel_id = self.panel_id
            if panel_id is None:
                self._pending.append(event)
                return
        self.panel.hub.publish(panel_id, event)

    def attach(self, panel_id: str) -> None:
        """The browser is known: publish what waited, and from now on, at once."""
        with self._lock:
            if self.panel_id is not None:
                return
            self.panel_id = panel_id
            pending, self._pending = self._pending, []
        for event in pending:
            self.panel.hub.publish(panel_id, event)


_current: contextvars.ContextVar[RequestEvents | None] = contextvars.ContextVar(
    "todo_panel_request", default=None
)


class PanelTracer(tracing.Tracer):
    """Describes each send made during one of the panel's requests."""

    def __init__(self, panel: Panel) -> None:
        self.panel = panel

    def trace_send(self, event: tracing.SendEvent) -> contextlib.AbstractContextManager[Any] | None:
        request = _current.get()
        if request is None or request.panel is not self.panel:
            return None
        return self._recording(event, request)

    @contextlib.contextmanager
    def _recording(self, event: tracing.SendEvent, request: RequestEvents) -> Iterator[None]:
        started = time.time()
        try:
            yield
        finally:
            # A tracer must not raise: its exception would go into the send.
            try:
                described = describe_send(event, started, request.label)
                if described is not None:
                    request.add(described)
            except Exception:
                log.exception("could not show a send of %r in the panel", event.signal)


class Panel:
    """The tracer and the hub of one app; :meth:`start` and :meth:`stop` from its lifespan."""

    def __init__(self) -> None:
        self.hub = Hub()
        self.tracer = PanelTracer(self)
        self._lock = threading.Lock()
        self._users = 0
        self._remove: Callable[[], None] | None = None

    def start(self) -> None:
        with self._lock:
            self._users += 1
            if self._remove is None:
                self.hub.open()
                self._remove = tracing.add_tracer(self.tracer)

    def stop(self) -> None:
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users or self._remove is None:
                return
            self._remove()
            self._remove = None
        self.hub.close()

    @property
    def running(self) -> bool:
        return self._remove is not None


def panel_id_of(request: Request) -> str | None:
    panel_id = request.session.get("panel_id")
    return panel_id if isinstance(panel_id, str) else None


class PanelRequestMiddleware:
    """The outermost layer: gives each request its :class:`RequestEvents`."""

    def __init__(self, app: ASGIApp, panel: Panel) -> None:
        self.app = app
        self.panel = panel

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(UNTRACKED):
            await self.app(scope, receive, send)
            return
        token = _current.set(RequestEvents(self.panel, describe_scope(scope)))
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(token)


class PanelSessionMiddleware:
    """Just inside ``SessionMiddleware``: gives the browser a panel id (kept in its
    session, across logins) and tells the request's events where to go."""

    def __init__(self, app: ASGIApp, panel: Panel) -> None:
        self.app = app
        self.panel = panel

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session: MutableMapping[str, Any] | None = scope.get("session")
        path: str = scope.get("path", "")
        if scope["type"] == "http" and session is not None and not path.startswith("/static/"):
            panel_id = session.get("panel_id")
            if not isinstance(panel_id, str):
                panel_id = session["panel_id"] = secrets.token_urlsafe(16)
            request = _current.get()
            if request is not None and request.panel is self.panel:
                request.attach(panel_id)
        await self.app(scope, receive, send)


# -- the stream ------------------------------------------------------------------------------


def _message(event: Event) -> str:
    return f"id: {event['id']}\nevent: signal\ndata: {json.dumps(event)}\n\n"


def stream_response(hub: Hub, panel_id: str, after: str | None) -> StreamingResponse:
    """The browser's events as server-sent events: those after *after* first, then
    the new ones as they come, with a keep-alive comment every 15 seconds."""

    async def events() -> AsyncIterator[str]:
        stream = hub.subscribe(panel_id, after)
        try:
            # The history in one write: a client gone meanwhile costs one failed send.
            yield "retry: 2000\n: connected\n\n" + "".join(map(_message, stream.backlog))
            while True:
                try:
                    new = await stream.next(KEEP_ALIVE)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if new is None:
                    return
                yield _message(new)
        finally:
            stream.close()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
