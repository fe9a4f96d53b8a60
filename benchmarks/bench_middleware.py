#!/usr/bin/env python3
"""Measure what tocsin's request-signal middleware costs a hello-world ASGI or WSGI app.

    python benchmarks/bench_middleware.py                    # the full run (about 2 minutes)
    python benchmarks/bench_middleware.py --quick            # a few seconds: smoke test only
    python benchmarks/bench_middleware.py --in-process-only  # no server, no load generator
    python benchmarks/bench_middleware.py --json out.json    # also write every number

In process and under uvicorn, the cases and the target: benchmarks/README.md
("Request-signal middleware").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import _harness as harness
from tocsin.signals import got_request_exception, request_finished, request_started

perf_counter_ns = time.perf_counter_ns

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Environ = dict[str, Any]
WSGIApp = Callable[[Environ, Callable[..., Any]], Iterable[bytes]]

TARGET = harness.Target(3.0, unit="%")  # issue 3: at most 3 % fewer requests/s
HOST = "127.0.0.1"
SIGNALS = {
    "request_started": request_started,
    "request_finished": request_finished,
    "got_request_exception": got_request_exception,
}
# What one successful request sends.
EXPECTED_CALLS = {"request_started": 1, "request_finished": 1, "got_request_exception": 0}
RECEIVER_KINDS = ("none", "async", "sync", "sync-on-loop")
# The least any request-signal middleware costs: one receiver per signal called
# directly, with no dispatcher (async receivers under ASGI, sync ones under WSGI).
FLOOR = "floor"
CASE_TITLES = {
    "bare": "bare app (no middleware)",
    FLOOR: "floor: 1 receiver each, called directly",
    "none": "middleware, no receivers",
    "async": "middleware, 1 async receiver each",
    "sync": "middleware, 1 sync receiver each",
    # The signals' sync_receivers_on_loop set: asend() calls them on the loop.
    "sync-on-loop": "middleware, 1 sync receiver each, on the loop",
}
SERVER_VARIANTS = ("bare", FLOOR, "none", "async", "sync", "sync-on-loop")


@dataclass(frozen=True)
class Config:
    name: str
    repeats: int  # in-process samples per case
    sample_ns: int  # calibrated duration of one in-process sample
    rounds: int  # server samples per variant
    duration: float  # seconds of load per server sample
    warmup: float  # seconds of load per server before the first round
    connections: int


DEFAULT = Config("default", 7, 80_000_000, rounds=3, duration=5.0, warmup=1.0, connections=32)
QUICK = Config("quick", 2, 2_000_000, rounds=1, duration=1.0, warmup=0.3, connections=32)


# -- the apps ------------------------------------------------------------------------------

BODY = b"Hello, world!"
ASGI_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]
WSGI_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


async def hello_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    """The smallest real ASGI app: one response, no framework. (No lifespan: run
    it with ``lifespan="off"``.)"""
    await send({"type": "http.response.start", "status": 200, "headers": ASGI_HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def hello_wsgi(environ: Environ, start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", WSGI_HEADERS)
    return [BODY]


def asgi_app(kind: str, receivers: Receivers) -> ASGIApp:
    """``hello_asgi``, bare (*kind* ``"bare"``), in the floor or in the middleware."""
    from tocsin.contrib.asgi import RequestSignalsMiddleware

    if kind == FLOOR:
        return FloorASGI(hello_asgi, receivers.functions)
    return hello_asgi if kind == "bare" else RequestSignalsMiddleware(hello_asgi)


def wsgi_app(kind: str, receivers: Receivers) -> WSGIApp:
    from tocsin.contrib.wsgi import RequestSignalsMiddleware

    if kind == FLOOR:
        return FloorWSGI(hello_wsgi, receivers.functions)
    return hello_wsgi if kind == "bare" else RequestSignalsMiddleware(hello_wsgi)


class FloorASGI:
    """The least an ASGI middleware sending the request signals can do: await one
    receiver per signal itself, ``request_started`` before the app,
    ``request_finished`` after the response's last body (or once the app ends
    without one), ``got_request_exception`` if the app raises. What the middleware
    costs beyond this is what Django's semantics add: the dispatcher, a copy of the
    context per send, and ``request_finished`` in a task the app cannot cancel."""

    def __init__(self, app: ASGIApp, receivers: dict[str, Callable[..., Any]]) -> None:
        self.app = app
        self.started = receivers["request_started"]
        self.finished = receivers["request_finished"]
        self.failed = receivers["got_request_exception"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sender = FloorASGI
        await self.started(sender=sender, scope=scope)
        done = False

        async def send_and_finish(message: Message) -> None:
            nonlocal done
            await send(message)
            last = message["type"] == "http.response.body" and not message.get("more_body")
            if last and not done:
                done = True
                await self.finished(sender=sender, scope=scope)

        try:
            await self.app(scope, receive, send_and_finish)
        except Exception as exc:
            await self.failed(sender=sender, scope=scope, exception=exc)
            raise
        finally:
            if not done:
                done = True
                await self.finished(sender=sender, scope=scope)


class FloorWSGI:
    """:class:`FloorASGI` for WSGI: sync receivers, ``request_finished`` on ``close()``."""

    def __init__(self, app: WSGIApp, receivers: dict[str, Callable[..., Any]]) -> None:
        self.app = app
        self.started = receivers["request_started"]
        self.finished = receivers["request_finished"]
        self.failed = receivers["got_request_exception"]

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        self.started(sender=FloorWSGI, environ=environ)
        try:
            response = self.app(environ, start_response)
        except Exception as exc:
            self.failed(sender=FloorWSGI, environ=environ, exception=exc)
            self.finished(sender=FloorWSGI, environ=environ)
            raise
        return _FloorResponse(response, lambda: self.finished(sender=FloorWSGI, environ=environ))


class _FloorResponse:
    def __init__(self, response: Iterable[bytes], finish: Callable[[], None]) -> None:
        self.response = response
        self.finish = finish

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.response)

    def close(self) -> None:
        try:
            close = getattr(self.response, "close", None)
            if close is not None:
                close()
        finally:
            self.finish()


class Receivers:
    """One receiver (sync or async) on each request signal, counting its calls. The
    floor's are not connected: its app calls them (async ones under ASGI)."""

    def __init__(self, kind: str, protocol: str = "asgi") -> None:
        self.kind = kind
        self.asynchronous = kind == "async" or (kind == FLOOR and protocol == "asgi")
        self.calls = dict.fromkeys(SIGNALS, 0)
        self.functions = {name: self._make(name) for name in SIGNALS}

    def _make(self, name: str) -> Callable[..., Any]:
        calls = self.calls

        def on_signal(sender: object = None, **kw: Any) -> None:
            calls[name] += 1

        async def on_signal_async(sender: object = None, **kw: Any) -> None:
            calls[name] += 1

        return on_signal_async if self.asynchronous else on_signal

    def connect(self) -> None:
        if self.kind in ("none", FLOOR):
            return
        for name, function in self.functions.items():
            SIGNALS[name].connect(function)
            SIGNALS[name].sync_receivers_on_loop = self.kind == "sync-on-loop"

    def disconnect(self) -> None:
        if self.kind == FLOOR:
            return
        for name, function in self.functions.items():
            SIGNALS[name].disconnect(function)
            SIGNALS[name].sync_receivers_on_loop = False

    @contextmanager
    def connected(self) -> Iterator[None]:
        """Connected for the block only: a case's receivers must not slow the others."""
        self.connect()
        try:
            yield
        finally:
            self.disconnect()

    def check(self, before: dict[str, int], what: str) -> None:
        """Check (untimed) that one request reached each receiver as it should."""
        if self.kind == "none":
            return
        got = {name: self.calls[name] - before[name] for name in SIGNALS}
        if got != EXPECTED_CALLS:
            raise RuntimeError(f"{what}: one request made the receivers see {got}")


