"""The transactional outbox: remote events that commit, or roll back, with the data.

::

    outbox = Outbox(engine)
    outbox.create()                       # or add outbox.table to your Alembic metadata
    remote = Remote(transport, outbox=outbox)

An event that a :class:`~tocsin.remote.Remote` publishes for a send made
inside a session's transaction (a model signal sent by the flush, or a send
whose arguments hold a mapped instance, or one inside :func:`bind_session`)
is written to the outbox table in that same transaction, instead of being
published at once:

* after the commit, the events of the transaction are published
  (``publish_many``, in order) and their rows deleted;
* a rollback, or a rolled-back SAVEPOINT, takes the rows with it, and nothing
  is published;
* if the process dies between the commit and the publish, or the broker is
  down then, the rows stay, and :meth:`Outbox.relay` (called by the worker
  every ``relay_every`` seconds) publishes them later.

Delivery stays *at least once*: a relay that dies between its publish and its
commit publishes again. Receivers tell a repeat by ``current_event().id``.

asyncio: inside an ``AsyncSession``'s flush, the ORM runs in a greenlet, where
rows are written at once as in a sync session. A send made in async code
outside a flush (or an async publisher, which an ``AsyncTransport`` makes)
cannot run SQL where it is: its row is kept in memory and written by the
session itself, at the end of the next flush or at the start of the commit,
still inside the transaction. So nothing is published before the commit, and
nothing is lost but by a rollback.

After the commit, events for an ``AsyncTransport`` are published from the
``AsyncSession``'s greenlet (awaited in its event loop). A sync ``Session``
with an ``AsyncTransport`` has no loop to publish in: its rows wait for the
worker's relay.
"""

from __future__ import annotations

import itertools
import logging
import time
import weakref
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    LargeBinary,
    MetaData,
    Select,
    String,
    Table,
    delete,
    event,
    insert,
    select,
)
from sqlalchemy.exc import InvalidRequestError, SQLAlchemyError
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.util.concurrency import greenlet_spawn

from ... import oncommit
from ...dispatcher import Signal
from ...remote._outbox_rows import Publish, Row, SendOrderClock, publish_rows
from ...remote.transports.base import AsyncTransport, Transport
from ._base import await_, in_greenlet, is_async_engine
from ._transactions import SessionScope, _boundary_above

if TYPE_CHECKING:  # it needs greenlet, which a sync Session does without
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["Outbox"]

logger = logging.getLogger("tocsin")


