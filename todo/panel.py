"""The live signal panel: every signal the signed-in user's requests send, grouped by request.

How a send finds its user:

1. :class:`PanelRequestMiddleware`, outside everything but the body limit and the
   security headers, gives each request a
   :class:`RequestEvents` in a context variable, before
   ``RequestSignalsMiddleware`` sends ``request_started``. The variable follows
   the request into the worker threads that run sync endpoints and sync
   receivers (they copy the context).
2. :class:`PanelTracer`, a ``tocsin.tracing.Tracer`` subscribed while the app
   runs, describes each send made in that context and hands it to the request.
3. The panel id lives in the cookie session, which is only read further in:
   :class:`PanelSessionMiddleware`, just inside Starlette's ``SessionMiddleware``,
   attaches the id and the session to the request, and what was sent before then
   (the ``request_started``) is published at that moment.
4. Logging in and out calls :func:`reset_panel`: the old panel is forgotten, the
   session gets a new panel id, and the rest of the request's events go to it
   (login) or nowhere (logout). The :class:`Hub` binds each panel to the login
   session its events were published under, and forgets the panels of the
   sessions ``todo.signals.sessions_ended`` names (logout, password change).
5. The hub keeps each panel's recent events and feeds its open streams
   (``GET /signals/stream``, server-sent events, the browser's only to the same
   session). Sends happen on the event loop and in worker threads: a stream's
   queue takes them from any thread and wakes its loop.

Each event carries its request's id, label (``METHOD path``) and start, and its
offset from that start, so the page can show each request as a timeline. The
on-commit receivers a request's sends deferred are reported when the request
ends, with when they ran, for how long, and how (done, failed or dropped).

The memory bound, for the whole server and anonymous visitors included:

* history: at most ``MAX_BYTES`` (16 MiB) for every panel together, counted as
  the events' JSON text plus a measured overhead per event and per panel. An
  event is stored once, as text of at most ``EVENT_MAX`` (8 KiB; longer ones are
  cut); a panel keeps at most ``HISTORY`` events and ``PANEL_BYTES``. Past the
  bound the least recently active panels lose their oldest events first, and a
  panel left empty is dropped;
* streams: at most ``MAX_STREAMS`` (128) open, ``STREAMS_PER_PANEL`` (4) per
  panel, each queueing at most ``QUEUE_BYTES`` (64 KiB; a slow reader loses the
  oldest): 8 MiB;
* forgotten panel ids and ended session ids: ``FORGOTTEN`` (4096) of each.

That is 24 MiB, plus 1.3 MiB for the forgotten ids. tests/todo/test_panel_hub.py
measures the history with tracemalloc after flooding a hub with 10,000 anonymous
panels: 16.00 MiB counted, 14.4 MiB held.

A send outside any request, or in another user's request, never reaches a panel.
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
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any, Literal

from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tocsin import Signal, oncommit, tracing
from tocsin.introspect import signal_name
from tocsin.signals import (
    CLEANSED_SUBSTITUTE,
    cleanse_credentials,
    post_init,
    pre_init,
    request_finished,
)

from . import sessions
from .signals import sessions_ended

log = logging.getLogger("todo.panel")

MAX_BYTES = 16 * 2**20  # the history of every panel together
PANEL_BYTES = 256 * 2**10  # one panel's history
HISTORY = 200  # events kept per panel, replayed to a page that opens its stream
EVENT_MAX = 8 * 2**10  # one event's JSON text, in bytes of memory
ARGUMENT_MAX = 200  # characters of an argument's repr
MAX_STREAMS = 128  # open streams, for the whole server
STREAMS_PER_PANEL = 4  # a few tabs
QUEUE_BYTES = 64 * 2**10  # events waiting for a slow stream; the oldest are dropped
FORGOTTEN = 4096  # forgotten panel ids and ended session ids, remembered to refuse them
PENDING_MAX = 64  # events a request keeps until its panel is known
DEFERRED_MAX = 64  # on-commit calls followed per request
KEEP_ALIVE = 15.0  # seconds between keep-alive comments on an idle stream
RETRY_LATER = 60  # seconds, in a refused stream's Retry-After
# What a stored event costs besides its text: its tuple, number and deque slot, and
# its request id, counted whole though a request's events share it. Measured on
# CPython 3.11-3.13, rounded up (test_the_memory_bound_holds_for_10000_panels).
EVENT_OVERHEAD = 192
# A panel's entry: its id, its state and deque, the ordered dict's slot.
PANEL_OVERHEAD = 1152
# Requests the panel does not show: its own stream, and static files.
UNTRACKED = ("/signals/", "/static/")
# Besides cleanse_credentials()'s names (api, token, key, secret, password, signature).
_ALSO_SECRET = re.compile(r"cookie|session|authorization", re.IGNORECASE)
# Where PanelSessionMiddleware leaves the panel id it read, for reset_panel().
_PANEL_ID = "todo.panel_id"

Event = dict[str, Any]
Kind = Literal["request", "model", "auth", "app"]

# The keys of Panel.origin(): a request's identity, carried with remote events.
ORIGIN_PANEL = "todo-panel"
ORIGIN_SESSION = "todo-session"
ORIGIN_REQUEST = "todo-request"
ORIGIN_LABEL = "todo-request-label"
ORIGIN_STARTED = "todo-request-started"


# -- describing a send -------------------------------------------------------------------


def _cut(text: str, limit: int = ARGUMENT_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception as error:
        return f"<{type(value).__name__} (repr failed: {type(error).__name__})>"


def describe_object(value: object) -> str:
    """A class or function by its qualified name, anything else by its repr (cut)."""
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        return _cut(str(getattr(value, "__qualname__", value)))
    return _cut(_safe_repr(value))


def describe_receiver(receiver: Callable[..., Any]) -> str:
    """``module.qualname`` of a receiver (seen through bound methods and partials)."""
    func = getattr(receiver, "func", None)  # functools.partial
    if func is not None and hasattr(receiver, "args"):
        return f"partial({describe_receiver(func)})"
    module = getattr(receiver, "__module__", None)
    name = getattr(receiver, "__qualname__", None)
    if name is None:
        return f"{type(receiver).__qualname__} instance"
    if str(module).startswith("tocsin.remote") and name.startswith("publish["):
        return _cut(name)  # a Remote's publisher: "publish[<remote receiver>]"
    return _cut(f"{module}.{name}" if module else str(name))


def describe_scope(scope: Mapping[str, Any]) -> str:
    """An ASGI scope as ``METHOD path``: never its headers or cookies."""
    if scope.get("type") == "http":
        return _cut(f"{scope.get('method', '?')} {scope.get('path', '?')}")
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


def kind_of(name: str) -> Kind:
    """Which of the panel's filters shows the signal called *name* (its dotted path)."""
    if not name.startswith("tocsin.signals."):
        return "app"
    short = name.rsplit(".", 1)[-1]
    if short.startswith("request_") or short == "got_request_exception":
        return "request"
    return "auth" if short.startswith("user_") else "model"


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _clock(timestamp: float) -> str:
    at = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return at.isoformat(timespec="milliseconds")


