"""HMAC signatures of event payloads, for remotes given signing keys.

A signed payload is the serializer's bytes behind one line::

    hmac-sha256:<64 hex digits>\\n<payload>

The publisher signs with the first key; a worker accepts a signature made
with any of its keys (so keys can be rotated: add the new key first, then
drop the old one once every publisher uses the new one), compares in constant
time, and refuses anything else *before* reading it: a forged payload is never
parsed. A remote without keys reads signed payloads too (it skips the line),
so publishers can start signing before workers start checking.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from ..exceptions import ForgedEventError

__all__ = ["PREFIX", "check_keys", "sign", "unsigned", "verified"]

PREFIX = b"hmac-sha256:"  # what a signed payload starts with
_DIGEST_LENGTH = 64  # hex digits of a SHA-256


def check_keys(keys: bytes | Sequence[bytes] | None) -> tuple[bytes, ...]:
    """The keys as a tuple, the signing key first; ``()`` for none."""
    if keys is None:
        return ()
    found = (keys,) if isinstance(keys, bytes | bytearray) else tuple(keys)
    if not found:
        raise ValueError("signing_key must be bytes, or a non-empty list of bytes (newest first).")
    for key in found:
        if not isinstance(key, bytes | bytearray):
            raise TypeError(f"a signing key must be bytes; got {type(key).__name__}.")
        if len(key) < 16:
            raise ValueError("a signing key must be 16 bytes or more (32 random bytes is good).")
    return tuple(bytes(key) for key in found)


def _digest(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).hexdigest().encode()


def sign(key: bytes, payload: bytes) -> bytes:
    """*payload* with its signature line before it."""
    return b"%s%s\n%s" % (PREFIX, _digest(key, payload), payload)


def _split(data: bytes) -> tuple[bytes, bytes] | None:
    """``(signature, payload)`` of a signed payload, ``None`` if it is not signed."""
    if not data.startswith(PREFIX):
        return None
    start = len(PREFIX)
    end = start + _DIGEST_LENGTH
    if data[end : end + 1] != b"\n":
        raise ForgedEventError("its signature line is malformed.")
    return data[start:end], data[end + 1 :]


def verified(keys: tuple[bytes, ...], data: bytes) -> bytes:
    """The payload of *data* if one of *keys* signed it; ``ForgedEventError`` otherwise."""
    split = _split(data)
    if split is None:
        raise ForgedEventError("it is not signed, and this remote accepts signed events only.")
    signature, payload = split
    # Every key is tried, so that the time taken does not tell which one nearly matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(signature, _digest(key, payload))
    if not matched:
        raise ForgedEventError("its signature matches none of this remote's signing keys.")
    return payload


def unsigned(data: bytes) -> bytes:
    """The payload of *data*, signed or not, without checking (a remote without keys)."""
    split = _split(data)
    return data if split is None else split[1]
