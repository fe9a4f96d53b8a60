"""The Todo app's model and receivers, on a real (migrated) SQLite database.

``mark_as_done()`` / ``mark_as_not_done()`` send the app's typed signals only on a
real change; the logging receiver runs only after the COMMIT; the lockout receiver
counts failed logins in a sliding 15-minute window.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.requests import Request

from tocsin.signals import cleanse_credentials, user_login_failed
from tocsin.testing import capture
from todo import auth
from todo.db import Database, upgrade, utcnow
from todo.models import LoginFailure, Todo, User
from todo.receivers import connect_receivers
from todo.signals import todo_completed, todo_reopened

PASSWORD = "correct horse battery"


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite database, with the app's receivers connected."""
    url = f"sqlite:///{tmp_path / 'todo.db'}"
    upgrade(url)
    connect_receivers()
    database = Database(url)
    yield database
    database.dispose()


@pytest.fixture
def session(database: Database) -> Iterator[Session]:
    with database.session() as session:
        yield session


def make_user(session: Session, username: str = "ada") -> User:
    user = User(username=username, password_hash=auth.hash_password(PASSWORD))
    session.add(user)
    session.commit()
    return user


def make_todo(session: Session, user: User, text: str = "buy milk", *, done: bool = False) -> Todo:
    todo = Todo(text=text, done=done, owner_id=user.id)
    session.add(todo)
    session.commit()
    return todo


def fake_request(database: Database) -> Request:
    """A request whose app holds *database*, as the lockout receiver expects."""
    app = SimpleNamespace(state=SimpleNamespace(database=database))
    return Request({"type": "http", "method": "POST", "path": "/login", "headers": [], "app": app})


# -- mark_as_done / mark_as_not_done ---------------------------------------------------------


def test_mark_as_done_sends_todo_completed(session: Session) -> None:
    """An open todo marked done sends todo_completed once, with sender=Todo and todo=."""
    todo = make_todo(session, make_user(session))
    before = utcnow()
    with capture(todo_completed) as completed, capture(todo_reopened) as reopened:
        assert todo.mark_as_done() is True
    completed.assert_sent_once_with(Todo, todo=todo)
    reopened.assert_not_sent()
    assert todo.done is True
    assert todo.completed_at is not None
    assert before <= todo.completed_at <= utcnow()


def test_mark_as_done_twice_sends_once(session: Session) -> None:
    """A todo already done is not changed, and nothing is sent."""
    todo = make_todo(session, make_user(session))
    todo.mark_as_done()
    session.commit()
    completed_at = todo.completed_at
    with capture(todo_completed) as completed:
        assert todo.mark_as_done() is False
    completed.assert_not_sent()
    assert todo.done is True
    assert todo.completed_at == completed_at


def test_mark_as_not_done_sends_todo_reopened(session: Session) -> None:
    """A done todo reopened sends todo_reopened, and forgets when it was completed."""
    todo = make_todo(session, make_user(session))
    todo.mark_as_done()
    session.commit()
    with capture(todo_reopened) as reopened, capture(todo_completed) as completed:
        assert todo.mark_as_not_done() is True
    reopened.assert_sent_once_with(Todo, todo=todo)
    completed.assert_not_sent()
    assert todo.done is False
    assert todo.completed_at is None
    session.commit()
    session.expire_all()
    stored = session.get(Todo, todo.id)
    assert stored is not None
    assert (stored.done, stored.completed_at) == (False, None)


def test_mark_as_not_done_on_an_open_todo_sends_nothing(session: Session) -> None:
    todo = make_todo(session, make_user(session))
    with capture(todo_reopened) as reopened:
        assert todo.mark_as_not_done() is False
    reopened.assert_not_sent()
    assert (todo.done, todo.completed_at) == (False, None)


def test_completed_at_is_stored_in_utc(session: Session) -> None:
    """completed_at comes back from the database as an aware UTC datetime."""
    todo = make_todo(session, make_user(session))
    todo.mark_as_done()
    session.commit()
    session.expire_all()
    stored = session.get(Todo, todo.id)
    assert stored is not None
    assert stored.done is True
    assert stored.completed_at is not None
    assert stored.completed_at.utcoffset() == datetime.timedelta(0)


# -- the logging receiver: after the commit only ---------------------------------------------


def completion_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "todo" and record.getMessage().startswith("Todo completed")
    ]


def test_completion_is_logged_after_the_commit(
    session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="todo")
    user = make_user(session, "grace")
    todo = make_todo(session, user, "file taxes")
    todo.mark_as_done()
    session.flush()
    assert completion_logs(caplog) == []  # sent, but not committed yet
    session.commit()
    assert completion_logs(caplog) == [f'Todo completed: "file taxes" (id={todo.id}, user=grace)']
    (record,) = [r for r in caplog.records if r.getMessage().startswith("Todo completed")]
    assert record.levelno == logging.INFO