def check_no_listeners() -> None:
    for name, sig in SIGNALS.items():
        if sig.has_listeners():
            raise RuntimeError(f"{name} already has receivers: the cases would not be alike")


# -- in-process drivers --------------------------------------------------------------------


def make_scope() -> Scope:
    """An HTTP scope like the one uvicorn builds for ``GET /``."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": (HOST, 8000),
        "client": (HOST, 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench")],
        "state": {},
    }


def make_environ() -> Environ:
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": HOST,
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


async def receive_request() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def discard(message: Message) -> None:
    return None


def write(data: bytes) -> None:
    return None


def start_response(
    status: str, headers: list[tuple[str, str]], exc_info: object = None
) -> Callable[[bytes], None]:
    return write


def asgi_runner(app: ASGIApp) -> harness.Runner:
    """``await app(scope, receive, send)`` *loops* times, timed inside one event loop."""
    scope = make_scope()

    async def timed_loop(loops: int) -> int:
        a, s, r, w = app, scope, receive_request, discard
        t0 = perf_counter_ns()
        for _ in repeat(None, loops):
            await a(s, r, w)
        return perf_counter_ns() - t0

    def run(loops: int) -> int:
        return asyncio.run(timed_loop(loops))

    return run


def wsgi_runner(app: WSGIApp) -> harness.Runner:
    """What a WSGI server does *loops* times: call, iterate the response, close it."""
    environ = make_environ()

    def run(loops: int) -> int:
        a, e, sr = app, environ, start_response
        t0 = perf_counter_ns()
        for _ in repeat(None, loops):
            response = a(e, sr)
            for _chunk in response:
                pass
            close = getattr(response, "close", None)
            if close is not None:
                close()
        return perf_counter_ns() - t0

    return run


def asgi_once(app: ASGIApp) -> list[Message]:
    sent: list[Message] = []

    async def keep(message: Message) -> None:
        sent.append(message)

    async def request() -> None:
        await app(make_scope(), receive_request, keep)

    asyncio.run(request())
    return sent


def check_asgi(app: ASGIApp, what: str) -> None:
    sent = asgi_once(app)
    if [m["type"] for m in sent] != ["http.response.start", "http.response.body"]:
        raise RuntimeError(f"{what}: unexpected messages {sent}")
    if sent[0]["status"] != 200 or sent[1]["body"] != BODY:
        raise RuntimeError(f"{what}: unexpected response {sent}")


def check_wsgi(app: WSGIApp, what: str) -> None:
    statuses: list[str] = []

    def keep_status(
        status: str, headers: list[tuple[str, str]], exc_info: object = None
    ) -> Callable[[bytes], None]:
        statuses.append(status)
        return write

    response = app(make_environ(), keep_status)
    try:
        body = b"".join(response)
    finally:
        close = getattr(response, "close", None)
        if close is not None:
            close()
    if statuses != ["200 OK"] or body != BODY:
        raise RuntimeError(f"{what}: unexpected response {statuses} {body!r}")


# -- in-process sampling -------------------------------------------------------------------


@dataclass
class Case:
    """One app (bare, or in the middleware with some receivers) and its timed loop."""

    kind: str  # "bare" or a receiver kind
    run: harness.Runner
    receivers: Receivers

    @property
    def title(self) -> str:
        return CASE_TITLES[self.kind]


@dataclass
class Result:
    kind: str
    title: str
    samples: list[float]  # us/request, one per sample

    @property
    def best(self) -> float:
        return harness.best(self.samples)


def make_cases(protocol: str) -> list[Case]:
    """The cases of *protocol* (``"asgi"`` or ``"wsgi"``), each checked once."""
    check_no_listeners()
    cases = []
    for kind in ("bare", FLOOR, *RECEIVER_KINDS):
        receivers = Receivers("none" if kind == "bare" else kind, protocol)
        what = f"{protocol} {CASE_TITLES[kind]}"
        receivers.connect()
        try:
            before = dict(receivers.calls)
            if protocol == "asgi":
                app = asgi_app(kind, receivers)
                check_asgi(app, what)
                run = asgi_runner(app)
            else:
                wapp = wsgi_app(kind, receivers)
                check_wsgi(wapp, what)
                run = wsgi_runner(wapp)
            receivers.check(before, what)
        finally:
            receivers.disconnect()
        cases.append(Case(kind, run, receivers))
    return cases


def run_cases(cases: list[Case], cfg: Config) -> dict[str, Result]:
    """Calibrate every case, then sample them round-robin (receivers connected only
    while their own case runs)."""
    timed = [harness.TimedCase(c.kind, c.run, around=c.receivers.connected) for c in cases]
    samples = harness.sample_cases(timed, cfg.repeats, cfg.sample_ns)
    return {c.kind: Result(c.kind, c.title, [ns / 1000 for ns in samples[c.kind]]) for c in cases}


def print_in_process(protocol: str, title: str, results: dict[str, Result]) -> None:
    base = results["bare"].best
    harness.heading(f"{protocol} in-process: {title}")
    table = harness.columns(("case", 36), ("us/request", 12), ("added us", 11), ("overhead", 12))
    rows = []
    for kind, result in results.items():
        added = result.best - base
        shown = ["-", "(baseline)"] if kind == "bare" else [f"{added:+.2f}", f"{added / base:+.1%}"]
        rows.append([result.title, f"{result.best:.2f}", *shown])
    harness.print_table(table, rows)


# -- the server and its load -----------------------------------------------------------------


def serve(kind: str) -> int:
    """Child process: serve ``asgi_app(kind)`` with uvicorn on a free loopback port.

    Prints one JSON line (the port, what uvicorn runs on) once the socket
    listens; exits when its stdin closes (the parent went away) or on SIGTERM.
    """
    import uvicorn

    receivers = Receivers("none" if kind == "bare" else kind)
    receivers.connect()
    sock = harness.listening_socket(HOST)
    config = uvicorn.Config(
        asgi_app(kind, receivers),
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=2048,
    )
    config.load()
    loop = "uvloop" if harness.importable("uvloop") else "asyncio"
    harness.announce(
        sock,
        server=f"uvicorn {harness.version('uvicorn')}",
        http=config.http_protocol_class.__name__,
        loop=loop,
    )
    uvicorn.Server(config).run(sockets=[sock])
    # Reached once uvicorn has shut down; the receivers lived until then.
    receivers.disconnect()
    return 0


class ServerProcess:
    """``serve(kind)`` in a subprocess, ready to take requests."""

    def __init__(self, kind: str, timeout: float = 30.0) -> None:
        self.kind = kind
        self.proc = harness.start_child([__file__, "--serve", kind])
        try:
            self.info = self._read_info(timeout)
            self.port = int(self.info["port"])
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _read_info(self, timeout: float) -> dict[str, Any]:
        info = harness.read_announcement(self.proc, timeout)
        if info is None:
            raise RuntimeError(f"the {self.kind} server did not start (see its errors above)")
        return info

    def _wait_ready(self, timeout: float) -> None:
        """Until a GET / gets the hello-world response."""
        if not harness.wait_for(self._answers, self.proc, timeout):
            raise RuntimeError(f"the {self.kind} server did not answer (see its errors above)")

    def _answers(self) -> bool:
        try:
            data = harness.http_get(HOST, self.port, "/")
        except OSError:  # not listening yet
            return False
        if data.startswith(b"HTTP/1.1 200") and data.endswith(BODY):
            return True
        raise RuntimeError(f"the {self.kind} server answered {data!r}")

    def cpu_seconds(self) -> float | None:
        """CPU time the server has used so far (Linux: /proc), all threads; None elsewhere."""
        return harness.cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        harness.stop_process(self.proc)


@dataclass
class Load:
    """One measured stretch of load."""

    rps: float
    requests: int
    errors: int  # failed connections or unexpected responses
    cpu_us: float | None = None  # server CPU time per request


class LoadGenerator:
    name = ""

    def run(self, port: int, connections: int, duration: float, warmup: float) -> Load:
        raise NotImplementedError


class Wrk(LoadGenerator):
    """``wrk -t1 -c<connections>``: keep-alive, one thread (one core), written in C."""

    def __init__(self, path: str) -> None:
        self.path = path
        out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
        version = (out.stdout + out.stderr).split()
        self.name = f"wrk {version[1] if len(version) > 1 else '?'} (-t1, keep-alive)"

    def run(self, port: int, connections: int, duration: float, warmup: float) -> Load:
        # No warm-up of its own: wrk connects in well under a millisecond, and the
        # servers are warmed up once before the first round.
        seconds = max(1, round(duration))  # wrk takes whole seconds
        cmd = [self.path, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s"]
        out = subprocess.run(
            [*cmd, f"http://{HOST}:{port}/"],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=False,
        )
        rps = re.search(r"Requests/sec:\s*([\d.]+)", out.stdout)
        total = re.search(r"(\d+) requests in", out.stdout)
        if out.returncode != 0 or rps is None or total is None:
            raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}{out.stderr}")
        return Load(float(rps.group(1)), int(total.group(1)), wrk_errors(out.stdout))


def wrk_errors(output: str) -> int:
    """Socket errors and non-2xx responses in wrk's report (it prints them only if any)."""
    errors = 0
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sockets:
        errors += sum(int(n) for n in sockets.groups())
    if non_2xx := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors += int(non_2xx.group(1))
    return errors


