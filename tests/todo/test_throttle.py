"""The login throttle (todo/throttle.py) on real databases, SQLite and PostgreSQL.

Its promises: a counter never admits more attempts in its window than its limit,
however many arrive at once; a full counter is locked for 5, then 10, 20, 40 and
60 minutes; attempts refused during a lock are not counted, so they never extend
it; a success gives its charges back; idle counters are deleted. The receivers
of ``user_login_failed`` and ``user_logged_in`` drive it, as the app sends them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request

from tocsin.signals import cleanse_credentials, user_logged_in, user_login_failed
from todo import Settings, throttle
from todo.db import Database, upgrade
from todo.models import LoginThrottle, User
from todo.receivers import connect_receivers

NOW = 1_800_000_000.0
MINUTE = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += minutes * MINUTE


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(throttle, "clock", fake)
    return fake


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated database of each kind, with the app's receivers connected."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'todo.db'}"
    else:
        settings: Settings = request.getfixturevalue("postgres_settings")
        url = settings.database_url
    upgrade(url)
    connect_receivers()
    database = Database(url)
    yield database
    database.dispose()


COUNTER = throttle.Counter("user-client:ada:10.0.0.1", 5, cleared_on_success=True)


def charge(database: Database, counter: throttle.Counter = COUNTER) -> throttle.Attempt:
    with database.session() as db:
        attempt = throttle.reserve(db, throttle.Attempt("ada"), [counter])
        db.commit()
    return attempt


def fail(database: Database, attempt: throttle.Attempt) -> list[tuple[str, float]]:
    with database.session() as db:
        locked = throttle.failed(db, attempt)
        db.commit()
    return locked


def row(database: Database, key: str = COUNTER.key) -> LoginThrottle | None:
    with database.session() as db:
        return db.scalar(select(LoginThrottle).where(LoginThrottle.key == key))


def test_counters_for_an_unknown_browser_and_for_a_known_one() -> None:
    assert [c.key for c in throttle.counters("ada", "10.0.0.1", None)] == [
        "client:10.0.0.1",
        "user-client:ada:10.0.0.1",
        "user:ada",
    ]
    assert [c.key for c in throttle.counters("ada", "10.0.0.1", "d3v")] == ["device:ada:d3v"]


def test_a_counter_admits_its_limit_then_refuses_until_the_window_ends(
    database: Database, clock: Clock
) -> None:
    attempts = [charge(database) for _ in range(5)]
    assert not any(a.refused for a in attempts)
    clock.advance(1)
    refused = charge(database)
    assert refused.refused_until == NOW + throttle.WINDOW  # the window's end: no lock yet
    assert refused.counters == []
    clock.advance(15)
    assert not charge(database).refused  # a new window


def test_failures_fill_the_counter_and_lock_it_for_five_minutes(
    database: Database, clock: Clock
) -> None:
    for _ in range(4):
        assert fail(database, charge(database)) == []
    assert fail(database, charge(database)) == [(COUNTER.key, NOW + 5 * MINUTE)]
    refused = charge(database)
    assert refused.refused_until == NOW + 5 * MINUTE


def test_attempts_during_a_lock_neither_count_nor_extend_it(
    database: Database, clock: Clock
) -> None:
    for _ in range(5):
        fail(database, charge(database))
    for _ in range(100):
        clock.advance(0.04)
        assert charge(database).refused_until == NOW + 5 * MINUTE
    counter = row(database)
    assert counter is not None
    assert (counter.failures, counter.lockouts) == (0, 1)
    clock.now = NOW + 5 * MINUTE
    assert not charge(database).refused  # the lock ended when it said it would


def test_each_lockout_is_longer_up_to_an_hour(database: Database, clock: Clock) -> None:
    lengths = []
    for _ in range(6):
        start = clock.now
        for _ in range(5):
            locked = fail(database, charge(database))
        ((_, until),) = locked
        lengths.append((until - start) / MINUTE)
        clock.now = until
    assert lengths == [5, 10, 20, 40, 60, 60]


def test_a_success_gives_its_charge_back_and_clears_this_browsers_counter(
    database: Database, clock: Clock
) -> None:
    shared = throttle.Counter("user:ada", 20, cleared_on_success=False)
    for _ in range(3):
        fail(database, charge(database, COUNTER))
        fail(database, charge(database, shared))
    with database.session() as db:
        attempt = throttle.reserve(db, throttle.Attempt("ada"), [COUNTER, shared])
        throttle.succeeded(db, attempt)
        db.commit()
    mine, everyone = row(database, COUNTER.key), row(database, shared.key)
    assert mine is not None
    assert everyone is not None
    assert mine.failures == 0  # cleared
    assert everyone.failures == 3  # only this attempt's charge was given back


def test_a_refusal_by_a_later_counter_gives_the_earlier_charges_back(
    database: Database, clock: Clock
) -> None:
    full = throttle.Counter("user:ada", 1, cleared_on_success=False)
    charge(database, full)
    attempt = charge(database, COUNTER)
    assert not attempt.refused
    with database.session() as db:
        refused = throttle.reserve(db, throttle.Attempt("ada"), [COUNTER, full])
        db.commit()
    assert refused.refused
    counter = row(database)
    assert counter is not None
    assert counter.failures == 1  # the first charge only


def test_idle_counters_are_deleted(
    database: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(throttle, "_purge", throttle._Purger())
    charge(database)
    clock.advance(24 * 60 + 1)
    charge(database, throttle.Counter("client:10.0.0.2", 50, cleared_on_success=False))
    assert row(database) is None
    assert row(database, "client:10.0.0.2") is not None


def test_concurrent_attempts_never_pass_the_limit(database: Database, clock: Clock) -> None:
    """40 threads charge one counter at the same moment: exactly 5 are admitted."""
    start = threading.Barrier(40)
    admitted: list[bool] = []

    def attempt() -> None:
        start.wait(10)
        admitted.append(not charge(database).refused)

    threads = [threading.Thread(target=attempt) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(admitted) == 40
    assert admitted.count(True) == 5


# -- the receivers ----------------------------------------------------------------------------


def request_with(db: Session, attempt: throttle.Attempt) -> Request:
    request = Request({"type": "http", "method": "POST", "path": "/login", "headers": []})
    request.state.login_attempt = attempt
    request.state.db_session = db
    return request


def test_user_login_failed_locks_a_full_counter(database: Database, clock: Clock) -> None:
    credentials = cleanse_credentials({"username": "ada", "password": "wrong"})
    for _ in range(5):
        attempt = charge(database)
        with database.session() as db:
            user_login_failed.send(
                sender="todo.auth", credentials=credentials, request=request_with(db, attempt)
            )
            db.commit()
    counter = row(database)
    assert counter is not None
    assert counter.locked_until == NOW + 5 * MINUTE


def test_user_login_failed_ignores_a_refused_attempt(database: Database, clock: Clock) -> None:
    refused = throttle.Attempt("ada", refused_until=NOW + 60)
    with database.session() as db:
        user_login_failed.send(
            sender="todo.auth", credentials={}, request=request_with(db, refused)
        )
        db.commit()
    assert row(database) is None


def test_user_logged_in_gives_the_charges_back(database: Database, clock: Clock) -> None:
    for _ in range(4):
        fail(database, charge(database))
    attempt = charge(database)
    with database.session() as db:
        user = User(username="ada", password_hash="x")
        db.add(user)
        db.flush()
        user_logged_in.send(sender=User, request=request_with(db, attempt), user=user)
        db.commit()
    counter = row(database)
    assert counter is not None
    assert counter.failures == 0


def test_a_request_without_an_attempt_is_ignored(database: Database) -> None:
    request = Request({"type": "http", "method": "POST", "path": "/login", "headers": []})
    request.state.db_session = SimpleNamespace()  # not a Session: never touched
    user_login_failed.send(sender="todo.auth", credentials={}, request=request)
    user_login_failed.send(sender="todo.auth", credentials={})
