#!/usr/bin/env python3
"""Requests/s and latency of the Todo app's JSON API, and what its signal panel costs there.

    .venv/bin/python benchmarks/bench_todo.py                  # the full run, about 3 minutes
    .venv/bin/python benchmarks/bench_todo.py --quick          # a few seconds: smoke test only
    .venv/bin/python benchmarks/bench_todo.py --profile        # then profile the shipped app
    .venv/bin/python benchmarks/bench_todo.py --json out.json  # also write every number
    .venv/bin/python benchmarks/bench_todo.py --database-url \\
        postgresql+psycopg://postgres@127.0.0.1:5432/test      # PostgreSQL, a throwaway schema

The variants, the load, the figures and --profile: benchmarks/README.md ("The Todo app
under load").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import marshal
import math
import os
import pstats
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import _harness as harness

ROOT = harness.ROOT
HOST = "127.0.0.1"
SECRET_KEY = "bench-todo-secret-key-not-for-production"
PASSWORD = "bench-todo-password"
COOKIE = "todo_session"
REQUEST_TIMEOUT = 30.0  # seconds for one request
START_TIMEOUT = 60.0  # for a server to answer its first request
STOP_TIMEOUT = 10.0  # for a server to stop after SIGTERM, before SIGKILL
PROFILE_TIMEOUT = 60.0  # for the profile's files, or py-spy, once the window is over
PY_SPY_RATE = 100  # samples a second
PER_THREAD_PROFILES = sys.version_info < (3, 12)  # see ThreadProfilers
KINDS = ("create", "list", "get", "patch", "delete")
VARIANTS = {
    "shipped": "as shipped (panel on)",
    "no-tracer": "panel's tracer off",
    "no-receivers": "no tracer, no request receivers",
    "bare": "no panel, request or model signals",
}
# What each variant's server must report (see adjust()).
EXPECTED = {
    "shipped": {"tracing": True, "request_receivers": True, "model_signals": True},
    "no-tracer": {"tracing": False, "request_receivers": True, "model_signals": True},
    "no-receivers": {"tracing": False, "request_receivers": False, "model_signals": True},
    "bare": {"tracing": False, "request_receivers": False, "model_signals": False},
}
SIGNAL_MIDDLEWARE = ("PanelRequestMiddleware", "RequestSignalsMiddleware", "PanelSessionMiddleware")


@dataclass(frozen=True)
class Config:
    name: str
    clients: int
    todos: int  # each user's todos besides the one its loop makes
    first_warmup: float  # seconds of load per server before the first round
    warmup: float  # seconds of load before each window
    duration: float  # seconds of each window
    rounds: int


DEFAULT = Config("default", 20, 10, first_warmup=5.0, warmup=2.0, duration=10.0, rounds=3)
QUICK = Config("quick", 4, 2, first_warmup=0.5, warmup=0.3, duration=1.0, rounds=1)


# -- the server (a child process) ------------------------------------------------------------


def serve(variant: str, log: Path, cprofile_dir: Path | None) -> int:
    """Child process: the Todo app as ``python -m todo`` serves it, changed for *variant*.

    Settings come from the environment (TODO_DATA_DIR, TODO_SECRET_KEY,
    DATABASE_URL). Prints one JSON line (port, pid) once its socket listens, then
    sends its output to *log*; exits when its stdin closes (the parent went away)
    or on SIGTERM.
    """
    sock = harness.listening_socket(HOST)  # TCP_NODELAY, as on those uvicorn makes itself
    harness.announce(sock)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    if cprofile_dir is not None:
        ThreadProfilers(cprofile_dir)

    from todo import Settings, create_app
    from todo.__main__ import configure_logging, make_server
    from todo.db import upgrade

    configure_logging()
    settings = Settings.from_env()
    upgrade(settings.database_url)
    app = create_app(settings)
    adjust(app, variant, settings.data_dir / "state.json")
    make_server(app, HOST, sock.getsockname()[1]).run(sockets=[sock])
    return 0


def adjust(app: Any, variant: str, state_file: Path) -> None:
    """Change what ``create_app()`` made for *variant*; once the app has started,
    write what it runs to *state_file*."""
    from tocsin import tracing
    from tocsin.contrib.asgi import RequestSignalsMiddleware
    from tocsin.contrib.sqlalchemy import disable_model_signals, model_signals_enabled
    from tocsin.signals import got_request_exception, request_finished, request_started
    from todo import receivers
    from todo.db import Base

    request_signals = (request_started, request_finished, got_request_exception)

    def request_receivers() -> bool:
        # The middleware sends with itself as the sender.
        return any(sig.has_listeners(RequestSignalsMiddleware) for sig in request_signals)

    if variant in ("no-receivers", "bare"):
        for sig, receiver in (
            (request_started, receivers.start_timer),
            (request_finished, receivers.log_request),
        ):
            if not sig.disconnect(receiver, sender=RequestSignalsMiddleware):
                raise RuntimeError(f"{receiver.__name__} was not connected: update adjust()")
        if request_receivers():
            raise RuntimeError("the app has other request-signal receivers: update adjust()")
    if variant == "bare":
        if app.middleware_stack is not None:
            raise RuntimeError("the app's middleware stack is already built")
        app.user_middleware[:] = [
            m for m in app.user_middleware if _name(m.cls) not in SIGNAL_MIDDLEWARE
        ]
        disable_model_signals(Base)
    panel = app.state.panel
    started = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with started(application) as state:
            if variant != "shipped":
                panel.stop()  # the lifespan started it; its own stop() later does nothing
            report = {
                "variant": variant,
                "tracing": tracing.tracing_active(),
                "panel_running": panel.running,
                "request_receivers": request_receivers(),
                "model_signals": model_signals_enabled(Base),
                "middleware": [_name(m.cls) for m in app.user_middleware],
            }
            state_file.write_text(json.dumps(report))
            yield state

    app.router.lifespan_context = lifespan


def _name(cls: object) -> str:
    return str(getattr(cls, "__name__", cls))


ProfileStats = dict[Any, Any]  # what cProfile.Profile.stats holds


class ThreadProfilers:
    """cProfile in every thread of the server, counting only between SIGUSR1 and
    SIGUSR2; at SIGUSR2, writes the stats to *out* (one file per thread, then
    ``done``).

    On Python 3.11 a profiler sees one thread: each thread gets its own, started by
    ``threading.setprofile()`` (the server's threads are made after this), which
    counts its CPU time. On 3.12+ one profiler sees every thread (``sys.monitoring``),
    their calls mixed in one stack: it counts wall time, and its figures are rough.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.profilers: list[Any] = []
        self.start: list[ProfileStats] = []
        self._add()
        if PER_THREAD_PROFILES:
            threading.setprofile(self._start_thread)
        signal.signal(signal.SIGUSR1, self._mark)
        signal.signal(signal.SIGUSR2, self._dump)

    def _add(self) -> None:
        # CPU time, not wall time: a thread waiting for work, a lock or the disk costs nothing.
        profiler = cProfile.Profile(time.thread_time) if PER_THREAD_PROFILES else cProfile.Profile()
        with self.lock:
            self.profilers.append(profiler)
        profiler.enable()

    def _start_thread(self, frame: FrameType, event: str, arg: object) -> None:
        self._add()  # replaces this function as the thread's profiler

    def _snapshots(self) -> list[ProfileStats]:
        with self.lock:
            profilers = list(self.profilers)
        snapshots = []
        for profiler in profilers:
            profiler.snapshot_stats()  # reads, without stopping it
            snapshots.append(profiler.stats)
        return snapshots

    def _mark(self, signum: int, frame: FrameType | None) -> None:
        self.start = self._snapshots()

    def _dump(self, signum: int, frame: FrameType | None) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for number, end in enumerate(self._snapshots()):
            before = self.start[number] if number < len(self.start) else {}
            delta = _minus(end, before)
            if delta:
                with open(self.out / f"thread-{number}.prof", "wb") as file:
                    marshal.dump(delta, file)
        (self.out / "done").touch()


def _minus(end: ProfileStats, before: ProfileStats) -> ProfileStats:
    """The calls of *end* that *before* had not counted yet."""
    delta = {}
    for func, (*figures, callers) in end.items():
        was = before.get(func, (0, 0, 0.0, 0.0, {}))
        counted = tuple(a - b for a, b in zip(figures, was, strict=False))
        calls = {
            caller: tuple(a - b for a, b in zip(now, was[4].get(caller, (0, 0, 0, 0)), strict=True))
            for caller, now in callers.items()
        }
        if counted[1] > 0:  # the number of calls
            delta[func] = (*counted, {c: now for c, now in calls.items() if now[0] > 0})
    return delta


# -- starting and stopping servers --------------------------------------------------------------


class ServerProcess:
    """``serve()`` in a subprocess of its own session (a Ctrl+C in the terminal
    reaches only this process, which stops it)."""

    def __init__(
        self, variant: str, data_dir: Path, database_url: str, cprofile_dir: Path | None = None
    ) -> None:
        self.variant = variant
        self.data_dir = data_dir
        self.log = data_dir / "server.log"
        self.state_file = data_dir / "state.json"
        data_dir.mkdir(parents=True)
        path = [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]
        env = {
            **os.environ,
            "TODO_DATA_DIR": str(data_dir),
            "TODO_SECRET_KEY": SECRET_KEY,
            "DATABASE_URL": database_url,
            "PYTHONPATH": os.pathsep.join(p for p in path if p),  # this checkout's code
        }
        env.pop("TODO_SECURE_COOKIES", None)  # plain HTTP
        cmd = [__file__, "--serve", variant, "--server-log", str(self.log)]
        if cprofile_dir is not None:
            cmd += ["--cprofile-dir", str(cprofile_dir)]
        self.proc = harness.start_child(cmd, env=env, cwd=ROOT, start_new_session=True)
        self.cprofile_dir = cprofile_dir
        self.port = 0
        self.state: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until the app has started and answers; then check what it runs."""
        said = harness.read_announcement(self.proc, timeout)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        if said is None:
            raise RuntimeError(self.failure("did not start"))
        self.port = int(said["port"])
        if not harness.wait_for(self.state_file.exists, self.proc, timeout):
            raise RuntimeError(self.failure("did not start its app"))
        self.state = json.loads(self.state_file.read_text())
        answer = harness.http_get(HOST, self.port, "/api/todos", timeout=max(1.0, timeout))
        if not answer.startswith(b"HTTP/1.1 401"):  # not logged in
            raise RuntimeError(self.failure(f"answered {answer[:200]!r}"))
        self.check_state()

    def check_state(self) -> None:
        expected = {**EXPECTED[self.variant], "panel_running": EXPECTED[self.variant]["tracing"]}
        wrong = {k: self.state.get(k) for k, v in expected.items() if self.state.get(k) != v}
        middleware = set(SIGNAL_MIDDLEWARE) & set(self.state.get("middleware", ()))
        if middleware != (set() if self.variant == "bare" else set(SIGNAL_MIDDLEWARE)):
            wrong["middleware"] = self.state.get("middleware")
        if wrong:
            raise RuntimeError(f"the {self.variant} server runs {wrong}, not {expected}")

    def failure(self, what: str) -> str:
        return f"the {self.variant} server {what}; its log ends with:\n{log_tail(self.log)}"

    def stop(self) -> None:
        harness.stop_process(self.proc, STOP_TIMEOUT)


def log_tail(log: Path, lines: int = 30) -> str:
    """The end of a server's log, without the access log's successful requests."""
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return "   (no log)"
    kept = [line for line in text if not re.search(r'HTTP/1\.1" [23]\d\d ', line)]
    return "\n".join("   " + line for line in kept[-lines:]) or "   (empty)"


class Databases:
    """A fresh database per server: a SQLite file in its data directory, or a
    PostgreSQL schema of its own (``options=-csearch_path=...``), dropped at the end."""

    def __init__(self, url: str | None, stack: contextlib.ExitStack) -> None:
        self.url = url
        self.stack = stack
        self.description = f"SQLite {sqlite3.sqlite_version}, WAL, in a temporary directory"
        if url is None:
            return
        from sqlalchemy import create_engine, make_url, text

        self.admin = create_engine(url, isolation_level="AUTOCOMMIT")
        stack.callback(self.admin.dispose)
        with self.admin.connect() as connection:
            version = connection.execute(text("SHOW server_version")).scalar()
        host = make_url(url).render_as_string(hide_password=True)
        self.description = f"PostgreSQL {version} at {host}, a schema per server"

    def url_for(self, data_dir: Path) -> str:
        if self.url is None:
            return f"sqlite:///{data_dir / 'todo.db'}"
        from sqlalchemy import make_url, text

        schema = f"bench_todo_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))

        def drop() -> None:
            with self.admin.connect() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))

        self.stack.callback(drop)
        url = make_url(self.url).update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)


# -- the clients --------------------------------------------------------------------------------


_SET_COOKIE = re.compile(
    rb"\r\nset-cookie:[ \t]*" + COOKIE.encode() + rb"=([^;\r\n]*)([^\r\n]*)", re.I
)
_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)


class Connection:
    """One user's keep-alive HTTP/1.1 connection, from its own loopback address,
    keeping the session cookie as a browser would. Opened on first use, and again
    after a failure."""

    def __init__(self, port: int, address: str | None, cookie: str | None = None) -> None:
        self.port = port
        self.address = address
        self.cookie = cookie
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, payload: object = None) -> tuple[int, bytes]:
        """Send one request and read its answer: (status, body). Raises OSError,
        asyncio.IncompleteReadError or harness.ProtocolError (and the connection is closed)."""
        if self.streams is None:
            local = None if self.address is None else (self.address, 0)
            self.streams = await asyncio.open_connection(HOST, self.port, local_addr=local)
        reader, writer = self.streams
        lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{self.port}"]
        if self.cookie:
            lines.append(f"Cookie: {COOKIE}={self.cookie}")
        body = b""
        if payload is not None:
            body = json.dumps(payload).encode()
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        try:
            writer.write("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
            return await self._answer(reader)
        except BaseException:  # also cancelled (timed out): the answer is lost
            self.close()
            raise

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        status, head, data = await harness.read_answer(reader)
        if cookie := _SET_COOKIE.search(head):
            expired = b"01 Jan 1970" in cookie.group(2)
            self.cookie = None if expired else cookie.group(1).decode()
        if _CLOSE.search(head):
            self.close()
        return status, data

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


@dataclass
class User:
    name: str
    address: str | None
    cookie: str | None = None


@dataclass
class Window:
    """One timed stretch of load: the requests that completed inside it."""

    start: float  # time.perf_counter()
    end: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    errors: int = 0  # in the whole run, warm-up included
    error_samples: list[str] = field(default_factory=list)
    server_cpu: float | None = None  # seconds, during the window
    client_cpu: float = 0.0

    def done(self, kind: str, started: float, ended: float) -> None:
        if self.start <= ended < self.end:
            self.latencies[kind].append(ended - started)

    def failed(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what)

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def requests(self) -> int:
        return sum(map(len, self.latencies.values()))

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def all_latencies(self) -> list[float]:
        return [t for kind in KINDS for t in self.latencies[kind]]


async def call(
    conn: Connection,
    window: Window,
    kind: str,
    expected: int,
    method: str,
    path: str,
    payload: object = None,
) -> bytes | None:
    """One request of the mix, timed; its body, or None if it failed."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            status, body = await conn.request(method, path, payload)
    except harness.CONNECTION_ERRORS as e:
        window.failed(f"{method} {path}: {type(e).__name__}: {e}")
        return None
    ended = time.perf_counter()
    if status != expected:
        window.failed(f"{method} {path}: {status} {body[:200]!r}")
        return None
    window.done(kind, started, ended)
    return body


async def cycle(conn: Connection, window: Window, user: User, number: int) -> None:
    """The CRUD mix, once: create, list, get, patch (text and done), delete."""
    text = f"{user.name} todo {number}"
    created = await call(conn, window, "create", 201, "POST", "/api/todos", {"text": text})
    if created is None:
        return
    path = f"/api/todos/{json.loads(created)['id']}"
    await call(conn, window, "list", 200, "GET", "/api/todos")
    await call(conn, window, "get", 200, "GET", path)
    changed = await call(
        conn, window, "patch", 200, "PATCH", path, {"text": text + " (edited)", "done": True}
    )
    if changed is not None and json.loads(changed)["done"] is not True:
        window.failed(f"PATCH {path}: not done: {changed[:200]!r}")
    await call(conn, window, "delete", 204, "DELETE", path)


async def run_load(
    port: int,
    server_pid: int,
    users: list[User],
    warmup: float,
    duration: float,
    at_start: Callable[[], object] = lambda: None,
    at_end: Callable[[], object] = lambda: None,
) -> Window:
    """Every user runs the mix in a loop for *warmup* + *duration* seconds, finishing
    its cycle after that; the last *duration* seconds are the window. *at_start* and
    *at_end* are called as the window starts and ends."""
    now = time.perf_counter()
    window = Window(now + warmup, now + warmup + duration)

    async def client(user: User) -> None:
        conn = Connection(port, user.address, user.cookie)
        number = 0
        try:
            while time.perf_counter() < window.end:
                number += 1
                await cycle(conn, window, user, number)
        finally:
            conn.close()
            user.cookie = conn.cookie

    async def measure() -> None:
        await asyncio.sleep(max(0.0, window.start - time.perf_counter()))
        client_before, server_before = time.process_time(), harness.cpu_seconds(server_pid)
        at_start()
        await asyncio.sleep(max(0.0, window.end - time.perf_counter()))
        client_after, server_after = time.process_time(), harness.cpu_seconds(server_pid)
        at_end()
        window.client_cpu = client_after - client_before
        if server_before is not None and server_after is not None:
            window.server_cpu = server_after - server_before

    # Bounded: a cycle is five requests, each with its own timeout.
    async with asyncio.timeout(warmup + duration + 6 * REQUEST_TIMEOUT):
        await asyncio.gather(measure(), *(client(user) for user in users))
    return window


async def make_users(port: int, addresses: list[str | None], todos: int) -> list[User]:
    """Register and log in a user per address through the API, one after another
    (password hashing takes one request at a time); then give each *todos* todos."""
    users = []
    for number, address in enumerate(addresses):
        user = User(f"bench{number:03d}", address)
        conn = Connection(port, address)
        credentials = {"username": user.name, "password": PASSWORD}
        for path, expected in (("/api/users", 201), ("/api/session", 200)):
            status, body = await asyncio.wait_for(
                conn.request("POST", path, credentials), REQUEST_TIMEOUT
            )
            if status != expected:
                raise RuntimeError(f"POST {path} for {user.name}: {status} {body[:300]!r}")
        conn.close()
        user.cookie = conn.cookie
        users.append(user)

    async def add_todos(user: User) -> None:
        conn = Connection(port, user.address, user.cookie)
        try:
            for number in range(todos):
                payload = {"text": f"{user.name} has {number} things to do"}
                status, body = await asyncio.wait_for(
                    conn.request("POST", "/api/todos", payload), REQUEST_TIMEOUT
                )
                if status != 201:
                    raise RuntimeError(f"POST /api/todos for {user.name}: {status} {body!r}")
        finally:
            conn.close()

    await asyncio.gather(*(add_todos(user) for user in users))
    return users


def client_addresses(count: int) -> list[str | None]:
    """127.0.0.2, .3, ...: a loopback address per client, where the system has them
    (Linux routes all of 127/8 to the loopback); else None (127.0.0.1) for all."""
    if count > 253:
        raise ValueError("at most 253 clients, one per loopback address")
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
    except OSError:
        return [None] * count
    return [f"127.0.0.{number + 2}" for number in range(count)]


# -- figures ------------------------------------------------------------------------------------


def percentile(ordered: list[float], p: float) -> float:
    """The nearest-rank *p*-th percentile of *ordered* (sorted), NaN if empty."""
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def latency_ms(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    figures = {f"p{p}": percentile(ordered, p) * 1000 for p in (50, 90, 99)}
    figures["max"] = ordered[-1] * 1000 if ordered else math.nan
    return figures


@dataclass
class Variant:
    name: str
    server: ServerProcess
    users: list[User] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)

    @property
    def title(self) -> str:
        return VARIANTS[self.name]

    @property
    def rps(self) -> float:
        return harness.median(w.rps for w in self.windows)

    @property
    def requests(self) -> int:
        return sum(w.requests for w in self.windows)

    @property
    def errors(self) -> int:
        return sum(w.errors for w in self.windows)

    def latency(self, kind: str | None = None) -> dict[str, float]:
        kinds = KINDS if kind is None else (kind,)
        return latency_ms([t for w in self.windows for k in kinds for t in w.latencies[k]])

    def server_cpu_ms(self) -> float | None:
        """Server CPU time per request, over every window."""
        used = [w.server_cpu for w in self.windows]
        if any(u is None for u in used) or not self.requests:
            return None
        return 1000 * sum(u for u in used if u is not None) / self.requests

    def server_cores(self) -> float | None:
        used = [w.server_cpu for w in self.windows]
        if any(u is None for u in used):
            return None
        return sum(u for u in used if u is not None) / sum(w.seconds for w in self.windows)

    def client_cpu_us(self) -> float:
        return 1e6 * sum(w.client_cpu for w in self.windows) / max(1, self.requests)

    def paired_ratio(self, base: Variant) -> float:
        """Median over rounds of requests/s against *base*'s in the same round."""
        rps = [[w.rps for w in variant.windows] for variant in (base, self)]
        return harness.median(harness.paired_ratios(*rps))


def summarize(variants: list[Variant]) -> dict[str, Any]:
    base = variants[0]
    out = {}
    for v in variants:
        latency, base_latency = v.latency(), base.latency()
        out[v.name] = {
            "title": v.title,
            "rps": v.rps,
            "rps_rounds": [w.rps for w in v.windows],
            "requests": v.requests,
            "errors": v.errors,
            "latency_ms": latency,
            "by_request_ms": {kind: v.latency(kind) for kind in KINDS},
            "rps_ratio": v.paired_ratio(base),
            "p50_ratio": latency["p50"] / base_latency["p50"],
            "p99_ratio": latency["p99"] / base_latency["p99"],
            "server_cpu_ms_per_request": v.server_cpu_ms(),
            "server_cores": v.server_cores(),
            "client_cpu_us_per_request": v.client_cpu_us(),
            "state": v.server.state,
            "pid": v.server.pid,
            "rounds": [
                {
                    "rps": w.rps,
                    "requests": w.requests,
                    "seconds": w.seconds,
                    "errors": w.errors,
                    "latency_ms": latency_ms(w.all_latencies()),
                    "server_cpu_s": w.server_cpu,
                    "client_cpu_s": w.client_cpu,
                }
                for w in v.windows
            ],
        }
    return out


SUMMARY_COLUMNS = harness.columns(
    ("variant", 14),
    ("req/s", 8),
    ("x", 6),
    ("p50 ms", 9),
    ("x", 6),
    ("p90 ms", 9),
    ("p99 ms", 9),
    ("x", 6),
    ("max ms", 9),
    ("errors", 7),
    ("cpu ms/req", 11),
    ("cores", 6),
)


def summary_row(name: str, s: dict[str, Any]) -> list[str]:
    lat = s["latency_ms"]
    return [
        name,
        f"{s['rps']:,.1f}",
        f"{s['rps_ratio']:.2f}",
        harness.fmt(lat["p50"], ".1f"),
        harness.fmt(s["p50_ratio"], ".2f"),
        harness.fmt(lat["p90"], ".1f"),
        harness.fmt(lat["p99"], ".1f"),
        harness.fmt(s["p99_ratio"], ".2f"),
        harness.fmt(lat["max"], ".1f"),
        str(s["errors"]),
        harness.fmt(s["server_cpu_ms_per_request"], ".2f"),
        harness.fmt(s["server_cores"], ".2f"),
    ]


def print_summary(variants: list[Variant], summary: dict[str, Any], cfg: Config) -> None:
    base = variants[0].name
    harness.heading(
        f"SUMMARY: {cfg.clients} clients, authenticated JSON CRUD; {cfg.rounds} round(s) of "
        f"{cfg.duration:g} s per variant; ratios to {base}"
    )
    harness.print_table(SUMMARY_COLUMNS, [summary_row(v.name, summary[v.name]) for v in variants])
    client = harness.median(summary[v.name]["client_cpu_us_per_request"] for v in variants)
    share = harness.median(
        sum(w.client_cpu for w in v.windows) / sum(w.seconds for w in v.windows) for v in variants
    )
    print("   (" + "; ".join(f"{v.name}: {v.title}" for v in variants) + ".")
    print(
        "   req/s: median of the rounds, x: median of the ratios round by round; latencies\n"
        "   over every request of every window; cpu ms/req and cores: the server process's\n"
        f"   CPU time. The load generator used {client:.0f} us of CPU per request, "
        f"{100 * share:.0f} % of a core.)"
    )
    harness.heading("latency by request, ms: p50 / p99 over every window")
    by_request = harness.columns(("request", 10), *((v.name, 18) for v in variants))
    rows = []
    for kind in KINDS:
        cells = [kind]
        for v in variants:
            lat = summary[v.name]["by_request_ms"][kind]
            cells.append(f"{harness.fmt(lat['p50'], '.1f')} / {harness.fmt(lat['p99'], '.1f')}")
        rows.append(cells)
    harness.print_table(by_request, rows)


# -- profiles -----------------------------------------------------------------------------------


def short_path(path: str) -> str:
    """*path* without what every line would repeat (site-packages, this checkout)."""
    for marker in ("site-packages/", "dist-packages/"):
        if marker in path:
            return path.split(marker, 1)[1]
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(ROOT))
    stdlib = os.path.dirname(os.__file__)
    return "stdlib/" + path[len(stdlib) + 1 :] if path.startswith(stdlib) else path


