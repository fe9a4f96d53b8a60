"""The tables: users, their login sessions, their todos, the login throttle's
counters (see throttle.py), and the remote's outbox (see remote.py)."""

from __future__ import annotations

import datetime
import unicodedata

from sqlalchemy import Float, ForeignKey, Index, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tocsin.contrib.sqlalchemy import Outbox

from . import signals
from .db import Base, UTCDateTime, utcnow

# With Redis, todo_completed's event is written here in the transaction that completes
# the todo, published after the commit, and relayed by a worker if Redis was down then
# (todo/remote.py). Defined on Base.metadata for the migrations; the app writes its
# rows through this outbox, a worker relays them through one with its engine.
OUTBOX_TABLE = "tocsin_outbox"
outbox = Outbox(metadata=Base.metadata, table_name=OUTBOX_TABLE)

USERNAME_MAX = 40
TEXT_MAX = 500


def is_storable(text: str) -> bool:
    """Whether every database can store *text*: no NUL, no lone surrogates (which
    JSON's ``"\\ud800"`` makes)."""
    return "\x00" not in text and not any("\ud800" <= char <= "\udfff" for char in text)


# What str.strip() strips (str.isspace()), spelled out for the API's schema pattern.
WHITESPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
# Letters that fonts draw blank: the Hangul fillers, and the empty Braille pattern.
FILLERS = "\u115f\u1160\u3164\uffa0\u2800"
_INVISIBLE_CATEGORIES = {"Cc", "Cf"}  # controls, and format characters (U+200B...)


def is_invisible(char: str) -> bool:
    """Whether the character *char* shows nothing by itself: whitespace, a control
    or format character (zero-width space, joiners, direction marks...), a filler."""
    return (
        char in WHITESPACE or char in FILLERS or unicodedata.category(char) in _INVISIBLE_CATEGORIES
    )


def clean_text(text: str) -> str:
    """*text* as a todo's text, before :func:`text_error` checks it: stripped."""
    return text.strip(WHITESPACE)


def text_error(text: str) -> str | None:
    """Why *text* (cleaned by :func:`clean_text`) cannot be a todo's text, or None."""
    if not text:
        return "Please write something: a todo cannot be empty."
    if all(map(is_invisible, text)):
        return "The text has no visible characters: please write something."
    if len(text) > TEXT_MAX:
        return f"A todo is at most {TEXT_MAX} characters long; this one has {len(text)}."
    if not is_storable(text):
        return "The text contains characters that cannot be stored."
    return None


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        # Shown in the signal panel: never the password hash.
        return f"<User id={self.id} {self.username!r}>"


# Usernames are unique whatever their case: "eve" and "EVE" are one account. They
# are NFKC-normalized ASCII (auth.normalize_username), so lower() is enough.
Index("uq_users_username_lower", func.lower(User.username), unique=True)


class UserSession(Base):
    """A login session: the SHA-256 of the token its cookie holds (see sessions.py)."""

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime, index=True)

    user: Mapped[User] = relationship()

    def __repr__(self) -> str:
        # Shown in the signal panel: a prefix of the hash is enough to tell them apart.
        return f"<UserSession {self.id[:8]}… user_id={self.user_id}>"


class Todo(Base):
    __tablename__ = "todos"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(TEXT_MAX))
    done: Mapped[bool] = mapped_column(default=False)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime, default=None)

    owner: Mapped[User] = relationship()

    def __repr__(self) -> str:
        state = "done" if self.done else "open"
        return f"<Todo id={self.id} {self.text!r} {state}>"

    def mark_as_done(self) -> bool:
        """Mark the todo done; sends ``todo_completed`` if it was not. Returns
        whether it changed."""
        if self.done:
            return False
        self.done = True
        self.completed_at = utcnow()
        signals.todo_completed.send(sender=Todo, todo=self)
        return True

    def mark_as_not_done(self) -> bool:
        """Mark the todo not done; sends ``todo_reopened`` if it was done. Returns
        whether it changed."""
        if not self.done:
            return False
        self.done = False
        self.completed_at = None
        signals.todo_reopened.send(sender=Todo, todo=self)
        return True


class LoginThrottle(Base):
    """One counter of the login throttle: failures in the current window, and the
    lock they led to (see throttle.py). Times are Unix timestamps, compared in SQL."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[float] = mapped_column(Float, index=True)
    locked_until: Mapped[float | None] = mapped_column(Float, default=None)
    lockouts: Mapped[int] = mapped_column(Integer, default=0)

    def __repr__(self) -> str:
        return f"<LoginThrottle {self.key!r} failures={self.failures} lockouts={self.lockouts}>"