def _signal_fields(signal: Signal) -> Event:
    name = signal_name(signal)
    short = name if name.startswith("<") else name.rsplit(".", 1)[-1]
    return {"signal": short, "name": name, "kind": kind_of(name)}


# Sent for every object built or loaded: shown only when someone listens.
_UNSHOWN_ALONE = (pre_init, post_init)


def describe_send(event: tracing.SendEvent, started: float) -> Event | None:
    """What the panel shows of one send that began at *started* (``time.time()``),
    as JSON-ready data; None to leave it out. A receiver whose call waits for the
    commit has ``"deferred": True`` and no time yet."""
    if event.signal in _UNSHOWN_ALONE and not event.calls and event.exception is None:
        return None  # one per object built or loaded, and nobody listens: noise
    receivers = []
    for call in event.calls:
        deferred = isinstance(call.response, oncommit.Deferred)
        receivers.append(
            {
                "name": describe_receiver(call.receiver),
                "ms": None if deferred else _ms(call.duration),
                "deferred": deferred,
                "error": _error(call.exception),
            }
        )
    return {
        "type": "send",
        **_signal_fields(event.signal),
        "method": event.method,
        "sender": describe_object(event.sender),
        "args": {key: describe_argument(key, value) for key, value in event.named.items()},
        "receivers": receivers,
        "error": _error(event.exception),
        "ms": _ms(event.duration),
        "at": _clock(started),
        "started": started,
    }


