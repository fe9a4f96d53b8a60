"""todo_completed's remote receiver (todo/remote.py): published after the commit, run
by a worker (a thread of the app by default), and shown in the panel of the user
who clicked, in the click's request: the publish, then each attempt of the worker.
The Redis mode, with a real ``tocsin worker`` process, is at the end."""

from __future__ import annotations

import contextlib
import dataclasses
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

import todo.remote
from todo import Settings
from todo.models import Todo

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
    assert handled["stream"] == "todo:events"
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
    assert failed["retry_in"] == todo.remote.RETRY_DELAY
    assert (done["attempt"], done["state"], done["error"]) == (2, "done", None)
    assert done["event_id"] == failed["event_id"]
    assert done["offset_ms"] - failed["offset_ms"] >= todo.remote.RETRY_DELAY * 1000 * 0.9


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
def redis_settings(app_settings: Settings) -> Iterator[Settings]:
    """``app_settings`` with ``TODO_REDIS_URL``; the app's streams emptied before and after."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as error:
        if os.environ.get("TOCSIN_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis is required (TOCSIN_REQUIRE_SERVICES=1): {error}")
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {error}")
    streams = [todo.remote.STREAM, todo.remote.REPORTS, f"{todo.remote.STREAM}:dead"]
    client.delete(*streams)
    try:
        yield dataclasses.replace(app_settings, redis_url=REDIS_URL)
    finally:
        client.delete(*streams)
        client.close()


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
