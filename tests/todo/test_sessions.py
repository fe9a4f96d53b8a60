"""Login sessions live on the server: logging out, or changing the password, ends
them for good, whatever cookie is replayed; usernames are one account whatever
their case or width.
"""

from __future__ import annotations

import datetime
import itertools
import threading
from collections.abc import Callable

import httpx
import pytest
from conftest import (
    PASSWORD,
    Client,
    csrf_token,
    login,
    logout,
    parse_html,
    register,
)
from fastapi import FastAPI
from sqlalchemy import select, update

from tocsin.testing import capture
from todo import sessions, throttle
from todo.db import Database, utcnow
from todo.models import LoginThrottle, User, UserSession
from todo.signals import sessions_ended

NEW_PASSWORD = "a much better passphrase"
SESSION_COOKIE = "todo_session"


def replay(app_client: Client, cookie: str) -> Client:
    """*app_client*, its cookie jar holding only *cookie* as the session cookie."""
    app_client.cookies.clear()
    app_client.cookies.set(SESSION_COOKIE, cookie)
    return app_client


def database(app: FastAPI) -> Database:
    db: Database = app.state.database
    return db


def session_rows(app: FastAPI) -> list[UserSession]:
    with database(app).session() as db:
        return list(db.scalars(select(UserSession)))


# -- logging out ------------------------------------------------------------------------------


def test_a_cookie_replayed_after_logout_is_refused(make_client: Callable[[], Client]) -> None:
    ann = make_client()
    register(ann, "ann")
    copied = ann.cookies[SESSION_COOKIE]
    assert logout(ann).status_code == 303
    thief = replay(make_client(), copied)
    assert thief.get("/todos").status_code == 303  # to /login
    assert thief.get("/api/todos").status_code == 401
    token = csrf_token(thief, "/login")
    response = thief.post("/todos", data={"text": "written by a thief", "csrf_token": token})
    assert response.status_code == 303
    assert response.headers["location"] == "/login"


def test_an_api_logout_ends_the_session_on_the_server(
    app: FastAPI, make_client: Callable[[], Client]
) -> None:
    ann = make_client()
    ann.post("/api/users", json={"username": "ann", "password": PASSWORD})
    assert ann.post("/api/session", json={"username": "ann", "password": PASSWORD}).is_success
    copied = ann.cookies[SESSION_COOKIE]
    assert len(session_rows(app)) == 1
    with capture(sessions_ended) as ended:
        assert ann.delete("/api/session").status_code == 204
    (row,) = ended.calls
    assert len(row.kwargs["session_ids"]) == 1
    assert session_rows(app) == []
    assert replay(make_client(), copied).get("/api/todos").status_code == 401


def test_the_server_keeps_only_a_hash_of_the_token(
    app: FastAPI, make_client: Callable[[], Client]
) -> None:
    ann = make_client()
    register(ann, "ann")
    (row,) = session_rows(app)
    assert len(row.id) == 64
    dumped = repr([(r.id, r.user_id, r.created_at, r.expires_at) for r in session_rows(app)])
    cookie = ann.cookies[SESSION_COOKIE]
    # the cookie is signed, not encrypted: its token is readable in it, never in the table
    assert row.id not in cookie
    assert all(part not in dumped for part in cookie.split(".") if len(part) > 20)


def test_an_expired_session_is_refused(app: FastAPI, make_client: Callable[[], Client]) -> None:
    ann = make_client()
    register(ann, "ann")
    with database(app).session() as db:
        db.execute(update(UserSession).values(expires_at=utcnow() - datetime.timedelta(seconds=1)))
        db.commit()
    assert ann.get("/todos").status_code == 303
    assert ann.get("/api/todos").status_code == 401


def test_a_deleted_users_sessions_end(app: FastAPI, make_client: Callable[[], Client]) -> None:
    ann = make_client()
    register(ann, "ann")
    with database(app).session() as db:
        db.delete(db.scalars(select(User)).one())
        db.commit()
    assert session_rows(app) == []
    assert ann.get("/api/todos").status_code == 401