def describe_after_commit(call: oncommit.Deferred, number: int) -> Event:
    """What became of an on-commit receiver's call once its request ended: when it ran
    (``started``, None if it never did), for how long, and its state."""
    return {
        "type": "after_commit",
        **_signal_fields(call.signal),
        "sender": describe_object(call.sender),
        "receiver": describe_receiver(call.receiver),
        "deferred": number,
        "state": call.state,
        "ms": None if call.duration is None else _ms(call.duration),
        "error": _error(call.exception),
        "at": None if call.started is None else _clock(call.started),
        "started": call.started,
    }


# -- one event as stored: compact JSON, cut to EVENT_MAX ---------------------------------------


def _clip(value: Any, chars: int, items: int) -> Any:
    """*value* with every string cut to *chars* characters and every list or dict
    to its first *items* entries."""
    if isinstance(value, str):
        return _cut(value, chars)
    if isinstance(value, list):
        return [_clip(item, chars, items) for item in value[:items]]
    if isinstance(value, dict):
        pairs = list(value.items())[:items]
        return {_cut(str(key), chars): _clip(item, chars, items) for key, item in pairs}
    return value


def _size(text: str) -> int:
    """What *text* costs in memory (ASCII JSON: one byte a character, plus the header)."""
    return sys.getsizeof(text)


def encode(event: Event, limit: int = EVENT_MAX) -> str:
    """*event* as compact ASCII JSON costing at most *limit* bytes: when too large,
    its strings, lists and dicts are cut shorter (``"cut": true``), and at last its
    arguments and receivers are left out. *limit* must be 4 KiB or more."""
    text = json.dumps(event, separators=(",", ":"))
    if _size(text) <= limit:
        return text
    for chars, items in ((60, 20), (20, 3)):
        clipped = {key: _clip(value, chars, items) for key, value in event.items()}
        text = json.dumps({**clipped, "cut": True}, separators=(",", ":"))
        if _size(text) <= limit:
            return text
    # About twenty fields are left, each at most 20 characters (120 bytes escaped).
    bare = {key: _clip(value, 20, 3) for key, value in event.items()}
    bare.update(args={}, receivers=[], cut=True)
    return json.dumps(bare, separators=(",", ":"))


def _event_id(text: str) -> str:
    """The id at the start of a stored event's text (``{"id":"<id>",...``)."""
    return text[7 : text.index('"', 7)]


# -- the hub: each panel's events, and its open streams ------------------------------------


class StreamRefused(Exception):
    """A stream the hub will not open: *status* and *message* are the answer's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Subscription:
    """One open stream: a queue of event texts, bounded in bytes, that any thread
    fills and the stream's event loop empties."""

    def __init__(self, hub: Hub, panel_id: str, session_id: str | None, backlog: list[str]) -> None:
        self.hub = hub
        self.panel_id = panel_id
        self.session_id = session_id
        self.backlog = backlog
        self.limit = hub.queue_bytes
        self.dropped = 0  # events a slow reader lost
        self.loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._queue: collections.deque[str] = collections.deque()
        self._bytes = 0
        self._ended = False
        self._woken = False  # one wake-up at a time, however many events come
        self._wake = asyncio.Event()

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def offer(self, text: str | None) -> None:
        """Queue an event's *text*, or end the stream (None); callable from any thread."""
        with self._lock:
            if self._ended:
                return
            if text is None:
                self._ended = True
            else:
                self._queue.append(text)
                self._bytes += _size(text)
                while self._bytes > self.limit and len(self._queue) > 1:
                    self._bytes -= _size(self._queue.popleft())
                    self.dropped += 1
            if self._woken:
                return
            self._woken = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody reads
            self.loop.call_soon_threadsafe(self._wake.set)

    async def next(self, timeout: float) -> list[str] | None:
        """The events queued since the last call, waiting for one if none is; None
        once the stream has ended. Raises TimeoutError after *timeout* seconds."""
        await asyncio.wait_for(self._wake.wait(), timeout)
        with self._lock:
            self._wake.clear()
            self._woken = False
            texts = list(self._queue)
            self._queue.clear()
            self._bytes = 0
            if not texts and self._ended:
                return None
        if self._ended:  # deliver these first, then the end
            self._wake.set()
        return texts

    def close(self) -> None:
        self.hub.unsubscribe(self)


