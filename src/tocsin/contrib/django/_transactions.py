"""On-commit receivers and ``django.db.transaction``.

Each deferred call becomes one ``transaction.on_commit()`` callback of the
send's database, so Django decides everything, as it does for its own
callbacks: they run in order with the others after the outermost ``atomic``
block commits, a rolled-back savepoint drops those registered inside it, and
``TestCase.captureOnCommitCallbacks()`` sees them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.utils import ConnectionDoesNotExist

from ... import oncommit

__all__ = ["AtomicScope", "find_atomic_scope"]


class AtomicScope:
    """The transaction scope of one Django database
    (:class:`~tocsin.oncommit.TransactionScope`): deferred calls wait for its
    ``atomic`` block to commit, as ``transaction.on_commit(using=...)`` does.

    The scope finder that :func:`~tocsin.contrib.django.install` registers
    returns the scope of the send's ``using`` argument (model signals have one),
    else of the default database. To send to another database's transaction
    without a ``using`` argument, bind its scope around the send::

        with oncommit.bind(AtomicScope("replica")):
            order_placed.send(sender=Order, order=order)

    :param using: the alias of a database in ``DATABASES``.
    :raises TypeError: if *using* is not a string.
    """

    __slots__ = ("using",)

    def __init__(self, using: str = DEFAULT_DB_ALIAS) -> None:
        if not isinstance(using, str):
            raise TypeError(
                f"AtomicScope takes a database alias (a str, a key of DATABASES); "
                f"got {type(using).__name__} {using!r}."
            )
        self.using: str = using
        """The database alias."""

    def defer(self, deferred: oncommit.Deferred) -> bool:
        """Hand *deferred* to ``transaction.on_commit()``, with its ``robust``
        setting; return False, so that it runs at once, outside an ``atomic``
        block in autocommit mode.

        :raises django.db.utils.ConnectionDoesNotExist: for an unknown alias.
        :raises django.db.transaction.TransactionManagementError: under manual
            transaction management, as ``transaction.on_commit()`` does.
        """
        if not self.in_transaction():
            return False
        transaction.on_commit(deferred.run, using=self.using, robust=deferred.robust)
        return True

    def in_transaction(self) -> bool:
        """Whether the database is in an ``atomic`` block, or under manual
        transaction management (where ``defer()`` raises, as Django does).

        It reads the connection's state without opening it (which async code
        may not do): a connection that is not open is in no transaction.

        :raises django.db.utils.ConnectionDoesNotExist: for an unknown alias.
        """
        connection = connections[self.using]
        if connection.in_atomic_block:
            return True
        return connection.connection is not None and not connection.autocommit

    def __repr__(self) -> str:
        return f"AtomicScope({self.using!r})"


def find_atomic_scope(sender: object, named: Mapping[str, Any]) -> AtomicScope | None:
    """The scope finder: the database of the send's ``using`` argument when it is
    an alias (model signals, ``m2m_changed``, the migration signals), else the
    default database; None when that database is in no transaction, so that
    other finders (SQLAlchemy's) are asked, and else the receiver runs at once.

    A ``using`` that names no Django database (a SQLAlchemy engine's name, or
    an argument of another meaning) is not Django's business: None too.
    """
    using = named.get("using")
    scope = AtomicScope(using if isinstance(using, str) else DEFAULT_DB_ALIAS)
    try:
        return scope if scope.in_transaction() else None
    except ConnectionDoesNotExist:
        return None