def test_expired_rows_are_purged(app: FastAPI) -> None:
    with database(app).session() as db:
        user = User(username="ann", password_hash="x")
        db.add(user)
        db.flush()
        old = utcnow() - sessions.LIFETIME
        db.add(UserSession(id="0" * 64, user=user, created_at=old, expires_at=old))
        db.commit()
        sessions.purge_expired(db)
        db.commit()
    assert session_rows(app) == []


# -- changing the password --------------------------------------------------------------------


def change_password(client: Client, current: str, new: str) -> httpx.Response:
    token = csrf_token(client, "/password")
    return client.post("/password", data={"current": current, "new": new, "csrf_token": token})


def test_changing_the_password_logs_out_every_other_session(
    make_client: Callable[[], Client],
) -> None:
    laptop, phone = make_client(), make_client()
    register(laptop, "ann")
    login(phone, "ann")
    laptop_cookie = laptop.cookies[SESSION_COOKIE]
    phone_cookie = phone.cookies[SESSION_COOKIE]
    with capture(sessions_ended) as ended:
        response = change_password(laptop, PASSWORD, NEW_PASSWORD)
    assert response.status_code == 200
    notice = parse_html(response.text).select_one("p.notice").text
    assert "1 other session was logged out." in " ".join(notice.split())
    (call,) = ended.calls
    assert len(call.kwargs["session_ids"]) == 2  # the phone's, and the laptop's old one
    # the laptop stays logged in, with a new session cookie
    assert laptop.get("/todos").status_code == 200
    assert laptop.cookies[SESSION_COOKIE] != laptop_cookie
    # the phone, and both old cookies, are logged out
    assert phone.get("/todos").status_code == 303
    for cookie in (laptop_cookie, phone_cookie):
        assert replay(make_client(), cookie).get("/api/todos").status_code == 401
    # only the new password works
    assert login(make_client(), "ann", PASSWORD).status_code == 401
    assert login(make_client(), "ann", NEW_PASSWORD).status_code == 303


def test_password_changes_that_succeed_are_not_counted_as_failures(
    app: FastAPI, make_client: Callable[[], Client]
) -> None:
    ann = make_client()
    register(ann, "ann")
    passwords = [PASSWORD, NEW_PASSWORD] * 4
    for current, new in itertools.pairwise(passwords):
        assert change_password(ann, current, new).status_code == 200
    with database(app).session() as db:
        counters = db.scalars(select(LoginThrottle)).all()
    assert counters
    assert [c.failures for c in counters if not c.key.startswith("register:")] == [0] * (
        len(counters) - 1
    )


def test_a_wrong_current_password_changes_nothing(make_client: Callable[[], Client]) -> None:
    ann = make_client()
    register(ann, "ann")
    response = change_password(ann, "not my password", NEW_PASSWORD)
    assert response.status_code == 401
    error = parse_html(response.text).select_one("p.error").text
    assert error == "That is not your current password."
    assert ann.get("/todos").status_code == 200
    assert login(make_client(), "ann", PASSWORD).status_code == 303


def test_a_short_new_password_is_refused(make_client: Callable[[], Client]) -> None:
    ann = make_client()
    register(ann, "ann")
    response = change_password(ann, PASSWORD, "short")
    assert response.status_code == 422
    assert "8 to 128 characters" in parse_html(response.text).select_one("p.error").text


def test_the_password_page_needs_a_login(client: Client) -> None:
    assert client.get("/password").status_code == 303
    token = csrf_token(client, "/login")
    response = client.post(
        "/password", data={"current": PASSWORD, "new": NEW_PASSWORD, "csrf_token": token}
    )
    assert response.headers["location"] == "/login"


def test_the_api_changes_the_password(make_client: Callable[[], Client]) -> None:
    ann, other = make_client(), make_client()
    ann.post("/api/users", json={"username": "ann", "password": PASSWORD})
    for client in (ann, other):
        assert client.post("/api/session", json={"username": "ann", "password": PASSWORD})
    response = ann.put("/api/session/password", json={"current": PASSWORD, "new": NEW_PASSWORD})
    assert response.status_code == 200
    assert response.json() == {"sessions_ended": 1}
    assert ann.get("/api/todos").status_code == 200
    assert other.get("/api/todos").status_code == 401
    wrong = ann.put("/api/session/password", json={"current": PASSWORD, "new": NEW_PASSWORD})
    assert wrong.status_code == 403
    assert wrong.json() == {"detail": "That is not your current password."}


