"""Django for the integration's tests: the settings every Django-using test of
the process shares (tests/_django_orm.py: SQLite in memory, one app), a few
models with their tables, and ``installed_now``, the integration turned on for
one test and off after it (the compatibility suite, in the same process, needs
plain ``django.dispatch``). Without Django, each test module skips itself.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

if importlib.util.find_spec("django") is not None:
    import _django_orm

    _django_orm.configure()  # before the test modules import the models


@pytest.fixture(scope="session")
def tables() -> Iterator[None]:
    """The models' tables, in the in-memory database."""
    from django.db import connection

    from .models import MODELS

    with connection.schema_editor() as editor:
        for model in MODELS:
            editor.create_model(model)
    yield
    with connection.schema_editor() as editor:
        for model in reversed(MODELS):
            editor.delete_model(model)


@pytest.fixture
def installed_now() -> Iterator[None]:
    """Every Django signal on tocsin during the test; plain Django after it."""
    from tocsin.contrib.django import install, installed, uninstall

    assert not installed(), "a previous test left the integration installed"
    install()
    try:
        yield
    finally:
        uninstall()
