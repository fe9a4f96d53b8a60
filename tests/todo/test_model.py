"""The Todo app's model and receivers, on a real (migrated) SQLite database.

``mark_as_done()`` / ``mark_as_not_done()`` send the app's typed signals only on a
real change; the logging receiver runs only after the COMMIT; the lockout receiver
is tested with the login throttle, in test_throttle.py.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from tocsin.testing import capture
from todo import auth
from todo.db import Database, upgrade, utcnow
from todo.models import Todo, User
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
