"""The Todo app's HTTP hardening: ``/docs`` without a CDN (todo/apidocs.py), and
files readable by their owner only.

The requests run twice, through the ``web`` fixture: against the app in process
(``httpx.ASGITransport``) and against a real uvicorn (``live_server``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import PASSWORD, Client, parse_html

from todo import Settings, create_app
from todo.db import make_engine, upgrade

CHUNK = 64 * 1024


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
