"""The live signal panel through the app: it belongs to the signed-in user (a new
panel at each login and logout, nothing of one user ever shown to another, on the
page, ``/signals/recent`` or the stream), it tells each request's story (request
id, label, start, offsets, the on-commit receivers where they ran), no secret
ever reaches it, and its bounds hold under many clients at once.

Most tests read a browser's events from ``GET /signals/recent`` (its history, as
JSON); the stream itself (``GET /signals/stream``, server-sent events) is read from
a real server, a bounded number of events with a read timeout, since it never
ends. The hub's own bounds are tested in test_panel_hub.py.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import itsdangerous
import pytest
from conftest import (
    PASSWORD,
    SECRET_KEY,
    Client,
    add_todo,
    csrf_token,
    login,
    logout,
    parse_html,
    register,
)
from fastapi import FastAPI

from tocsin.signals import CLEANSED_SUBSTITUTE
from todo.models import Todo
from todo.panel import ARGUMENT_MAX, PANEL_OVERHEAD, Hub, describe_argument, describe_scope
from todo.signals import todo_completed

Event = dict[str, Any]
CLICK_SIGNALS = ["request_started", "pre_save", "post_save", "todo_completed", "request_finished"]
WRONG_PASSWORD = "wrong-horse-battery-9"
NEW_PASSWORD = "a brand new passphrase 7"
SESSION_COOKIE = "todo_session"
READ_TIMEOUT = 5.0  # seconds to wait for the next line of a stream that should have one
QUIET = 1.0  # seconds of silence that show a stream has nothing more to say


def recent(client: Client) -> list[Event]:
    response = client.get("/signals/recent")
    assert response.status_code == 200
    events: list[Event] = response.json()
    return events


def of_request(events: list[Event], request: str) -> list[Event]:
    return [event for event in events if event["request"] == request]


def sends(events: list[Event]) -> list[Event]:
    return [event for event in events if event["type"] == "send"]


def session_of(cookie: str) -> dict[str, Any]:
    """The data of a session cookie (Starlette's: signed, base64 JSON)."""
    data = itsdangerous.TimestampSigner(SECRET_KEY).unsign(cookie.encode())
    session: dict[str, Any] = json.loads(base64.b64decode(data))
    return session


def forged(session: dict[str, Any]) -> str:
    """A session cookie holding *session*, signed with the tests' secret key."""
    data = base64.b64encode(json.dumps(session).encode())
    return itsdangerous.TimestampSigner(SECRET_KEY).sign(data).decode()


def panel_id(client: Client) -> str:
    value = session_of(client.cookies[SESSION_COOKIE])["panel_id"]
    assert isinstance(value, str)
    return value


def click_done(client: Client, todo_id: int) -> None:
    response = client.post(
        f"/todos/{todo_id}/done", data={"csrf_token": csrf_token(client)}, follow_redirects=True
    )
    assert response.status_code == 200


def change_password(client: Client, current: str, new: str) -> None:
    token = csrf_token(client, "/password")
    data = {"current": current, "new": new, "csrf_token": token}
    assert client.post("/password", data=data).status_code == 200


def with_cookie(make_client: Callable[[], Client], cookie: str) -> Client:
    """Another browser holding a copy of *cookie*."""
    thief = make_client()
    thief.cookies.set(SESSION_COOKIE, cookie)
    return thief


# -- each browser, each user, its own events -----------------------------------------------


def test_each_browser_sees_only_its_own_events(make_client: Callable[[], Client]) -> None:
    ann, bob = make_client(), make_client()
    register(ann, "ann")
    register(bob, "bob")
    anns = add_todo(ann, "ann's todo")
    bobs = add_todo(bob, "bob's todo")
    click_done(ann, anns)
    click_done(bob, bobs)

    ann_events, bob_events = recent(ann), recent(bob)
    assert ann_events
    assert bob_events
    assert not {e["id"] for e in ann_events} & {e["id"] for e in bob_events}
    assert of_request(ann_events, f"POST /todos/{anns}/done")
    assert of_request(bob_events, f"POST /todos/{bobs}/done")
    assert not of_request(ann_events, f"POST /todos/{bobs}/done")
    assert not of_request(bob_events, f"POST /todos/{anns}/done")
    assert "bob" not in json.dumps(ann_events)
    assert "ann" not in json.dumps(bob_events)


def test_a_new_browser_starts_with_an_empty_panel(make_client: Callable[[], Client]) -> None:
    first = make_client()
    register(first, "ann")
    second = make_client()
    assert recent(second) == []  # its own request for /signals/recent is not shown


def test_sends_outside_a_request_reach_no_panel(
    app: FastAPI, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(client, "ann")
    todo_id = add_todo(client, "from a script")
    published: list[Any] = []
    monkeypatch.setattr(app.state.panel.hub, "publish", lambda *args: published.append(args))
    with app.state.database.session() as session:
        todo = session.get(Todo, todo_id)
        assert todo is not None
        todo.mark_as_done()  # todo_completed, outside any request
        session.commit()  # pre_save and post_save
        todo_completed.send(sender=Todo, todo=todo)
    assert published == []


# -- login and logout: a new panel -----------------------------------------------------------


def test_a_login_starts_a_new_panel_with_the_login_requests_events(
    app: FastAPI, client: Client
) -> None:
    """The login's own events, those sent before the session changed included,
    belong to the user who logged in; nothing from before it does."""
    register(client, "ann")
    logout(client)
    client.get("/login")
    before = panel_id(client)
    assert of_request(recent(client), "GET /login")

    assert login(client, "ann").status_code == 303
    events = recent(client)
    assert panel_id(client) != before
    assert {e["request"] for e in events} == {"POST /login"}
    signals = [e["signal"] for e in events]
    assert signals[0] == "request_started"  # sent before the session changed
    assert "user_logged_in" in signals
    assert signals[-1] == "request_finished"
    assert app.state.panel.hub.history(before) == []


def test_a_logout_shows_the_next_visitor_nothing(app: FastAPI, client: Client) -> None:
    register(client, "ann")
    click_done(client, add_todo(client, "ann's diary"))
    anns = panel_id(client)
    assert recent(client)

    assert logout(client).status_code == 303
    assert recent(client) == []  # the rest of the logout's request went nowhere
    assert panel_id(client) != anns
    assert app.state.panel.hub.history(anns) == []
    page = client.get("/login")
    assert "diary" not in page.text
    assert {e["request"] for e in recent(client)} == {"GET /login"}


def test_two_users_on_one_browser_never_see_each_others_events(client: Client) -> None:
    """Ann, then Bob, then Ann again on the same browser: each login shows its own
    user's events only, through the page and /signals/recent."""
    register(client, "ann")
    click_done(client, add_todo(client, "ann's diary"))
    anns = recent(client)
    logout(client)

    register(client, "bob")
    click_done(client, add_todo(client, "bob's bike"))
    bobs = recent(client)
    assert "diary" not in json.dumps(bobs)
    assert "ann" not in json.dumps(bobs)
    assert not {e["request_id"] for e in anns} & {e["request_id"] for e in bobs}
    assert "diary" not in client.get("/todos").text
    logout(client)

    login(client, "ann")
    again = recent(client)
    assert "bike" not in json.dumps(again)
    assert "bob" not in json.dumps(again)
    assert not {e["request_id"] for e in again} & {e["request_id"] for e in anns + bobs}


def test_a_copied_cookie_reads_nothing_once_its_session_ended(
    make_client: Callable[[], Client],
) -> None:
    ann = make_client()
    register(ann, "ann")
    click_done(ann, add_todo(ann, "ann's diary"))
    cookie = ann.cookies[SESSION_COOKIE]
    logout(ann)

    thief = with_cookie(make_client, cookie)
    assert recent(thief) == []
    assert thief.get("/signals/stream").status_code == 204  # an EventSource gives up


def test_a_panel_is_read_only_with_its_own_login_session(
    make_client: Callable[[], Client],
) -> None:
    """A cookie naming ann's panel with another session (a leaked panel id in a
    forged cookie) gets nothing."""
    ann, bob = make_client(), make_client()
    register(ann, "ann")
    register(bob, "bob")
    click_done(ann, add_todo(ann, "ann's diary"))
    session = session_of(bob.cookies[SESSION_COOKIE]) | {"panel_id": panel_id(ann)}
    mallory = with_cookie(make_client, forged(session))
    assert recent(mallory) == []
    assert mallory.get("/signals/stream").status_code == 204
    assert recent(ann)  # ann's panel is still hers


def test_a_password_change_forgets_the_other_browsers_panels(
    app: FastAPI, make_client: Callable[[], Client]
) -> None:
    laptop, phone = make_client(), make_client()
    register(laptop, "ann")
    login(phone, "ann")
    click_done(phone, add_todo(phone, "phone's todo"))
    phones = panel_id(phone)
    assert recent(phone)

    change_password(laptop, PASSWORD, NEW_PASSWORD)
    assert app.state.panel.hub.history(phones) == []
    assert recent(phone) == []
    assert phone.get("/signals/stream").status_code == 204
    assert recent(laptop)  # this browser's new panel, with the change's request
    assert {e["request"] for e in recent(laptop)} >= {"POST /password"}


# -- the request timeline --------------------------------------------------------------------


def test_a_done_click_shows_its_signals(client: Client) -> None:
    register(client, "ann")
    todo_id = add_todo(client, "water plants")
    click_done(client, todo_id)

    events = recent(client)
    post = of_request(events, f"POST /todos/{todo_id}/done")
    signals = [event["signal"] for event in sends(post)]
    assert set(CLICK_SIGNALS) <= set(signals), signals
    assert signals[0] == "request_started"
    assert signals[-1] == "request_finished"
    assert signals.index("pre_save") < signals.index("post_save")
    # The redirect's page, a page view and nothing more (the worker's attempt, which
    # belongs to the click, may come before or after it).
    last = [e for e in events if e["type"] != "worker"][-1]["request_id"]
    get = [e for e in events if e["request_id"] == last]
    assert [(e["request"], e["signal"]) for e in get] == [
        ("GET /todos", "request_started"),
        ("GET /todos", "request_finished"),
    ]

    started = post[0]
    assert started["name"] == "tocsin.signals.request_started"
    assert started["sender"] == "RequestSignalsMiddleware"
    assert started["args"] == {"scope": f"POST /todos/{todo_id}/done"}

    (saved,) = (e for e in post if e["signal"] == "post_save")
    assert saved["sender"] == "Todo"
    assert "water plants" in saved["args"]["instance"]
    assert saved["args"]["created"] == "False"

    (completed,) = (e for e in sends(post) if e["signal"] == "todo_completed")
    assert completed["name"] == "todo.signals.todo_completed"
    assert completed["kind"] == "app"
    assert completed["sender"] == "Todo"
    assert "water plants" in completed["args"]["todo"]
    # The publisher is an ordinary receiver that defers its own publish, so it runs
    # first: the dispatcher calls ordinary receivers before on-commit ones.
    publisher, receiver = completed["receivers"]
    assert publisher["name"] == "publish[todo.remote.congratulate] → todo:events"
    assert publisher["deferred"] == 1  # published after the commit (todo/remote.py)
    assert receiver["name"] == "todo.receivers.log_completed"
    assert receiver["deferred"] == 2
    assert receiver["error"] is None


def test_each_request_has_its_id_label_start_and_offsets(client: Client) -> None:
    register(client, "ann")
    client.get("/todos")
    client.get("/todos")
    events = recent(client)
    by_request: dict[str, list[Event]] = {}
    for event in events:
        by_request.setdefault(event["request_id"], []).append(event)
    labels = [group[0]["request"] for group in by_request.values()]
    assert labels == ["POST /register", "GET /todos", "GET /todos"]  # two ids, one label
    for group in by_request.values():
        assert len({(e["request"], e["request_at"]) for e in group}) == 1
        offsets = [e["offset_ms"] for e in group]
        assert offsets == sorted(offsets)
        assert offsets[0] >= 0
    kinds = {e["signal"]: e["kind"] for e in events}
    assert kinds["request_started"] == "request"
    assert kinds["user_logged_in"] == "auth"
    assert kinds["post_save"] == "model"


def test_the_after_commit_receiver_shows_where_it_ran(client: Client) -> None:
    """log_completed ran after the commit, between post_save and request_finished:
    its event says when, for how long, and that it is done."""
    register(client, "ann")
    todo_id = add_todo(client, "water plants")
    click_done(client, todo_id)
    post = of_request(recent(client), f"POST /todos/{todo_id}/done")
    post = [e for e in post if e["type"] != "worker"]  # test_remote.py's

    published, ran = (e for e in post if e["type"] == "after_commit")
    assert published["receiver"] == "publish[todo.remote.congratulate] → todo:events"
    assert published["state"] == "done"
    assert ran["receiver"] == "todo.receivers.log_completed"
    assert ran["signal"] == "todo_completed"
    assert ran["kind"] == "app"
    assert ran["state"] == "done"
    assert ran["error"] is None
    assert ran["deferred"] == 2  # the number of the todo_completed receiver it was
    assert ran["ms"] >= 0
    offsets = {e["signal"]: e["offset_ms"] for e in sends(post)}
    assert offsets["todo_completed"] <= ran["offset_ms"] <= offsets["request_finished"]
    assert [e["type"] for e in post][-3:] == ["after_commit", "after_commit", "send"]


def test_every_event_has_the_panels_fields(client: Client) -> None:
    register(client, "ann")
    click_done(client, add_todo(client, "x"))
    events = recent(client)
    types = {e["type"] for e in events}
    # and the remote receiver's attempt, once it has run (test_remote.py)
    assert {"send", "after_commit"} <= types <= {"send", "after_commit", "worker"}
    common = {"id", "type", "signal", "name", "kind", "sender", "at", "ms", "error"}
    request = {"request", "request_id", "request_at", "offset_ms"}
    for event in events:
        assert common | request <= set(event), event
        assert event["name"].rsplit(".", 1)[-1] == event["signal"]
        assert event["kind"] in {"request", "model", "auth", "app"}
        if event["type"] == "after_commit":
            assert {"receiver", "deferred", "state"} <= set(event)
            continue
        if event["type"] == "worker":
            assert {"receiver", "attempt", "state", "event_id"} <= set(event)
            continue
        assert isinstance(event["args"], dict)
        assert all(isinstance(value, str) for value in event["args"].values())
        assert all(len(value) <= ARGUMENT_MAX for value in event["args"].values())
        for receiver in event["receivers"]:
            assert {"name", "ms", "deferred", "error"} <= set(receiver)
            assert receiver["ms"] is None or receiver["ms"] >= 0


# -- secrets ---------------------------------------------------------------------------------


def test_no_secret_reaches_an_event(make_client: Callable[[], Client]) -> None:
    client = make_client()
    secrets: set[str] = {PASSWORD, WRONG_PASSWORD}
    seen: list[Event] = []

    def remember() -> None:
        """Keep the session's secrets, and the panel's events before they go."""
        secrets.add(csrf_token(client, "/login"))
        cookie = client.cookies.get(SESSION_COOKIE)
        if cookie:
            secrets.add(cookie)
            secrets.update(str(value) for value in session_of(cookie).values())
        seen.extend(e for e in recent(client) if e not in seen)

    remember()
    register(client, "ann")
    remember()
    click_done(client, add_todo(client, "buy milk"))
    remember()
    logout(client)
    remember()
    assert login(client, "ann", WRONG_PASSWORD).status_code == 401
    remember()
    assert login(client, "ann").status_code == 303
    remember()
    client.post("/todos", data={"text": "x", "csrf_token": "forged-" + PASSWORD})  # 403
    client.patch("/api/todos/1", json={"done": True})
    client.post("/api/session", json={"username": "ann", "password": WRONG_PASSWORD})
    remember()

    dumped = json.dumps(seen)
    for secret in secrets:
        if len(secret) > 8:
            assert secret not in dumped, f"a secret reached the panel: {secret[:8]}…"
    assert "argon2" not in dumped  # nor a password hash

    failed = [e for e in seen if e["signal"] == "user_login_failed"]
    assert len(failed) == 2
    for event in failed:
        assert CLEANSED_SUBSTITUTE in event["args"]["credentials"]
    logged_in = [e for e in seen if e["signal"] == "user_logged_in"]
    assert logged_in
    for event in logged_in:
        assert event["args"]["request"].startswith("<Request POST ")


def test_describe_argument_masks_secrets() -> None:
    assert describe_argument("password", "hunter2") == CLEANSED_SUBSTITUTE
    assert describe_argument("csrf_token", "abc") == CLEANSED_SUBSTITUTE
    assert describe_argument("cookies", {"todo_session": "abc"}) == CLEANSED_SUBSTITUTE
    assert describe_argument("session_ids", frozenset({"abc"})) == CLEANSED_SUBSTITUTE
    options = describe_argument(
        "options", {"user": "ann", "password": "hunter2", "api_key": "k", "session_id": "s"}
    )
    assert "hunter2" not in options
    assert "'k'" not in options
    assert "'s'" not in options
    assert "'ann'" in options
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "method": "POST",
        "path": "/login",
        "headers": [(b"cookie", b"todo_session=secret")],
    }
    assert describe_argument("scope", scope) == "POST /login"
    assert describe_argument("environ", scope) == "POST /login"
    assert describe_scope({"type": "websocket"}) == "<websocket scope>"
    long = describe_argument("text", "x" * 1000)
    assert len(long) == ARGUMENT_MAX


def test_a_failed_login_shows_the_username_and_masks_the_password(client: Client) -> None:
    """The spec: cleanse_credentials() on dict arguments, so user_login_failed's
    credentials show who failed to log in, with the password masked."""
    register(client, "ann")
    logout(client)
    login(client, "ann", WRONG_PASSWORD)
    (failed,) = (e for e in recent(client) if e["signal"] == "user_login_failed")
    assert failed["args"]["credentials"] == repr(
        {"username": "ann", "password": CLEANSED_SUBSTITUTE}
    )
    assert describe_argument("credentials", {"username": "ann", "password": "hunter2"}) == repr(
        {"username": "ann", "password": CLEANSED_SUBSTITUTE}
    )


# -- the stream, from a real server ----------------------------------------------------------


class Browser:
    """A browser on the live server: its cookies, and helpers for the forms."""

    def __init__(self, base_url: str) -> None:
        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT)
        self.http = httpx.Client(base_url=base_url, timeout=timeout)

    def token(self, path: str = "/todos") -> str:
        page = parse_html(self.http.get(path, follow_redirects=True).text)
        return page.select("input[name=csrf_token]")[0].attrs["value"]

    def post(self, path: str, expected: int = 303, **fields: str) -> None:
        token = self.token("/login" if path in {"/register", "/login"} else "/todos")
        response = self.http.post(path, data={**fields, "csrf_token": token})
        assert response.status_code == expected, response.text

    def register(self, username: str) -> None:
        self.post("/register", username=username, password=PASSWORD)

    def login(self, username: str) -> None:
        self.post("/login", username=username, password=PASSWORD)

    def logout(self) -> None:
        self.post("/logout")

    def add(self, text: str) -> int:
        self.post("/todos", text=text)
        page = parse_html(self.http.get("/todos").text)
        return max(int(li.attrs["data-id"]) for li in page.select("li.todo"))

    def done(self, todo_id: int) -> None:
        response = self.http.post(
            f"/todos/{todo_id}/done", data={"csrf_token": self.token()}, follow_redirects=True
        )
        assert response.status_code == 200

    def recent(self) -> list[Event]:
        response = self.http.get("/signals/recent")
        assert response.status_code == 200
        events: list[Event] = response.json()
        return events

    def close(self) -> None:
        self.http.close()


