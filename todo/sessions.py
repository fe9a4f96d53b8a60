"""Server-side login sessions: what makes logging out (and changing the password)
end a session for good.

The browser's session cookie (Starlette's ``SessionMiddleware``, signed, not
encrypted) holds a random token under ``"sid"`` while its user is logged in. The
server keeps only the token's SHA-256, in the ``user_sessions`` table, with the
user and an expiry; a request is logged in only while that row exists. Logging
out deletes the row, so a copied cookie replayed afterwards names nothing, and
a password change deletes every other row of the user.

A leaked database gives no usable token (only hashes); a leaked secret key lets
someone forge cookies, but not a token the server will accept.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
from collections.abc import Mapping, MutableMapping
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .db import utcnow
from .models import User, UserSession

COOKIE_KEY = "sid"
LIFETIME = datetime.timedelta(days=14)  # also the cookie's max_age (web.SESSION_MAX_AGE)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def session_id(cookie_session: Mapping[str, Any]) -> str | None:
    """The server-side id of the login session a cookie session names, or None.

    The id is what the ``user_sessions`` table and the ``sessions_ended`` signal
    use: the token's hash, never the token itself."""
    token = cookie_session.get(COOKIE_KEY)
    return _hash(token) if isinstance(token, str) and token else None


def start(db: Session, cookie_session: MutableMapping[str, Any], user: User) -> str:
    """Open a login session for *user*, kept in *cookie_session*; returns its id.

    The row is added to *db*'s transaction: it exists once that commits."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = UserSession(id=_hash(token), user=user, created_at=now, expires_at=now + LIFETIME)
    db.add(row)
    cookie_session[COOKIE_KEY] = token
    return row.id


def user_of(db: Session, cookie_session: Mapping[str, Any]) -> User | None:
    """The user whose live login session *cookie_session* names, or None (no
    token, an unknown or revoked one, or an expired one)."""
    ident = session_id(cookie_session)
    if ident is None:
        return None
    return db.scalar(
        select(User)
        .join(UserSession, UserSession.user_id == User.id)
        .where(UserSession.id == ident, UserSession.expires_at > utcnow())
    )


def end(db: Session, cookie_session: Mapping[str, Any]) -> str | None:
    """Delete the login session *cookie_session* names (in *db*'s transaction);
    returns its id, or None when it named none."""
    ident = session_id(cookie_session)
    if ident is not None:
        db.execute(delete(UserSession).where(UserSession.id == ident))
    return ident


def end_others(db: Session, user: User, keep: str | None) -> frozenset[str]:
    """Delete every login session of *user* but *keep*; returns the ids deleted."""
    query = select(UserSession.id).where(UserSession.user_id == user.id)
    if keep is not None:
        query = query.where(UserSession.id != keep)
    ended = frozenset(db.scalars(query))
    if ended:
        db.execute(delete(UserSession).where(UserSession.id.in_(ended)))
    return ended


def purge_expired(db: Session) -> None:
    """Delete the rows of sessions that expired (in *db*'s transaction)."""
    db.execute(delete(UserSession).where(UserSession.expires_at <= utcnow()))


__all__ = [
    "COOKIE_KEY",
    "LIFETIME",
    "end",
    "end_others",
    "purge_expired",
    "session_id",
    "start",
    "user_of",
]