class Outbox:
    """An outbox table for :class:`~tocsin.remote.Remote` (``Remote(..., outbox=)``).

    :param engine: the database the table lives in, which :meth:`relay` and
        :meth:`create` use (an ``AsyncEngine`` is accepted for :meth:`relay`).
        Writing the events needs none: they go through the sending session.
    :param table_name: the table's name.
    :param metadata: the ``MetaData`` to define the table in, so that Alembic
        (or ``metadata.create_all()``) sees it; a private one by default.
    :param relay_after: seconds a row must be old before :meth:`relay` takes
        it; the process that committed it publishes it well before, unless it
        died or the broker was down.

    Sessions whose ``binds`` map classes to engines must map the table too
    (``binds={Base: engine, outbox.table: engine}``).

    The table, the attribute ``table``, has the columns ``id`` (the event id,
    primary key), ``stream``, ``payload`` and ``created_at`` (seconds since the
    epoch, indexed). The attributes ``engine`` (a sync ``Engine``: an
    ``AsyncEngine``'s ``sync_engine``) and ``relay_after`` hold the arguments.
    See "The outbox" in docs/scaling-out.md, also with an ``AsyncSession``.

    :raises TypeError: if *engine* is not an ``Engine`` or ``AsyncEngine``.
    :raises ValueError: if *table_name* is empty (or already a table of
        *metadata*), or *relay_after* is negative.
    """

    def __init__(
        self,
        engine: Engine | AsyncEngine | None = None,
        *,
        table_name: str = "tocsin_outbox",
        metadata: MetaData | None = None,
        relay_after: float = 10.0,
    ) -> None:
        if is_async_engine(engine):
            engine = engine.sync_engine  # relay() runs it in a greenlet
        if engine is not None and not isinstance(engine, Engine):
            raise TypeError(f"Outbox() takes an Engine or AsyncEngine; got {engine!r}.")
        if not isinstance(table_name, str) or not table_name:
            raise ValueError(f"table_name must be a non-empty string; got {table_name!r}.")
        if not isinstance(relay_after, int | float) or relay_after < 0:
            raise ValueError(f"relay_after must be a number of seconds >= 0; got {relay_after!r}.")
        self.engine: Engine | None = engine
        self.table: Table = _define_table(
            table_name, metadata if metadata is not None else MetaData()
        )
        self.relay_after: float = float(relay_after)
        self._clock = SendOrderClock()
        _install()

    def __repr__(self) -> str:
        return f"<Outbox {self.table.name!r}>"

    def create(self, engine: Engine | None = None) -> None:
        """Create the table in *engine* (by default the outbox's) unless it exists.

        With an ``AsyncEngine``: ``await conn.run_sync(outbox.table.create, checkfirst=True)``.

        :raises ValueError: without an engine.
        :raises TypeError: with an asyncio engine.
        """
        target = engine if engine is not None else self.engine
        if target is None:
            raise ValueError("Outbox.create() needs an engine: Outbox(engine) or create(engine).")
        if target.dialect.is_async:
            raise TypeError(
                "Outbox.create() cannot use an asyncio engine: "
                "await conn.run_sync(outbox.table.create, checkfirst=True)."
            )
        self.table.create(target, checkfirst=True)

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
        """Write the event into the session transaction the send belongs to,
        to be published after the commit; ``False`` (publish now) outside one.

        The transaction is the one on-commit receivers wait for
        (:func:`tocsin.oncommit.find_scope`): the session of a mapped instance
        among the sender and arguments, or the one bound with
        :func:`bind_session`. A scope bound by another integration has no
        session to write in: such events are published at once.
        """
        scope = oncommit.find_scope(sender, named)
        if not isinstance(scope, SessionScope) or not scope.session.in_transaction():
            return False
        session = scope.session
        row = Row(event_id, stream, payload, self._clock.now())
        bind = session.get_bind(clause=self.table)
        if bind.dialect.is_async and not in_greenlet():
            # Async code outside the ORM's greenlet cannot run SQL here.
            _queued.setdefault(session, []).append((_boundary(session), self, row))
        else:
            _insert(session, self, [row])
        _batch_for(scope, self, transport, bind).rows.append(row)
        return True

    # -- relaying what was left ----------------------------------------------

    @overload
    def relay(self, transport: Transport, *, limit: int = 500) -> int: ...

    @overload
    def relay(self, transport: AsyncTransport, *, limit: int = 500) -> Coroutine[Any, Any, int]: ...

    def relay(
        self, transport: Transport | AsyncTransport, *, limit: int = 500
    ) -> int | Coroutine[Any, Any, int]:
        """Publish up to *limit* rows older than ``relay_after`` seconds, oldest
        first, and delete them; return how many. With an ``AsyncTransport``,
        return a coroutine to await.

        Rows are claimed (deleted, ``DELETE ... RETURNING``), published, and
        the deletion committed, in one transaction: a relay that dies in
        between publishes them again (at least once), but two relays running
        at once never both publish a row: on PostgreSQL the rows are locked
        ``FOR UPDATE SKIP LOCKED``, so relays share them; on SQLite the second
        waits for the first's commit and finds the rows gone. A broker failure
        writes back the rows not published, then raises ``TransportError``.

        With an ``AsyncTransport``, give the outbox an ``AsyncEngine``: with a
        sync engine, the queries block the event loop while they run. A worker
        calls it every ``relay_every`` seconds.

        :raises ValueError: if the outbox has no engine, or *limit* is not a
            positive ``int``.
        :raises TypeError: for something that is not a transport, or a sync
            transport with an asyncio engine.
        """
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"limit must be a positive integer; got {limit!r}.")
        engine = self.engine
        if engine is None:
            raise ValueError(
                "Outbox.relay() needs the engine of the outbox table: Outbox(engine, ...)."
            )
        if isinstance(transport, AsyncTransport):
            # The greenlet lets the same code await the transport (and an async driver).
            return greenlet_spawn(self._relay, engine, _awaiting(transport), limit)
        if not isinstance(transport, Transport):
            raise TypeError(f"relay() takes a Transport or AsyncTransport; got {transport!r}.")
        if engine.dialect.is_async and not in_greenlet():
            raise TypeError(
                "this outbox's engine is an asyncio engine: relay with an AsyncTransport "
                "(AsyncWorker), or give Outbox a sync engine."
            )
        return self._relay(engine, transport.publish_many, limit)

    def _relay(self, engine: Engine, publish: Publish, limit: int) -> int:
        # The rows are claimed by deleting them, then published, in one
        # transaction: a relay racing this one waits for the delete's lock
        # (SQLite) or skips the locked rows (PostgreSQL), and finds them gone
        # at its commit, so no row is published twice by two relays. Rows the
        # broker refused are written back before the commit.
        with engine.begin() as connection:
            claimed = connection.execute(self._claim(connection, limit))
            rows = sorted((Row(*row) for row in claimed), key=lambda row: row.created_at)
            published, error = publish_rows(publish, rows)
            done = set(published)
            unpublished = [row._asdict() for row in rows if row.id not in done]
            if unpublished:
                connection.execute(insert(self.table), unpublished)
        if error is not None:
            raise error
        return len(published)

    def _claim(self, connection: Connection, limit: int) -> Any:
        columns = self.table.c
        due: Select[Any] = (
            select(columns.id)
            .where(columns.created_at <= time.time() - self.relay_after)
            .order_by(columns.created_at)
            .limit(limit)
        )
        if connection.dialect.name != "sqlite":  # SQLite locks the whole database instead
            due = due.with_for_update(skip_locked=True)
        return (
            delete(self.table)
            .where(columns.id.in_(due.scalar_subquery()))
            .returning(columns.id, columns.stream, columns.payload, columns.created_at)
        )

    def _delete(self, ids: Sequence[str]) -> Any:
        return delete(self.table).where(self.table.c.id.in_(ids))


