"""The Todo app's HTTP hardening: files readable by their owner only."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import PASSWORD, Client

from todo import Settings, create_app
from todo.db import make_engine, upgrade


def sign_up(http: Client | httpx.Client, username: str) -> None:
    """Create *username* through the API and log *http* in as them."""
    user = {"username": username, "password": PASSWORD}
    assert http.post("/api/users", json=user).status_code == 201
    assert http.post("/api/session", json=user).status_code == 200


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
