"""A receiver in another process: a worker congratulates whoever completes a todo.

:func:`make_remote` declares the app's :class:`~tocsin.remote.Remote` on the stream
``<prefix>:events`` (``TODO_REDIS_PREFIX``, ``todo`` by default): every
``todo_completed`` is published, after the commit, for the remote receiver
:class:`Congratulate`, which loads the todo from the database (it travels as a key:
``register_models``) and logs ``Worker: well done, ...`` to the ``todo`` logger, with
the event id and the attempt. Events are signed with a key derived from the app's
secret key (:meth:`Settings.derived_key`): a worker dead-letters, unread, any event
that key did not sign.

Where it runs (:class:`AppRemote`, started and stopped by the app's lifespan):

* by default, in process: a :class:`~tocsin.remote.MemoryTransport` and a
  :class:`~tocsin.remote.Worker` in a thread of the app (no server needed);
* with ``TODO_REDIS_URL``, in another process: a
  :class:`~tocsin.remote.RedisStreamsTransport`, and ``tocsin worker
  todo.remote:remote`` started beside the app (same ``DATABASE_URL`` or
  ``TODO_DATA_DIR``, same secret key); the app runs no worker then. The event is
  written to the outbox table (``todo.models.outbox``) in the transaction that
  completes the todo and published after the commit; if Redis is down then, the
  click still succeeds, the row stays, and the worker's relay publishes it later.

The signal panel shows both ends in the request that completed the todo: the
publish (an on-commit receiver of the send), and each attempt of the worker
(attempt, when, how long, done or failed). The request's panel, login session and
id travel with the event in its context (a propagator, :meth:`Panel.origin`); the
worker reports each attempt to the panel directly in process, or through the
Redis stream ``<prefix>:events:handled`` (at most ``REPORTS_MAX`` entries), each
report signed with another derived key, which the app follows, from another process:
an unsigned or badly signed report is logged and never shown. The hub's rules decide
who sees it, as for every other event: only the panel and login session that sent it.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import timedelta
from typing import Any

from tocsin.contrib.sqlalchemy import ModelKey, Outbox, register_models
from tocsin.exceptions import TransportError
from tocsin.remote import (
    Event,
    JSONSerializer,
    MemoryTransport,
    Remote,
    Transport,
    Worker,
    add_propagator,
    current_event,
)

from .db import Base, Database
from .models import OUTBOX_TABLE, Todo, outbox
from .panel import Panel
from .settings import DEFAULT_REDIS_PREFIX, Settings
from .signals import todo_completed
from .text import printable

EVENTS_KEY = "todo.remote.events"  # the purposes of the keys derived from the secret key
REPORTS_KEY = "todo.remote.reports"
REPORTS_MAX = 1000  # entries kept in REPORTS (about: MAXLEN ~)
RECEIVER = "todo.remote.congratulate"
PUBLISHER = f"publish[{RECEIVER}]"  # its publisher's name in the panel
DEDUPE = timedelta(hours=1)  # an event done is not run again within this time
# The in-process worker: a failed attempt is retried after 1 s, then 2 s.
MAX_ATTEMPTS = 3
RETRY_DELAY = 1.0
RELAY_AFTER = 10.0  # seconds an outbox row waits before a worker's relay publishes it
STOP_TIMEOUT = 5.0  # seconds the app waits for its worker thread to stop
FOLLOW_BLOCK = 250  # ms one read of REPORTS waits: the app stops within about that
APP_KEY = "todo-app"  # in an event's context: the app (in process) that sent it

log = logging.getLogger("todo")

# What a worker's attempt is reported to: (the send's origin, the panel event).
Report = Callable[[Mapping[str, str], dict[str, Any]], object]


def stream_names(prefix: str) -> tuple[str, str]:
    """The events' stream and the workers' reports' stream for the prefix
    ``TODO_REDIS_PREFIX``; the dead letters go to ``<events>:dead``."""
    return f"{prefix}:events", f"{prefix}:events:handled"


def congratulation(todo: Todo) -> str:
    """What the worker says when *todo* is done."""
    return f'well done, {todo.owner.username}: "{printable(todo.text)}" is done'


class Congratulate:
    """The remote receiver of ``todo_completed``: loads the todo in this process's
    database and logs a congratulation; reports each attempt to *report*.

    Idempotent: the remote marks an event done once this succeeded (``dedupe``),
    so a redelivered event is skipped; the log line is the only effect.

    :param retry_in: the most seconds before the worker retries a failed attempt (given
        the attempt), None when it will not; unknown (None) in another process.
    :param app_key: in process, the app's key: events another app sent are skipped.
    :param stream: the stream its events come from, for the reports.
    """

    def __init__(
        self,
        database: Database,
        report: Report | None,
        retry_in: Callable[[int], float | None] | None = None,
        app_key: str | None = None,
        stream: str = stream_names(DEFAULT_REDIS_PREFIX)[0],
    ) -> None:
        self.database = database
        self.report = report
        self.retry_in = retry_in
        self.app_key = app_key
        self.stream = stream

    def __call__(self, sender: object, *, todo: ModelKey, **kwargs: object) -> None:
        event = current_event()
        context = event.context if event is not None else {}
        if self.app_key is not None and context.get(APP_KEY, self.app_key) != self.app_key:
            return  # another app of this process published it, for its own worker
        attempt = event.deliveries if event is not None else 0
        started, clock = time.time(), time.perf_counter()
        try:
            self.congratulate(todo, event, attempt)
        except Exception as error:
            self._report(context, event, attempt, started, clock, error)
            raise
        self._report(context, event, attempt, started, clock, None)

    def congratulate(self, key: ModelKey, event: Event | None, attempt: int) -> None:
        event_id = event.id if event is not None else "-"
        with self.database.session() as session:
            todo = key.get(session)
            if not isinstance(todo, Todo) or not todo.done:
                log.info(
                    "Worker: todo %s is gone or open again; nothing to say (event %s, attempt %d)",
                    key.pk[0],
                    event_id,
                    attempt,
                )
                return
            log.info(
                "Worker: %s (todo %s, event %s, attempt %d)",
                congratulation(todo),
                todo.id,
                event_id,
                attempt,
            )

    def _report(
        self,
        context: Mapping[str, str],
        event: Event | None,
        attempt: int,
        started: float,
        clock: float,
        error: Exception | None,
    ) -> None:
        if self.report is None or event is None or not context:
            return
        retry = None
        if error is not None and self.retry_in is not None:
            retry = self.retry_in(attempt)
        handled = {
            "type": "worker",
            "signal": "todo_completed",
            "name": "todo.signals.todo_completed",
            "kind": "app",
            "sender": "Todo",
            "receiver": RECEIVER,
            "stream": self.stream,
            "event_id": event.id,
            "attempt": attempt,
            "state": "done" if error is None else "failed",
            "retry_in": retry,
            "ms": round((time.perf_counter() - clock) * 1000, 3),
            "error": None if error is None else f"{type(error).__name__}: {error}"[:200],
            "at": _iso(started),
            "started": started,
            "pid": os.getpid(),
        }
        try:
            self.report(context, handled)
        except Exception:  # the panel is a view: never a reason to retry the event
            log.warning("could not report event %s to the panel", event.id, exc_info=True)


def _iso(timestamp: float) -> str:
    at = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return at.isoformat(timespec="milliseconds")


def make_remote(
    transport: Transport, receiver: Congratulate, settings: Settings, outbox: Outbox | None = None
) -> Remote:
    """The app's remote on *transport*: ``todo_completed`` published after the
    commit (through *outbox*, if given) for *receiver*, todos travelling as keys,
    events signed with a key derived from the secret key."""
    serializer = JSONSerializer()
    register_models(serializer, Base)
    remote = Remote(
        transport,
        stream=stream_names(settings.redis_prefix)[0],
        serializer=serializer,
        outbox=outbox,
        on_commit=outbox is None,
        signing_key=settings.derived_key(EVENTS_KEY),
    )
    remote.receiver(todo_completed, sender=Todo, name=RECEIVER, dedupe=DEDUPE)(receiver)
    return remote


# -- the context that travels: which panel, session and request sent the event -------------


class PanelPropagator:
    """Carries :meth:`Panel.origin` (and, in process, the app's key) with each event."""

    def __init__(self, panel: Panel, app_key: str | None) -> None:
        self.panel = panel
        self.app_key = app_key

    def inject(self, carrier: dict[str, str]) -> None:
        origin = self.panel.origin()
        if origin is None:
            return
        carrier.update(origin)
        if self.app_key is not None:
            carrier[APP_KEY] = self.app_key

    def extract(self, carrier: Mapping[str, str]) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()  # the receiver reads current_event().context


# -- the app's side ------------------------------------------------------------------------


class AppRemote:
    """The app's remote while its lifespan runs (:meth:`running`): in process, a
    memory transport and a worker thread; with ``settings.redis_url``, Redis, and a
    thread that hands the workers' reports to the panel, and the outbox."""

    def __init__(self, settings: Settings, database: Database, panel: Panel) -> None:
        self.settings = settings
        self.database = database
        self.panel = panel
        self.remote: Remote | None = None
        self.worker: Worker | None = None
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._users = 0
        self._stack: contextlib.ExitStack | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Publish ``todo_completed`` and run (or follow) its worker for the block.
        Blocks may overlap (a test's lifespan and a server's): the first starts, the
        last stops."""
        with self._lock:
            self._users += 1
            if self._users == 1:
                self._stack = self._start()
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                stack = None
                if not self._users:
                    stack, self._stack = self._stack, None
            if stack is not None:
                stack.close()

    def _start(self) -> contextlib.ExitStack:
        redis_url = self.settings.redis_url
        app_key = None if redis_url else os.urandom(8).hex()
        stream, reports = stream_names(self.settings.redis_prefix)
        with contextlib.ExitStack() as stack:
            self.panel.publishers[PUBLISHER] = stream
            stack.callback(add_propagator(PanelPropagator(self.panel, app_key)))
            if redis_url:
                transport = _redis_transport(redis_url)
                stack.enter_context(self._published(transport, None, outbox))
                key = self.settings.derived_key(REPORTS_KEY)
                stack.enter_context(_following(redis_url, reports, key, self.panel))
            else:
                stack.enter_context(self._in_process(app_key))
            return stack.pop_all()

    @contextlib.contextmanager
    def _published(
        self,
        transport: Transport,
        receiver: Congratulate | None,
        outbox: Outbox | None = None,
    ) -> Iterator[Remote]:
        """*transport*'s remote, its publisher connected for the block."""
        if receiver is None:  # the receiver runs elsewhere: this one is never called
            receiver = Congratulate(self.database, None)
        remote = make_remote(transport, receiver, self.settings, outbox)
        self.remote = remote
        try:
            yield remote
        finally:
            remote.disconnect()
            self.remote = None
            transport.close()

    @contextlib.contextmanager
    def _in_process(self, app_key: str | None) -> Iterator[None]:
        transport = MemoryTransport()
        stream = stream_names(self.settings.redis_prefix)[0]
        receiver = Congratulate(self.database, self.panel.publish_handled, None, app_key, stream)
        with self._published(transport, receiver) as remote:
            worker = Worker(
                remote,
                group="todo",
                consumer="todo-app",
                max_attempts=MAX_ATTEMPTS,
                retry_delay=RETRY_DELAY,
                trim_every=None,
            )
            receiver.retry_in = lambda attempt: (
                worker.max_delay(attempt) if attempt < MAX_ATTEMPTS else None
            )
            thread = threading.Thread(
                target=_work, args=(worker,), name="todo-remote-worker", daemon=True
            )
            self.worker, self.thread = worker, thread
            thread.start()
            try:
                yield
            finally:
                worker.stop()
                remote.disconnect()
                transport.close()  # wakes the worker's read
                thread.join(STOP_TIMEOUT)
                if thread.is_alive():
                    log.warning("the remote worker thread did not stop in %s s", STOP_TIMEOUT)
                self.worker = self.thread = None


def _work(worker: Worker) -> None:
    """The in-process worker's loop: until stopped (the transport is closed then)."""
    while not _stopped(worker):
        try:
            worker.run_once()
        except TransportError:
            if _stopped(worker):
                return
            log.warning("the remote worker's transport failed", exc_info=True)
            time.sleep(0.1)
        except Exception:  # never the end of the thread while the app runs
            log.exception("the remote worker failed a round")
            time.sleep(0.1)


def _stopped(worker: Worker) -> bool:
    return worker.stopping  # a call: the property changes under mypy's feet


def _redis_transport(url: str) -> Transport:
    from tocsin.remote import RedisStreamsTransport

    transport: Transport = RedisStreamsTransport(url=url)
    return transport


def _report_signature(key: bytes, origin: bytes, handled: bytes) -> bytes:
    """The HMAC-SHA256 (hex) of a report's two JSON fields (neither holds a newline)."""
    return hmac.new(key, origin + b"\n" + handled, hashlib.sha256).hexdigest().encode()


@contextlib.contextmanager
def _following(url: str, stream: str, key: bytes, panel: Panel) -> Iterator[None]:
    """A thread that hands the workers' reports (the stream *stream*, signed with
    *key*) to *panel* (a thread, not a task: it must not depend on who runs the
    lifespan's loop)."""
    import redis

    client = redis.Redis.from_url(url)
    stop = threading.Event()
    thread = threading.Thread(
        target=_follow,
        args=(client, stream, key, panel, stop),
        name="todo-remote-reports",
        daemon=True,
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(STOP_TIMEOUT)
        client.close()


def _follow(client: Any, stream: str, key: bytes, panel: Panel, stop: threading.Event) -> None:
    import redis

    last = "$"  # the reports from now on: older ones belong to requests long over
    while not stop.is_set():
        try:
            found: Any = client.xread({stream: last}, count=100, block=FOLLOW_BLOCK)
        except redis.RedisError as error:
            log.warning("cannot read the worker reports (%s); retrying in 1 s", error)
            stop.wait(1.0)
            continue
        for _, entries in found or ():
            for entry_id, fields in entries:
                last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                _hand_over(panel, fields, key, last)


def _hand_over(panel: Panel, fields: Mapping[bytes, bytes], key: bytes, entry_id: str) -> None:
    signature = fields.get(b"signature", b"")
    expected = _report_signature(key, fields.get(b"origin", b""), fields.get(b"event", b""))
    if not hmac.compare_digest(signature, expected):
        # Whoever can write to this Redis could otherwise put events in a user's panel.
        log.warning(
            "a worker report without a valid signature was refused (entry %s): is "
            "the worker's secret key the app's?",
            entry_id,
        )
        return
    try:
        origin = json.loads(fields[b"origin"])
        handled = json.loads(fields[b"event"])
        if not isinstance(origin, dict) or not isinstance(handled, dict):
            return
        panel.publish_handled({str(k): str(v) for k, v in origin.items()}, handled)
    except (KeyError, ValueError):
        log.warning("an unreadable worker report was skipped")


# -- the worker process's side: ``tocsin worker todo.remote:remote`` -----------------------


class RedisReports:
    """Reports a worker process's attempts to the app, through the stream *stream*,
    each signed with *key* (the app refuses the others)."""

    def __init__(self, url: str, stream: str, key: bytes) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.stream = stream
        self.key = key

    def __call__(self, origin: Mapping[str, str], handled: dict[str, Any]) -> None:
        origin_json = json.dumps(dict(origin)).encode()
        handled_json = json.dumps(handled).encode()
        fields = {
            "origin": origin_json,
            "event": handled_json,
            "signature": _report_signature(self.key, origin_json, handled_json),
        }
        self.client.xadd(self.stream, fields, maxlen=REPORTS_MAX, approximate=True)  # type: ignore[arg-type]


def worker_remote(settings: Settings | None = None) -> Remote:
    """The remote ``tocsin worker todo.remote:remote`` runs: Redis at
    ``TODO_REDIS_URL``, streams named by ``TODO_REDIS_PREFIX``, the database of
    ``DATABASE_URL`` / ``TODO_DATA_DIR`` (and its outbox, which the worker relays),
    the keys derived from ``TODO_SECRET_KEY`` or the data directory's key."""
    settings = settings if settings is not None else Settings.from_env()
    if not settings.redis_url:
        raise RuntimeError(
            "set TODO_REDIS_URL (redis://127.0.0.1:6379/0) for the worker and the app: "
            "without it, the app runs its worker in a thread of its own."
        )
    database = Database(settings.database_url)
    stream, reports = stream_names(settings.redis_prefix)
    report = RedisReports(settings.redis_url, reports, settings.derived_key(REPORTS_KEY))
    receiver = Congratulate(database, report, stream=stream)
    relayed = Outbox(database.engine, table_name=OUTBOX_TABLE, relay_after=RELAY_AFTER)
    return make_remote(_redis_transport(settings.redis_url), receiver, settings, relayed)


_made: dict[str, Remote] = {}


def __getattr__(name: str) -> Any:
    # ``remote`` is made on first use, from the environment: importing this module
    # (as the app does) opens no database and no connection.
    if name == "remote":
        if name not in _made:
            _made[name] = worker_remote()
        return _made[name]
    raise AttributeError(f"module 'todo.remote' has no attribute {name!r}")


__all__ = [
    "AppRemote",
    "Congratulate",
    "PanelPropagator",
    "RedisReports",
    "congratulation",
    "make_remote",
    "stream_names",
    "worker_remote",
]
