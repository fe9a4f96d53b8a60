"""On-commit receivers and SQLAlchemy sessions.

A deferred call waits on the session's innermost *boundary* transaction: the
current SAVEPOINT (``begin_nested()``) or else the root transaction. Flushes
run in subtransactions, which are never boundaries: a failed flush rolls back
the boundary around it, and so drops what waits there.

* A SAVEPOINT that is released hands its calls to the boundary around it; one
  that is rolled back drops them.
* The root transaction runs them, in order, once it has committed and closed,
  so that they may use the session again (in a new transaction); a rollback
  or a close without commit drops them.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import InstanceState, Session, SessionTransaction

from ... import oncommit
from ._base import awaiter

if TYPE_CHECKING:  # it needs greenlet, which a sync Session does without
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["SessionScope", "bind_session"]


class _Waiting:
    __slots__ = ("calls", "committed")

    def __init__(self) -> None:
        self.calls: list[oncommit.Deferred] = []
        self.committed = False


_waiting: weakref.WeakKeyDictionary[SessionTransaction, _Waiting] = weakref.WeakKeyDictionary()


class SessionScope:
    """The transaction scope of one :class:`~sqlalchemy.orm.Session`
    (:class:`~tocsin.oncommit.TransactionScope`).

    What :func:`bind_session` binds, and what the scope finder returns for a
    send whose arguments hold an instance that belongs to a session. An
    ``AsyncSession`` is taken as its ``sync_session``; the attribute
    ``session`` is the ``Session``.

    Deferred calls wait on the session's innermost SAVEPOINT, or else its
    transaction; a released SAVEPOINT hands them to the transaction around it,
    a rolled-back one drops them. They run once the session's transaction has
    committed and ended, and are dropped if it rolls back or the session is
    closed without a commit. ``defer()`` returns False when the session is not
    in a transaction.

    :raises TypeError: if *session* is neither a ``Session`` nor an
        ``AsyncSession``.
    """

    __slots__ = ("session",)

    def __init__(self, session: Session | AsyncSession) -> None:
        if not isinstance(session, Session):
            sync_session = getattr(session, "sync_session", None)  # an AsyncSession
            if not isinstance(sync_session, Session):
                raise TypeError(
                    f"SessionScope takes a Session or an AsyncSession; got "
                    f"{type(session).__name__} {session!r}."
                )
            session = sync_session
        self.session: Session = session

    def defer(self, deferred: oncommit.Deferred) -> bool:
        session = self.session
        # A session begins its transaction as soon as it is used (add(),
        # a query, a lazy load): one that is not in a transaction has
        # nothing to commit, and the receiver runs now.
        if not session.in_transaction():
            return False
        boundary = session.get_nested_transaction() or session.get_transaction()
        assert boundary is not None
        waiting = _waiting.get(boundary)
        if waiting is None:
            waiting = _waiting[boundary] = _Waiting()
        waiting.calls.append(deferred)
        return True

    def __eq__(self, other: object) -> bool:
        # The scope finder makes one per send: a session's sends share a transaction.
        return isinstance(other, SessionScope) and other.session is self.session

    def __hash__(self) -> int:
        return id(self.session)

    def __repr__(self) -> str:
        return f"<SessionScope of {self.session!r}>"


@contextlib.contextmanager
def bind_session(session: Session | AsyncSession) -> Iterator[SessionScope]:
    """Defer every on-commit receiver reached in this block to *session*'s transaction.

    Needed only for sends whose arguments hold no instance of the session
    (``todo_completed.send(sender=Todo, todo_id=3)``): a mapped instance among
    the sender and arguments is found without it. *session* is a ``Session``
    or an ``AsyncSession``. It is ``tocsin.oncommit.bind(SessionScope(session))``,
    and the ``with`` statement gets the :class:`SessionScope`.
    """
    with oncommit.bind(SessionScope(session)) as scope:
        yield scope  # type: ignore[misc]


def find_session_scope(sender: object, named: Mapping[str, Any]) -> SessionScope | None:
    """The scope finder: the session of the first mapped instance among the
    sender and the arguments, if that session is in use."""
    for value in (sender, *named.values()):
        state = inspect(value, raiseerr=False)
        if isinstance(state, InstanceState):
            session = state.session
            if session is not None:
                return SessionScope(session)
    return None


def _boundary_above(transaction: SessionTransaction) -> SessionTransaction | None:
    parent = transaction.parent
    while parent is not None and not parent.nested and parent.parent is not None:
        parent = parent.parent
    return parent


def _after_commit(session: Session) -> None:
    # Runs for the root transaction and for every released SAVEPOINT, before
    # it closes: the one committing is still the session's innermost.
    transaction = session.get_nested_transaction() or session.get_transaction()
    if transaction is None:
        return
    waiting = _waiting.get(transaction)
    if waiting is None:
        return
    outer = _boundary_above(transaction) if transaction.nested else None
    if outer is None:
        waiting.committed = True  # runs when the root transaction has closed
        return
    del _waiting[transaction]
    into = _waiting.get(outer)
    if into is None:
        into = _waiting[outer] = _Waiting()
    into.calls.extend(waiting.calls)


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    waiting = _waiting.pop(transaction, None)
    if waiting is None:
        return
    if waiting.committed:
        oncommit.run_all(waiting.calls, awaiter())
    else:
        for call in waiting.calls:
            call.drop()


def install() -> None:
    """Track session transactions, and find sessions from a send's arguments.

    Done once, when ``tocsin.contrib.sqlalchemy`` is imported, and never
    undone: a deferred call must not be stranded by turning model signals off.
    """
    if event.contains(Session, "after_transaction_end", _after_transaction_end):
        return
    event.listen(Session, "after_commit", _after_commit)
    event.listen(Session, "after_transaction_end", _after_transaction_end)
    oncommit.add_scope_finder(find_session_scope)
