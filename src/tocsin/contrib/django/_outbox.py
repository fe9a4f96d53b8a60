"""The transactional outbox on Django's ORM: remote events that commit, or roll
back, with the data.

An event sent inside an ``atomic`` block is written, in that block, to the
``tocsin_outbox`` table of the send's database (``OutboxEntry`` rows, with
``bulk_create``: no model signals); one ``transaction.on_commit()`` callback
per block publishes the block's events after the commit, in order, and deletes
their rows. A rollback (or a rolled-back savepoint) takes rows and callback
with it. Rows a process left (it died after the commit, or the broker was
down) are published by :meth:`Outbox.relay`, which a worker calls every
``relay_every`` seconds.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from django.db import DatabaseError, connections, router, transaction

from ... import oncommit
from ...remote._outbox_rows import Publish, Row, SendOrderClock, publish_rows
from ...remote.transports.base import AsyncTransport, Transport
from ._transactions import AtomicScope, find_atomic_scope

__all__ = ["Outbox"]

logger = logging.getLogger("tocsin")


class Outbox:
    """An outbox for :class:`~tocsin.remote.Remote` (``Remote(..., outbox=Outbox())``)
    on the ``tocsin_outbox`` table of the ``"tocsin.contrib.django"`` app
    (add the app to ``INSTALLED_APPS`` and run ``manage.py migrate``).

    An event sent inside an ``atomic`` block is written in that block, in the
    database of the send's transaction (the send's ``using``, as for on-commit
    receivers, else the default database), and published after the commit.
    Outside an ``atomic`` block it is published at once, as without an outbox.

    :param databases: the aliases whose outbox tables this outbox writes and
        relays; by default every database the routers let the app's model
        migrate to. A send in a transaction of another database is published
        at once.
    :param relay_after: seconds a row must be old before :meth:`relay` takes
        it; the process that committed it publishes it well before, unless it
        died or the broker was down.
    :raises TypeError: if *databases* is a string, or holds something else.
    :raises ValueError: if *relay_after* is negative.
    """

    def __init__(
        self, *, databases: Iterable[str] | None = None, relay_after: float = 10.0
    ) -> None:
        if isinstance(databases, str):
            raise TypeError(f"databases is a list of aliases, such as [{databases!r}].")
        aliases = None if databases is None else tuple(databases)
        if aliases is not None and not all(isinstance(a, str) and a for a in aliases):
            raise TypeError(f"databases must be database aliases (strings); got {aliases!r}.")
        if isinstance(relay_after, bool) or not isinstance(relay_after, int | float):
            raise TypeError(f"relay_after must be a number of seconds; got {relay_after!r}.")
        if relay_after < 0:
            raise ValueError(f"relay_after must be >= 0 seconds; got {relay_after!r}.")
        self.databases: tuple[str, ...] | None = aliases
        self.relay_after: float = float(relay_after)
        self._clock = SendOrderClock()

    def __repr__(self) -> str:
        return f"<Outbox databases={self.databases!r}>"

    # -- writing, in the sending transaction ----------------------------------

    def store(
        self,
        transport: Transport | AsyncTransport,
        stream: str,
        event_id: str,
        payload: bytes,
        sender: object,
        named: Mapping[str, Any],
    ) -> bool:
        """Write the event in the ``atomic`` block the send is in, to be
        published after the commit; ``False`` (publish now) outside one.

        :raises django.db.transaction.TransactionManagementError: under manual
            transaction management, as ``transaction.on_commit()`` does.
        """
        scope = oncommit.find_scope(sender, named) or find_atomic_scope(sender, named)
        if not isinstance(scope, AtomicScope) or scope.using not in self._aliases():
            return False
        connection = connections[scope.using]
        if not connection.in_atomic_block and connection.get_autocommit():
            return False
        row = Row(event_id, stream, payload, self._clock.now())
        batch = _batch_for(self, transport, scope.using)  # on_commit() first: it may refuse
        _model().objects.using(scope.using).bulk_create([_entry(row)])
        batch.rows.append(row)
        return True

    def _aliases(self) -> tuple[str, ...]:
        if self.databases is not None:
            return self.databases
        model = _model()
        return tuple(alias for alias in connections if router.allow_migrate_model(alias, model))

    # -- relaying what was left ----------------------------------------------

    @overload
    def relay(self, transport: Transport, *, limit: int = 500) -> int: ...

    @overload
    def relay(self, transport: AsyncTransport, *, limit: int = 500) -> Coroutine[Any, Any, int]: ...

    def relay(
        self, transport: Transport | AsyncTransport, *, limit: int = 500
    ) -> int | Coroutine[Any, Any, int]:
        """Publish up to *limit* rows per database older than ``relay_after``
        seconds, oldest first, and delete them; return how many. With an
        ``AsyncTransport``, return a coroutine to await (the queries run in a
        thread, as Django wants).

        Rows are claimed, published and deleted in one transaction per
        database, so two relays running at once never both publish a row: on
        SQLite the claim is a ``DELETE ... RETURNING``, which the second relay
        waits behind and then finds the rows gone; elsewhere rows are locked
        ``SELECT ... FOR UPDATE SKIP LOCKED``, so relays share them. A relay
        that dies before its commit leaves the rows, published again later (at
        least once). A broker failure writes back the rows not published, then
        raises ``TransportError``. A worker calls it every ``relay_every``
        seconds.

        :raises ValueError: if *limit* is not a positive ``int``.
        :raises TypeError: for something that is not a transport.
        """
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"limit must be a positive integer; got {limit!r}.")
        if isinstance(transport, AsyncTransport):
            return self._arelay(transport, limit)
        if not isinstance(transport, Transport):
            raise TypeError(f"relay() takes a Transport or AsyncTransport; got {transport!r}.")
        return self._relay_all(transport.publish_many, limit)

    async def _arelay(self, transport: AsyncTransport, limit: int) -> int:
        from asgiref.sync import async_to_sync, sync_to_async

        # The transaction stays in one thread; the publish comes back to this loop.
        publish = async_to_sync(transport.publish_many)
        relayed: int = await sync_to_async(self._relay_all)(publish, limit)
        return relayed

    def _relay_all(self, publish: Publish, limit: int) -> int:
        return sum(self._relay(alias, publish, limit) for alias in self._aliases())

    def _relay(self, alias: str, publish: Publish, limit: int) -> int:
        with transaction.atomic(using=alias):
            rows = _claim(alias, time.time() - self.relay_after, limit)
            published, error = publish_rows(publish, rows)
            done = set(published)
            unpublished = [row for row in rows if row.id not in done]
            if unpublished:
                _model().objects.using(alias).bulk_create([_entry(row) for row in unpublished])
        if error is not None:
            raise error
        return len(published)


def _model() -> Any:
    from .models import OutboxEntry  # the app's models module, once Django has its apps

    return OutboxEntry


def _entry(row: Row) -> Any:
    return _model()(**row._asdict())


def _claim(alias: str, before: float, limit: int) -> list[Row]:
    """Take (delete) up to *limit* rows created before *before*, oldest first,
    inside the caller's transaction."""
    connection = connections[alias]
    model = _model()
    if connection.vendor == "sqlite":
        # SQLite locks the database, not rows: deleting first takes the write
        # lock, which a racing relay waits for (reading first would let both
        # read the same rows).
        table = connection.ops.quote_name(model._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} "
                "WHERE created_at <= %s ORDER BY created_at LIMIT %s) "
                "RETURNING id, stream, payload, created_at",
                [before, limit],
            )
            found = [Row(r[0], r[1], bytes(r[2]), r[3]) for r in cursor.fetchall()]
    else:
        due = (
            model._base_manager.using(alias)
            .select_for_update(skip_locked=True)
            .filter(created_at__lte=before)
            .order_by("created_at")[:limit]
        )
        found = [Row(e.id, e.stream, bytes(e.payload), e.created_at) for e in due]
        _delete(alias, [row.id for row in found])
    return sorted(found, key=lambda row: row.created_at)


