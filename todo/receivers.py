"""The app's receivers, connected by :func:`connect_receivers` when the app is created.

* ``log_completed`` / ``log_reopened``: on-commit receivers of the app's typed
  signals; they log only once the change is committed, and never if it rolls back.
* ``record_login_failure``: the lockout. A receiver of ``user_login_failed`` that
  locks the login throttle's counters that too many failures filled.
* ``forget_login_failures``: a receiver of ``user_logged_in`` that gives a
  successful login's charges back.
* ``start_timer`` / ``log_request``: the request signals of
  ``RequestSignalsMiddleware``, timing each request (logged at DEBUG).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, MutableMapping
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request

from tocsin.contrib.asgi import RequestSignalsMiddleware
from tocsin.signals import request_finished, request_started, user_logged_in, user_login_failed

from . import auth, throttle
from .models import Todo, User
from .signals import todo_completed, todo_reopened
from .text import printable

log = logging.getLogger("todo")
request_log = logging.getLogger("todo.requests")


def log_completed(sender: type[Todo], todo: Todo, **kwargs: object) -> None:
    log.info(
        'Todo completed: "%s" (id=%s, user=%s)',
        printable(todo.text),
        todo.id,
        todo.owner.username,
    )


def log_reopened(sender: type[Todo], todo: Todo, **kwargs: object) -> None:
    log.info(
        'Todo reopened: "%s" (id=%s, user=%s)', printable(todo.text), todo.id, todo.owner.username
    )


def record_login_failure(
    sender: object,
    credentials: Mapping[str, Any],
    request: Request | None = None,
    **kwargs: object,
) -> None:
    """The lockout: a failed password leaves its throttle charges counted, and a
    counter that is now full is locked (5 minutes, then longer: see throttle.py).
    An attempt the throttle refused is not counted: a lock is never extended."""
    attempt, db = _login_attempt(request)
    if attempt is None or db is None or attempt.refused:
        return
    for key, until in throttle.failed(db, attempt):
        log.warning("Logins locked for %s until %s", printable(key), auth.lock_time(until))


def forget_login_failures(sender: type[User], user: User, **kwargs: object) -> None:
    """A successful login gives its throttle charges back and clears the counters of
    this browser or address for that username: in the login's own transaction."""
    attempt, db = _login_attempt(kwargs.get("request"))
    if attempt is not None and db is not None:
        throttle.succeeded(db, attempt)


def _login_attempt(request: object) -> tuple[throttle.Attempt | None, Session | None]:
    """The request's login attempt (set by auth.authenticate) and database session."""
    if not isinstance(request, Request):
        return None, None
    attempt = getattr(request.state, "login_attempt", None)
    db = getattr(request.state, "db_session", None)
    if not isinstance(attempt, throttle.Attempt) or not isinstance(db, Session):
        return None, None
    return attempt, db


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
