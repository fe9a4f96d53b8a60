"""The live signal panel: each browser sees the signals its own requests sent, and
nothing else; a "done" click shows the request, model and app signals it caused;
no secret (password, CSRF token, cookie) ever reaches an event.

Most tests read a browser's events from ``GET /signals/recent`` (its history, as
JSON); the stream itself (``GET /signals/stream``, server-sent events) is read from
a real server, a bounded number of events with a read timeout, since it never ends.
"""

from __future__ import annotations

import asyncio
import base64
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
from todo.panel import ARGUMENT_MAX, Hub, describe_argument, describe_scope
from todo.signals import todo_completed

Event = dict[str, Any]
CLICK_SIGNALS = ["request_started", "pre_save", "post_save", "todo_completed", "request_finished"]
WRONG_PASSWORD = "wrong-horse-battery-9"
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


def panel_id(cookie: str) -> str:
    """The panel id kept in a session cookie (Starlette's: signed, base64 JSON)."""
    data = itsdangerous.TimestampSigner(SECRET_KEY).unsign(cookie.encode())
    session = json.loads(base64.b64decode(data))
    value = session["panel_id"]
    assert isinstance(value, str)
    return value


def click_done(client: Client, todo_id: int) -> None:
    response = client.post(
        f"/todos/{todo_id}/done", data={"csrf_token": csrf_token(client)}, follow_redirects=True
    )
    assert response.status_code == 200


# -- attribution -----------------------------------------------------------------------------


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


def test_the_panel_follows_the_browser_across_login_and_logout(client: Client) -> None:
    """The panel id survives the session's rotation: a browser keeps its history."""
    client.get("/login")
    assert of_request(recent(client), "GET /login")
    register(client, "ann")
    logout(client)
    login(client, "ann")
    events = recent(client)
    requests = {event["request"] for event in events}
    assert {"GET /login", "POST /register", "POST /logout", "POST /login"} <= requests
    signals = [event["signal"] for event in events]
    assert "user_logged_in" in signals
    assert "user_logged_out" in signals


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
    published: list[tuple[str, Event]] = []
    monkeypatch.setattr(
        app.state.panel.hub, "publish", lambda pid, event: published.append((pid, event))
    )
    with app.state.database.session() as session:
        todo = session.get(Todo, todo_id)
        assert todo is not None
        todo.mark_as_done()  # todo_completed, outside any request
        session.commit()  # pre_save and post_save
        todo_completed.send(sender=Todo, todo=todo)
    assert published == []


# -- what a click shows ----------------------------------------------------------------------


def test_a_done_click_shows_its_signals(client: Client) -> None:
    register(client, "ann")
    todo_id = add_todo(client, "water plants")
    click_done(client, todo_id)

    events = recent(client)
    post = of_request(events, f"POST /todos/{todo_id}/done")
    signals = [event["signal"] for event in post]
    assert set(CLICK_SIGNALS) <= set(signals), signals
    assert signals[0] == "request_started"
    assert signals[-1] == "request_finished"
    assert signals.index("pre_save") < signals.index("post_save")
    get = of_request(events, "GET /todos")
    assert [e["signal"] for e in get][:1] == ["request_started"]
    assert [e["signal"] for e in get][-1:] == ["request_finished"]
    assert events.index(post[-1]) < events.index(get[-1])  # the redirect's page came after

    started = post[0]
    assert started["name"] == "tocsin.signals.request_started"
    assert started["sender"] == "RequestSignalsMiddleware"
    assert started["args"] == {"scope": f"POST /todos/{todo_id}/done"}

    (saved,) = (e for e in post if e["signal"] == "post_save")
    assert saved["sender"] == "Todo"
    assert "water plants" in saved["args"]["instance"]
    assert saved["args"]["created"] == "False"

    (completed,) = (e for e in post if e["signal"] == "todo_completed")
    assert completed["name"] == "todo.signals.todo_completed"
    assert completed["sender"] == "Todo"
    assert "water plants" in completed["args"]["todo"]
    (receiver,) = completed["receivers"]
    assert receiver["name"] == "todo.receivers.log_completed"
    assert receiver["deferred"] is True
    assert receiver["error"] is None


def test_every_event_has_the_panels_fields(client: Client) -> None:
    register(client, "ann")
    click_done(client, add_todo(client, "x"))
    for event in recent(client):
        assert {"id", "signal", "name", "sender", "args", "receivers", "at", "request"} <= set(
            event
        )
        assert event["name"].rsplit(".", 1)[-1] == event["signal"]
        assert isinstance(event["args"], dict)
        assert all(isinstance(value, str) for value in event["args"].values())
        assert all(len(value) <= ARGUMENT_MAX for value in event["args"].values())
        for receiver in event["receivers"]:
            assert {"name", "ms", "error"} <= set(receiver)
            assert receiver["ms"] is None or receiver["ms"] >= 0


# -- secrets ---------------------------------------------------------------------------------


def test_no_secret_reaches_an_event(make_client: Callable[[], Client]) -> None:
    client = make_client()
    secrets: set[str] = {PASSWORD, WRONG_PASSWORD}

    def remember() -> None:
        secrets.add(csrf_token(client, "/login"))
        cookie = client.cookies.get(SESSION_COOKIE)
        if cookie:
            secrets.add(cookie)

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

    events = recent(client)
    dumped = json.dumps(events)
    for secret in secrets:
        assert secret not in dumped, f"a secret reached the panel: {secret[:8]}…"
    assert "argon2" not in dumped  # nor a password hash

    failed = [e for e in events if e["signal"] == "user_login_failed"]
    assert len(failed) == 2
    for event in failed:
        assert CLEANSED_SUBSTITUTE in event["args"]["credentials"]
    logged_in = [e for e in events if e["signal"] == "user_logged_in"]
    assert logged_in
    for event in logged_in:
        assert event["args"]["request"].startswith("<Request POST ")


