"""The app's receivers, connected by :func:`connect_receivers` when the app is created.

* ``log_completed`` / ``log_reopened``: on-commit receivers of the app's typed
  signals; they log only once the change is committed, and never if it rolls back.
* ``record_login_failure``: the lockout. A receiver of ``user_login_failed`` that
  records each failure and locks the account after too many.
* ``forget_login_failures``: a receiver of ``user_logged_in`` that clears them.
* ``start_timer`` / ``log_request``: the request signals of
  ``RequestSignalsMiddleware``, timing each request (logged at DEBUG).
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Mapping, MutableMapping
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import object_session
from starlette.requests import Request

from tocsin.contrib.asgi import RequestSignalsMiddleware
from tocsin.signals import request_finished, request_started, user_logged_in, user_login_failed

from .auth import username_error
from .db import Database, utcnow
from .models import LoginFailure, Todo, User
from .signals import todo_completed, todo_reopened

log = logging.getLogger("todo")
request_log = logging.getLogger("todo.requests")

MAX_FAILURES = 5
FAILURE_WINDOW = datetime.timedelta(minutes=15)
LOCKOUT = datetime.timedelta(minutes=15)

_CONTROL = {i: f"\\x{i:02x}" for i in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t"}


def _printable(text: str) -> str:
    """*text* for a log line: control characters escaped, so it cannot forge lines."""
    return text.translate(_CONTROL)


def log_completed(sender: type[Todo], todo: Todo, **kwargs: object) -> None:
    log.info(
        'Todo completed: "%s" (id=%s, user=%s)',
        _printable(todo.text),
        todo.id,
        todo.owner.username,
    )


def log_reopened(sender: type[Todo], todo: Todo, **kwargs: object) -> None:
    log.info(
        'Todo reopened: "%s" (id=%s, user=%s)', _printable(todo.text), todo.id, todo.owner.username
    )


def record_login_failure(
    sender: object,
    credentials: Mapping[str, Any],
    request: Request | None = None,
    **kwargs: object,
) -> None:
    """Record the failure; at the 5th within 15 minutes, lock the account for 15 minutes."""
    username = credentials.get("username")
    if not isinstance(username, str) or username_error(username) is not None:
        return  # no account can have that name
    database = _database_of(request)
    if database is None:
        return
    now = utcnow()
    with database.session() as session:
        session.execute(
            delete(LoginFailure).where(
                LoginFailure.username == username, LoginFailure.at < now - FAILURE_WINDOW
            )
        )
        session.add(LoginFailure(username=username, at=now))
        session.flush()
        failures = session.scalar(
            select(func.count()).select_from(LoginFailure).where(LoginFailure.username == username)
        )
        if failures is not None and failures >= MAX_FAILURES:
            user = session.scalar(select(User).where(User.username == username))
            locked = user is not None and user.locked_until is not None and user.locked_until > now
            if user is not None and not locked:
                user.locked_until = now + LOCKOUT
                log.warning(
                    "Login locked for %s until %s after %d failures",
                    username,
                    f"{user.locked_until:%H:%M:%S} UTC",
                    failures,
                )
        session.commit()


def forget_login_failures(sender: type[User], user: User, **kwargs: object) -> None:
    """A successful login clears the failures: in the login's own transaction."""
    session = object_session(user)
    if session is None:
        return
    session.execute(delete(LoginFailure).where(LoginFailure.username == user.username))
    user.locked_until = None


def _database_of(request: Request | None) -> Database | None:
    if request is None:
        return None
    database = getattr(request.app.state, "database", None)
    return database if isinstance(database, Database) else None


async def start_timer(sender: object, scope: MutableMapping[str, Any], **kwargs: object) -> None:
    scope["todo.started"] = time.perf_counter()


async def log_request(sender: object, scope: MutableMapping[str, Any], **kwargs: object) -> None:
    started = scope.get("todo.started")
    if isinstance(started, float):
        elapsed = (time.perf_counter() - started) * 1000
        request_log.debug("%s %s in %.1f ms", scope.get("method"), scope.get("path"), elapsed)


def connect_receivers() -> None:
    """Connect the app's receivers; connecting again changes nothing."""
    todo_completed.connect(log_completed, on_commit=True)
    todo_reopened.connect(log_reopened, on_commit=True)
    user_login_failed.connect(record_login_failure)
    user_logged_in.connect(forget_login_failures, sender=User)
    request_started.connect(start_timer, sender=RequestSignalsMiddleware)
    request_finished.connect(log_request, sender=RequestSignalsMiddleware)


__all__ = [
    "connect_receivers",
    "forget_login_failures",
    "log_completed",
    "log_reopened",
    "log_request",
    "record_login_failure",
    "start_timer",
]
