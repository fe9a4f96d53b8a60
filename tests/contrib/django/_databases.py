"""A second Django database for one test: a SQLite file, or a fresh schema of the
real PostgreSQL server (127.0.0.1:5432, database ``test``; TOCSIN_POSTGRES_DSN
overrides it), added to ``django.db.connections`` under an alias of its own.

Django's settings are configured once per process (tests/_django_orm.py, an
in-memory database); threads racing on the outbox need a database they all
see, and PostgreSQL needs a connection of its own.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.db import connections

from _services import unavailable

POSTGRES_DSN = os.environ.get(
    "TOCSIN_POSTGRES_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres"
)


@contextlib.contextmanager
def extra_database(backend: str, tmp_path: Path, models: tuple[Any, ...]) -> Iterator[str]:
    """The alias of a new database with *models*' tables, removed afterwards."""
    alias = f"extra_{uuid.uuid4().hex[:8]}"
    with _settings(backend, tmp_path) as settings:
        configured = connections.configure_settings(
            {"default": dict(connections.settings["default"]), alias: settings}
        )
        connections.settings[alias] = configured[alias]
        try:
            with connections[alias].schema_editor() as editor:
                for model in models:
                    editor.create_model(model)
            yield alias
        finally:
            connections[alias].close()
            del connections[alias]
            del connections.settings[alias]


@contextlib.contextmanager
def _settings(backend: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    if backend == "sqlite":
        yield {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "extra.sqlite3")}
        return
    try:
        import psycopg

        admin = psycopg.connect(POSTGRES_DSN, autocommit=True, connect_timeout=3)
    except Exception as error:  # psycopg missing, or the server not there
        unavailable(f"PostgreSQL is not reachable at {POSTGRES_DSN!r}: {error}")
    schema = f"tocsin_dj_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE SCHEMA "{schema}"')
    params = dict(item.split("=", 1) for item in POSTGRES_DSN.split())
    try:
        yield {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": params.get("dbname", "test"),
            "USER": params.get("user", "postgres"),
            "HOST": params.get("host", "127.0.0.1"),
            "PORT": params.get("port", "5432"),
            "OPTIONS": {"options": f"-c search_path={schema}"},
        }
    finally:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()
