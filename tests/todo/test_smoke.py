"""A first pass over the Todo app: a user's path through the pages, the logging
receiver that waits for the commit, the DOM contract the browser test relies on,
the signal panel's attribution, the migrations, and a real server."""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from conftest import (
    Client,
    add_todo,
    csrf_token,
    login,
    logout,
    parse_html,
    register,
    todo_ids,
)
from fastapi import FastAPI
from sqlalchemy import create_engine, text

from todo import Settings
from todo.db import Base, make_engine, upgrade
from todo.models import Todo, User
from todo.signals import todo_completed

CLICK_SIGNALS = {"request_started", "pre_save", "post_save", "todo_completed", "request_finished"}


def completed_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "todo" and r.getMessage().startswith("Todo completed")
    ]


def test_register_add_and_complete_logs_once_committed(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """Ticking a todo off through the page logs it through the on-commit receiver,
    which has not run yet when the signal is sent."""
    caplog.set_level(logging.INFO, logger="todo")
    assert register(client, "ann").headers["location"] == "/todos"
    todo_id = add_todo(client, "buy milk")

    logged_at_send: list[list[str]] = []

    def at_send(sender: type[Todo], todo: Todo, **kwargs: object) -> None:
        logged_at_send.append(completed_messages(caplog))

    todo_completed.connect(at_send)
    try:
        response = client.post(f"/todos/{todo_id}/done", data={"csrf_token": csrf_token(client)})
    finally:
        todo_completed.disconnect(at_send)

    assert response.status_code == 303
    assert response.headers["location"] == "/todos"
    assert logged_at_send == [[]]  # sent before the commit: nothing logged yet
    assert completed_messages(caplog) == [f'Todo completed: "buy milk" (id={todo_id}, user=ann)']

    # Done already: no change, no signal, no second line.
    client.post(f"/todos/{todo_id}/done", data={"csrf_token": csrf_token(client)})
    assert len(completed_messages(caplog)) == 1


def test_a_rolled_back_completion_is_never_logged(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="todo")
    with app.state.database.session() as session:
        user = User(username="bob", password_hash="x")
        session.add(user)
        session.flush()
        todo = Todo(text="file taxes", done=False, owner_id=user.id)
        session.add(todo)
        session.commit()

        assert todo.mark_as_done() is True
        session.flush()
        assert completed_messages(caplog) == []
        session.rollback()
        assert completed_messages(caplog) == []

        assert todo.mark_as_done() is True
        session.commit()
        assert completed_messages(caplog) == [
            f'Todo completed: "file taxes" (id={todo.id}, user=bob)'
        ]


def test_the_pages_keep_the_dom_contract(client: Client) -> None:
    register_page = parse_html(client.get("/register").text)
    form = register_page.select_one("form#register-form")
    assert form.select("input[name=username]")
    assert form.select("input[name=password]")
    assert form.select("button[type=submit]")

    login_page = parse_html(client.get("/login").text)
    form = login_page.select_one("form#login-form")
    assert form.select("input[name=username]")
    assert form.select("input[name=password]")
    assert form.select("button[type=submit]")

    register(client, "ann")
    first, second = add_todo(client, "write docs"), add_todo(client, 'ship <it> & "go"')
    client.post(f"/todos/{first}/done", data={"csrf_token": csrf_token(client)})

    page = parse_html(client.get("/todos").text)
    assert "ann" in page.select_one("header .account").text
    assert page.select_one("form#logout-form").select("button[type=submit]")
    add = page.select_one("form#add-form")
    assert add.select("input[name=text]")
    assert add.select("button[type=submit]")

    done = page.select_one(f'li.todo[data-id="{first}"]')
    assert "done" in done.classes
    assert done.select_one(".todo-text").text == "write docs"
    assert done.select("form.undone-form button")
    assert not done.select("form.done-form")
    assert done.select("form.delete-form button")
    assert done.select_one("form.edit-form input[name=text]").attrs["value"] == "write docs"

    still_open = page.select_one(f'li.todo[data-id="{second}"]')
    assert "done" not in still_open.classes
    assert still_open.select_one(".todo-text").text == 'ship <it> & "go"'  # escaped in the HTML
    assert still_open.select("form.done-form button")
    assert not still_open.select("form.undone-form")

    panel = page.select_one("section#signal-panel")
    assert panel.select("button")  # clear
    assert page.select('script[src="/static/panel.js"]')

    bad = client.post("/todos", data={"text": "   ", "csrf_token": csrf_token(client)})
    assert bad.status_code == 422
    assert "cannot be empty" in parse_html(bad.text).select_one(".error").text


def test_the_panel_shows_a_click_to_its_browser_only(
    make_client: Callable[[], Client],
) -> None:
    ann, bob = make_client(), make_client()
    register(ann, "ann")
    register(bob, "bob")
    todo_id = add_todo(ann, "water plants")
    ann.post(f"/todos/{todo_id}/done", data={"csrf_token": csrf_token(ann)}, follow_redirects=True)

    events: list[dict[str, Any]] = ann.get("/signals/recent").json()
    click = [e for e in events if e["request"] == f"POST /todos/{todo_id}/done"]
    assert {e["signal"] for e in click} >= CLICK_SIGNALS
    assert any(e["request"] == "GET /todos" for e in events)  # the redirected page's too
    assert any(e["request"] == "POST /register" for e in events)  # the login's own request
    assert not any(e["request"] == "GET /register" for e in events)  # but a new panel

    (completed,) = (e for e in click if e["signal"] == "todo_completed" and e["type"] == "send")
    assert completed["name"] == "todo.signals.todo_completed"
    assert completed["sender"] == "Todo"
    assert "water plants" in completed["args"]["todo"]
    assert completed["receivers"] == [
        {  # todo/remote.py: published after the commit, for a worker
            "name": "publish[todo.remote.congratulate] → todo:events",
            "ms": None,
            "deferred": 1,
            "error": None,
        },
        {"name": "todo.receivers.log_completed", "ms": None, "deferred": 2, "error": None},
    ]
    (started,) = (e for e in click if e["signal"] == "request_started")
    assert started["args"] == {"scope": f"POST /todos/{todo_id}/done"}  # never the headers

    bobs = bob.get("/signals/recent").json()
    assert bobs
    assert not any("water plants" in str(e) for e in bobs)


def test_a_failed_login_shows_masked_credentials(client: Client) -> None:
    register(client, "ann")
    logout(client)
    response = login(client, "ann", "not the password")
    assert response.status_code == 401
    assert parse_html(response.text).select_one(".error").text == "Wrong username or password."

    events = client.get("/signals/recent").json()
    (failed,) = (e for e in events if e["signal"] == "user_login_failed")
    assert failed["sender"] == "'todo.auth'"
    assert "not the password" not in str(failed)
    assert "********************" in failed["args"]["credentials"]
    assert [r["name"] for r in failed["receivers"]] == ["todo.receivers.record_login_failure"]

    assert login(client, "ann").status_code == 303
    assert todo_ids(client) == []


def test_forms_without_the_csrf_token_are_refused(client: Client) -> None:
    register(client, "ann")
    todo_id = add_todo(client, "secret plan")
    for path in ("/todos", f"/todos/{todo_id}/done", f"/todos/{todo_id}/delete", "/logout"):
        response = client.post(path, data={"text": "x", "csrf_token": "forged"})
        assert response.status_code == 403, path
        assert "CSRF check failed" in response.text
    assert todo_ids(client) == [todo_id]


# SQLite's reflection cannot read an index on an expression: this one is checked apart.
EXPRESSION_INDEX = "uq_users_username_lower"


def _not_the_expression_index(
    item: object, name: str | None, kind: str, reflected: bool, compare_to: object
) -> bool:
    return not (kind == "index" and name == EXPRESSION_INDEX)


def test_the_migrations_match_the_models(app_settings: Settings) -> None:
    upgrade(app_settings.database_url)
    engine = create_engine(app_settings.database_url)
    try:
        with engine.connect() as connection, warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based")
            warnings.filterwarnings("ignore", ".*expression-based index 'uq_users_username_lower'")
            context = MigrationContext.configure(
                connection, opts={"include_object": _not_the_expression_index}
            )
            assert compare_metadata(context, Base.metadata) == []
            index = connection.execute(
                text("SELECT sql FROM sqlite_master WHERE name = :name"),
                {"name": EXPRESSION_INDEX},
            ).scalar_one()
        assert index == f"CREATE UNIQUE INDEX {EXPRESSION_INDEX} ON users (lower(username))"
    finally:
        engine.dispose()


def test_the_app_runs_on_postgresql(postgres_app: FastAPI) -> None:
    with Client(postgres_app) as client:
        assert register(client, "ann").status_code == 303
        todo_id = add_todo(client, "on PostgreSQL")
        response = client.patch(f"/api/todos/{todo_id}", json={"done": True})
        assert response.status_code == 200
        assert response.json()["done"] is True
        assert client.get(f"/api/todos/{2**40}").status_code == 404


def test_a_real_server_streams_the_signals(live_server: str) -> None:
    with httpx.Client(base_url=live_server, timeout=5) as browser:
        page = browser.get("/login")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "httponly" in page.headers["set-cookie"].lower()
        assert "samesite=lax" in page.headers["set-cookie"].lower()
        with browser.stream("GET", "/signals/stream") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            seen = []
            for line in stream.iter_lines():
                if line.startswith("data: ") and '"GET /login"' in line:
                    seen.append(line)
                    if '"request_finished"' in line:
                        break
        assert len(seen) == 2  # request_started and request_finished of GET /login


def test_sqlite_writers_of_one_process_take_turns(tmp_path: Path) -> None:
    """Writers queue on the process's lock instead of polling SQLite's busy handler:
    20 threads inserting at once all succeed, and a connection holds the lock only
    from its first write to its commit or rollback."""
    url = f"sqlite:///{tmp_path / 'turns.db'}"
    upgrade(url)
    engine = make_engine(url)
    holding: list[tuple[bool, bool, bool]] = []
    try:

        def write(i: int) -> None:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                raw = connection.connection.dbapi_connection
                read = bool(getattr(raw, "holds_lock", None))  # not for reads
                connection.execute(
                    text("INSERT INTO login_throttle VALUES (:k, 0, 0, NULL, 0)"), {"k": f"k{i}"}
                )
                wrote = bool(getattr(raw, "holds_lock", None))
                connection.commit()
                holding.append((read, wrote, bool(getattr(raw, "holds_lock", None))))

        threads = [threading.Thread(target=write, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        with engine.connect() as connection:
            count = connection.execute(text("SELECT count(*) FROM login_throttle")).scalar()
    finally:
        engine.dispose()
    assert count == 20
    assert holding == [(False, True, False)] * 20
