"""Accounts: validation, argon2 password hashes, logging in and out, changing the
password.

Logging in sends ``tocsin.signals.user_logged_in``, logging out
``user_logged_out``, and a failed login ``user_login_failed`` with the
credentials passed through ``cleanse_credentials()``, as Django's auth does.

Every login attempt is first charged to the login throttle (throttle.py), which
refuses it before its password is checked when too many have failed; the
receivers of ``user_login_failed`` and ``user_logged_in`` (receivers.py) lock
or clear its counters. A login opens a server-side session (sessions.py) that
logging out deletes.

A request holds at most one database connection, and never while a password
is being checked: the throttle's charges are committed first.
"""

from __future__ import annotations

import datetime
import math
import re
import secrets
import threading
import unicodedata
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.requests import Request

from tocsin.signals import cleanse_credentials, user_logged_in, user_logged_out, user_login_failed

from . import panel, sessions, throttle
from .models import USERNAME_MAX, User
from .signals import sessions_ended

USERNAME_MIN = 3
PASSWORD_MIN = 8
PASSWORD_MAX = 128
_USERNAME = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)

# What survives a login or a logout: the browsers this one is trusted for.
_KEPT_ACROSS_LOGINS = ("devices",)
MAX_DEVICES = 5  # usernames a browser remembers logging in as

# OWASP's recommended argon2id parameters (19 MiB, 2 iterations, 1 lane): about
# 25 ms a check here. Older hashes are upgraded at their next login.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified against when the username is unknown, so that the answer takes as long.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

# Password hashing is the costly part of a request: at most this many at once,
# so that a flood of logins or registrations leaves CPU for everyone else.
HASH_SLOTS = 1
HASH_WAIT = 5.0  # seconds a request waits for a slot before it is refused (429)
_hash_slots = threading.BoundedSemaphore(HASH_SLOTS)


class LoginLocked(Exception):
    """Too many failed logins: refused until *until* (a Unix timestamp)."""

    reason = "Too many failed logins"

    def __init__(self, until: float) -> None:
        self.until = until
        super().__init__(self.message)

    @property
    def seconds(self) -> int:
        return max(1, math.ceil(self.until - throttle.clock()))

    @property
    def message(self) -> str:
        minutes = max(1, math.ceil(self.seconds / 60))
        unit = "minute" if minutes == 1 else "minutes"
        return f"{self.reason}: try again in {minutes} {unit}."


class TooManyRegistrations(LoginLocked):
    """Too many accounts were created from this address lately."""

    reason = "Too many accounts were created from your address"


class Busy(Exception):
    """Too many passwords are being checked right now; retry in a few seconds."""

    seconds = 5
    message = "The server is busy: try again in a few seconds."

    def __init__(self) -> None:
        super().__init__(self.message)


def normalize_username(username: str) -> str:
    """*username* as it is stored and compared: NFKC (so that full-width
    letters are plain ASCII), without surrounding whitespace. Uniqueness ignores case."""
    return unicodedata.normalize("NFKC", username).strip()


def username_error(username: str) -> str | None:
    """Why *username* (normalized) cannot be registered, or None."""
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


def user_named(db: Session, username: str) -> User | None:
    """The user called *username* (normalized), whatever the case."""
    return db.scalar(select(User).where(func.lower(User.username) == username.lower()))


def _secret(password: str) -> bytes:
    # Any string JSON can carry, lone surrogates included, is a usable password.
    return password.encode("utf-8", "surrogatepass")


class _HashSlot:
    def __enter__(self) -> None:
        if not _hash_slots.acquire(timeout=HASH_WAIT):
            raise Busy

    def __exit__(self, *exc_info: object) -> None:
        _hash_slots.release()


def hash_password(password: str) -> str:
    """An argon2id hash of *password*; raises :class:`Busy` when the server is."""
    with _HashSlot():
        return _hasher.hash(_secret(password))


def _verify(password_hash: str, password: str) -> bool:
    with _HashSlot():
        try:
            return _hasher.verify(password_hash, _secret(password))
        except (VerificationError, InvalidHashError):
            return False


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _device(request: Request, username: str) -> str | None:
    """The id this browser got at an earlier login as *username*, if any."""
    devices = request.session.get("devices")
    device = devices.get(username.lower()) if isinstance(devices, dict) else None
    return device if isinstance(device, str) else None


def _remember_device(request: Request, user: User) -> None:
    devices = request.session.get("devices")
    devices = dict(devices) if isinstance(devices, dict) else {}
    devices.pop(user.username.lower(), None)
    devices[user.username.lower()] = secrets.token_urlsafe(12)
    while len(devices) > MAX_DEVICES:  # the oldest go first
        devices.pop(next(iter(devices)))
    request.session["devices"] = devices


