"""The app's own signals, typed: mypy checks every send and every receiver, and
``check=True`` checks the sends at run time too."""

from __future__ import annotations

from tocsin import typed_signal

from . import models


@typed_signal(check=True)
def todo_completed(sender: type[models.Todo], *, todo: models.Todo) -> None:
    """Sent by ``Todo.mark_as_done()`` when a todo becomes done."""


@typed_signal(check=True)
def todo_reopened(sender: type[models.Todo], *, todo: models.Todo) -> None:
    """Sent by ``Todo.mark_as_not_done()`` when a done todo becomes open again."""


@typed_signal(check=True)
def sessions_ended(
    sender: type[models.User], *, user: models.User, session_ids: frozenset[str]
) -> None:
    """Sent when login sessions of *user* end for good: at logout, and every session
    of a user who changed their password. *session_ids* are
    ``todo.sessions.session_id()`` values; the signal panel forgets their events."""
