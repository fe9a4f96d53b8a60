"""The Todo app's HTTP hardening (todo/http.py, todo/apidocs.py): the body limit,
validation errors that quote little, the security headers, the ``Allow`` of a 405,
``/docs`` without a CDN, and files readable by their owner only.

Most tests run twice, through the ``web`` fixture: against the app in process
(``httpx.ASGITransport``) and against a real uvicorn (``live_server``), where a body
really travels over a socket, with a ``Content-Length`` or chunked.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import PASSWORD, Client, parse_html
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.types import Message, Receive, Scope, Send

from tocsin.signals import request_started
from tocsin.testing import capture
from todo import Settings, create_app
from todo.api import validation_error
from todo.db import make_engine, upgrade
from todo.http import MAX_ERRORS, BodyLimitMiddleware, bounded_errors, excerpt
from todo.settings import DEFAULT_MAX_BODY

BIG = 20 * 1024 * 1024  # what the attacker review sent
CHUNK = 64 * 1024
SMALL = 4096  # bytes: a refusal or an error is at most this long
LIMIT = DEFAULT_MAX_BODY


class Upload:
    """A body sent in chunks, without a Content-Length (chunked over a socket);
    ``produced`` counts the bytes handed to the client so far."""

    def __init__(self, data: bytes, chunk: int = CHUNK) -> None:
        self.data = memoryview(data)
        self.chunk = chunk
        self.produced = 0

    def _next(self) -> bytes | None:
        if self.produced >= len(self.data):
            return None
        piece = bytes(self.data[self.produced : self.produced + self.chunk])
        self.produced += len(piece)
        return piece

    def sync(self) -> Iterator[bytes]:
        while (piece := self._next()) is not None:
            yield piece

    async def asynchronous(self) -> AsyncIterator[bytes]:
        while (piece := self._next()) is not None:
            yield piece


def sign_up(http: Client | httpx.Client, username: str) -> None:
    """Create *username* through the API and log *http* in as them."""
    user = {"username": username, "password": PASSWORD}
    assert http.post("/api/users", json=user).status_code == 201
    assert http.post("/api/session", json=user).status_code == 200


class Web:
    """Requests to the app: in process (*http* is a conftest Client) or over a
    socket (an ``httpx.Client`` on the live server)."""

    def __init__(self, http: Client | httpx.Client) -> None:
        self.http = http
        self.live = isinstance(http, httpx.Client)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def stream(self, upload: Upload) -> Iterator[bytes] | AsyncIterator[bytes]:
        """*upload* as this client sends a body in chunks."""
        return upload.sync() if self.live else upload.asynchronous()

    def sign_up(self, username: str) -> None:
        sign_up(self.http, username)

    def form(self, path: str, **fields: str) -> bytes:
        """A urlencoded body for the form of the page at *path*, with its CSRF token."""
        page = parse_html(self.get(path, follow_redirects=True).text)
        token = page.select("input[name=csrf_token]")[0].attrs["value"]
        return str(httpx.QueryParams({**fields, "csrf_token": token})).encode()


@pytest.fixture(params=["in-process", "live"])
def web(request: pytest.FixtureRequest, client: Client) -> Iterator[Web]:
    """A :class:`Web` on the app in process, then on the live server."""
    if request.param == "in-process":
        yield Web(client)
        return
    base_url: str = request.getfixturevalue("live_server")
    with httpx.Client(base_url=base_url, timeout=30) as http:
        yield Web(http)


# -- the body limit ----------------------------------------------------------------------------

TARGETS = {
    "/register": "application/x-www-form-urlencoded",  # no account needed
    "/api/users": "application/json",  # no account needed
    "/api/todos": "application/json",
}


@functools.cache
def oversized(path: str) -> bytes:
    """20 MB that the route would take if it were short: a form or JSON."""
    padding = b"x" * BIG
    if path == "/register":
        return b"username=eve&password=" + padding
    if path == "/api/users":
        return b'{"username": "eve", "password": "' + padding + b'"}'
    return b'{"text": "' + padding + b'"}'


def assert_refused(response: httpx.Response, path: str) -> None:
    """A short 413, JSON under /api, that says what the limit is."""
    assert response.status_code == 413, response.text[:200]
    assert len(response.content) < SMALL
    assert "64 KiB" in response.text
    if path.startswith("/api/"):
        assert response.json() == {
            "detail": "The request body is too large: at most 64 KiB is accepted."
        }
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", list(TARGETS))
def test_a_20_mb_body_with_its_length_is_refused_unread(web: Web, path: str) -> None:
    """A Content-Length over the limit gets a short 413 before the app sees anything
    (tocsin's request_started, sent inside the limit, is never sent)."""
    if path == "/api/todos":
        web.sign_up("ann")
    body = oversized(path)
    with capture(request_started) as started:
        response = web.post(path, content=body, headers={"content-type": TARGETS[path]})
    assert_refused(response, path)
    if not web.live:  # the server's thread sends it there: only in process is it ours
        started.assert_not_sent()


@pytest.mark.parametrize("path", list(TARGETS))
def test_a_20_mb_body_without_a_length_is_cut_at_the_limit(web: Web, path: str) -> None:
    """A chunked body is refused with 413 once it passes the limit: in process, the
    client is asked for one chunk past it at most, and not one more."""
    if path == "/api/todos":
        web.sign_up("ann")
    upload = Upload(oversized(path))
    response = web.post(path, content=web.stream(upload), headers={"content-type": TARGETS[path]})
    assert_refused(response, path)
    if not web.live:
        assert upload.produced <= LIMIT + CHUNK


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_a_body_of_exactly_the_limit_is_accepted(web: Web, chunked: bool) -> None:
    web.sign_up("ann")
    todo = b'{"text": "at the limit"}'
    body = todo + b" " * (LIMIT - len(todo))  # JSON allows trailing spaces
    headers = {"content-type": "application/json"}
    content = web.stream(Upload(body, chunk=4096)) if chunked else body
    response = web.post("/api/todos", content=content, headers=headers)
    assert response.status_code == 201, response.text
    content = web.stream(Upload(body + b" ", chunk=4096)) if chunked else body + b" "
    assert web.post("/api/todos", content=content, headers=headers).status_code == 413
    assert [todo["text"] for todo in web.get("/api/todos").json()] == ["at the limit"]


def test_a_form_over_the_limit_gets_the_error_page(web: Web) -> None:
    """A page's form that grows past the limit as it is read gets the app's error
    page (413), in the page's language."""
    web.sign_up("ann")
    body = web.form("/todos", text="y" * LIMIT)
    response = web.post(
        "/todos",
        content=web.stream(Upload(body)),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/html")
    page = parse_html(response.text)
    assert page.select_one("h1").text == "Request too large"
    assert "at most 64 KiB" in page.select_one(".error").text
    assert web.get("/api/todos").json() == []


def test_the_limit_is_a_setting(app: FastAPI, app_settings: Settings) -> None:
    """``Settings.max_body`` (``TODO_MAX_BODY``) moves the limit."""
    limited = create_app(replace(app_settings, max_body=10_000))
    with Client(limited) as client:
        body = b'{"username": "ann", "password": "' + b"p" * 10_000 + b'"}'
        response = client.post(
            "/api/users", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 413
        assert response.json()["detail"].endswith("at most 10000 bytes is accepted.")
        response = client.post("/api/users", json={"username": "ann", "password": "p" * 9_000})
        assert response.status_code == 422  # read, and refused for what it says
    limited.state.database.dispose()


def test_oversized_uploads_at_once_do_not_hold_up_a_user(live_server: str) -> None:
    """20 clients each send three 20 MB bodies at once (with and without a length,
    to the three routes); each gets its 413, and a logged-in user's requests all
    succeed meanwhile, each within a few seconds at worst (the clients share this
    process, and its GIL, with the server)."""

    def attack(number: int) -> list[tuple[int, int]]:
        answers = []
        with httpx.Client(base_url=live_server, timeout=30) as http:
            for round_ in range(3):
                path = list(TARGETS)[(number + round_) % 3]
                body = oversized(path)
                content = Upload(body).sync() if (number + round_) % 2 else body
                response = http.post(path, content=content, headers={"content-type": TARGETS[path]})
                answers.append((response.status_code, len(response.content)))
        return answers

    timings: list[float] = []
    with httpx.Client(base_url=live_server, timeout=30) as user, ThreadPoolExecutor(20) as pool:
        sign_up(user, "ann")
        attacks = [pool.submit(attack, number) for number in range(20)]
        while len(timings) < 10 or not all(future.done() for future in attacks):
            started = time.perf_counter()
            response = user.post("/api/todos", json={"text": f"todo {len(timings)}"})
            assert response.status_code == 201, response.text
            assert user.get("/api/todos").status_code == 200
            timings.append(time.perf_counter() - started)
        answers = [answer for future in attacks for answer in future.result()]
    assert len(answers) == 60
    assert all(status == 413 and size < SMALL for status, size in answers), answers
    assert max(timings) < 3.0, timings


def test_the_middleware_reads_no_more_than_the_limit() -> None:
    """Under an app that reads every message it is given, a chunked body stops at
    the limit: the app gets what fits, then BodyTooLarge, which the middleware turns
    into a 413 (the app let it out before starting its answer)."""
    seen: list[int] = []

    async def greedy(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            seen.append(len(message.get("body", b"")))
            if not message.get("more_body"):
                return

    chunks = [{"type": "http.request", "body": b"z" * 400, "more_body": True}] * 10
    asked = sent = 0
    answer: list[Message] = []

    async def receive() -> Message:
        nonlocal asked
        asked += 1
        return chunks[asked - 1]

    async def send(message: Message) -> None:
        nonlocal sent
        sent += 1
        answer.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/x", "headers": []}
    asyncio.run(BodyLimitMiddleware(greedy, max_body=1000)(scope, receive, send))
    assert seen == [400, 400]  # the third chunk would pass 1000 bytes
    assert asked == 3
    assert answer[0]["status"] == 413
    assert b"at most 1000 bytes" in answer[1]["body"]


@pytest.mark.parametrize(
    ("max_body", "error"),
    [(0, ValueError), (-1, ValueError), ("64k", TypeError), (True, TypeError), (1.5, TypeError)],
)
def test_the_middleware_needs_a_positive_number_of_bytes(
    max_body: Any, error: type[Exception]
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("not called")

    with pytest.raises(error, match="max_body must be"):
        BodyLimitMiddleware(app, max_body=max_body)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", DEFAULT_MAX_BODY), ("131072", 131072), (" 8192 ", 8192), ("1_000_000", 1_000_000)],
)
def test_todo_max_body_sets_the_limit(tmp_path: Path, value: str, expected: int) -> None:
    env = {"TODO_DATA_DIR": str(tmp_path), "TODO_MAX_BODY": value}
    assert Settings.from_env(env).max_body == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("64k", "TODO_MAX_BODY must be a number of bytes, such as 65536; got '64k'."),
        ("-1", "TODO_MAX_BODY must be at least 8192 bytes"),
        ("100", "TODO_MAX_BODY must be at least 8192 bytes"),
    ],
)
def test_a_bad_todo_max_body_says_why(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Settings.from_env({"TODO_DATA_DIR": str(tmp_path), "TODO_MAX_BODY": value})


def test_settings_check_max_body() -> None:
    with pytest.raises(TypeError, match="max_body must be a number of bytes"):
        Settings("sqlite://", "key", max_body="65536")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_body must be at least 8192 bytes"):
        Settings("sqlite://", "key", max_body=1024)


# -- validation errors quote little -------------------------------------------------------------


def test_a_422_quotes_an_excerpt_of_a_long_input(web: Web) -> None:
    web.sign_up("ann")
    response = web.post("/api/todos", json={"text": "y" * 60_000})
    assert response.status_code == 422
    assert len(response.content) < SMALL
    (error,) = response.json()["detail"]
    assert error["input"] == "y" * 100 + "... (59900 more characters)"
    assert error["msg"].endswith("A todo is at most 500 characters long; this one has 60000.")


def test_a_422_for_a_missing_field_quotes_an_excerpt_of_the_body(web: Web) -> None:
    """A missing field's error quotes the whole object it is missing from: cut too."""
    web.sign_up("ann")
    response = web.post("/api/todos", json={"note": "n" * 60_000})
    assert response.status_code == 422
    assert len(response.content) < SMALL
    (error,) = response.json()["detail"]
    assert error["type"] == "missing"
    assert error["input"].startswith('{"note": "nnnn')
    assert error["input"].endswith(" more characters)")


def test_a_422_never_quotes_a_password_even_cut(web: Web) -> None:
    password = "s3cret-" * 5_000
    response = web.post("/api/users", json={"username": "x", "password": password})
    assert response.status_code == 422
    assert len(response.content) < SMALL
    assert "s3cret" not in response.text


def test_a_422_lists_at_most_20_errors() -> None:
    errors = [
        {"type": "missing", "loc": ["body", index], "msg": "Field required", "input": None}
        for index in range(50)
    ]
    response = validation_error(RequestValidationError(errors))
    detail = json.loads(bytes(response.body))["detail"]
    assert len(detail) == MAX_ERRORS + 1
    assert detail[:MAX_ERRORS] == errors[:MAX_ERRORS]
    assert detail[-1] == {"type": "too_many_errors", "loc": [], "msg": "30 more errors not shown."}


LIST = ["c"] * 50


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("short", "short"),
        ("é" * 100, "é" * 100),
        ("é" * 101, "é" * 100 + "... (1 more character)"),
        (42, 42),
        (None, None),
        ({"a": 1}, {"a": 1}),
        ({"a": "b" * 200}, '{"a": "' + "b" * 93 + "... (109 more characters)"),
        (LIST, json.dumps(LIST)[:100] + "... (150 more characters)"),
    ],
    ids=["short", "100-chars", "101-chars", "int", "none", "small-dict", "long-dict", "long-list"],
)
def test_excerpt(value: Any, expected: Any) -> None:
    assert excerpt(value) == expected


def test_bounded_errors_cut_locations_and_contexts() -> None:
    key = "k" * 1000
    (error,) = bounded_errors(
        [{"type": "x", "loc": ["body", key, 3], "msg": "m", "ctx": {"error": "e" * 500}}]
    )
    assert error["loc"] == ["body", "k" * 100 + "... (900 more characters)", 3]
    assert error["ctx"] == {"error": "e" * 100 + "... (400 more characters)"}


# -- headers ----------------------------------------------------------------------------------

# (method, path, status, kind): kind is "page", "docs", "static" or "other".
RESPONSES = [
    ("GET", "/login", 200, "page"),
    ("GET", "/todos", 303, "other"),
    ("GET", "/no/such/page", 404, "page"),
    ("PUT", "/todos", 405, "page"),
    ("POST", "/logout", 403, "page"),
    ("GET", "/api/todos", 401, "other"),
    ("GET", "/api/no/such/thing", 404, "other"),
    ("DELETE", "/api/users", 405, "other"),
    ("POST", "/api/todos", 413, "other"),
    ("POST", "/login", 413, "other"),
    ("GET", "/openapi.json", 200, "other"),
    ("GET", "/docs", 200, "docs"),
    ("GET", "/docs/assets/swagger-ui-bundle.js", 200, "static"),
    ("GET", "/static/app.css", 200, "static"),
    ("GET", "/signals/recent", 200, "other"),
]


def assert_security_headers(response: httpx.Response, kind: str) -> None:
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"
    csp = {
        directive.split()[0]: directive.split()[1:]
        for directive in headers["content-security-policy"].split(";")
    }
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    sources = {source for values in csp.values() for source in values}
    assert sources <= {"'self'", "'none'", "data:"}, sources  # no inline, eval, or hosts
    if kind in {"page", "docs"}:
        assert csp["script-src"] == ["'self'"]
        assert csp["style-src"] == ["'self'"]
    else:
        assert csp["default-src"] == ["'none'"]
    if kind == "docs":
        assert csp["default-src"] == ["'none'"]
        assert csp["form-action"] == ["'none'"]
    if kind == "static":
        assert "no-store" not in headers.get("cache-control", "")
    else:
        assert headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("method", "path", "status", "kind"), RESPONSES, ids=[f"{m} {p}" for m, p, _, _ in RESPONSES]
)
def test_every_response_carries_the_security_headers(
    web: Web, method: str, path: str, status: int, kind: str
) -> None:
    big = b"x" * (LIMIT + 1) if status == 413 else None
    response = web.request(method, path, content=big)
    assert response.status_code == status
    assert_security_headers(response, kind)


