"""Fixtures and helpers for the Todo app's tests.

Fixtures:

* ``app_settings``: :class:`todo.Settings` for a fresh SQLite file under ``tmp_path``
  and a fixed secret key.
* ``app``: ``create_app(app_settings)`` on a migrated database, its lifespan running
  (so the signal panel's tracer is subscribed).
* ``client``: a :class:`Client` on ``app``; ``make_client()`` makes more (one per
  browser, each with its own cookies).
* ``live_server``: uvicorn serving ``app`` in a thread; its base URL
  (``serving(app)`` does the same for any app, as a context manager).
* ``postgres_settings``: like ``app_settings``, on a throwaway PostgreSQL schema
  (skipped when PostgreSQL is not reachable, unless TOCSIN_REQUIRE_SERVICES=1).

Helpers (``from conftest import register, login, ...``: this directory has no
``__init__.py``, as a package named ``todo`` would hide the app's): :class:`Client`,
:func:`csrf_token`, :func:`register`, :func:`login`, :func:`logout`,
:func:`add_todo`, :func:`todo_ids`, :func:`parse_html`. pytest-asyncio is not
used: :class:`Client` runs the async client on a private event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import html.parser
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import create_engine, make_url, text

from todo import Settings, create_app
from todo.__main__ import make_server
from todo.db import upgrade

SECRET_KEY = "test-secret-key-not-for-production"
PASSWORD = "correct horse battery staple"
BASE_URL = "http://testserver"
POSTGRES_URL = os.environ.get(
    "TOCSIN_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


# -- the in-process client ---------------------------------------------------------------------


class Client:
    """Synchronous requests to an ASGI app in process: an ``httpx.AsyncClient`` over
    ``httpx.ASGITransport``, run on a private event loop. Cookies are kept between
    requests, as a browser keeps them; redirects are not followed unless asked
    (``follow_redirects=True``). An exception in the app is raised, not turned into
    a 500.
    """

    def __init__(self, app: Any, base_url: str = BASE_URL) -> None:
        self._runner = asyncio.Runner()
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)

    @property
    def cookies(self) -> httpx.Cookies:
        return self._client.cookies

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Any request; *kwargs* are ``httpx.AsyncClient.request()``'s."""
        return self._runner.run(self._client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)

    def close(self) -> None:
        try:
            self._runner.run(self._client.aclose())
        finally:
            self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# -- helpers -----------------------------------------------------------------------------------


def csrf_token(client: Client, path: str = "/login") -> str:
    """The session's CSRF token, read from the hidden field of the page at *path*
    (redirects followed: the token is the same on every page of a session)."""
    response = client.get(path, follow_redirects=True)
    match = _CSRF.search(response.text)
    assert match, f"no csrf_token field on {path} ({response.status_code})"
    return match.group(1)


def register(client: Client, username: str, password: str = PASSWORD) -> httpx.Response:
    """Fill in the register form (which logs in): 303 to /todos when it worked."""
    token = csrf_token(client, "/register")
    return client.post(
        "/register", data={"username": username, "password": password, "csrf_token": token}
    )


def login(client: Client, username: str, password: str = PASSWORD) -> httpx.Response:
    """Fill in the login form: 303 to /todos when it worked."""
    token = csrf_token(client, "/login")
    return client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}
    )


def logout(client: Client) -> httpx.Response:
    """Press the logout button: 303 to /login."""
    return client.post("/logout", data={"csrf_token": csrf_token(client, "/todos")})


def add_todo(client: Client, text: str) -> int:
    """Add a todo through the page's form (logged in); returns its id."""
    before = set(todo_ids(client))
    token = csrf_token(client, "/todos")
    response = client.post("/todos", data={"text": text, "csrf_token": token})
    assert response.status_code == 303, response.text
    (new,) = set(todo_ids(client)) - before
    return new


def todo_ids(client: Client) -> list[int]:
    """The ids of the ``li.todo`` of the /todos page, in page order."""
    page = parse_html(client.get("/todos").text)
    return [int(li.attrs["data-id"]) for li in page.select("li.todo")]


# -- a small HTML tree, with CSS selectors ------------------------------------------------------

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
_COMPOUND = re.compile(
    r"(?P<tag>[a-zA-Z][\w-]*|\*)?"
    r"(?P<rest>(?:#[\w-]+|\.[\w-]+|\[[\w-]+(?:=(?:\"[^\"]*\"|'[^']*'|[^\]]*))?\])*)"
)
_PART = re.compile(r"#([\w-]+)|\.([\w-]+)|\[([\w-]+)(?:=(\"[^\"]*\"|'[^']*'|[^\]]*))?\]")