class _Panel:
    """One panel in the hub: its events (number, request id, JSON text), their
    cost in bytes, the login session it is bound to, its open streams."""

    __slots__ = ("bytes", "events", "session_id", "streams")

    def __init__(self, session_id: str | None) -> None:
        self.events: collections.deque[tuple[int, str, str]] = collections.deque()
        self.bytes = 0
        self.session_id = session_id
        self.streams: set[Subscription] | None = None  # made by the first stream


class Hub:
    """Every panel's recent events, by panel id, and the streams open on them.

    Thread-safe. The bounds (see the module's docstring) are attributes, so that a
    test or a deployment can change them.
    """

    def __init__(self) -> None:
        # In each event's id, so that a reconnecting stream never skips events
        # because the numbering restarted with the server.
        self.epoch = secrets.token_hex(4)
        self.max_bytes = MAX_BYTES
        self.panel_bytes = PANEL_BYTES
        self.history_length = HISTORY
        self.max_streams = MAX_STREAMS
        self.streams_per_panel = STREAMS_PER_PANEL
        self.queue_bytes = QUEUE_BYTES
        self.forgotten_length = FORGOTTEN
        self.closed = False
        self._lock = threading.Lock()
        self._count = 0
        self._bytes = 0
        self._stream_count = 0
        self._panels: collections.OrderedDict[str, _Panel] = collections.OrderedDict()
        self._forgotten: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._ended: collections.OrderedDict[str, None] = collections.OrderedDict()

    # -- publishing and reading --------------------------------------------------------------

    def publish(
        self, panel_id: str, session_id: str | None, request_id: str, event: Event
    ) -> str | None:
        """Store *event* in the panel's history and send it to the panel's streams
        opened by the same login session (any thread). Returns its text, or None
        when it is refused: the panel was forgotten, the session ended, or the panel
        is bound to another session."""
        body = encode(event, self._event_limit())
        with self._lock:
            panel = self._panel_for(panel_id, session_id)
            if panel is None:
                return None
            self._count += 1
            rest = "," + body[1:] if body != "{}" else "}"
            text = f'{{"id":"{self.epoch}.{self._count}"{rest}'
            self._store(panel, (self._count, request_id, text))
            self._evict()
            streams = [s for s in panel.streams or () if s.session_id == session_id]
        for stream in streams:
            stream.offer(text)
        return text

    def history(self, panel_id: str, session_id: str | None = None) -> list[str]:
        """The panel's recent events (JSON texts), oldest first; none for a session
        the panel is not bound to."""
        with self._lock:
            if not self._admits(panel_id, session_id):
                return []
            panel = self._panels.get(panel_id)
            return [text for _, _, text in panel.events] if panel is not None else []

    def _event_limit(self) -> int:
        return max(4096, min(EVENT_MAX, self.panel_bytes // 4, self.queue_bytes))

    def _panel_for(self, panel_id: str, session_id: str | None) -> _Panel | None:
        """The panel to publish to (made if new, marked as the most recently active),
        or None when the event must not be kept."""
        if panel_id in self._forgotten or (session_id is not None and session_id in self._ended):
            return None
        panel = self._panels.get(panel_id)
        if panel is None:
            panel = self._panels[panel_id] = _Panel(session_id)
            self._bytes += PANEL_OVERHEAD
        elif panel.session_id != session_id:
            # A panel is made anonymous or by a login's request (reset_panel), whose
            # session is known a moment later: it may gain a session, never change it.
            if panel.session_id is not None or session_id is None:
                return None
            panel.session_id = session_id
        self._panels.move_to_end(panel_id)
        return panel

    def _store(self, panel: _Panel, stored: tuple[int, str, str]) -> None:
        panel.events.append(stored)
        size = _size(stored[2]) + EVENT_OVERHEAD
        panel.bytes += size
        self._bytes += size
        while len(panel.events) > self.history_length or panel.bytes > self.panel_bytes:
            self._drop_oldest(panel)

    def _drop_oldest(self, panel: _Panel) -> None:
        _, _, text = panel.events.popleft()
        size = _size(text) + EVENT_OVERHEAD
        panel.bytes -= size
        self._bytes -= size

    def _evict(self) -> None:
        """Drop the least recently active panels' oldest events until the history
        fits; a panel left empty goes too, unless a page listens to it."""
        listening = 0  # panels kept for their streams alone, moved to the end
        while self._bytes > self.max_bytes and listening < len(self._panels):
            panel_id, panel = next(iter(self._panels.items()))
            if panel.events:
                self._drop_oldest(panel)
            if panel.events:
                continue
            if panel.streams:
                self._panels.move_to_end(panel_id)
                listening += 1
            else:
                del self._panels[panel_id]
                self._bytes -= PANEL_OVERHEAD

    # -- streams -----------------------------------------------------------------------------

    def subscribe(
        self, panel_id: str, session_id: str | None = None, after: str | None = None
    ) -> Subscription:
        """Open a stream on the loop that calls this; it starts with the events after
        the event id *after* (all the history when None, or from another epoch).

        Raises :class:`StreamRefused`: 204 when the panel was forgotten, its session
        ended or it is bound to another session (an ``EventSource`` stops on 204),
        429 when the panel has too many streams, 503 when the server has.
        """
        since = self._number(after)
        with self._lock:
            if not self._admits(panel_id, session_id):
                raise StreamRefused(204, "This panel has ended.")
            if self._stream_count >= self.max_streams:
                raise StreamRefused(503, "Too many signal streams are open: try again later.")
            panel = self._panels.get(panel_id)
            if panel is None:
                panel = self._panels[panel_id] = _Panel(session_id)
                self._bytes += PANEL_OVERHEAD
            if panel.streams is None:
                panel.streams = set()
            if len(panel.streams) >= self.streams_per_panel:
                raise StreamRefused(
                    429, "Too many signal streams are open in this browser: close a tab."
                )
            backlog = [text for number, _, text in panel.events if number > since]
            stream = Subscription(self, panel_id, session_id, backlog)
            if self.closed:
                stream.offer(None)
            else:
                panel.streams.add(stream)
                self._stream_count += 1
        return stream

    def unsubscribe(self, stream: Subscription) -> None:
        with self._lock:
            panel = self._panels.get(stream.panel_id)
            if panel is not None and panel.streams and stream in panel.streams:
                panel.streams.discard(stream)
                self._stream_count -= 1

    def _admits(self, panel_id: str, session_id: str | None) -> bool:
        """Whether a request of *session_id* may read *panel_id*'s events."""
        if panel_id in self._forgotten or (session_id is not None and session_id in self._ended):
            return False
        panel = self._panels.get(panel_id)
        return panel is None or panel.session_id == session_id

    # -- forgetting ----------------------------------------------------------------------------

    def forget(self, panel_id: str, *, keep: str | None = None) -> list[tuple[int, str, str]]:
        """Forget the panel for good: its history, its streams (ended), and any event
        published to it later. Returns its events of the request *keep*."""
        with self._lock:
            self._remember(self._forgotten, panel_id)
            panel = self._panels.pop(panel_id, None)
            if panel is None:
                return []
            self._bytes -= panel.bytes + PANEL_OVERHEAD
            streams = list(panel.streams or ())
            self._stream_count -= len(streams)
        for stream in streams:
            stream.offer(None)
        return [stored for stored in panel.events if stored[1] == keep]

    def adopt(
        self, panel_id: str, session_id: str | None, events: Iterable[tuple[int, str, str]]
    ) -> None:
        """Give the new panel *panel_id* events taken from a forgotten one (ids kept)."""
        with self._lock:
            panel = self._panel_for(panel_id, session_id)
            if panel is None:
                return
            for stored in events:
                self._store(panel, stored)
            self._evict()

    def forget_sessions(self, session_ids: Iterable[str]) -> None:
        """Forget every panel bound to one of these login sessions, which have ended;
        events published under them later are refused."""
        ended = dict.fromkeys(session_ids)  # in order: the first are forgotten first
        with self._lock:
            for session_id in ended:
                self._remember(self._ended, session_id)
            doomed = [pid for pid, panel in self._panels.items() if panel.session_id in ended]
        for panel_id in doomed:
            self.forget(panel_id)

    def _remember(self, memory: collections.OrderedDict[str, None], key: str) -> None:
        memory[key] = None
        memory.move_to_end(key)
        while len(memory) > self.forgotten_length:
            memory.popitem(last=False)

    # -- the whole hub -------------------------------------------------------------------------

    @property
    def bytes(self) -> int:
        """What the history costs, as counted against ``max_bytes`` (read under the
        lock: a publish adds its event, then evicts, before it lets go)."""
        with self._lock:
            return self._bytes

    def panels(self) -> int:
        """How many panels the hub keeps."""
        return len(self._panels)

    def streams(self) -> int:
        """How many streams are open."""
        return self._stream_count

    def open(self) -> None:
        with self._lock:
            self.closed = False

    def close(self) -> None:
        """End every open stream (the server is stopping); new ones end at once."""
        with self._lock:
            self.closed = True
            streams = [s for panel in self._panels.values() for s in panel.streams or ()]
            for panel in self._panels.values():
                panel.streams = None
            self._stream_count = 0
        for stream in streams:
            stream.offer(None)

    def _number(self, event_id: str | None) -> int:
        epoch, _, number = (event_id or "").partition(".")
        if epoch != self.epoch or not number.isdigit() or len(number) > 18:
            return 0
        return int(number)


# -- attributing sends to requests ---------------------------------------------------------


class RequestEvents:
    """The events of one request, published to its panel once the panel is known.

    It also follows the on-commit calls its sends deferred, and reports what became
    of them when the request ends (:meth:`finish`).
    """

    __slots__ = (
        "_deferred",
        "_lock",
        "_pending",
        "_state",
        "label",
        "panel",
        "panel_id",
        "request_id",
        "session",
        "started",
    )

    def __init__(self, panel: Panel, label: str) -> None:
        self.panel = panel
        self.label = label
        self.request_id = secrets.token_hex(8)
        self.started = time.time()
        self.panel_id: str | None = None
        self.session: Mapping[str, Any] = {}
        self._state: Literal["waiting", "live", "dropped"] = "waiting"
        self._pending: list[Event] = []
        self._deferred: list[oncommit.Deferred] = []
        self._lock = threading.Lock()

    def record(self, send: tracing.SendEvent, started: float) -> None:
        """Add a send that began at *started*, and follow the calls it deferred."""
        event = describe_send(send, started)
        if event is None:
            return
        for receiver in event["receivers"]:
            receiver["name"] = self.panel.receiver_label(receiver["name"])
        with self._lock:
            for call, receiver in zip(send.calls, event["receivers"], strict=True):
                if receiver["deferred"] and len(self._deferred) < DEFERRED_MAX:
                    assert isinstance(call.response, oncommit.Deferred)
                    self._deferred.append(call.response)
                    receiver["deferred"] = len(self._deferred)  # its number in the request
            self._add(event)

    def finish(self) -> None:
        """The request is over: report its deferred calls (run, failed or dropped)."""
        with self._lock:
            deferred, self._deferred = self._deferred, []
            for number, call in enumerate(deferred, 1):
                event = describe_after_commit(call, number)
                event["receiver"] = self.panel.receiver_label(event["receiver"])
                self._add(event)

    def attach(self, panel_id: str, session: Mapping[str, Any]) -> None:
        """The panel is known: publish what waited, and from now on, at once."""
        with self._lock:
            if self._state != "waiting":
                return  # reset_panel() came first
            self._state, self.panel_id, self.session = "live", panel_id, session
            pending, self._pending = self._pending, []
            for event in pending:
                self._publish(event)

    def move(self, panel_id: str | None, session: Mapping[str, Any] | None) -> None:
        """The session changed (:func:`reset_panel`): forget the old panel, and send
        this request's events, those already published included, to *panel_id*,
        or nowhere when None."""
        with self._lock:
            old = self.panel_id
            self.panel_id = panel_id
            if session is not None:
                self.session = session
            kept = self.panel.hub.forget(old, keep=self.request_id) if old is not None else []
            if panel_id is None:
                self._state, self._pending = "dropped", []
                return
            self.panel.hub.adopt(panel_id, self._session_id(), kept)
            pending, self._pending = self._pending, []
            self._state = "live"
            for event in pending:
                self._publish(event)

    def _add(self, event: Event) -> None:
        started = event.pop("started")
        event["request"] = self.label
        event["request_id"] = self.request_id
        event["request_at"] = _clock(self.started)
        event["offset_ms"] = None if started is None else _ms(started - self.started)
        if self._state == "live":
            self._publish(event)
        elif self._state == "waiting" and len(self._pending) < PENDING_MAX:
            self._pending.append(event)

    def _publish(self, event: Event) -> None:
        assert self.panel_id is not None
        self.panel.hub.publish(self.panel_id, self._session_id(), self.request_id, event)

    def _session_id(self) -> str | None:
        # Read at each publish: a login sets the session's id after reset_panel().
        return sessions.session_id(self.session)


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
        if event.signal in _UNSHOWN_ALONE and not event.signal.has_listeners(event.sender):
            return None  # describe_send would drop it: spare the timing (a dozen a page)
        return self._recording(event, request)

    @contextlib.contextmanager
    def _recording(self, event: tracing.SendEvent, request: RequestEvents) -> Iterator[None]:
        if event.signal is request_finished:
            request.finish()  # the on-commit calls ran before: show them before it
        started = time.time()
        try:
            yield
        finally:
            # A tracer must not raise: its exception would go into the send.
            try:
                request.record(event, started)
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
        # Remote publishers' names (describe_receiver's) -> the stream they publish to.
        self.publishers: dict[str, str] = {}

    def start(self) -> None:
        with self._lock:
            self._users += 1
            if self._remove is None:
                self.hub.open()
                self._remove = tracing.add_tracer(self.tracer)
                # After the commit that ends them: a rolled-back logout ends nothing.
                sessions_ended.connect(self.forget_ended_sessions, on_commit=True)

    def stop(self) -> None:
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users or self._remove is None:
                return
            sessions_ended.disconnect(self.forget_ended_sessions)
            self._remove()
            self._remove = None
        self.hub.close()

    def forget_ended_sessions(
        self, sender: object, *, session_ids: frozenset[str], **kwargs: object
    ) -> None:
        """Receiver of ``todo.signals.sessions_ended``: forget those sessions' panels."""
        self.hub.forget_sessions(session_ids)

    @property
    def running(self) -> bool:
        return self._remove is not None

    def receiver_label(self, name: str) -> str:
        """A receiver's name as the panel shows it: a remote publisher's says where
        it publishes (``publish[todo.remote.congratulate] → todo:events``)."""
        stream = self.publishers.get(name)
        return name if stream is None else f"{name} → {stream}"

    # -- remote events: the send's request, carried to the worker that handles it --------

    def origin(self) -> dict[str, str] | None:
        """Whose send is being made here: the panel, login session and request the
        current request's events go to (strings, for a remote event's context), or
        None outside this panel's requests, or when they go nowhere."""
        request = _current.get()
        if request is None or request.panel is not self or request.panel_id is None:
            return None
        if request._state != "live":
            return None
        return {
            ORIGIN_PANEL: request.panel_id,
            ORIGIN_SESSION: request._session_id() or "",
            ORIGIN_REQUEST: request.request_id,
            ORIGIN_LABEL: request.label,
            ORIGIN_STARTED: repr(request.started),
        }

    def publish_handled(self, origin: Mapping[str, str], event: Event) -> str | None:
        """Show *event*, what a worker did with a remote event, in the request that
        sent it: *origin* is what :meth:`origin` gave then. The hub's rules hold (a
        forgotten panel, an ended session or another session's panel refuse it).
        Returns the stored text, or None when refused or *origin* is incomplete."""
        panel_id, request_id = origin.get(ORIGIN_PANEL), origin.get(ORIGIN_REQUEST)
        try:
            request_started = float(origin.get(ORIGIN_STARTED, ""))
        except ValueError:
            return None
        if not panel_id or not request_id:
            return None
        started = event.pop("started", None)
        event["request"] = _cut(origin.get(ORIGIN_LABEL, "?"))
        event["request_id"] = request_id
        event["request_at"] = _clock(request_started)
        event["offset_ms"] = None if started is None else _ms(started - request_started)
        session_id = origin.get(ORIGIN_SESSION) or None
        return self.hub.publish(panel_id, session_id, request_id, event)


def panel_id_of(request: HTTPConnection) -> str | None:
    """The panel id in the request's cookie session, if any."""
    if "session" not in request.scope:
        return None
    panel_id = request.session.get("panel_id")
    return panel_id if isinstance(panel_id, str) else None


def _panel_of(request: HTTPConnection) -> Panel | None:
    app = request.scope.get("app")
    panel = getattr(getattr(app, "state", None), "panel", None)
    return panel if isinstance(panel, Panel) else None


def reset_panel(request: Request, *, carry: bool) -> None:
    """The login session changed: call right after rotating the cookie session.

    Forgets the browser's old panel (its history, and its streams, which end),
    gives the session a new panel id, and sends the rest of this request's events
    to the new panel with those it already sent (*carry*: a login's events belong
    to the user who logged in), or nowhere (a logout's never reach the next
    visitor). Safe before the panel's middleware has seen the session.
    """
    new_id = secrets.token_urlsafe(16)
    has_session = "session" in request.scope
    if has_session:
        request.session["panel_id"] = new_id
    old_id = request.scope.get(_PANEL_ID)
    request.scope[_PANEL_ID] = new_id
    events = _current.get()
    panel = _panel_of(request)
    if events is not None:
        events.move(new_id if carry else None, request.session if has_session else None)
    elif panel is not None and isinstance(old_id, str):
        panel.hub.forget(old_id)


class PanelRequestMiddleware:
    """Outside tocsin's request signals: gives each request its :class:`RequestEvents`, and
    reports its deferred calls when it ends."""

    def __init__(self, app: ASGIApp, panel: Panel) -> None:
        self.app = app
        self.panel = panel

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(UNTRACKED):
            await self.app(scope, receive, send)
            return
        events = RequestEvents(self.panel, describe_scope(scope))
        token = _current.set(events)
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(token)
            try:
                events.finish()
            except Exception:
                log.exception("could not show the on-commit calls of %s", events.label)


class PanelSessionMiddleware:
    """Just inside ``SessionMiddleware``: gives the session a panel id (a new one
    at each login and logout, see :func:`reset_panel`) and tells the request's
    events where to go."""

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
            scope[_PANEL_ID] = panel_id
            request = _current.get()
            if request is not None and request.panel is self.panel:
                request.attach(panel_id, session)
        await self.app(scope, receive, send)


# -- the endpoints' answers ----------------------------------------------------------------


def _viewer(request: Request) -> tuple[Panel, str, str | None] | None:
    """The app's panel, the request's panel id and its login session's id."""
    panel, panel_id = _panel_of(request), panel_id_of(request)
    if panel is None or panel_id is None:
        return None
    return panel, panel_id, sessions.session_id(request.session)


def recent_response(request: Request) -> Response:
    """The browser's recent events, oldest first, as a JSON array."""
    viewer = _viewer(request)
    texts = viewer[0].hub.history(viewer[1], viewer[2]) if viewer is not None else []
    body = "[" + ",".join(texts) + "]"
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})


