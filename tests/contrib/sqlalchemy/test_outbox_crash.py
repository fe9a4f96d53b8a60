"""The outbox against real crashes: a process killed between its commit and its publish.

A child process sends 500 events inside a session transaction, with a Remote
whose outbox is the real database (SQLite file, PostgreSQL schema) and whose
transport is the real Redis; its publish is replaced by ``os._exit``, so the
process dies right after the commit, before anything reaches Redis. A worker
started afterwards must relay every event from the outbox and run it once.
A rollback must leave nothing to relay.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select, text

from _services import REDIS_URL, redis_or_skip
from tocsin import Signal
from tocsin.contrib.sqlalchemy import Outbox
from tocsin.remote import Remote, Worker

from .conftest import Database

redis = pytest.importorskip("redis")
from tocsin.remote import RedisStreamsTransport  # noqa: E402

EVENTS = 500
NAME = "crash.invoice_issued"

CHILD = textwrap.dedent(
    """\
    import os
    import sys

    from sqlalchemy import Column, Integer, create_engine
    from sqlalchemy.orm import DeclarativeBase, Session

    from tocsin import Signal
    from tocsin.contrib.sqlalchemy import Outbox, bind_session
    from tocsin.remote import Remote
    from tocsin.remote import RedisStreamsTransport

    url, schema, redis_url, stream, ending, count = sys.argv[1:7]
    options = {"options": f"-csearch_path={schema}"} if schema else {}
    engine = create_engine(url, connect_args=options)


    class Base(DeclarativeBase):
        pass


    class Invoice(Base):
        __tablename__ = "invoices"
        id = Column(Integer, primary_key=True)


    Base.metadata.create_all(engine)
    outbox = Outbox(engine)
    outbox.create()
    issued = Signal()
    transport = RedisStreamsTransport(url=redis_url)
    remote = Remote(transport, stream=stream, outbox=outbox)
    remote.publish(issued, name="crash.invoice_issued")


    def die(*args, **kwargs):
        os._exit(9)  # killed after the commit, before anything reached Redis


    transport.publish = transport.publish_many = die

    with Session(engine) as session, bind_session(session):
        for number in range(int(count)):
            session.add(Invoice(id=number))
            issued.send(None, number=number)
        if ending == "commit":
            session.commit()
        else:
            session.rollback()
    print("ended without a crash")
    """
)


@pytest.fixture
def stream() -> Iterator[str]:
    """A stream of the test's own on the real Redis, deleted afterwards."""
    redis_or_skip(REDIS_URL)
    name = f"tocsin-test:outbox-crash:{uuid.uuid4().hex}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    client.delete(name, f"{name}:dead")
    client.close()


@pytest.fixture
def db(database: Database) -> Iterator[Engine]:
    """An engine on the test's database (no tables: the child creates them)."""
    engine = create_engine(database.url, connect_args=database.connect_args)
    yield engine
    engine.dispose()


def run_child(database: Database, stream: str, ending: str, tmp_path: Path) -> int:
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    options = database.connect_args.get("options", "")
    schema = options.removeprefix("-csearch_path=")
    args = [database.url, schema, REDIS_URL, stream, ending, str(EVENTS)]
    done = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode in (0, 9), done.stderr
    return done.returncode


def count(engine: Engine, table: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(text(table))).scalar_one())


def test_a_crash_between_commit_and_publish_loses_no_event(
    database: Database, db: Engine, stream: str, tmp_path: Path
) -> None:
    """Every event of the committed transaction waits in the outbox, and a worker's relay
    publishes it: each one is handled exactly once."""
    assert run_child(database, stream, "commit", tmp_path) == 9  # it died after the commit
    assert count(db, "invoices") == EVENTS  # the data committed...
    assert count(db, "tocsin_outbox") == EVENTS  # ...and the events with it
    handled: list[int] = []
    issued = Signal()
    with RedisStreamsTransport(url=REDIS_URL) as transport:
        assert transport.length(stream) == 0  # nothing reached Redis
        remote = Remote(transport, stream=stream, outbox=Outbox(db, relay_after=0))
        remote.publish(issued, name=NAME)
        remote.disconnect()  # here we only run the events
        issued.connect(_recorder(handled), weak=False)
        worker = Worker(remote, block=0.01, relay_every=0.01)
        deadline = time.monotonic() + 30
        while len(handled) < EVENTS:
            assert time.monotonic() < deadline, f"{len(handled)} of {EVENTS} handled"
            worker.run_once()
    assert sorted(handled) == list(range(EVENTS))  # none lost, none twice
    assert count(db, "tocsin_outbox") == 0


def test_a_rollback_leaves_nothing_to_relay(
    database: Database, db: Engine, stream: str, tmp_path: Path
) -> None:
    """Events of a rolled-back transaction go with it: no row, nothing published."""
    assert run_child(database, stream, "rollback", tmp_path) == 0
    assert count(db, "invoices") == 0
    assert count(db, "tocsin_outbox") == 0
    with RedisStreamsTransport(url=REDIS_URL) as transport:
        assert transport.length(stream) == 0


def _recorder(handled: list[int]) -> Any:
    def record(sender: object, number: int, **kwargs: Any) -> None:
        handled.append(number)

    return record