class AsyncioClient(LoadGenerator):
    """``--load-client``: HTTP/1.1 keep-alive over raw asyncio streams, in another process."""

    name = "asyncio client (raw streams, keep-alive, one process)"

    def run(self, port: int, connections: int, duration: float, warmup: float) -> Load:
        cmd = [sys.executable, __file__, "--load-client", str(port)]
        cmd += ["--connections", str(connections), "--duration", str(duration)]
        cmd += ["--warmup", str(warmup)]
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration + warmup + 60, check=False
        )
        if out.returncode != 0:
            raise RuntimeError(f"the load client failed ({out.returncode}):\n{out.stderr}")
        data = json.loads(out.stdout)
        return Load(data["requests"] / data["seconds"], data["requests"], data["errors"])


async def generate_load(port: int, connections: int, duration: float, warmup: float) -> Any:
    """Keep *connections* keep-alive connections busy with ``GET /``; count responses.

    Counting starts after *warmup* seconds and lasts *duration* seconds.
    """
    request = f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    counts = {"requests": 0, "errors": 0}
    stop = asyncio.Event()

    async def connection() -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(HOST, port)
            except OSError:
                counts["errors"] += 1
                await asyncio.sleep(0.01)
                continue
            try:
                while not stop.is_set():
                    writer.write(request)
                    status, _, _ = await harness.read_answer(reader)
                    if status != 200:
                        counts["errors"] += 1
                        break
                    counts["requests"] += 1
            except harness.CONNECTION_ERRORS:
                counts["errors"] += 1
            finally:
                writer.close()

    tasks = [asyncio.create_task(connection()) for _ in range(connections)]
    await asyncio.sleep(warmup)
    start_count, errors = counts["requests"], counts["errors"]
    t0 = time.perf_counter()
    await asyncio.sleep(duration)
    requests = counts["requests"] - start_count
    seconds = time.perf_counter() - t0
    errors = counts["errors"] - errors
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"requests": requests, "seconds": seconds, "errors": errors}


