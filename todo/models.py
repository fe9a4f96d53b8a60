"""The tables: users, their todos, and failed logins (for the lockout)."""

from __future__ import annotations

import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from . import signals
from .db import Base, UTCDateTime, utcnow

USERNAME_MAX = 40
TEXT_MAX = 500


def is_storable(text: str) -> bool:
    """Whether every database can store *text*: no NUL, no lone surrogates (which
    JSON's ``"\\ud800"`` makes)."""
    return "\x00" not in text and not any("\ud800" <= char <= "\udfff" for char in text)


# What str.strip() strips (str.isspace()), spelled out for the API's schema pattern.
WHITESPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())


def clean_text(text: str) -> str:
    """*text* as a todo's text, before :func:`text_error` checks it: stripped."""
    return text.strip(WHITESPACE)


def text_error(text: str) -> str | None:
    """Why *text* (cleaned by :func:`clean_text`) cannot be a todo's text, or None."""
    if not text:
        return "Please write something: a todo cannot be empty."
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
    locked_until: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime, default=None)

    def __repr__(self) -> str:
        # Shown in the signal panel: never the password hash.
        return f"<User id={self.id} {self.username!r}>"


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


class LoginFailure(Base):
    """A failed login, recorded by the lockout receiver (see receivers.py)."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_username_at", "username", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX))
    at: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<LoginFailure {self.username!r} at {self.at:%H:%M:%S}>"