def find_py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


# Modules whose own time py_spy_top() counts with their caller's package.
HELPERS = {"contextlib", "functools", "typing", "weakref", "_weakrefset", "copy", "enum", "abc"}
HELPERS |= {"inspect", "re", "collections", "dataclasses", "types", "operator"}


def py_spy_top(raw: Path, top: int) -> dict[str, Any]:
    """From py-spy's raw (collapsed) stacks: the functions with the most samples of
    their own; the packages, each with the samples of its own code and of the
    helper modules it called; and this project's functions (todo/, tocsin/) with
    their callees."""
    own: dict[str, int] = {}
    packages: dict[str, int] = {}
    ours: dict[str, int] = {}
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        leaf = _frame(frames[-1])
        own[leaf] = own.get(leaf, 0) + count
        package = next((p for p in map(_package, reversed(frames)) if p not in HELPERS), "?")
        packages[package] = packages.get(package, 0) + count
        for frame in {
            _frame(f) for f in frames if f.endswith(")") and _package(f).startswith(OURS)
        }:
            ours[frame] = ours.get(frame, 0) + count

    def ranked(counts: dict[str, int], key: str = "function") -> list[dict[str, Any]]:
        best = sorted(counts.items(), key=lambda item: -item[1])[:top]
        return [{key: f, "percent": 100 * n / samples} for f, n in best]

    return {
        "samples": samples,
        "self": ranked(own),
        "packages": ranked(packages, "package"),
        "ours": ranked(ours),
    }