def load_client(port: int, connections: int, duration: float, warmup: float) -> int:
    """Child process: run ``generate_load`` and print its counts as JSON."""
    print(json.dumps(asyncio.run(generate_load(port, connections, duration, warmup))))
    return 0


def choose_load(wanted: str) -> LoadGenerator:
    """wrk if installed (or *wanted*), else the asyncio client, saying so."""
    path = shutil.which("wrk")
    if wanted == "asyncio":
        return AsyncioClient()
    if path is None:
        print(
            "note     wrk is not installed: the load comes from this script's asyncio client,\n"
            "         which may not keep uvicorn fully busy and then understates the overhead\n"
            "         (install wrk, e.g. apt-get install wrk, for a load generator written in C)"
        )
        return AsyncioClient()
    return Wrk(path)


@dataclass
class ServerResult:
    kind: str
    title: str
    loads: list[Load] = field(default_factory=list)

    @property
    def best(self) -> float:
        return harness.best((load.rps for load in self.loads), higher=True)

    @property
    def median(self) -> float:
        return harness.median(load.rps for load in self.loads)

    @property
    def cpu_us(self) -> float | None:
        """The least server CPU time per request of the rounds (None if not measurable)."""
        measured = [load.cpu_us for load in self.loads if load.cpu_us is not None]
        return min(measured) if measured else None

    @property
    def errors(self) -> int:
        return sum(load.errors for load in self.loads)


