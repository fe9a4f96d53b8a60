"""Fixtures shared by the middleware tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from . import _asgi_support, _wsgi_support


@pytest.fixture
def sent() -> Iterator[_asgi_support.Recorder]:
    """The request signals sent during the test; the receiver is disconnected afterwards."""
    with _asgi_support.recording() as recorder:
        yield recorder


@pytest.fixture
def signals() -> Iterator[_wsgi_support.Recorder]:
    """The request signals received during the test, in order (disconnected after it)."""
    with _wsgi_support.recording() as recorder:
        yield recorder


@pytest.fixture
def serve() -> Iterator[Callable[[Any], _wsgi_support.LiveServer]]:
    """``serve(app)`` runs *app* under wsgiref in a thread; the servers stop after the test."""
    with _wsgi_support.live_servers() as serve:
        yield serve