def _define_table(name: str, metadata: MetaData) -> Table:
    try:
        return Table(
            name,
            metadata,
            Column("id", String(32), primary_key=True),  # the event id
            Column("stream", String(255), nullable=False),
            Column("payload", LargeBinary, nullable=False),
            Column("created_at", Float, nullable=False, index=True),  # epoch seconds
        )
    except InvalidRequestError:
        raise ValueError(
            f"the metadata already has a table {name!r}: pass another table_name=."
        ) from None


# -- the rows of a transaction -----------------------------------------------


@dataclass(eq=False)
class _Batch:
    """The events one boundary transaction wrote for one outbox and transport,
    published together by one deferred call after the commit."""

    outbox: Outbox
    transport: Transport | AsyncTransport
    bind: Engine | Connection
    rows: list[Row] = field(default_factory=list)


_BatchKey = tuple[Outbox, Transport | AsyncTransport]
# boundary transaction (root or SAVEPOINT) -> its open batches
_batches: weakref.WeakKeyDictionary[SessionTransaction, dict[_BatchKey, _Batch]] = (
    weakref.WeakKeyDictionary()
)
# session -> rows sent from async code, not written yet: (boundary, outbox, row)
_queued: weakref.WeakKeyDictionary[Session, list[tuple[SessionTransaction, Outbox, Row]]] = (
    weakref.WeakKeyDictionary()
)
# What the deferred calls name as their signal: nobody connects to it.
_committed = Signal()


def _boundary(session: Session) -> SessionTransaction:
    boundary = session.get_nested_transaction() or session.get_transaction()
    assert boundary is not None
    return boundary


def _batch_for(
    scope: SessionScope,
    outbox: Outbox,
    transport: Transport | AsyncTransport,
    bind: Engine | Connection,
) -> _Batch:
    batches = _batches.setdefault(_boundary(scope.session), {})
    batch = batches.get((outbox, transport))
    if batch is None:
        batch = batches[outbox, transport] = _Batch(outbox, transport, bind)
        named = {"batch": batch}
        scope.defer(oncommit.Deferred(_committed, _relay_committed, None, named, robust=True))
    return batch