OURS = ("todo/", "tocsin")


def _package(frame: str) -> str:
    """``sqlalchemy``, ``asyncio``, ``threading``; this project's modules whole
    (``todo/panel.py``); ``abc`` for ``<frozen abc>``."""
    path = frame.rpartition(" (")[2].rpartition(":")[0]
    if path.startswith("<") and not path.startswith("<frozen "):
        return path  # <string>: code that SQLAlchemy or dataclasses generated
    head, _, rest = path.removeprefix("<frozen ").partition("/")
    if head in ("todo", "tocsin") and rest:
        return path
    return head.removesuffix(".py").removesuffix(">").lstrip("_") if head else "?"


def _frame(frame: str) -> str:
    name, _, where = frame.partition(" (")
    path, _, line = where.rstrip(")").rpartition(":")
    return f"{name} ({short_path(path)}:{line})" if path else frame


def cprofile_top(files: list[Path], requests: int, top: int) -> dict[str, Any]:
    """The functions with the most own and cumulative time, per request."""
    stats: ProfileStats = pstats.Stats(*map(str, files)).stats  # type: ignore[attr-defined]
    # Not the app: what marked the window (ThreadProfilers, cProfile), and what they called.
    ours = {__file__, getattr(pstats, "__file__", ""), getattr(cProfile, "__file__", "")}
    app: dict[tuple[str, int, str], tuple[int, float, float]] = {}  # calls, own, cumulative
    for func, (_, calls, own, cumulative, callers) in stats.items():
        if func[0] in ours or "_lsprof.Profiler" in func[2]:
            continue
        theirs = [figures for caller, figures in callers.items() if caller[0] in ours]
        if calls > sum(f[0] for f in theirs):
            app[func] = (
                calls - sum(f[0] for f in theirs),
                own - sum(f[2] for f in theirs),
                cumulative - sum(f[3] for f in theirs),
            )

    def label(func: tuple[str, int, str]) -> str:
        path, line, name = func
        return name if path == "~" else f"{name} ({short_path(path)}:{line})"

    def ranked(index: int) -> list[dict[str, Any]]:
        best = sorted(app.items(), key=lambda item: -item[1][index])[:top]
        return [
            {
                "function": label(func),
                "calls_per_request": calls / requests,
                "own_ms_per_request": 1000 * own / requests,
                "cumulative_ms_per_request": 1000 * cumulative / requests,
            }
            for func, (calls, own, cumulative) in best
        ]

    return {"requests": requests, "own": ranked(1), "cumulative": ranked(2)}