def run_server(cfg: Config, load: LoadGenerator) -> tuple[dict[str, ServerResult], dict[str, Any]]:
    """Every variant under uvicorn, all started first, then loaded in turn."""
    servers: dict[str, ServerProcess] = {}
    try:
        for kind in SERVER_VARIANTS:
            servers[kind] = ServerProcess(kind)
        info = servers["bare"].info
        print(
            f"server   {info['server']} ({info['http']}, {info['loop']} loop) on {HOST}, "
            f"one process per variant"
        )
        print(
            f"load     {load.name}, {cfg.connections} connections; {cfg.rounds} round(s) of "
            f"{cfg.duration:g} s per variant, taking turns, after a {cfg.warmup:g} s warm-up"
        )
        sys.stdout.flush()
        results = {kind: ServerResult(kind, CASE_TITLES[kind]) for kind in SERVER_VARIANTS}
        for server in servers.values():
            load.run(server.port, cfg.connections, cfg.warmup, 0)
        for i in range(cfg.rounds):
            shown = []
            for kind in harness.round_order(SERVER_VARIANTS, i):
                server = servers[kind]
                cpu_before = server.cpu_seconds()
                # No warm-up: the servers are warm, and the CPU time must match the count.
                measured = load.run(server.port, cfg.connections, cfg.duration, 0)
                cpu_after = server.cpu_seconds()
                if cpu_before is not None and cpu_after is not None and measured.requests:
                    measured.cpu_us = 1e6 * (cpu_after - cpu_before) / measured.requests
                results[kind].loads.append(measured)
                shown.append(f"{kind} {measured.rps:,.0f}")
            print(f"   round {i + 1}/{cfg.rounds}: " + ", ".join(shown) + " req/s")
            sys.stdout.flush()
        return results, {**info, "load": load.name}
    finally:
        for server in servers.values():
            server.stop()