def test_describe_argument_masks_secrets() -> None:
    assert describe_argument("password", "hunter2") == CLEANSED_SUBSTITUTE
    assert describe_argument("csrf_token", "abc") == CLEANSED_SUBSTITUTE
    assert describe_argument("cookies", {"todo_session": "abc"}) == CLEANSED_SUBSTITUTE
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


# -- the hub ---------------------------------------------------------------------------------


def test_the_hub_sends_each_browser_its_own_events() -> None:
    async def scenario() -> None:
        hub = Hub()
        ann, bob = hub.subscribe("ann"), hub.subscribe("bob")
        hub.publish("ann", {"signal": "for ann"})
        event = await ann.next(1)
        assert event is not None
        assert event["signal"] == "for ann"
        with pytest.raises(TimeoutError):
            await bob.next(0.05)
        assert hub.history("ann") == [event]
        assert hub.history("bob") == []
        ann.close()
        bob.close()
        assert hub.streams() == 0

    asyncio.run(scenario())


def test_the_hub_takes_events_from_other_threads() -> None:
    async def scenario() -> None:
        hub = Hub()
        stream = hub.subscribe("ann")
        threads = [threading.Thread(target=hub.publish, args=("ann", {"n": n})) for n in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        received = [await stream.next(1) for _ in range(20)]
        assert sorted(event["n"] for event in received if event is not None) == list(range(20))
        stream.close()

    asyncio.run(scenario())


def test_a_stream_starts_with_the_history_after_its_last_event() -> None:
    async def scenario() -> None:
        hub = Hub()
        for n in range(3):
            hub.publish("ann", {"n": n})
        first, second, _ = hub.history("ann")
        assert [e["n"] for e in hub.subscribe("ann").backlog] == [0, 1, 2]
        assert [e["n"] for e in hub.subscribe("ann", after=first["id"]).backlog] == [1, 2]
        assert [e["n"] for e in hub.subscribe("ann", after=second["id"]).backlog] == [2]
        assert [e["n"] for e in hub.subscribe("ann", after="other-epoch.2").backlog] == [0, 1, 2]
        assert hub.subscribe("bob").backlog == []

    asyncio.run(scenario())


def test_closing_the_hub_ends_its_streams() -> None:
    async def scenario() -> None:
        hub = Hub()
        stream = hub.subscribe("ann")
        hub.close()
        assert await stream.next(1) is None
        assert await hub.subscribe("ann").next(1) is None

    asyncio.run(scenario())


# -- the stream, from a real server ----------------------------------------------------------


class Browser:
    """A browser on the live server: its cookies, and helpers for the forms."""

    def __init__(self, base_url: str) -> None:
        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT)
        self.http = httpx.Client(base_url=base_url, timeout=timeout)

    def token(self, path: str = "/todos") -> str:
        page = parse_html(self.http.get(path, follow_redirects=True).text)
        return page.select("input[name=csrf_token]")[0].attrs["value"]

    def register(self, username: str) -> None:
        data = {"username": username, "password": PASSWORD, "csrf_token": self.token("/register")}
        assert self.http.post("/register", data=data).status_code == 303

    def add(self, text: str) -> int:
        assert (
            self.http.post("/todos", data={"text": text, "csrf_token": self.token()}).status_code
            == 303
        )
        page = parse_html(self.http.get("/todos").text)
        return max(int(li.attrs["data-id"]) for li in page.select("li.todo"))

    def done(self, todo_id: int) -> None:
        response = self.http.post(
            f"/todos/{todo_id}/done", data={"csrf_token": self.token()}, follow_redirects=True
        )
        assert response.status_code == 200

    def close(self) -> None:
        self.http.close()


class Stream:
    """An open ``GET /signals/stream``: its events, read as they come."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        self.lines = response.iter_lines()
        self.raw: list[str] = []

    def next_event(self) -> Event:
        """The next ``event: signal``; raises httpx.ReadTimeout if none comes."""
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
        raise AssertionError("the stream ended")

    def events_until(self, done: Callable[[Event], bool], budget: float = 10.0) -> list[Event]:
        end = time.monotonic() + budget
        events: list[Event] = []
        while time.monotonic() < end:
            events.append(self.next_event())
            if done(events[-1]):
                return events
        raise AssertionError(f"the awaited event did not come in {budget} s: {events}")

    def events_until_quiet(self) -> list[Event]:
        """Every event that comes before the stream falls silent for a while."""
        events: list[Event] = []
        end = time.monotonic() + 10
        try:
            while time.monotonic() < end:
                events.append(self.next_event())
        except httpx.ReadTimeout:
            return events
        raise AssertionError("the stream never fell silent")


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
        backlog = ann_stream.events_until(
            lambda e: e["request"] == "GET /todos" and e["signal"] == "request_finished"
        )
        assert any(e["request"] == "POST /register" for e in backlog)  # the history first

        ann.done(todo_id)
        post = f"POST /todos/{todo_id}/done"
        clicked = ann_stream.events_until(
            lambda e: e["request"] == post and e["signal"] == "request_finished"
        )
        signals = [e["signal"] for e in clicked if e["request"] == post]
        assert set(CLICK_SIGNALS) <= set(signals), signals
        assert signals[0] == "request_started"
        after = ann_stream.events_until(
            lambda e: e["request"] == "GET /todos" and e["signal"] == "request_finished"
        )
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
