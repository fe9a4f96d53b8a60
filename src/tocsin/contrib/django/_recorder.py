"""What the toolbar panel records of one request: its sends, through tocsin.tracing.

A :class:`Recorder` is a tracer that records only the sends made in its own
context (the request's thread, or its task and what that starts), so that the
requests other threads serve at the same time are not mixed in. It keeps the
:class:`~tocsin.tracing.SendEvent` objects until :meth:`Recorder.finish` turns
them into plain, bounded data for the toolbar's store (JSON): by then the
on-commit calls the request deferred have run, or not.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from types import FunctionType, MethodType
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from ... import introspect, tracing
from ..._inspect import describe
from ...oncommit import Deferred

__all__ = ["Limits", "Recorder"]

# The recorders of the current context (a panel subclass listed beside the
# panel records too), and how deep in nested sends it is.
_current: contextvars.ContextVar[tuple[Recorder, ...]] = contextvars.ContextVar(
    "tocsin_panel_recorders", default=()
)
_depth: contextvars.ContextVar[int] = contextvars.ContextVar("tocsin_panel_depth", default=0)


@dataclass(frozen=True)
class Limits:
    """How much one request's record may hold."""

    sends: int = 200
    """Sends recorded per request; later ones are only counted."""
    receivers: int = 50
    """Receiver calls (and deferred calls) shown per send; the others are only counted."""
    text: int = 200
    """Characters of a sender's or an exception's text; longer ones are cut, ending in "…"."""

    def __post_init__(self) -> None:
        for name in ("sends", "receivers", "text"):
            value = getattr(self, name)
            if type(value) is not int:
                raise TypeError(f"the panel's {name} limit is an int; got {value!r}.")
            if value < 1:
                raise ValueError(f"the panel's {name} limit is at least 1; got {value}.")


class Recorder(tracing.Tracer):
    """Records the sends of one context while :meth:`recording` (or :meth:`arecording`)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.events: list[tuple[int, tracing.SendEvent]] = []  # (depth, event), in send order
        self.omitted = 0  # sends past limits.sends

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        remove = tracing.add_tracer(self)
        token = _current.set((*_current.get(), self))
        try:
            yield
        finally:
            _current.reset(token)
            remove()

    async def arecording(self, awaitable: Awaitable[Any]) -> Any:
        """``await awaitable`` while recording: an async request's response."""
        with self.recording():
            return await awaitable

    def trace_send(self, event: tracing.SendEvent) -> contextlib.AbstractContextManager[Any] | None:
        if self not in _current.get():
            return None  # another request's, or no request's
        if len(self.events) >= self.limits.sends:
            self.omitted += 1
            return None
        self.events.append((_depth.get(), event))
        return _deeper()

    def finish(self) -> dict[str, Any]:
        """The record, as the template shows it: plain data, every text bounded.
        The events are forgotten, and with them the senders, arguments and
        responses they hold."""
        sends = [_send(depth, event, self.limits) for depth, event in self.events]
        self.events = []
        return {
            "sends": sends,
            "sends_omitted": self.omitted,
            "receiver_calls": sum(len(s["receivers"]) + s["receivers_omitted"] for s in sends),
            "deferred_calls": sum(len(s["deferred"]) + s["deferred_omitted"] for s in sends),
            "limits": {"sends": self.limits.sends, "receivers": self.limits.receivers},
        }


@contextlib.contextmanager
def _deeper() -> Iterator[None]:
    """Sends made by this send's receivers are one level deeper."""
    token = _depth.set(_depth.get() + 1)
    try:
        yield
    finally:
        _depth.reset(token)


def _send(depth: int, event: tracing.SendEvent, limits: Limits) -> dict[str, Any]:
    now = [call for call in event.calls if not isinstance(call.response, Deferred)]
    later = [call.response for call in event.calls if isinstance(call.response, Deferred)]
    return {
        "signal": introspect.signal_name(event.signal),
        "method": event.method,
        "sender": _text(_sender(event.sender), limits),
        "arguments": ", ".join(sorted(event.named))[: limits.text],
        "depth": depth,
        "duration": _ms(event.duration),
        "exception": _error(event.exception, limits),
        "receivers": [_call(call, limits) for call in now[: limits.receivers]],
        "receivers_omitted": max(len(now) - limits.receivers, 0),
        "deferred": [_deferred(deferred, limits) for deferred in later[: limits.receivers]],
        "deferred_omitted": max(len(later) - limits.receivers, 0),
    }


def _call(call: tracing.ReceiverCall, limits: Limits) -> dict[str, Any]:
    return {
        "name": _text(describe(call.receiver), limits),
        "duration": _ms(call.duration),
        "exception": _error(call.exception, limits),
    }


# What a deferred call that is still pending at the end of the request became.
WAITING = "waiting for the commit (or dropped by a savepoint's rollback)"
DROPPED = "dropped: its transaction rolled back"
OUTCOMES = {"done": "ran after the commit", "failed": "failed after the commit"}


def _deferred(deferred: Deferred, limits: Limits) -> dict[str, Any]:
    if deferred.state == "pending":
        outcome = WAITING if _in_transaction(deferred.named.get("using")) else DROPPED
    else:
        outcome = OUTCOMES.get(deferred.state, DROPPED)
    return {
        "name": _text(describe(deferred.receiver), limits),
        "outcome": outcome,
        "duration": None if deferred.duration is None else _ms(deferred.duration),
        "exception": _error(deferred.exception, limits),
    }


def _in_transaction(using: object) -> bool:
    """Whether the send's database (its ``using`` argument, else the default one)
    is still in an ``atomic`` block: Django says nothing of the callbacks a
    rollback drops, so a pending call out of any block was dropped."""
    alias = using if isinstance(using, str) and using in connections else DEFAULT_DB_ALIAS
    return bool(connections[alias].in_atomic_block)


def _sender(sender: object) -> str:
    """A class or function by its qualified name, anything else by its ``repr()``."""
    if isinstance(sender, type | FunctionType | MethodType):
        return describe(sender)
    try:
        return repr(sender)
    except Exception:  # a hostile __repr__ must not break the page
        return object.__repr__(sender)


def _error(exception: BaseException | None, limits: Limits) -> str | None:
    if exception is None:
        return None
    try:
        text = f"{type(exception).__qualname__}: {exception}"
    except Exception:  # a hostile __str__
        text = type(exception).__qualname__
    return _text(text, limits)


def _text(text: str, limits: Limits) -> str:
    return text if len(text) <= limits.text else text[: limits.text - 1] + "…"


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