def paired_slowdowns(base: ServerResult, other: ServerResult) -> list[float]:
    """Per round: how many % fewer requests/s than the bare app in the same round."""
    rps = [[load.rps for load in result.loads] for result in (base, other)]
    return [100 * (1 - r) for r in harness.paired_ratios(*rps)]


def print_server(results: dict[str, ServerResult]) -> None:
    base = results["bare"]
    harness.heading(
        "asgi under uvicorn: requests/s (best and median of the rounds), server CPU/request"
    )
    figures = (("median", 9), ("slower", 12), ("paired", 8), ("cpu us", 8), ("added", 8))
    table = harness.columns(("case", 36), ("best", 9), *figures, ("errors", 7))
    rows = []
    for kind, result in results.items():
        if kind == "bare":
            slower, paired, added = "(baseline)", "", ""
        else:
            slower = f"{100 * (1 - result.best / base.best):.1f}%"
            paired = f"{harness.median(paired_slowdowns(base, result)):.1f}%"
            cpu, base_cpu = result.cpu_us, base.cpu_us
            added = "-" if cpu is None or base_cpu is None else f"{cpu - base_cpu:+.1f}"
        cells = [result.title, f"{result.best:,.0f}", f"{result.median:,.0f}", slower, paired]
        rows.append([*cells, harness.fmt(result.cpu_us, ".1f"), added, str(result.errors)])
    harness.print_table(table, rows)
    print(
        "   (slower: best against best; paired: median over rounds of the drop against the\n"
        "   bare app's run of the same round; cpu us: the server process's CPU time per\n"
        "   request, least of the rounds (Linux only). The server and the load generator share\n"
        "   the machine's cores, so requests/s move by a few % from run to run; CPU time per\n"
        "   request is steadier.)"
    )
    sys.stdout.flush()


