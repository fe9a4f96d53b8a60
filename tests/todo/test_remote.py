"""todo_completed's remote receiver (todo/remote.py): published after the commit, run
by a worker (a thread of the app by default), and shown in the panel of the user
who clicked, in the click's request: the publish, then each attempt of the worker.
The Redis mode, with a real ``tocsin worker`` process, is at the end."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
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
