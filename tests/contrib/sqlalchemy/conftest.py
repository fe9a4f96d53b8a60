"""Databases for the SQLAlchemy tests: every test that asks for ``engine`` (or
``async_engine``) runs once on SQLite and once on PostgreSQL.

PostgreSQL is the real server at 127.0.0.1:5432, database ``test`` (override
with TOCSIN_POSTGRES_URL). Each test gets its own schema, dropped afterwards,
so runs on several Pythons at once do not meet. Without a server the
PostgreSQL cases are skipped, unless TOCSIN_REQUIRE_SERVICES=1 (CI), where
they fail.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tocsin import Signal, signals
from tocsin.contrib.sqlalchemy import disable_model_signals, enable_model_signals

from .models import Base

POSTGRES_URL = os.environ.get(
    "TOCSIN_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MODEL_SIGNALS = (
    "pre_init",
    "post_init",
    "pre_save",
    "post_save",
    "pre_delete",
    "post_delete",
    "m2m_changed",
)


def _postgres_or_skip() -> None:
    try:
        engine = create_engine(POSTGRES_URL)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as err:
        if os.environ.get("TOCSIN_REQUIRE_SERVICES") == "1":
            pytest.fail(f"PostgreSQL is required (TOCSIN_REQUIRE_SERVICES=1): {err}")
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}: {err}")


class Database(NamedTuple):
    backend: str
    url: str
    connect_args: dict[str, Any]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """Where the test's tables live: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield Database("sqlite", f"sqlite:///{tmp_path / 'test.db'}", {})
        return
    _postgres_or_skip()
    schema = f"tocsin_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield Database("postgresql", POSTGRES_URL, {"options": f"-csearch_path={schema}"})
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(database: Database) -> Iterator[Engine]:
    """A sync engine with the test models' tables created."""
    engine = create_engine(database.url, connect_args=database.connect_args)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def async_url(database: Database) -> URL:
    """*database*'s URL with the driver of its asyncio mode (aiosqlite, psycopg's)."""
    driver = "sqlite+aiosqlite" if database.backend == "sqlite" else "postgresql+psycopg_async"
    return make_url(database.url).set(drivername=driver)


@pytest.fixture
def async_engine(database: Database) -> Iterator[AsyncEngine]:
    """An asyncio engine (aiosqlite or psycopg's async mode) with the tables created."""
    engine = create_async_engine(async_url(database), connect_args=database.connect_args)

    async def create() -> None:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)

    asyncio.run(create())
    yield engine
    asyncio.run(engine.dispose())


@pytest.fixture(autouse=True)
def model_signals() -> Iterator[None]:
    """The test models send model signals during every test here, and only then."""
    enable_model_signals(Base)
    yield
    disable_model_signals(Base)


class Sent(NamedTuple):
    signal: str
    sender: Any
    kwargs: dict[str, Any]


class Recorder(list[Sent]):
    def named(self, *names: str) -> list[Sent]:
        return [s for s in self if s.signal in names]

    def names(self) -> list[str]:
        return [s.signal for s in self]


@pytest.fixture
def sent() -> Iterator[Recorder]:
    """Every model signal sent during the test, in order, with its sender and arguments."""
    recorder = Recorder()
    receivers = []
    for name in MODEL_SIGNALS:
        signal: Signal = getattr(signals, name)

        def receive(sender: Any, _name: str = name, **kwargs: Any) -> None:
            kwargs.pop("signal")
            recorder.append(Sent(_name, sender, kwargs))

        signal.connect(receive, weak=False, dispatch_uid=f"test-recorder-{name}")
        receivers.append(signal)
    yield recorder
    for signal, name in zip(receivers, MODEL_SIGNALS, strict=True):
        signal.disconnect(dispatch_uid=f"test-recorder-{name}")