def profile_py_spy(variant: Variant, cfg: Config, top: int, save: Path | None) -> dict[str, Any]:
    """Load *variant*'s server once more, sampled by py-spy for the window: the
    thread holding the GIL, 100 times a second (pausing the process to read it)."""
    py_spy = find_py_spy()
    assert py_spy is not None
    server = variant.server
    out = server.data_dir / "py-spy.txt"
    seconds = max(1, round(cfg.duration))
    cmd = [py_spy, "record", "--pid", str(server.pid), "--duration", str(seconds), "--rate"]
    cmd += [str(PY_SPY_RATE), "--gil", "--format", "raw", "--function", "--output", str(out)]
    spy: list[subprocess.Popen[str]] = []

    def start() -> None:
        spy.append(
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )

    try:
        # The window outlasts py-spy's, which starts once it has attached.
        window = asyncio.run(
            run_load(server.port, server.pid, variant.users, cfg.warmup, seconds + 1.0, start)
        )
        output, _ = spy[0].communicate(timeout=PROFILE_TIMEOUT)
    finally:
        for process in spy:
            if process.poll() is None:
                process.kill()
                process.wait()
    if spy[0].returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed ({spy[0].returncode}):\n{output}")
    if save is not None:
        shutil.copyfile(out, save)
    result: dict[str, Any] = {"tool": "py-spy", "variant": variant.name, "rps": window.rps}
    result.update(py_spy_top(out, top))
    held = result["samples"] / (PY_SPY_RATE * seconds)
    print(
        f"\n== profile of {variant.name} by py-spy: the thread holding the GIL, "
        f"{result['samples']:,} samples\n   ({PY_SPY_RATE} a second for {seconds} s: "
        f"the GIL was held {100 * held:.0f} % of the time; {window.rps:,.1f} req/s meanwhile)"
    )
    for which, title in (
        ("self", "function, by own time"),
        ("packages", "package, by own time (and that of the helpers it calls: contextlib...)"),
        ("ours", "this project's functions (todo/, tocsin/), by own time and callees'"),
    ):
        print(f"   {'%':>6}  {title}")
        for row in result[which]:
            print(f"   {row['percent']:>6.1f}  {row.get('function') or row['package']}")
        print()
    return result