# -- summary ---------------------------------------------------------------------------------


def summarize(
    in_process: dict[str, dict[str, Result]], server: dict[str, ServerResult] | None
) -> list[dict[str, Any]]:
    """One row per middleware case; the target applies to the ASGI row with async receivers."""
    bare = server["bare"] if server else None
    rows = []
    for protocol in ("asgi", "wsgi"):
        results = in_process.get(protocol)
        if results is None and (protocol == "wsgi" or server is None):
            continue
        for kind in (FLOOR, *RECEIVER_KINDS):
            row: dict[str, Any] = {"protocol": protocol, "receivers": kind}
            row["added_us"] = added = results[kind].best - results["bare"].best if results else None
            row["estimated_percent"] = row["server_cpu_added_us"] = row["server_percent"] = None
            if protocol == "asgi" and server and bare:
                # The in-process cost added to the bare app's time per request under uvicorn.
                if added is not None:
                    row["estimated_percent"] = 100 * added / (1e6 / bare.best + added)
                cpu, base_cpu = server[kind].cpu_us, bare.cpu_us
                if cpu is not None and base_cpu is not None:
                    row["server_cpu_added_us"] = cpu - base_cpu
                row["server_percent"] = 100 * (1 - server[kind].best / bare.best)
            is_target = protocol == "asgi" and kind == "async"
            row["target"] = TARGET.text if is_target else "(info)"
            row["result"] = TARGET.verdict(row["server_percent"]) if is_target else "-"
            rows.append(row)
    return rows


SUMMARY_COLUMNS = [
    *harness.columns(
        ("case", 16), ("added us", 10), ("estimate", 12), ("added cpu us", 14), ("fewer req/s", 13)
    ),
    *harness.verdict_columns(8),
]


def print_summary(rows: list[dict[str, Any]], server_ran: bool) -> None:
    harness.heading(
        f"SUMMARY: middleware with one receiver on each signal; target: at most "
        f"{TARGET.limit:g}% fewer requests/s"
    )
    print(f"   {'':<16}{'-- in process --':^22}{'---- under uvicorn ----':^27}")
    harness.print_table(
        SUMMARY_COLUMNS,
        (
            [
                f"{row['protocol']}, {row['receivers']}",
                harness.fmt(row["added_us"], "+.2f"),
                harness.fmt(row["estimated_percent"], ".1f", suffix="%"),
                harness.fmt(row["server_cpu_added_us"], "+.1f"),
                harness.fmt(row["server_percent"], ".1f", suffix="%"),
                row["target"],
                row["result"],
            ]
            for row in rows
        ),
    )
    print(
        "   (added us: in process, per request, against the bare app. estimate: the requests/s\n"
        "   lost if uvicorn spent just that much more per request. added cpu us: the server's\n"
        "   CPU time per request, against the bare app's. fewer req/s: best against best; the\n"
        "   target is judged on it." + ("" if server_ran else " The server was not run.") + ")"
    )