def charge_registration(db: Session, request: Request) -> None:
    """Count a registration from the request's address, and commit; raises
    :class:`TooManyRegistrations` when the address made too many lately. Called
    before the password is hashed, so that a flood of sign-ups costs no CPU."""
    attempt = throttle.reserve(
        db, throttle.Attempt(""), [throttle.registrations(client_address(request))]
    )
    db.commit()
    if attempt.refused_until is not None:
        raise TooManyRegistrations(attempt.refused_until)


def authenticate(db: Session, request: Request, username: str, password: str) -> User:
    """The user with these credentials.

    Raises :class:`LoginLocked` when the throttle refuses the attempt (its
    password is not checked), :class:`Busy`, or ``PermissionError`` for wrong
    credentials. Every refusal and failure sends ``user_login_failed`` and
    commits *db* (the throttle's counters)."""
    name = normalize_username(username)
    usable = username_error(name) is None and password_error(password) is None
    key = name.lower() if usable else ""
    address = client_address(request)
    wanted = (
        throttle.counters(key, address, _device(request, key))
        if usable
        else throttle.counters("", address, None)[:1]  # only the address's counter
    )
    attempt = throttle.reserve(db, throttle.Attempt(key), wanted)
    request.state.login_attempt = attempt
    user = user_named(db, name) if usable and not attempt.refused else None
    db.commit()  # the charges are seen by every request; the connection is free again
    if attempt.refused_until is not None:
        _failed(db, request, username, password)
        raise LoginLocked(attempt.refused_until)
    try:
        valid = _verify(user.password_hash if user else _DUMMY_HASH, password) if usable else False
    except Busy:
        throttle.release(db, attempt)  # not checked: give the charges back
        db.commit()
        raise
    if user is None or not valid:
        _failed(db, request, username, password)
        raise PermissionError("Wrong username or password.")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def _failed(db: Session, request: Request, username: str, password: str) -> None:
    credentials = cleanse_credentials({"username": username, "password": password})
    user_login_failed.send(sender=__name__, credentials=credentials, request=request)
    db.commit()


def login(db: Session, request: Request, user: User) -> None:
    """Start a new session for *user* (the panel starts afresh, carrying this
    request's events) and send ``user_logged_in``; the caller commits *db*."""
    _rotate(request, carry=True)
    sessions.purge_expired(db)
    sessions.start(db, request.session, user)
    request.session["user_id"] = user.id
    _remember_device(request, user)
    user_logged_in.send(sender=User, request=request, user=user)


def logout(db: Session, request: Request, user: User | None) -> None:
    """Send ``user_logged_out`` (before the session ends, as Django does), delete
    the server's session, then start a new, anonymous one; the caller commits."""
    user_logged_out.send(
        sender=User if user is not None else type(None), request=request, user=user
    )
    ended = sessions.end(db, request.session)
    if user is not None and ended is not None:
        sessions_ended.send(sender=User, user=user, session_ids=frozenset({ended}))
    _rotate(request, carry=False)


def change_password(
    db: Session, request: Request, user: User, current: str, new: str
) -> frozenset[str]:
    """Check *current* (as a login would, throttle included), store *new*, end every
    session of *user*, and open a new one for this browser, as Django's
    ``update_session_auth_hash`` lets a site do. Returns the ids of the sessions
    ended. Raises ``ValueError`` for an unusable new password, and what
    :func:`authenticate` raises for a wrong current one."""
    error = password_error(new)
    if error:
        raise ValueError(error)
    if authenticate(db, request, user.username, current).id != user.id:
        raise PermissionError("Wrong password.")  # renamed meanwhile: refuse
    throttle.succeeded(db, request.state.login_attempt)  # as a login's receiver does
    user.password_hash = hash_password(new)
    ended = sessions.end_others(db, user, keep=None)
    _rotate(request, carry=True)
    sessions.start(db, request.session, user)
    request.session["user_id"] = user.id
    _remember_device(request, user)
    if ended:
        sessions_ended.send(sender=User, user=user, session_ids=ended)
    return ended


def _rotate(request: Request, *, carry: bool) -> None:
    session = request.session
    kept: dict[str, Any] = {key: session[key] for key in _KEPT_ACROSS_LOGINS if key in session}
    session.clear()
    session.update(kept)
    session["csrf_token"] = secrets.token_urlsafe(32)
    panel.reset_panel(request, carry=carry)


def current_user(request: Request, db: Session) -> User | None:
    """The logged-in user, or None. A cookie naming a session that ended (logged
    out, replaced by a password change, expired, its user deleted) is refused,
    and the browser's session starts afresh."""
    if sessions.COOKIE_KEY not in request.session and "user_id" not in request.session:
        return None
    user = sessions.user_of(db, request.session)
    if user is None:
        _rotate(request, carry=False)
    return user


def lock_time(until: float) -> str:
    """*until* (a Unix timestamp) for a log line."""
    return f"{datetime.datetime.fromtimestamp(until, datetime.UTC):%H:%M:%S} UTC"