def profile_cprofile(
    variant: Variant, server: ServerProcess, cfg: Config, top: int, save: Path | None
) -> dict[str, Any]:
    """Load *server* (started with ``--cprofile-dir``), profiled for the window."""
    assert server.cprofile_dir is not None
    try:
        server.wait_ready()
        users = asyncio.run(make_users(server.port, [u.address for u in variant.users], cfg.todos))
        asyncio.run(run_load(server.port, server.pid, users, cfg.first_warmup, 0.0))
        window = asyncio.run(
            run_load(
                server.port,
                server.pid,
                users,
                cfg.warmup,
                cfg.duration,
                at_start=lambda: os.kill(server.pid, signal.SIGUSR1),
                at_end=lambda: os.kill(server.pid, signal.SIGUSR2),
            )
        )
        if not harness.wait_for(
            (server.cprofile_dir / "done").exists, server.proc, PROFILE_TIMEOUT
        ):
            raise RuntimeError(server.failure("wrote no profile"))
    finally:
        server.stop()
    if window.errors:
        raise RuntimeError(f"{window.errors} requests failed: {window.error_samples}")
    result: dict[str, Any] = {"tool": "cprofile", "variant": variant.name, "rps": window.rps}
    result["pid"] = server.pid
    files = sorted(server.cprofile_dir.glob("thread-*.prof"))
    if save is not None:
        pstats.Stats(*map(str, files)).dump_stats(save)
    result.update(cprofile_top(files, window.requests, top))
    print(
        f"\n== profile of {variant.name} by cProfile, every thread, {window.requests:,} requests "
        f"in {cfg.duration:g} s ({window.rps:,.1f} req/s: cProfile slows it down); "
        + ("CPU time" if PER_THREAD_PROFILES else "wall time, every thread in one profile")
    )
    for which, title in (("own", "own time"), ("cumulative", "cumulative time")):
        print(f"   {'calls/req':>10}{'own ms':>8}{'cum ms':>8}  function, by {title}, per request")
        for row in result[which]:
            print(
                f"   {row['calls_per_request']:>10.2f}{row['own_ms_per_request']:>8.3f}"
                f"{row['cumulative_ms_per_request']:>8.2f}  {row['function']}"
            )
        print()
    return result