def test_authenticated_json_is_never_stored(web: Web) -> None:
    web.sign_up("ann")
    todo = web.post("/api/todos", json={"text": "private"})
    for response in (todo, web.get("/api/todos"), web.get(f"/api/todos/{todo.json()['id']}")):
        assert response.status_code in {200, 201}
        assert response.headers["cache-control"] == "no-store"
        assert_security_headers(response, "other")


def test_the_signal_stream_carries_the_security_headers(live_server: str) -> None:
    with httpx.Client(base_url=live_server, timeout=10) as http:
        http.get("/login")  # a session, with its panel id
        with http.stream("GET", "/signals/stream") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache"  # its own, kept
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"


def test_a_server_error_carries_the_security_headers(app: FastAPI, live_server: str) -> None:
    """An unexpected exception is answered outside every middleware: the 500 has the
    headers all the same, and says nothing about the error."""

    def boom() -> None:
        raise RuntimeError("the secret cause")

    app.add_api_route("/boom", boom)
    with httpx.Client(base_url=live_server, timeout=10) as http:
        response = http.get("/boom")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert_security_headers(response, "other")


# -- 405 --------------------------------------------------------------------------------------

# Every path of the app, and what its 405 says is allowed. FastAPI's routes answer
# the methods they name (GET, not HEAD); Starlette's and StaticFiles add HEAD.
ALLOW = {
    "/": "GET",
    "/register": "GET, POST",
    "/login": "GET, POST",
    "/logout": "POST",
    "/password": "GET, POST",
    "/todos": "GET, POST",
    "/todos/1/edit": "POST",
    "/todos/1/done": "POST",
    "/todos/1/undone": "POST",
    "/todos/1/delete": "POST",
    "/signals/stream": "GET",
    "/signals/recent": "GET",
    "/api/users": "POST",
    "/api/session": "DELETE, POST",
    "/api/session/password": "PUT",
    "/api/todos": "GET, POST",
    "/api/todos/1": "DELETE, GET, PATCH",
    "/openapi.json": "GET, HEAD",
    "/docs": "GET, HEAD",
    "/docs/assets/swagger-ui.css": "GET, HEAD",
    "/static/app.css": "GET, HEAD",
}
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@pytest.mark.parametrize("path", list(ALLOW))
def test_a_405_names_every_method_the_path_answers(web: Web, path: str) -> None:
    """Every method is tried: those in Allow are answered (whatever the answer), the
    others get 405 with that same Allow."""
    allowed = ALLOW[path].split(", ")
    for method in METHODS:
        if method == "GET" and path == "/signals/stream":
            continue  # a stream that does not end
        response = web.request(method, path)
        if method in allowed:
            assert response.status_code != 405, method
        else:
            assert response.status_code == 405, method
            assert response.headers["allow"] == ALLOW[path], method