def test_completion_is_not_logged_after_a_rollback(
    session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="todo")
    todo = make_todo(session, make_user(session))
    todo.mark_as_done()
    session.flush()
    session.rollback()
    assert completion_logs(caplog) == []
    session.commit()  # a later commit does not bring it back
    assert completion_logs(caplog) == []


def test_completion_is_logged_once(session: Session, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="todo")
    todo = make_todo(session, make_user(session))
    todo.mark_as_done()
    todo.mark_as_done()  # no change, no second send
    session.commit()
    session.commit()
    assert len(completion_logs(caplog)) == 1


def test_completion_log_line_cannot_be_forged(
    session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    """A newline in the text does not start a new log line."""
    caplog.set_level(logging.INFO, logger="todo")
    todo = make_todo(session, make_user(session), "a\nTodo completed: forged")
    todo.mark_as_done()
    session.commit()
    (message,) = completion_logs(caplog)
    assert "\n" not in message


# -- the lockout receiver --------------------------------------------------------------------


def fail_login(database: Database, username: str = "ada") -> None:
    """Send user_login_failed as the app does for a wrong password."""
    credentials = cleanse_credentials({"username": username, "password": "wrong password"})
    user_login_failed.send(
        sender="todo.auth", credentials=credentials, request=fake_request(database)
    )


def add_failures(session: Session, username: str, *minutes_ago: float) -> None:
    now = utcnow()
    for minutes in minutes_ago:
        at = now - datetime.timedelta(minutes=minutes)
        session.add(LoginFailure(username=username, at=at))
    session.commit()


def locked_until(database: Database, username: str = "ada") -> datetime.datetime | None:
    with database.session() as session:
        return session.scalar(select(User.locked_until).where(User.username == username))


def failures(database: Database, username: str = "ada") -> int:
    with database.session() as session:
        count = session.scalar(
            select(func.count()).select_from(LoginFailure).where(LoginFailure.username == username)
        )
    return count or 0


def test_each_failed_login_is_recorded(database: Database, session: Session) -> None:
    make_user(session)
    fail_login(database)
    fail_login(database)
    assert failures(database) == 2
    assert locked_until(database) is None


def test_five_failures_lock_the_account_for_15_minutes(
    database: Database, session: Session
) -> None:
    make_user(session)
    for _ in range(4):
        fail_login(database)
    assert locked_until(database) is None
    before = utcnow()
    fail_login(database)
    until = locked_until(database)
    assert until is not None
    lockout = datetime.timedelta(minutes=15)
    assert before + lockout <= until <= utcnow() + lockout


def test_failures_within_15_minutes_count(database: Database, session: Session) -> None:
    """Four earlier failures within the window, and a fifth now: locked."""
    make_user(session)
    add_failures(session, "ada", 14, 10, 5, 1)
    fail_login(database)
    assert locked_until(database) is not None


def test_failures_spread_over_more_than_15_minutes_do_not_lock(
    database: Database, session: Session
) -> None:
    """Failures older than 15 minutes are forgotten: five in all, but not within 15 minutes."""
    make_user(session)
    add_failures(session, "ada", 40, 30, 20, 16)
    fail_login(database)
    assert locked_until(database) is None
    add_failures(session, "ada", 14, 10)
    fail_login(database)  # three within the window now
    assert locked_until(database) is None


def test_failures_of_another_user_do_not_count(database: Database, session: Session) -> None:
    make_user(session, "ada")
    make_user(session, "grace")
    add_failures(session, "grace", 4, 3, 2, 1)
    fail_login(database, "ada")
    assert locked_until(database, "ada") is None


def test_a_locked_user_cannot_log_in_even_with_the_right_password(
    database: Database, session: Session
) -> None:
    make_user(session)
    for _ in range(5):
        fail_login(database)
    with database.session() as other, pytest.raises(auth.LoginLocked) as locked:
        auth.authenticate(other, fake_request(database), "ada", PASSWORD)
    assert locked.value.message in {
        "Too many failed logins: try again in 15 minutes.",
        "Too many failed logins: try again in 14 minutes.",
    }


def test_the_lock_expires(database: Database, session: Session) -> None:
    """Once locked_until has passed, the right password logs in again."""
    user = make_user(session)
    add_failures(session, "ada", 20, 19, 18, 17, 16)
    user.locked_until = utcnow() - datetime.timedelta(seconds=1)
    session.commit()
    with database.session() as other:
        found = auth.authenticate(other, fake_request(database), "ada", PASSWORD)
    assert found.id == user.id


def test_a_failure_after_the_lock_expired_does_not_lock_again(
    database: Database, session: Session
) -> None:
    user = make_user(session)
    add_failures(session, "ada", 20, 19, 18, 17, 16)
    user.locked_until = utcnow() - datetime.timedelta(seconds=1)
    session.commit()
    fail_login(database)
    until = locked_until(database)
    assert until is not None
    assert until < utcnow()  # still the old, expired lock