def test_wrong_current_passwords_are_throttled_as_logins(
    make_client: Callable[[], Client],
) -> None:
    """Someone holding a stolen session cannot guess the password through this form."""
    ann = make_client()
    register(ann, "ann")
    for _ in range(5):
        assert change_password(ann, "a wrong guess", NEW_PASSWORD).status_code == 401
    response = change_password(ann, PASSWORD, NEW_PASSWORD)
    assert response.status_code == 429
    assert "Too many failed logins" in response.text


# -- usernames --------------------------------------------------------------------------------


@pytest.mark.parametrize("other", ["Eve", "EVE", "\uff45\uff56\uff45", " eve "])
def test_a_username_is_one_account_whatever_its_case_or_width(
    make_client: Callable[[], Client], other: str
) -> None:
    register(make_client(), "eve")
    assert register(make_client(), other).status_code == 409
    response = make_client().post("/api/users", json={"username": other, "password": PASSWORD})
    assert response.status_code == 409


def test_full_width_letters_are_stored_as_ascii(
    app: FastAPI, make_client: Callable[[], Client]
) -> None:
    assert register(make_client(), "\uff21\uff24\uff21").status_code == 303  # full-width ADA
    with database(app).session() as db:
        assert db.scalars(select(User.username)).all() == ["ADA"]


def test_login_ignores_the_case_of_the_username(make_client: Callable[[], Client]) -> None:
    register(make_client(), "eve")
    assert login(make_client(), "EVE").status_code == 303


def test_concurrent_registrations_of_one_name_make_one_account(
    app: FastAPI, live_server: str
) -> None:
    names = ["eve", "Eve", "EVE", "eVe", "evE", "EVe", "\uff45\uff56\uff45", "eve"] * 2
    start = threading.Barrier(len(names))
    statuses: list[int] = []

    def register_one(name: str, address: str) -> None:
        transport = httpx.HTTPTransport(local_address=address)  # 127.0.0.0/8 is all local
        with httpx.Client(base_url=live_server, transport=transport, timeout=30) as http:
            start.wait(10)
            response = http.post("/api/users", json={"username": name, "password": PASSWORD})
            statuses.append(response.status_code)

    threads = [
        threading.Thread(target=register_one, args=(name, f"127.0.0.{i + 1}"))
        for i, name in enumerate(names)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [201] + [409] * (len(names) - 1)
    with database(app).session() as db:
        assert len(db.scalars(select(User)).all()) == 1


def test_registrations_from_one_address_are_limited(make_client: Callable[[], Client]) -> None:
    """Each account costs a password hash and a row: ten per address per 15 minutes."""
    for i in range(throttle.REGISTER_LIMIT):
        body = {"username": f"user{i}", "password": PASSWORD}
        assert make_client().post("/api/users", json=body).status_code == 201
    response = make_client().post("/api/users", json={"username": "one-more", "password": PASSWORD})
    assert response.status_code == 429
    assert response.json()["detail"] == (
        "Too many accounts were created from your address: try again in 15 minutes."
    )
    assert 890 <= int(response.headers["retry-after"]) <= 900
    page = register(make_client(), "one-more")
    assert page.status_code == 429
    assert "Too many accounts were created" in page.text
    assert login(make_client(), "user0").status_code == 303  # logging in is not affected


def test_a_long_username_is_not_echoed_back_whole(client: Client) -> None:
    """A form's value comes back into the page, bounded by what a valid one holds."""
    token = csrf_token(client, "/login")
    huge = "a" * 60_000
    for path in ("/login", "/register"):
        response = client.post(
            path, data={"username": huge, "password": PASSWORD, "csrf_token": token}
        )
        assert response.status_code in {401, 422}
        assert "a" * 42 not in response.text
        assert len(response.content) < 20_000