def test_the_allow_table_covers_every_api_path(client: Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {path.replace("{todo_id}", "1") for path in paths} <= set(ALLOW)


# -- /docs, offline ---------------------------------------------------------------------------


def test_the_docs_page_loads_only_this_servers_files(web: Web) -> None:
    response = web.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = parse_html(response.text)
    scripts = page.select("script")
    assert scripts
    assert all(script.attrs.get("src") and not script.text.strip() for script in scripts)
    urls = [
        element.attrs[name]
        for element in page.elements()
        for name in ("src", "href")
        if name in element.attrs
    ]
    assert urls
    kinds = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
    for url in urls:
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
        asset = web.get(url)
        assert asset.status_code == 200, url
        assert kinds[Path(url).suffix] in asset.headers["content-type"], url
    schema_url = page.select_one("#swagger-ui").attrs["data-openapi-url"]
    assert web.get(schema_url).json()["info"]["title"] == "Todo"
    bundle = web.get("/docs/assets/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in bundle
    assert len(bundle) > 500_000  # the real bundle


@pytest.mark.parametrize(
    "path",
    [
        "/docs/assets/index.html",
        "/docs/assets/swagger-initializer.js",
        "/docs/assets/swagger-ui-bundle.js.map",
        "/docs/assets/",
        "/docs/oauth2-redirect",
        "/redoc",
    ],
)
def test_nothing_else_of_swagger_ui_is_served(client: Client, path: str) -> None:
    assert client.get(path).status_code == 404


# -- files ------------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask: the modes below are what the app asks for, under it."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("umask_022")
def test_a_new_database_and_its_wal_files_are_their_owners_only(tmp_path: Path) -> None:
    """The migration creates the database 0600 (its new directory 0700); SQLite then
    gives the -wal and -shm files the same mode."""
    data = tmp_path / "new"
    database = data / "todo.db"
    settings = Settings(f"sqlite:///{database}", "key", data_dir=data)
    upgrade(settings.database_url)
    assert mode(data) == 0o700
    assert mode(database) == 0o600
    app = create_app(settings)
    with Client(app) as client:
        sign_up(client, "ann")
        wal, shm = (database.with_name(database.name + suffix) for suffix in ("-wal", "-shm"))
        assert wal.exists()
        assert shm.exists()
        assert (mode(database), mode(wal), mode(shm)) == (0o600, 0o600, 0o600)
    app.state.database.dispose()


@pytest.mark.usefixtures("umask_022")
def test_a_database_open_to_others_is_tightened_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """As the engine is made (before SQLite opens anything), the database and the
    -wal and -shm files it left are made 0600, with a log line each."""
    database = tmp_path / "todo.db"
    url = f"sqlite:///{database}"
    upgrade(url)
    wal, shm = (database.with_name(database.name + suffix) for suffix in ("-wal", "-shm"))
    for path, loose in ((database, 0o644), (wal, 0o664), (shm, 0o640)):
        path.touch()
        path.chmod(loose)
    caplog.set_level(logging.WARNING, logger="todo")
    make_engine(url).dispose()
    assert (mode(database), mode(wal), mode(shm)) == (0o600, 0o600, 0o600)
    assert caplog.messages == [
        f"{database} was open to others (0644): now 0600, its owner's only.",
        f"{wal} was open to others (0664): now 0600, its owner's only.",
        f"{shm} was open to others (0640): now 0600, its owner's only.",
    ]
    upgrade(url)  # and SQLite is happy with them


@pytest.mark.usefixtures("umask_022")
def test_the_data_directory_and_the_key_are_their_owners_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    settings = Settings.from_env({"TODO_DATA_DIR": str(data)})
    assert mode(data) == 0o700
    assert mode(data / "secret_key") == 0o600
    caplog.set_level(logging.WARNING, logger="todo")
    data.chmod(0o755)
    (data / "secret_key").chmod(0o644)
    assert Settings.from_env({"TODO_DATA_DIR": str(data)}).secret_key == settings.secret_key
    assert (mode(data), mode(data / "secret_key")) == (0o700, 0o600)
    assert len(caplog.messages) == 2, caplog.messages


@pytest.mark.usefixtures("umask_022")
def test_an_existing_directory_of_the_database_is_left_as_it_is(tmp_path: Path) -> None:
    """Only the files are the app's: a directory it did not create may be shared."""
    tmp_path.chmod(0o755)
    upgrade(f"sqlite:///{tmp_path / 'todo.db'}")
    assert mode(tmp_path) == 0o755
    assert mode(tmp_path / "todo.db") == 0o600