class Stream:
    """An open ``GET /signals/stream``: its events, read as they come."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        self.lines = response.iter_lines()
        self.raw: list[str] = []

    def next_event(self) -> Event | None:
        """The next ``event: signal``, None when the stream ends; raises
        httpx.ReadTimeout if none comes."""
        kind, data = None, None
        for line in self.lines:
            self.raw.append(line)
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
            elif line == "":
                if kind == "signal" and data is not None:
                    event: Event = json.loads(data)
                    return event
                kind, data = None, None  # a comment, or another kind of event
        return None

    def events_until(self, done: Callable[[Event], bool], budget: float = 10.0) -> list[Event]:
        end = time.monotonic() + budget
        events: list[Event] = []
        while time.monotonic() < end:
            event = self.next_event()
            assert event is not None, f"the stream ended: {events}"
            events.append(event)
            if done(event):
                return events
        raise AssertionError(f"the awaited event did not come in {budget} s: {events}")

    def events_until_quiet(self) -> list[Event]:
        """Every event that comes before the stream falls silent for a while."""
        events: list[Event] = []
        end = time.monotonic() + 10
        try:
            while time.monotonic() < end:
                event = self.next_event()
                assert event is not None, "the stream ended"
                events.append(event)
        except httpx.ReadTimeout:
            return events
        raise AssertionError("the stream never fell silent")

    def events_until_the_end(self) -> list[Event]:
        """Every event until the server ends the stream (a read timeout fails)."""
        events: list[Event] = []
        while (event := self.next_event()) is not None:
            events.append(event)
        return events


def finished(request: str) -> Callable[[Event], bool]:
    return lambda e: e["request"] == request and e["signal"] == "request_finished"


@pytest.fixture
def browsers(live_server: str) -> Iterator[Callable[[], Browser]]:
    made: list[Browser] = []

    def make() -> Browser:
        made.append(Browser(live_server))
        return made[-1]

    yield make
    for browser in made:
        browser.close()


def test_the_stream_shows_a_click_to_its_browser_only(
    browsers: Callable[[], Browser],
) -> None:
    ann, bob = browsers(), browsers()
    ann.register("ann")
    bob.register("bob")
    todo_id = ann.add("stream me")
    quiet = httpx.Timeout(10.0, read=QUIET)
    with (
        ann.http.stream("GET", "/signals/stream") as ann_response,
        bob.http.stream("GET", "/signals/stream", timeout=quiet) as bob_response,
    ):
        ann_stream, bob_stream = Stream(ann_response), Stream(bob_response)
        backlog = ann_stream.events_until(finished("GET /todos"))
        assert any(e["request"] == "POST /register" for e in backlog)  # the history first

        ann.done(todo_id)
        post = f"POST /todos/{todo_id}/done"
        clicked = ann_stream.events_until(finished(post))
        signals = [e["signal"] for e in clicked if e["request"] == post]
        assert set(CLICK_SIGNALS) <= set(signals), signals
        assert signals[0] == "request_started"
        in_request = [e for e in clicked if e["type"] != "worker"]  # the worker's: any time
        assert in_request[-2]["type"] == "after_commit"  # before request_finished
        after = ann_stream.events_until(finished("GET /todos"))
        after = [e for e in after if e["type"] != "worker"]
        assert after[0]["request"] == "GET /todos"  # then the redirected page's

        bobs = bob_stream.events_until_quiet()
        assert bobs  # bob's own history
        assert all(e["request"] != post for e in bobs)
        assert "stream me" not in json.dumps(bobs)
        assert not {e["id"] for e in bobs} & {e["id"] for e in backlog + clicked + after}

        raw = "\n".join(ann_stream.raw + bob_stream.raw)
        assert PASSWORD not in raw
        for cookie in (*ann.http.cookies.values(), *bob.http.cookies.values()):
            assert cookie not in raw


def test_a_logout_ends_the_stream_and_the_next_user_sees_only_theirs(
    browsers: Callable[[], Browser],
) -> None:
    """Ann, then Bob, on the same browser: the logout ends ann's stream, and Bob's
    stream shows nothing of ann's, not even the end of her logout."""
    browser = browsers()
    browser.register("ann")
    todo_id = browser.add("ann's diary")
    browser.done(todo_id)
    with browser.http.stream("GET", "/signals/stream") as response:
        anns = Stream(response)
        history = anns.events_until(finished("GET /todos"))
        browser.logout()
        history += anns.events_until_the_end()
    assert "diary" in json.dumps(history)
    assert not [e for e in history if e["request"] == "GET /login"]  # the redirect's page

    browser.register("bob")
    quiet = httpx.Timeout(10.0, read=QUIET)
    with browser.http.stream("GET", "/signals/stream", timeout=quiet) as response:
        bobs = Stream(response).events_until_quiet()
    assert {e["request"] for e in bobs} >= {"POST /register"}
    assert "diary" not in json.dumps(bobs)
    assert "ann" not in json.dumps(bobs)
    assert not {e["request_id"] for e in bobs} & {e["request_id"] for e in history}
    assert "diary" not in json.dumps(browser.recent())


