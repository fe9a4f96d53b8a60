"""Transports for the transport tests: every test that asks for ``transport`` (or
``make_async_transport``) runs once in memory and once on Redis.

Redis is the real server at 127.0.0.1:6379, database 0 (override with
TOCSIN_REDIS_URL). Each test gets stream names of its own, under a fresh
``tocsin-test:<uuid>:`` prefix, and every key under that prefix is deleted
afterwards, so runs on several Pythons at once do not meet. Without a server the
Redis cases are skipped, unless TOCSIN_REQUIRE_SERVICES=1 (CI), where they fail.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from _services import REDIS_URL, redis_or_skip
from tocsin.remote import (
    AsyncMemoryTransport,
    AsyncRedisStreamsTransport,
    AsyncTransport,
    MemoryTransport,
    RedisStreamsTransport,
    Transport,
)


def _redis_or_skip() -> None:
    redis_or_skip(REDIS_URL)


@pytest.fixture
def redis_url() -> str:
    """The Redis server's URL; the test is skipped if nothing answers there."""
    _redis_or_skip()
    return REDIS_URL


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """Where the test's streams live: in memory, or on the Redis server."""
    if request.param == "redis":
        _redis_or_skip()
    return str(request.param)


@pytest.fixture
def stream(backend: str) -> Iterator[str]:
    """A stream name of the test's own; on Redis, keys starting with it are deleted after."""
    prefix = f"tocsin-test:{uuid.uuid4().hex}"
    yield f"{prefix}:events"
    if backend == "redis":
        with redis.Redis.from_url(REDIS_URL) as client:
            keys = list(client.scan_iter(match=f"{prefix}:*"))
            if keys:
                client.delete(*keys)


@pytest.fixture
def transport(backend: str, stream: str) -> Iterator[Transport]:
    """A fresh blocking transport, closed after the test."""
    made: Transport = (
        MemoryTransport() if backend == "memory" else RedisStreamsTransport(url=REDIS_URL)
    )
    with made:
        yield made


@pytest.fixture
def make_async_transport(backend: str, stream: str) -> Callable[[], AsyncTransport]:
    """Makes a fresh asyncio transport; call it inside the test's event loop and
    close it there (``async with``), since a redis.asyncio client belongs to one loop."""
    if backend == "memory":
        return AsyncMemoryTransport
    return lambda: AsyncRedisStreamsTransport(url=REDIS_URL)
