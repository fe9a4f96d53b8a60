"""What every outbox (the SQLAlchemy one, the Django one) does the same way,
whatever its database layer: the row of an event, the clock that orders rows in
send order, and publishing rows in order, a call per run of one stream."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from ..exceptions import TransportError

__all__ = ["Publish", "Row", "SendOrderClock", "publish_rows"]

# Publishes payloads to one stream: transport.publish_many, or it awaited.
Publish = Callable[[str, list[bytes]], object]


class Row(NamedTuple):
    """An event as an outbox table holds it."""

    id: str
    stream: str
    payload: bytes
    created_at: float


class SendOrderClock:
    """Wall-clock times, strictly increasing across the threads that share it,
    so that a relay publishing rows oldest first publishes them in send order."""

    __slots__ = ("_last", "_lock")

    def __init__(self) -> None:
        self._last = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            self._last = max(time.time(), self._last + 1e-6)
            return self._last


def publish_rows(publish: Publish, rows: list[Row]) -> tuple[list[str], Exception | None]:
    """Publish each run of rows for one stream in one call, in order; return the
    ids published, and the broker's error that stopped it, if any."""
    published: list[str] = []
    for stream, run in itertools.groupby(rows, key=lambda row: row.stream):
        chunk = list(run)
        try:
            publish(stream, [bytes(row.payload) for row in chunk])
        except (TransportError, OSError) as error:
            return published, error
        published.extend(row.id for row in chunk)
    return published, None
