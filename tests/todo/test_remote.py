"""todo_completed's remote receiver (todo/remote.py): published after the commit, run
by a worker (a thread of the app by default), and shown in the panel of the user
who clicked, in the click's request: the publish, then each attempt of the worker.
The Redis mode, with a real ``tocsin worker`` process, is at the end."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Client, _running, add_todo, csrf_token, register
from fastapi import FastAPI

import todo.models
import todo.remote
from tocsin.remote import Event as RemoteEvent
from tocsin.remote import MemoryTransport, Remote, Worker
from todo import Settings
from todo.models import Todo, User
from todo.remote import congratulation
from todo.text import printable

Event = dict[str, Any]
WAIT = 10.0  # seconds for the worker to report an attempt (a retry comes after 1 s)
PUBLISHER = "publish[todo.remote.congratulate] → todo:events"


def recent(client: Client) -> list[Event]:
    events: list[Event] = client.get("/signals/recent").json()
    return events


def click_done(client: Client, todo_id: int) -> str:
    """Click the todo's done button; returns the click's request label."""
    response = client.post(f"/todos/{todo_id}/done", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 303
    return f"POST /todos/{todo_id}/done"


def attempts(client: Client, request: str, count: int = 1) -> list[Event]:
    """The worker's attempts shown in *request*, once there are *count* of them."""
    deadline = time.monotonic() + WAIT
    while True:
        found = [e for e in recent(client) if e["type"] == "worker" and e["request"] == request]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} attempts shown in {WAIT} s"
        time.sleep(0.05)