def _message(text: str) -> str:
    return f"id: {_event_id(text)}\nevent: signal\ndata: {text}\n\n"


async def _event_stream(stream: Subscription) -> AsyncIterator[str]:
    # The history in one write: a client gone meanwhile costs one failed send.
    backlog, stream.backlog = stream.backlog, []
    yield "retry: 2000\n: connected\n\n" + "".join(map(_message, backlog))
    dropped = 0
    while True:
        try:
            texts = await stream.next(KEEP_ALIVE)
        except TimeoutError:
            yield ": keep-alive\n\n"
            continue
        if texts is None:
            return
        lost, dropped = stream.dropped - dropped, stream.dropped
        if texts or lost:
            notice = f"event: dropped\ndata: {lost}\n\n" if lost else ""
            yield notice + "".join(map(_message, texts))


class EventStreamResponse(StreamingResponse):
    """Server-sent events from a :class:`Subscription`, closed however the response
    ends, even if it never starts (the stream's slot is taken before)."""

    def __init__(self, stream: Subscription) -> None:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(_event_stream(stream), media_type="text/event-stream", headers=headers)
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.stream.close()


def stream_response(request: Request, after: str | None) -> Response:
    """The browser's events as server-sent events: those after *after* first, then
    the new ones as they come, with a keep-alive comment every 15 seconds. Refused
    (see :meth:`Hub.subscribe`) with a short plain-text answer."""
    viewer = _viewer(request)
    if viewer is None:
        return PlainTextResponse("There is no signal panel here.", 404)
    panel, panel_id, session_id = viewer
    try:
        stream = panel.hub.subscribe(panel_id, session_id, after)
    except StreamRefused as refused:
        if refused.status == 204:  # no body: an EventSource stops reconnecting
            return Response(status_code=204)
        headers = {"Retry-After": str(RETRY_LATER)} if refused.status == 503 else None
        return PlainTextResponse(refused.message, refused.status, headers=headers)
    return EventStreamResponse(stream)
