"""The servers some tests use, and what happens when one is not there.

Tests skip when a server does not answer, unless TOCSIN_REQUIRE_SERVICES=1
(CI, through .ci/run), where a missing server fails them instead.
"""

from __future__ import annotations

import os

import pytest

REDIS_URL = os.environ.get("TOCSIN_REDIS_URL", "redis://127.0.0.1:6379/0")


def unavailable(reason: str) -> None:
    """Skip the test for *reason*, or fail it when the services are required."""
    if os.environ.get("TOCSIN_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (TOCSIN_REQUIRE_SERVICES=1: the server is required)")
    pytest.skip(reason)


def redis_or_skip(url: str = REDIS_URL) -> str:
    """*url*, once the Redis server there answers; otherwise skip (or fail) the test."""
    redis = pytest.importorskip("redis")
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=2) as client:
            client.ping()
    except redis.RedisError as err:
        unavailable(f"Redis is not reachable at {url}: {err}")
    return url
