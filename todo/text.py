"""Text for log lines: :func:`printable`, used by every receiver that logs a user's text."""

from __future__ import annotations

_CONTROL = {i: f"\\x{i:02x}" for i in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t"}


def printable(text: str) -> str:
    """*text* for a log line: control characters escaped, so it cannot forge lines."""
    return text.translate(_CONTROL)


__all__ = ["printable"]