def test_a_password_change_ends_the_other_browsers_streams(
    browsers: Callable[[], Browser],
) -> None:
    laptop, phone = browsers(), browsers()
    laptop.register("ann")
    phone.login("ann")
    with phone.http.stream("GET", "/signals/stream") as response:
        stream = Stream(response)
        stream.events_until(finished("POST /login"))
        laptop.post("/password", 200, current=PASSWORD, new=NEW_PASSWORD)
        assert stream.events_until_the_end() == []  # ended, nothing more shown
    assert phone.http.get("/signals/stream").status_code == 204
    assert phone.recent() == []


def test_too_many_streams_are_refused_with_a_short_message(
    app: FastAPI, browsers: Callable[[], Browser]
) -> None:
    hub: Hub = app.state.panel.hub
    hub.streams_per_panel, hub.max_streams = 2, 3
    ann, bob, carol = browsers(), browsers(), browsers()
    for browser in (ann, bob, carol):
        browser.http.get("/login")  # a panel id in the cookie
    with contextlib.ExitStack() as open_streams:

        def stream(browser: Browser) -> httpx.Response:
            return open_streams.enter_context(browser.http.stream("GET", "/signals/stream"))

        assert stream(ann).status_code == 200
        assert stream(ann).status_code == 200
        refused = ann.http.get("/signals/stream")
        assert refused.status_code == 429
        assert "close a tab" in refused.text
        assert stream(bob).status_code == 200
        busy = carol.http.get("/signals/stream")
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "60"
        assert "try again later" in busy.text
    deadline = time.monotonic() + 5
    while hub.streams() and time.monotonic() < deadline:
        time.sleep(0.01)  # the server notices the closed connections
    assert hub.streams() == 0
    with carol.http.stream("GET", "/signals/stream") as response:
        assert response.status_code == 200


