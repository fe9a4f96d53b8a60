"""Alembic's environment, configured in code (see ``todo.db.alembic_config``).

``todo.db.upgrade()`` passes its connection in ``config.attributes["connection"]``;
otherwise the URL of the configuration is used.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import todo.models  # noqa: F401 - maps the tables on Base
from todo.db import Base, make_engine

config = context.config
target_metadata = Base.metadata


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite's ALTER TABLE is limited
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no sqlalchemy.url in the Alembic configuration")
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
