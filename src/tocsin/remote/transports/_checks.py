"""Argument checks and stream-id helpers shared by the transports.

The transport base classes call the public checks (``publish``, ``consume``...,
one per method, named after it) before an implementation's protected method, so
that every transport refuses the same arguments with the same errors, before
anything is sent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .base import Attempts, Message

# A stream id as a (milliseconds, sequence) pair: tuples order the way Redis ids do.
_Id = tuple[int, int]

_ID_PATTERN = re.compile(r"(\d+)(?:-(\d+))?", re.ASCII)
# Ids one per line, each part of at most 19 digits (below 2**64, so no range check):
# every id Redis gives out, checked in one match rather than one per id.
_IDS_PATTERN = re.compile(r"(?:\d{1,19}(?:-\d{1,19})?\n)*", re.ASCII)
_MAX_ID_PART = 2**64 - 1  # Redis stores both parts as unsigned 64-bit integers


def _check_name(what: str, name: str) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError(f"{what} must not be empty")


def _check_names(**names: str) -> None:
    """``_check_name`` for each keyword: ``_check_names(stream=stream, group=group)``."""
    for what, name in names.items():
        _check_name(what, name)


def _check_count(count: int) -> None:
    if not isinstance(count, int) or isinstance(count, bool):
        raise TypeError(f"count must be an int, not {type(count).__name__}")
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")


def _check_min_idle(min_idle: float) -> None:
    if min_idle < 0:
        raise ValueError(f"min_idle must not be negative, got {min_idle}")


def _check_block(block: float | None) -> None:
    if block is not None and not block > 0:
        raise ValueError(f"block must be None or more than 0 seconds, got {block}")


def _check_payload(payload: bytes) -> None:
    if not isinstance(payload, bytes):
        raise TypeError(
            f"payload must be bytes, not {type(payload).__name__}; serialize the event first"
        )


def _check_ids(ids: Sequence[str]) -> list[_Id]:
    # A lone id is a str, itself a sequence of one-character strings: refuse it
    # rather than acknowledge "1", "-", "0".
    if isinstance(ids, str):
        raise TypeError(f"ids must be a sequence of ids, not a single str: [{ids!r}]")
    return [_parse_id(id) for id in ids]


def _check_ids_fast(ids: Sequence[str]) -> None:
    """:func:`_check_ids` without the parsed ids: one match for a batch of
    well-formed ids (a worker acknowledges a hundred at a time), else the same
    errors as :func:`_check_ids`."""
    if isinstance(ids, list | tuple) and ids:
        try:
            text = "\n".join(ids)
        except TypeError:  # not all str: let the slow path name the culprit
            text = ""
        # As many lines as ids: an id with a newline inside would pass as two.
        if text.count("\n") == len(ids) - 1 and _IDS_PATTERN.fullmatch(text + "\n"):
            return
    _check_ids(ids)


def _parse_id(text: str) -> _Id:
    """``"1718000000000-3"`` as ``(1718000000000, 3)``; ``"1718000000000"`` means ``-0``."""
    match = _ID_PATTERN.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a stream id like '1718000000000-0'")
    ms, seq = int(match[1]), int(match[2] or 0)
    if ms > _MAX_ID_PART or seq > _MAX_ID_PART:
        raise ValueError(f"{text!r} is not a stream id: its parts must fit in 64 bits")
    return ms, seq


def _check_start(start: str) -> _Id:
    return (0, 0) if start == "-" else _parse_id(start)


def _format_id(key: _Id) -> str:
    return f"{key[0]}-{key[1]}"


def _dead_letter_headers(stream: str, group: str, message: Message, error: str) -> dict[str, str]:
    """The headers :meth:`Transport.dead_letter` stores with a dead message."""
    return {
        "error": error,
        "attempts": str(message.deliveries),
        "source-stream": stream,
        "source-id": message.id,
        "group": group,
    }


def _next_id(key: _Id) -> _Id:
    """The smallest id above *key*."""
    ms, seq = key
    return (ms + 1, 0) if seq == _MAX_ID_PART else (ms, seq + 1)


# -- the checks of each public method (base.Transport and base.AsyncTransport) --

names = _check_names
ids = _check_ids_fast


def publish(stream: str, payload: bytes) -> None:
    _check_name("stream", stream)
    _check_payload(payload)


def publish_many(stream: str, payloads: Sequence[bytes]) -> None:
    _check_name("stream", stream)
    for payload in payloads:
        _check_payload(payload)


def consume(
    stream: str, group: str, consumer: str, count: int, block: float | None, ack: Sequence[str]
) -> None:
    _check_names(stream=stream, group=group, consumer=consumer)
    _check_count(count)
    _check_block(block)
    _check_ids_fast(ack)


def redeliver(stream: str, group: str, consumer: str, id: str, min_idle: float) -> None:
    _check_names(stream=stream, group=group, consumer=consumer)
    _parse_id(id)
    _check_min_idle(min_idle)


def claim_stale(stream: str, group: str, consumer: str, min_idle: float, count: int) -> None:
    _check_names(stream=stream, group=group, consumer=consumer)
    _check_min_idle(min_idle)
    _check_count(count)


def dead_letter(stream: str, group: str, message: Message, dead_stream: str, error: str) -> None:
    _check_names(stream=stream, group=group, dead_stream=dead_stream)
    _parse_id(message.id)
    _check_payload(message.payload)
    if not isinstance(error, str):
        raise TypeError(f"error must be a str, not {type(error).__name__}")


def read(stream: str, start: str, count: int) -> None:
    _check_name("stream", stream)
    _check_start(start)
    _check_count(count)


def records(records: Mapping[str, Attempts | None]) -> None:
    from .base import Attempts

    for id, record in records.items():
        _parse_id(id)
        if record is not None and not isinstance(record, Attempts):
            raise TypeError(f"a record must be Attempts or None, not {type(record).__name__}")


def ttl(seconds: float) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise ValueError(f"ttl must be a positive number of seconds, got {seconds!r}")
