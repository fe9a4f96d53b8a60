"""The app the fault tests run in worker processes (tests/remote/test_faults.py).

``python -m tocsin worker remote_app`` (run from this directory) imports it and finds
:data:`remote`; the environment says where everything is:

==========================  ==========================================================
``TOCSIN_FAULTS_REDIS_URL``  the Redis server (``redis://127.0.0.1:6379/0`` by default)
``TOCSIN_FAULTS_STREAM``     the stream, a new one for each test
``TOCSIN_FAULTS_RECORDS``    the directory where each process appends a line
                             ``<event id> <pid>`` for every event it handled
``TOCSIN_FAULTS_SLEEP``      the longest pause, in seconds, before each event is
                             recorded (a random one, so batches take time); 0 by default
``TOCSIN_FAULTS_ASYNC``      ``1``: an :class:`AsyncRedisStreamsTransport`, so the
                             command runs an ``AsyncWorker``
==========================  ==========================================================

Each record is written with one ``write()`` to a file opened for appending and closed
again, so it survives a ``SIGKILL`` of the process that wrote it. A record means the
receiver finished; the worker acknowledges the event later, after its whole batch.

The tests make an app of their own with :func:`make_app` for the same stream: its
``work.send(n=...)`` publishes the events the workers handle.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from typing import Any

from tocsin import Signal
from tocsin.remote import AsyncRedisStreamsTransport, RedisStreamsTransport, Remote, current_event

REDIS_URL = "TOCSIN_FAULTS_REDIS_URL"
STREAM = "TOCSIN_FAULTS_STREAM"
RECORDS = "TOCSIN_FAULTS_RECORDS"
SLEEP = "TOCSIN_FAULTS_SLEEP"
ASYNC = "TOCSIN_FAULTS_ASYNC"

# Both kinds of app register their receiver under this name, so that a blocking
# publisher and an AsyncWorker agree on it.
RECEIVER = "remote_app.handle_work"


class App:
    """A remote and the signal whose sends it publishes for :func:`handle_work`."""

    __slots__ = ("remote", "work")

    def __init__(self, remote: Remote, work: Signal) -> None:
        self.remote = remote
        self.work = work


def make_app(url: str, stream: str, *, asynchronous: bool = False) -> App:
    """An app on *stream* at *url*; a new ``work`` signal each time, so that apps
    made for different tests never publish each other's sends."""
    transport = (
        AsyncRedisStreamsTransport(url=url) if asynchronous else RedisStreamsTransport(url=url)
    )
    remote = Remote(transport, stream=stream)
    work = Signal()
    remote.receiver(work, name=RECEIVER)(ahandle_work if asynchronous else handle_work)
    return App(remote, work)


class WorkFailed(Exception):
    """What :func:`handle_work` raises for an event sent with ``fail=True``."""


def handle_work(
    sender: object, *, n: int, fail: bool = False, kill: bool = False, **kwargs: Any
) -> None:
    """Kill this worker (SIGKILL) or fail if asked to, else pause a little and record
    the event as handled."""
    if kill:
        os.kill(os.getpid(), signal.SIGKILL)
    if fail:
        raise WorkFailed(f"work {n} always fails")
    time.sleep(_pause())
    _record()


async def ahandle_work(sender: object, *, n: int, fail: bool = False, **kwargs: Any) -> None:
    """:func:`handle_work` for an AsyncWorker, which awaits it in its loop."""
    if fail:
        raise WorkFailed(f"work {n} always fails")
    await asyncio.sleep(_pause())
    _record()


def _pause() -> float:
    return random.uniform(0.0, float(os.environ.get(SLEEP, "0")))


def _record() -> None:
    event = current_event()
    assert event is not None, "handle_work runs in a worker, for an event"
    pid = os.getpid()
    path = os.path.join(os.environ[RECORDS], f"{pid}.handled")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event.id} {pid}\n".encode())
    finally:
        os.close(fd)


app = make_app(
    os.environ.get(REDIS_URL, "redis://127.0.0.1:6379/0"),
    os.environ.get(STREAM, "tocsin-faults:events"),
    asynchronous=os.environ.get(ASYNC) == "1",
)
remote = app.remote