def header(cfg: Config) -> dict[str, Any]:
    asgiref = harness.importable("asgiref")
    tocsin = harness.version("tocsin")
    info = harness.header(
        {"tocsin": tocsin},
        after=[
            (
                "mode",
                f"{cfg.name}: in process, {cfg.repeats} samples of ~{cfg.sample_ns / 1e6:g} ms "
                "per case, fastest reported, gc disabled while timing",
            ),
            (
                "",
                "sync receivers under asend() run "
                + ("in asgiref's sync_to_async (installed)" if asgiref else "in a worker thread")
                + "; async receivers under send() run "
                + ("in asgiref's async_to_sync" if asgiref else "in a private event loop"),
            ),
        ],
    )
    return {**info, "tocsin": tocsin}


def in_process_json(result: Result) -> dict[str, Any]:
    return {
        "title": result.title,
        "us_per_request": result.best,
        "median": harness.median(result.samples),
        "samples": result.samples,
    }


def server_json(result: ServerResult) -> dict[str, Any]:
    return {
        "title": result.title,
        "best_rps": result.best,
        "median_rps": result.median,
        "rps": [load.rps for load in result.loads],
        "requests": [load.requests for load in result.loads],
        "cpu_us_per_request": result.cpu_us,
        "cpu_us": [load.cpu_us for load in result.loads],
        "errors": result.errors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__)
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--in-process-only", action="store_true", help="do not run a server")
    only.add_argument("--server-only", action="store_true", help="only the uvicorn measurement")
    parser.add_argument(
        "--load",
        choices=("auto", "wrk", "asyncio"),
        default="auto",
        help="load generator for the server measurement (auto: wrk if installed)",
    )
    config = harness.config_options(
        parser,
        QUICK,
        DEFAULT,
        duration="seconds of load per server sample",
        rounds="server samples per variant",
        connections="concurrent connections of the load",
    )
    # The child processes: a server, and the asyncio load client.
    parser.add_argument("--serve", choices=SERVER_VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--load-client", metavar="PORT", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cfg = config(args)

    if args.load == "wrk" and not args.in_process_only and shutil.which("wrk") is None:
        parser.error("--load wrk: wrk is not installed (on Debian/Ubuntu: apt-get install wrk)")
    if args.serve:
        return serve(args.serve)
    if args.load_client is not None:
        return load_client(args.load_client, cfg.connections, cfg.duration, args.warmup)

    started = time.perf_counter()
    info: dict[str, Any] = header(cfg)
    in_process: dict[str, dict[str, Result]] = {}
    titles = {
        "asgi": "raw ASGI hello world awaited directly (synthetic scope, receive, send)",
        "wsgi": "raw WSGI hello world called directly (call, iterate, close)",
    }
    if not args.server_only:
        for protocol in ("asgi", "wsgi"):
            in_process[protocol] = run_cases(make_cases(protocol), cfg)
            print_in_process(protocol, titles[protocol], in_process[protocol])

    server: dict[str, ServerResult] | None = None
    if not args.in_process_only:
        print()
        if harness.importable("uvicorn"):
            load = choose_load(args.load)
            server, info["server"] = run_server(cfg, load)
            print_server(server)
        else:
            harness.line("note", "uvicorn is not installed: no measurement under a server")

    rows = summarize(in_process, server)
    print_summary(rows, server is not None)
    harness.finish(
        started,
        args.json,
        cfg,
        info,
        target_percent=TARGET.limit,
        in_process={
            protocol: {kind: in_process_json(r) for kind, r in results.items()}
            for protocol, results in in_process.items()
        },
        server=server and {kind: server_json(r) for kind, r in server.items()},
        summary=rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