def test_a_done_click_shows_the_publish_and_the_workers_attempt(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """The click's request shows the publish after the commit, then attempt 1, done."""
    caplog.set_level(logging.INFO, logger="todo")
    register(client, "ann")
    request = click_done(client, add_todo(client, "water plants"))

    (handled,) = attempts(client, request)
    post = [e for e in recent(client) if e["request"] == request]
    (published,) = (e for e in post if e.get("receiver") == PUBLISHER)
    assert published["type"] == "after_commit"
    assert published["state"] == "done"
    assert handled["request_id"] == published["request_id"]
    assert handled["receiver"] == "todo.remote.congratulate"
    assert handled["stream"] == "todo:events"  # TODO_REDIS_PREFIX's default
    assert (handled["attempt"], handled["state"], handled["error"]) == (1, "done", None)
    assert handled["ms"] >= 0
    assert handled["offset_ms"] >= published["offset_ms"]  # it ran after the publish
    assert handled["signal"] == "todo_completed"
    assert handled["kind"] == "app"

    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Worker:")]
    assert said == [
        f'Worker: well done, ann: "water plants" is done (todo 1, event {handled["event_id"]}, '
        "attempt 1)"
    ]


def test_another_user_never_sees_the_workers_attempt(make_client: Callable[[], Client]) -> None:
    ann, bob = make_client(), make_client()
    register(ann, "ann")
    register(bob, "bob")
    request = click_done(ann, add_todo(ann, "ann's secret errand"))
    (handled,) = attempts(ann, request)

    bobs = recent(bob)
    assert all(e["type"] != "worker" for e in bobs)
    assert handled["event_id"] not in str(bobs)
    assert "secret errand" not in str(bobs)


def test_a_failing_receiver_shows_the_failure_and_the_retry(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attempt 1 fails (shown with its error and the retry's delay); attempt 2 is done."""
    failures = iter([RuntimeError("the mail server is down")])

    def flaky(todo: Todo) -> str:
        error = next(failures, None)
        if error is not None:
            raise error
        return "well done"

    monkeypatch.setattr(todo.remote, "congratulation", flaky)
    register(client, "ann")
    request = click_done(client, add_todo(client, "water plants"))

    failed, done = attempts(client, request, count=2)
    assert (failed["attempt"], failed["state"]) == (1, "failed")
    assert failed["error"] == "RuntimeError: the mail server is down"
    assert failed["retry_in"] == todo.remote.RETRY_DELAY  # at the latest: the delay is jittered
    assert (done["attempt"], done["state"], done["error"]) == (2, "done", None)
    assert done["event_id"] == failed["event_id"]
    # the retry comes after a jittered delay, at most RETRY_DELAY (and the worker's turn)
    assert 0 < done["offset_ms"] - failed["offset_ms"] <= todo.remote.RETRY_DELAY * 1000 + 1000


def test_the_worker_thread_stops_with_the_app(app_settings: Settings) -> None:
    """Each start runs one worker thread; each stop ends it, promptly."""
    for _ in range(3):
        running = _running(app_settings)
        app: FastAPI = next(running)
        assert [t.name for t in threading.enumerate()].count("todo-remote-worker") == 1
        assert app.state.remote.thread.is_alive()
        begun = time.monotonic()
        for _ in running:  # the lifespan's end
            pass
        assert time.monotonic() - begun < 2.0
        assert "todo-remote-worker" not in [t.name for t in threading.enumerate()]


# -- Redis: a real `tocsin worker todo.remote:remote` process --------------------------------

REDIS_URL = os.environ.get("TOCSIN_REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def redis_client() -> Iterator[Any]:
    """A client of the test Redis (skips, or fails with TOCSIN_REQUIRE_SERVICES=1,
    when it is not reachable)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as error:
        if os.environ.get("TOCSIN_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis is required (TOCSIN_REQUIRE_SERVICES=1): {error}")
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {error}")
    yield client
    client.close()


@pytest.fixture
def redis_settings(app_settings: Settings, redis_client: Any) -> Iterator[Settings]:
    """``app_settings`` with ``TODO_REDIS_URL`` and a prefix of this test's own; its
    streams deleted at the end."""
    prefix = f"test-todo-{os.urandom(6).hex()}"
    try:
        yield dataclasses.replace(app_settings, redis_url=REDIS_URL, redis_prefix=prefix)
    finally:
        events, reports = todo.remote.stream_names(prefix)
        redis_client.delete(events, reports, f"{events}:dead")


@contextlib.contextmanager
def tocsin_worker(settings: Settings, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m tocsin worker todo.remote:remote`` with the app's environment;
    stopped with SIGTERM at the end (killed if it does not stop in 10 s)."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "TODO_DATA_DIR": str(settings.data_dir),
        "TODO_SECRET_KEY": settings.secret_key,
        "TODO_REDIS_URL": settings.redis_url or "",
        "TODO_REDIS_PREFIX": settings.redis_prefix,
    }
    command = [sys.executable, "-m", "tocsin", "worker", "todo.remote:remote", "--block", "0.2"]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=output)
    try:
        yield process
    finally:
        process.terminate()
        try:
            assert process.wait(10) == 0, log.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_with_redis_a_tocsin_worker_process_runs_it_and_the_panel_shows_it(
    redis_settings: Settings, tmp_path: Path
) -> None:
    """The app runs no worker thread; `tocsin worker` handles the event in its own
    process, and its report reaches the clicking user's panel (and no one else's)."""
    running = _running(redis_settings)
    app = next(running)
    log = tmp_path / "worker.log"
    try:
        assert "todo-remote-worker" not in [t.name for t in threading.enumerate()]
        with tocsin_worker(redis_settings, log), Client(app) as ann, Client(app) as bob:
            register(ann, "ann")
            register(bob, "bob")
            request = click_done(ann, add_todo(ann, "water plants"))
            (handled,) = attempts(ann, request)
            assert (handled["attempt"], handled["state"]) == (1, "done")
            assert handled["pid"] != os.getpid()
            deadline = time.monotonic() + WAIT
            while "Worker: well done, ann" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            assert handled["event_id"] in log.read_text()
            assert all(e["type"] != "worker" for e in recent(bob))
    finally:
        for _ in running:
            pass
    assert "todo-remote-reports" not in [t.name for t in threading.enumerate()]


# -- Redis down, forged entries, prefixes ------------------------------------------------------

NOBODY = "redis://127.0.0.1:1/0"  # where no Redis listens


def outbox_rows(app: FastAPI) -> int:
    from sqlalchemy import func, select

    with app.state.database.session() as session:
        return int(session.scalar(select(func.count()).select_from(todo.models.outbox.table)) or 0)


def run_worker(remote: Remote, until: Callable[[], bool]) -> None:
    """Rounds of a worker over *remote* (the ``tocsin worker`` of these tests) until
    *until* holds."""
    worker = Worker(remote, group="todo", consumer="test", block=0.1, trim_every=None)
    deadline = time.monotonic() + WAIT
    while not until():
        assert time.monotonic() < deadline, f"not done in {WAIT} s"
        worker.run_once()


@contextlib.contextmanager
def worker_remote(settings: Settings) -> Iterator[Remote]:
    remote = todo.remote.worker_remote(settings)
    try:
        yield remote
    finally:
        remote.disconnect()
        remote.transport.close()
        receiver = remote.receivers[todo.remote.RECEIVER][1]
        assert isinstance(receiver, todo.remote.Congratulate)
        receiver.database.dispose()


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("Worker:")]


def test_with_redis_down_a_done_click_succeeds_and_the_worker_relays_the_event_later(
    redis_settings: Settings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No 5xx for a Redis outage: the todo is done, its event waits in the outbox, and
    a worker that reaches Redis relays it, and congratulates."""
    caplog.set_level(logging.INFO, logger="todo")
    down = dataclasses.replace(redis_settings, redis_url=NOBODY)
    running = _running(down)
    app = next(running)
    try:
        with Client(app) as ann:
            register(ann, "ann")
            todo_id = add_todo(ann, "water plants")
            click_done(ann, todo_id)
            assert ann.get(f"/api/todos/{todo_id}").json()["done"] is True
        assert outbox_rows(app) == 1
    finally:
        for _ in running:
            pass

    monkeypatch.setattr(todo.remote, "RELAY_AFTER", 0.0)
    with worker_remote(redis_settings) as remote:
        run_worker(remote, lambda: bool(said(caplog)))
    assert said(caplog)[0].startswith('Worker: well done, ann: "water plants" is done')
    app = next(running := _running(redis_settings))
    try:
        assert outbox_rows(app) == 0
    finally:
        for _ in running:
            pass


def published_event(client: Any, settings: Settings) -> bytes:
    """The one event payload in the app's events stream."""
    events, _ = todo.remote.stream_names(settings.redis_prefix)
    ((_, fields),) = client.xrange(events)
    payload: bytes = fields[b"event"]
    return payload


def decoded(payload: bytes, app: FastAPI) -> RemoteEvent:
    """*payload* read back by a remote of the app's (disconnected at once)."""
    receiver = todo.remote.Congratulate(app.state.database, None)
    reader = todo.remote.make_remote(MemoryTransport(), receiver, app.state.settings)
    reader.disconnect()
    return reader.decode(payload)


def forged_signature(payload: bytes) -> bytes:
    signature = hmac.new(b"not the app's key, but long", payload, hashlib.sha256).hexdigest()
    return b"hmac-sha256:" + signature.encode() + b"\n" + payload


def test_a_forged_report_never_reaches_a_panel(
    redis_settings: Settings, redis_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Reports written to the handled stream without the worker's key are refused
    and logged; a signed one is shown."""
    running = _running(redis_settings)
    app = next(running)
    try:
        with Client(app) as ann:
            register(ann, "ann")
            request = click_done(ann, add_todo(ann, "water plants"))
            # What anyone reading this Redis sees: the event's origin (panel, session).
            origin = decoded(published_event(redis_client, redis_settings), app).context
            assert origin

            _, reports = todo.remote.stream_names(redis_settings.redis_prefix)
            for forged, sign in (("forged-unsigned", None), ("forged-badly", b"0" * 64)):
                fields = {
                    "origin": json.dumps(dict(origin)),
                    "event": json.dumps(report(forged)),
                }
                if sign is not None:
                    fields["signature"] = sign.decode()
                redis_client.xadd(reports, fields)
            key = redis_settings.derived_key(todo.remote.REPORTS_KEY)
            todo.remote.RedisReports(REDIS_URL, reports, key)(origin, report("genuine"))

            (shown,) = attempts(ann, request)
            assert shown["event_id"] == "genuine"
            assert "forged" not in str(recent(ann))
    finally:
        for _ in running:
            pass
    refused = [r for r in caplog.records if "without a valid signature" in r.getMessage()]
    assert len(refused) == 2


def report(event_id: str) -> dict[str, Any]:
    return {
        "type": "worker",
        "signal": "todo_completed",
        "receiver": todo.remote.RECEIVER,
        "event_id": event_id,
        "attempt": 1,
        "state": "done",
        "started": time.time(),
    }


def test_a_forged_event_is_dead_lettered_unread(
    redis_settings: Settings, redis_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Events without the app's signature (unsigned, or signed with another key) go
    to the dead letters; the genuine one is handled, once."""
    caplog.set_level(logging.INFO, logger="todo")
    running = _running(redis_settings)
    app = next(running)
    try:
        with Client(app) as ann:
            register(ann, "ann")
            click_done(ann, add_todo(ann, "water plants"))
    finally:
        for _ in running:
            pass
    signed = published_event(redis_client, redis_settings)
    assert signed.startswith(b"hmac-sha256:")
    envelope = signed.split(b"\n", 1)[1]
    events, _ = todo.remote.stream_names(redis_settings.redis_prefix)
    for forged in (envelope, forged_signature(envelope)):
        redis_client.xadd(events, {"event": forged})

    with worker_remote(redis_settings) as remote:
        run_worker(remote, lambda: redis_client.xlen(f"{events}:dead") == 2)
        run_worker(remote, lambda: bool(said(caplog)))
    assert len(said(caplog)) == 1


def test_the_redis_prefix_names_the_streams(
    app_settings: Settings, tmp_path: Path, redis_settings: Settings, redis_client: Any
) -> None:
    """TODO_REDIS_PREFIX (``todo`` by default) starts the app's stream names."""
    environ = {"TODO_DATA_DIR": str(tmp_path), "TODO_SECRET_KEY": "k" * 32}
    assert Settings.from_env(environ).redis_prefix == "todo"
    assert Settings.from_env({**environ, "TODO_REDIS_PREFIX": "shop"}).redis_prefix == "shop"
    running = _running(redis_settings)
    app = next(running)
    try:
        with Client(app) as ann:
            register(ann, "ann")
            click_done(ann, add_todo(ann, "water plants"))
    finally:
        for _ in running:
            pass
    assert redis_client.xlen(f"{redis_settings.redis_prefix}:events") == 1


def test_the_congratulation_escapes_control_characters() -> None:
    """A todo's text cannot forge a worker's log line (todo.text.printable)."""
    done = Todo(text="x\nWorker: well done, eve", owner=User(username="ann"))
    assert congratulation(done) == 'well done, ann: "x\\nWorker: well done, eve" is done'
    assert printable("a\rb\x1b\t") == "a\\rb\\x1b\\t"