# -- many clients at once --------------------------------------------------------------------


def test_many_anonymous_visitors_at_once_keep_the_global_bound(
    app: FastAPI, live_server: str
) -> None:
    """640 page views from 16 threads, each a new visitor without cookies (an
    anonymous panel each): the hub never holds more than its bound."""
    hub: Hub = app.state.panel.hub
    hub.max_bytes = 128 * 1024
    highest, stop = 0, threading.Event()

    def watch() -> None:
        nonlocal highest
        while not stop.is_set():
            highest = max(highest, hub.bytes)

    def visit(_: int) -> list[int]:
        with httpx.Client(base_url=live_server, timeout=10.0) as http:
            statuses = []
            for _ in range(40):
                http.cookies.clear()
                statuses.append(http.get("/login").status_code)
            return statuses

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            statuses = [s for batch in pool.map(visit, range(16)) for s in batch]
    finally:
        stop.set()
        watcher.join()
    assert statuses == [200] * 640
    assert 0 < highest <= hub.max_bytes
    assert hub.bytes <= hub.max_bytes
    assert 1 < hub.panels() <= hub.max_bytes // PANEL_OVERHEAD


def test_users_at_once_see_only_their_own_events(browsers: Callable[[], Browser]) -> None:
    """Six users in six threads register, tick a todo off, log out and in again:
    each panel shows its own user's events only, and a login starts afresh."""
    names = [f"user{n}" for n in range(6)]

    def visit(name: str) -> tuple[list[Event], list[Event]]:
        browser = browsers()
        browser.register(name)
        browser.done(browser.add(f"{name}'s secret"))
        before = browser.recent()
        browser.logout()
        browser.login(name)
        return before, browser.recent()

    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        results = dict(zip(names, pool.map(visit, names), strict=True))
    request_ids: dict[str, set[str]] = {}
    for name, (before, after) in results.items():
        others = [other for other in names if other != name]
        assert f"{name}'s secret" in json.dumps(before)
        assert not any(other in json.dumps(before + after) for other in others)
        assert {e["request"] for e in after} == {"POST /login"}
        request_ids[name] = {e["request_id"] for e in before + after}
    for name, ids in request_ids.items():
        assert all(not ids & request_ids[other] for other in names if other != name)