# -- the run ------------------------------------------------------------------------------------


def filesystem_of(path: Path) -> str:
    """The type of the filesystem holding *path* (Linux: /proc/mounts), or '?'."""
    best, kind = "", "?"
    with contextlib.suppress(OSError), open("/proc/mounts") as mounts:
        for line in mounts:
            parts = line.split()
            if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    return kind


def header(cfg: Config, databases: Databases, addresses: list[str | None]) -> dict[str, Any]:
    names = ("tocsin", "fastapi", "starlette", "uvicorn", "sqlalchemy")
    versions = {name: harness.version(name) for name in names}
    http = "httptools" if harness.importable("httptools") else "h11"
    loop = "uvloop" if harness.importable("uvloop") else "asyncio"
    filesystem = filesystem_of(Path(tempfile.gettempdir()))
    where = (
        f"each from its own loopback address ({addresses[0]}-{addresses[-1]})"
        if addresses[0]
        else "all from 127.0.0.1"
    )
    info = harness.header(
        after=[
            (
                "app",
                ", ".join(f"{k} {v}" for k, v in versions.items()) + f"; uvicorn with {http} "
                f"and the {loop} loop (its defaults), one process per variant",
            ),
            (
                "database",
                databases.description + (f" ({filesystem})" if databases.url is None else ""),
            ),
            (
                "load",
                f"{cfg.clients} clients, {where}, a user and a keep-alive connection each, "
                f"{cfg.todos} todos each;",
            ),
            (
                "",
                f"warm-up {cfg.first_warmup:g} s per server, then {cfg.rounds} round(s): "
                f"{cfg.warmup:g} s of warm-up and {cfg.duration:g} s timed per variant, "
                "taking turns",
            ),
        ],
        # Uncommitted changes in the app count too: it is what the run measures.
        paths=("todo", "src", "benchmarks"),
    )
    return {
        **info,
        "versions": versions,
        "http": http,
        "loop": loop,
        "database": databases.description,
        "filesystem": filesystem,
    }