def _delete(alias: str, ids: Sequence[str]) -> None:
    """Delete rows by id with SQL of our own: a queryset's delete() would send
    model signals, which an app may publish, into this outbox."""
    if not ids:
        return
    connection = connections[alias]
    table = connection.ops.quote_name(_model()._meta.db_table)
    marks = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE id IN ({marks})", list(ids))


# -- the rows of a transaction -----------------------------------------------


@dataclass(eq=False)
class _Batch:
    """The events one ``atomic`` block (or savepoint) wrote for one outbox and
    transport, published together by one on-commit callback."""

    outbox: Outbox
    transport: Transport | AsyncTransport
    alias: str
    savepoints: tuple[str, ...]
    rows: list[Row] = field(default_factory=list)
    done: bool = False

    def publish(self) -> None:
        """After the commit: publish the events, then delete their rows."""
        self.done = True
        transport = self.transport
        if not isinstance(transport, Transport):  # no event loop to publish in here
            logger.debug("Outbox: %d event(s) left for the relay (async transport)", len(self.rows))
            return
        published, error = publish_rows(transport.publish_many, self.rows)
        if error is not None:
            logger.warning(
                "Outbox: %d event(s) not published after the commit (%s); relay() will publish "
                "them",
                len(self.rows) - len(published),
                error,
            )
        try:
            _delete(self.alias, published)
        except DatabaseError as failure:
            logger.warning(
                "Outbox: %d event(s) published but not deleted (%s); relay() will publish them "
                "again",
                len(published),
                failure,
            )


# The last batch each connection (thread-local) opened; only the last one takes
# more events, so that they are published in send order.
_last: weakref.WeakKeyDictionary[Any, _Batch] = weakref.WeakKeyDictionary()


def _batch_for(outbox: Outbox, transport: Transport | AsyncTransport, alias: str) -> _Batch:
    connection = connections[alias]
    savepoints = tuple(connection.savepoint_ids)
    last = _last.get(connection)
    if (
        last is not None
        and last.outbox is outbox
        and last.transport is transport
        and last.savepoints == savepoints
        and not last.done
        # still waiting for this transaction's commit (not dropped by a rollback)
        and any(entry[1] == last.publish for entry in connection.run_on_commit)
    ):
        return last
    batch = _Batch(outbox, transport, alias, savepoints)
    transaction.on_commit(batch.publish, using=alias, robust=True)
    _last[connection] = batch
    return batch