@dataclass(eq=False)
class Element:
    """An element of a page parsed by :func:`parse_html`."""

    tag: str
    attrs: dict[str, str]
    parent: Element | None = None
    children: list[Element | str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    @property
    def text(self) -> str:
        """The text inside, as the browser's ``textContent``."""
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    def elements(self) -> Iterator[Element]:
        """Every element inside, in document order."""
        for child in self.children:
            if isinstance(child, Element):
                yield child
                yield from child.elements()

    def select(self, selector: str) -> list[Element]:
        """The elements inside matching *selector*: compound selectors (``tag``,
        ``#id``, ``.class``, ``[attr]``, ``[attr=value]``) joined by spaces
        (descendant). Commas and other combinators are not supported."""
        steps = [_compound(part) for part in selector.split()]
        return [e for e in self.elements() if _matches(e, steps)]

    def select_one(self, selector: str) -> Element:
        """The only element matching *selector* (an assertion error otherwise)."""
        found = self.select(selector)
        assert len(found) == 1, f"{len(found)} elements match {selector!r}"
        return found[0]


def _has_id(ident: str) -> Callable[[Element], bool]:
    return lambda e: e.attrs.get("id") == ident


def _has_class(cls: str) -> Callable[[Element], bool]:
    return lambda e: cls in e.classes


def _has_attr(name: str, value: str | None) -> Callable[[Element], bool]:
    if value is None:
        return lambda e: name in e.attrs
    return lambda e: e.attrs.get(name) == value


def _compound(part: str) -> Callable[[Element], bool]:
    match = _COMPOUND.fullmatch(part)
    if match is None:
        raise ValueError(f"unsupported selector {part!r}")
    tag = (match["tag"] or "*").lower()
    checks: list[Callable[[Element], bool]] = []
    if tag != "*":
        checks.append(lambda e: e.tag == tag)
    for ident, cls, attr, value in _PART.findall(match["rest"]):
        if ident:
            checks.append(_has_id(ident))
        elif cls:
            checks.append(_has_class(cls))
        elif value:
            checks.append(_has_attr(attr, value[1:-1] if value[0] in "\"'" else value))
        else:
            checks.append(_has_attr(attr, None))
    return lambda e: all(check(e) for check in checks)


def _matches(element: Element, steps: list[Callable[[Element], bool]]) -> bool:
    if not steps[-1](element):
        return False
    ancestor = element.parent
    for step in reversed(steps[:-1]):
        while ancestor is not None and not step(ancestor):
            ancestor = ancestor.parent
        if ancestor is None:
            return False
        ancestor = ancestor.parent
    return True


class _TreeBuilder(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, self.current)
        self.current.children.append(element)
        if tag not in _VOID:
            self.current = element

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.current.children.append(Element(tag, {k: v or "" for k, v in attrs}, self.current))

    def handle_endtag(self, tag: str) -> None:
        node: Element | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.children.append(data)


def parse_html(page: str) -> Element:
    """*page* as a tree of :class:`Element` (the document is the root)."""
    builder = _TreeBuilder()
    builder.feed(page)
    builder.close()
    return builder.root


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def app_settings(tmp_path: Path) -> Settings:
    """Settings for a fresh SQLite database under tmp_path, with a fixed secret key."""
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'todo.db'}",
        secret_key=SECRET_KEY,
        data_dir=tmp_path,
    )


def _running(settings: Settings) -> Iterator[FastAPI]:
    """The app for *settings*, migrated, with its lifespan running."""
    upgrade(settings.database_url)
    application = create_app(settings)
    with asyncio.Runner() as runner:
        lifespan = application.router.lifespan_context(application)
        runner.run(lifespan.__aenter__())
        try:
            yield application
        finally:
            runner.run(lifespan.__aexit__(None, None, None))


@pytest.fixture
def app(app_settings: Settings) -> Iterator[FastAPI]:
    """``create_app(app_settings)`` on a migrated database, its lifespan running."""
    yield from _running(app_settings)


@pytest.fixture
def make_client(app: FastAPI) -> Iterator[Callable[[], Client]]:
    """``make_client()``: a new :class:`Client` on ``app`` (a browser of its own)."""
    clients: list[Client] = []

    def make() -> Client:
        clients.append(Client(app))
        return clients[-1]

    yield make
    for made in clients:
        made.close()


@pytest.fixture
def client(make_client: Callable[[], Client]) -> Client:
    """A :class:`Client` on ``app``."""
    return make_client()


@contextlib.contextmanager
def serving(application: FastAPI) -> Iterator[str]:
    """uvicorn serving *application* on a free port of 127.0.0.1, in a thread; yields
    the base URL (``http://127.0.0.1:<port>``). The server is stopped at the end
    (open signal streams are ended first)."""
    server = make_server(
        application,
        "127.0.0.1",
        0,
        log_config=None,
        log_level="warning",
        access_log=False,
        ws="none",
    )
    thread = threading.Thread(target=server.run, name="todo-live-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started and thread.is_alive():
            assert time.monotonic() < deadline, f"uvicorn did not start in {START_TIMEOUT} s"
            time.sleep(0.01)
        assert server.started, "uvicorn stopped before it started serving"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT)
        assert not thread.is_alive(), f"uvicorn did not stop within {STOP_TIMEOUT} s"


@pytest.fixture
def live_server(app: FastAPI) -> Iterator[str]:
    """:func:`serving` ``app``: a real uvicorn in a thread; yields its base URL."""
    with serving(app) as url:
        yield url


@pytest.fixture
def postgres_settings(tmp_path: Path) -> Iterator[Settings]:
    """Settings for a fresh schema of the PostgreSQL test database, dropped after."""
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except Exception as err:
        admin.dispose()
        if os.environ.get("TOCSIN_REQUIRE_SERVICES") == "1":
            pytest.fail(f"PostgreSQL is required (TOCSIN_REQUIRE_SERVICES=1): {err}")
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}: {err}")
    schema = f"todo_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield Settings(
            database_url=url.render_as_string(hide_password=False),
            secret_key=SECRET_KEY,
            data_dir=tmp_path,
        )
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def postgres_app(postgres_settings: Settings) -> Iterator[FastAPI]:
    """Like ``app``, on PostgreSQL."""
    yield from _running(postgres_settings)