def run_rounds(variants: list[Variant], cfg: Config) -> None:
    """Warm every server up, then load them in turns, round after round."""
    for v in variants:
        warm = asyncio.run(run_load(v.server.port, v.server.pid, v.users, cfg.first_warmup, 0.0))
        if warm.errors:
            raise RuntimeError(f"{v.name}: {warm.errors} errors: {warm.error_samples}")
    for number in range(cfg.rounds):
        shown = []
        for v in harness.round_order(variants, number):
            window = asyncio.run(
                run_load(v.server.port, v.server.pid, v.users, cfg.warmup, cfg.duration)
            )
            v.windows.append(window)
            p99 = percentile(sorted(window.all_latencies()), 99) * 1000
            shown.append(f"{v.name} {window.rps:,.1f} req/s p99 {p99:,.0f} ms")
        print(f"   round {number + 1}/{cfg.rounds}: " + ", ".join(shown), flush=True)


def run(cfg: Config, names: list[str], args: argparse.Namespace) -> int:
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_todo-")))
        databases = Databases(args.database_url, stack)
        addresses = client_addresses(cfg.clients)
        info = header(cfg, databases, addresses)

        def make_server(data_dir: Path, variant: str, cprofile: bool = False) -> ServerProcess:
            server = ServerProcess(
                variant,
                data_dir,
                databases.url_for(data_dir),
                data_dir / "cprofile" if cprofile else None,
            )
            stack.callback(server.stop)
            return server

        variants = [Variant(name, make_server(root / name, name)) for name in names]
        for v in variants:  # started together, ready one after another
            v.server.wait_ready()
            v.users = asyncio.run(make_users(v.server.port, addresses, cfg.todos))
        run_rounds(variants, cfg)
        summary = summarize(variants)
        print_summary(variants, summary, cfg)
        profile = None
        if args.profile:
            tool = args.profile
            if tool == "auto":
                tool = "py-spy" if find_py_spy() else "cprofile"
            target = next(v for v in variants if v.name == args.profile_variant)
            if tool == "py-spy":
                profile = profile_py_spy(target, cfg, args.top, args.profile_out)
            else:
                server = make_server(root / "profile", target.name, cprofile=True)
                profile = profile_cprofile(target, server, cfg, args.top, args.profile_out)
        info["load_average_end"] = os.getloadavg()
        print("load average at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))

    harness.finish(started, args.json, cfg, info, variants=summary, profile=profile)
    errors = sum(v.errors for v in variants)
    if errors:
        print(f"\nFAILED: {errors} requests failed, for example:")
        for v in variants:
            for sample in (sample for w in v.windows for sample in w.error_samples):
                print(f"   {v.name}: {sample}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__)
    config = harness.config_options(
        parser,
        QUICK,
        DEFAULT,
        clients="concurrent clients (users)",
        duration="seconds timed per variant and round",
        rounds="rounds",
    )
    # These two may be zero.
    parser.add_argument("--todos", type=int, help="todos each user has besides its loop's, 10")
    parser.add_argument("--warmup", type=float, help="seconds of load before each window, 2")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, the first is the baseline (default: {','.join(VARIANTS)})",
    )
    parser.add_argument("--database-url", help="a PostgreSQL URL (default: a SQLite file)")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="auto",
        choices=("auto", "py-spy", "cprofile"),
        help="then profile a variant (auto: py-spy if installed, else cProfile)",
    )
    parser.add_argument("--profile-variant", default="shipped", choices=tuple(VARIANTS))
    parser.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    parser.add_argument(
        "--profile-out",
        metavar="PATH",
        type=Path,
        help="also keep the profile (py-spy's raw stacks, or cProfile's stats for pstats)",
    )
    # The server, in a child process.
    parser.add_argument("--serve", choices=tuple(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--server-log", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cprofile-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.serve, args.server_log, args.cprofile_dir)

    for name in ("todos", "warmup"):
        if (getattr(args, name) or 0) < 0:
            parser.error(f"--{name} must not be negative")
    cfg = config(args, todos=args.todos, warmup=args.warmup)
    names = harness.comma_list(parser, "--variants", args.variants, VARIANTS)
    if not names or len(set(names)) != len(names):
        parser.error(f"--variants: choose among {', '.join(VARIANTS)}, each once")
    if args.profile and args.profile_variant not in names:
        parser.error("--profile-variant must be one of --variants")
    if args.profile == "py-spy" and find_py_spy() is None:
        parser.error("--profile py-spy: py-spy is not installed (pip install py-spy)")

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # unwinds at once, from inside the event loop too

    harness.exit_on_sigterm()  # unwinds, stopping the servers
    # Not asyncio.run()'s own Ctrl+C handling, which only cancels the load's main
    # task: a client's cleanup can absorb that, and the run would go on.
    signal.signal(signal.SIGINT, interrupt)
    try:
        return run(cfg, names, args)
    except KeyboardInterrupt:
        print("\ninterrupted: the servers were stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