def _insert(session: Session, outbox: Outbox, rows: Sequence[Row]) -> None:
    connection = session.connection(bind_arguments={"clause": outbox.table})
    connection.execute(insert(outbox.table), [row._asdict() for row in rows])


def _relay_committed(signal: Signal, sender: object, batch: _Batch, **named: Any) -> int:
    """After the commit: publish *batch*'s events, then delete their rows."""
    publish = _publisher(batch.transport)
    if publish is None:
        logger.debug("Outbox: %d event(s) left for the relay (no event loop)", len(batch.rows))
        return 0
    published, error = publish_rows(publish, batch.rows)
    if error is not None:
        logger.warning(
            "Outbox: %d event(s) not published after the commit (%s); relay() will publish them",
            len(batch.rows) - len(published),
            error,
        )
    if published:
        _delete_published(batch, published)
    return len(published)


def _delete_published(batch: _Batch, ids: list[str]) -> None:
    statement = batch.outbox._delete(ids)
    bind = batch.bind
    try:
        if isinstance(bind, Engine):
            with bind.begin() as connection:
                connection.execute(statement)
        elif bind.in_transaction():  # a session joined to a transaction it does not own
            bind.execute(statement)
        else:
            with bind.begin():
                bind.execute(statement)
    except SQLAlchemyError as error:
        logger.warning(
            "Outbox: %d event(s) published but not deleted (%s); relay() will publish them again",
            len(ids),
            error,
        )


def _publisher(transport: Transport | AsyncTransport) -> Publish | None:
    if isinstance(transport, Transport):
        return transport.publish_many
    return _awaiting(transport) if in_greenlet() else None


def _awaiting(transport: AsyncTransport) -> Publish:
    def publish(stream: str, payloads: list[bytes]) -> object:
        return await_(transport.publish_many(stream, payloads))

    return publish


# -- session events ----------------------------------------------------------


def _boundaries(session: Session) -> list[SessionTransaction]:
    """The session's boundary transactions, innermost first."""
    found = []
    transaction: SessionTransaction | None = _boundary(session)
    while transaction is not None:
        if transaction.nested or transaction.parent is None:
            found.append(transaction)
        transaction = transaction.parent
    return found


def _write_queued(session: Session, *, outer: bool) -> None:
    """Write the rows async code queued for the innermost boundary (and, with
    *outer*, for the boundaries around it); forget those of ended ones."""
    queued = _queued.get(session)
    if not queued:
        return
    active = _boundaries(session)
    ready = active if outer else active[:1]
    _queued[session] = [entry for entry in queued if entry[0] in active and entry[0] not in ready]
    now = [(outbox, row) for boundary, outbox, row in queued if boundary in ready]
    for outbox, entries in itertools.groupby(now, key=lambda entry: entry[0]):
        _insert(session, outbox, [row for _, row in entries])


def _after_flush_postexec(session: Session, flush_context: Any) -> None:
    # After every after_flush listener, which may send (m2m_changed does).
    _write_queued(session, outer=False)


def _before_commit(session: Session) -> None:
    # Also the outer boundaries' rows: committing the root while a SAVEPOINT
    # is open fires this only while the SAVEPOINT is innermost.
    _write_queued(session, outer=True)


def _after_transaction_create(session: Session, transaction: SessionTransaction) -> None:
    # Sends after this SAVEPOINT get a new batch in the outer transaction,
    # published after the SAVEPOINT's: events keep their order.
    if transaction.nested:
        outer = _boundary_above(transaction)
        if outer is not None:
            _batches.pop(outer, None)


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # anything still queued was rolled back
        _queued.pop(session, None)


_SESSION_EVENTS: tuple[tuple[str, Callable[..., None]], ...] = (
    ("after_flush_postexec", _after_flush_postexec),
    ("before_commit", _before_commit),
    ("after_transaction_create", _after_transaction_create),
    ("after_transaction_end", _after_transaction_end),
)


def _install() -> None:
    if event.contains(Session, "before_commit", _before_commit):
        return
    for name, listener in _SESSION_EVENTS:
        event.listen(Session, name, listener)
