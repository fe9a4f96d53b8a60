"""The database: the declarative base (which sends tocsin's model signals), the
engine and sessions, and the Alembic migrations, run from code."""

from __future__ import annotations

import datetime
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, make_url
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator
from starlette.requests import Request

from tocsin.contrib.sqlalchemy import enable_model_signals

from .settings import tighten

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

UTC = datetime.UTC


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime.datetime]):
    """A timezone-aware UTC datetime on every database (SQLite stores no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: datetime.datetime | None, dialect: Dialect
    ) -> datetime.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: use an aware one, in UTC")
        return value.astimezone(UTC)

    def process_result_value(
        self, value: datetime.datetime | None, dialect: Dialect
    ) -> datetime.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    # Constraint names that the migrations can repeat, on every database.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


# Every class Base maps sends pre_init, post_init, pre_save, post_save, pre_delete
# and post_delete, as Django's models do.
enable_model_signals(Base)


# The sync endpoints run in anyio's worker threads, at most REQUEST_THREADS at once
# (the app's lifespan sets that limit), and a request holds at most one connection
# at a time: with a pool as large, no request ever waits for a connection, whatever
# the load. POOL_TIMEOUT only bounds the wait if that ever stops being true.
REQUEST_THREADS = 40
POOL_SIZE = REQUEST_THREADS + 4  # and a few for the app's own background work
POOL_TIMEOUT = 10
# How long SQLite waits for another connection's write to finish.
SQLITE_BUSY_TIMEOUT = 15


def make_engine(url: str) -> Engine:
    """An engine for *url*, its pool sized for the request threads; for SQLite, one
    usable from those threads, with foreign keys enforced and write-ahead logging, on
    a file readable by its owner only (see :func:`owner_only`)."""
    parsed = make_url(url)
    pool = {"pool_size": POOL_SIZE, "max_overflow": 0, "pool_timeout": POOL_TIMEOUT}
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **pool)
    if parsed.database and parsed.database != ":memory:" and "uri" not in parsed.query:
        owner_only(Path(parsed.database))
    connect_args = {
        "check_same_thread": False,
        "timeout": SQLITE_BUSY_TIMEOUT,
        "factory": one_writer_at_a_time(),
    }
    engine = create_engine(url, connect_args=connect_args, **pool)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    return engine


# Statements that need SQLite's write lock (Python's sqlite3 opens the transaction
# just before the first of them).
_WRITES = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE|CREATE|ALTER|DROP)\b", re.IGNORECASE)


def one_writer_at_a_time() -> type[sqlite3.Connection]:
    """A ``sqlite3.Connection`` class whose connections write one at a time.

    SQLite has one writer at a time; the others wait in its busy handler, which
    polls with sleeps that grow to 100 ms, so under load a few writes wait far
    longer than the queue ahead of them (requests' p99 and max, measured with
    benchmarks/bench_todo.py). Here a connection takes a lock of this process
    before its first write and gives it back once it committed or rolled back:
    writers queue on the lock and start as soon as it is free. SQLite's own
    timeout still applies to writers in other processes.
    """
    lock = threading.Lock()

    class Cursor(sqlite3.Cursor):
        def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
            _writing(self.connection, sql)
            return super().execute(sql, parameters)

        def executemany(self, sql: str, seq_of_parameters: Any, /) -> Cursor:
            _writing(self.connection, sql)
            return super().executemany(sql, seq_of_parameters)

    class Connection(sqlite3.Connection):
        holds_lock = False

        def cursor(self, factory: Any = Cursor) -> Any:
            return super().cursor(factory)

        def commit(self) -> None:
            try:
                super().commit()
            finally:
                self._release()

        def rollback(self) -> None:
            try:
                super().rollback()
            finally:
                self._release()

        def close(self) -> None:
            try:
                super().close()
            finally:
                self._release()

        def _release(self) -> None:
            if self.holds_lock:
                self.holds_lock = False
                lock.release()

    def _writing(connection: sqlite3.Connection, sql: str) -> None:
        assert isinstance(connection, Connection)
        if connection.holds_lock or not _WRITES.match(sql):
            return
        if not lock.acquire(timeout=SQLITE_BUSY_TIMEOUT):
            raise sqlite3.OperationalError(
                f"database is locked: this process's other writers held it for "
                f"{SQLITE_BUSY_TIMEOUT} s"
            )
        connection.holds_lock = True

    return Connection


_SIDE_FILES = ("-wal", "-shm", "-journal")  # what SQLite keeps beside a database


def owner_only(database: Path) -> None:
    """Make the SQLite database *database* readable by its owner only (0600), before
    SQLite opens it: SQLite gives the -wal and -shm files it creates the database's
    permissions. An existing database, -wal or -shm file that others could read is
    tightened, with a log line; a new directory is 0700."""
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        # An empty file is an empty database to SQLite.
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        for suffix in ("", *_SIDE_FILES):
            path = database.with_name(database.name + suffix)
            if path.exists():
                tighten(path, 0o600)


class Database:
    """One engine, and the sessions the app opens on it (one per request)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        # Objects stay readable after the commit (the on-commit receivers read them).
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Session:
        return self._sessions()

    @contextmanager
    def request_session(self, request: Request) -> Iterator[Session]:
        """The request's one session, also in ``request.state.db_session`` for the
        receivers that the request's sends reach (the lockout writes in it)."""
        with self._sessions() as session:
            request.state.db_session = session
            try:
                yield session
            finally:
                request.state.db_session = None

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(url: str) -> Config:
    """Alembic's configuration, without an alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at *url* to *revision* (the latest by default)."""
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()
