"""Accounts: validation, argon2 password hashes, logging in and out.

Logging in sends ``tocsin.signals.user_logged_in``, logging out
``user_logged_out``, and a failed login ``user_login_failed`` with the
credentials passed through ``cleanse_credentials()``, as Django's auth does. The
lockout after repeated failures is a receiver of that signal (receivers.py).
"""

from __future__ import annotations

import datetime
import math
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request

from tocsin.signals import cleanse_credentials, user_logged_in, user_logged_out, user_login_failed

from .db import utcnow
from .models import USERNAME_MAX, User

USERNAME_MIN = 3
PASSWORD_MIN = 8
PASSWORD_MAX = 128
_USERNAME = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)

# What survives a login or a logout: the browser's signal panel (see panel.py).
_KEPT_ACROSS_LOGINS = ("panel_id",)

_hasher = PasswordHasher()
# Verified against when the username is unknown, so that the answer takes as long.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class LoginLocked(Exception):
    """The account is locked after too many failed logins."""

    def __init__(self, until: datetime.datetime) -> None:
        self.until = until
        super().__init__(self.message)

    @property
    def minutes(self) -> int:
        seconds = (self.until - utcnow()).total_seconds()
        return max(1, math.ceil(seconds / 60))

    @property
    def message(self) -> str:
        unit = "minute" if self.minutes == 1 else "minutes"
        return f"Too many failed logins: try again in {self.minutes} {unit}."


def username_error(username: str) -> str | None:
    """Why *username* cannot be registered, or None."""
    if not USERNAME_MIN <= len(username) <= USERNAME_MAX:
        return f"The username must be {USERNAME_MIN} to {USERNAME_MAX} characters long."
    if not _USERNAME.fullmatch(username):
        return "The username may only contain letters, digits, '_', '.' and '-'."
    return None


def password_error(password: str) -> str | None:
    """Why *password* cannot be used, or None."""
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        return f"The password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long."
    return None


def _secret(password: str) -> bytes:
    # Any string JSON can carry, lone surrogates included, is a usable password.
    return password.encode("utf-8", "surrogatepass")


def hash_password(password: str) -> str:
    return _hasher.hash(_secret(password))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, _secret(password))
    except (VerificationError, InvalidHashError):
        return False


def authenticate(session: Session, request: Request, username: str, password: str) -> User:
    """The user with these credentials; raises :class:`LoginLocked`, or
    ``PermissionError`` for wrong credentials. Every failure sends
    ``user_login_failed`` (its lockout receiver commits on its own)."""
    usable = username_error(username) is None and password_error(password) is None
    user = session.scalar(select(User).where(User.username == username)) if usable else None
    locked_until = user.locked_until if user is not None else None
    if user is not None and locked_until is not None and locked_until > utcnow():
        _failed(request, username, password)
        raise LoginLocked(locked_until)
    if user is None:
        if usable:
            _verify(_DUMMY_HASH, password)
        _failed(request, username, password)
        raise PermissionError("Wrong username or password.")
    if not _verify(user.password_hash, password):
        _failed(request, username, password)
        raise PermissionError("Wrong username or password.")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def _failed(request: Request, username: str, password: str) -> None:
    credentials = cleanse_credentials({"username": username, "password": password})
    user_login_failed.send(sender=__name__, credentials=credentials, request=request)


def login(request: Request, user: User) -> None:
    """Start a new session for *user* (only the panel id survives) and send
    ``user_logged_in``."""
    _rotate(request)
    request.session["user_id"] = user.id
    user_logged_in.send(sender=User, request=request, user=user)


def logout(request: Request, user: User | None) -> None:
    """Send ``user_logged_out`` (before the session ends, as Django does), then
    start a new, anonymous session."""
    user_logged_out.send(
        sender=User if user is not None else type(None), request=request, user=user
    )
    _rotate(request)


def _rotate(request: Request) -> None:
    session = request.session
    kept = {key: session[key] for key in _KEPT_ACROSS_LOGINS if key in session}
    session.clear()
    session.update(kept)
    session["csrf_token"] = secrets.token_urlsafe(32)


def current_user(request: Request, session: Session) -> User | None:
    """The logged-in user, or None (a session naming a deleted user is ended)."""
    user_id = request.session.get("user_id")
    if not isinstance(user_id, int):
        return None
    user = session.get(User, user_id)
    if user is None:
        _rotate(request)
    return user
