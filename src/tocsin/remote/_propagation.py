"""Context that travels with remote events: a trace, a request id.

A *propagator* writes what it wants to carry into a dict of strings when an
event is published (in the sending process, inside the send), and makes it
current again while a worker runs the event. ``tocsin.contrib.otel`` adds one
for OpenTelemetry, so that a worker's spans continue the trace of the send
that published the event::

    class RequestIdPropagator:
        def inject(self, carrier):
            carrier["request-id"] = request_id.get()

        @contextlib.contextmanager
        def extract(self, carrier):
            token = request_id.set(carrier.get("request-id", "-"))
            try:
                yield
            finally:
                request_id.reset(token)

    remove = add_propagator(RequestIdPropagator())

The carrier is written in the event (``"context"`` in its envelope) only when
a propagator put something in it, so that events cost nothing more without.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

__all__ = ["Propagator", "add_propagator", "extracted", "inject"]


@runtime_checkable
class Propagator(Protocol):
    """What :func:`add_propagator` takes."""

    def inject(self, carrier: dict[str, str]) -> None:
        """Write what should travel into *carrier* (string keys and values)."""
        ...

    def extract(self, carrier: Mapping[str, str]) -> AbstractContextManager[object]:
        """A context manager that makes what *carrier* holds current while a
        worker runs the event (the carrier may lack your keys: events sent
        before you were added, or by a process without you)."""
        ...


_propagators: list[Propagator] = []


def add_propagator(propagator: Propagator) -> Callable[[], None]:
    """Carry *propagator*'s context with every remote event from now on.

    ``inject(carrier)`` writes what should travel into a ``dict`` of strings
    when an event is published (inside the send); ``extract(carrier)`` returns
    a context manager that makes it current while a worker runs the event.
    The carrier is written in the event's envelope (``"context"``) only when a
    propagator put something in it, and is the event's ``context``.
    :class:`tocsin.contrib.otel.TraceContextPropagator` carries a trace.

    Returns a function that removes it (calling it twice is harmless).

    :raises TypeError: for an object without both methods.
    """
    if not isinstance(propagator, Propagator):
        raise TypeError(
            f"a propagator needs inject(carrier) and extract(carrier) methods; "
            f"got {type(propagator).__name__}."
        )
    _propagators.append(propagator)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            _propagators.remove(propagator)

    return remove


def inject() -> dict[str, str] | None:
    """The carrier for an event published now, or ``None`` when there is nothing to carry."""
    if not _propagators:
        return None
    carrier: dict[str, str] = {}
    for propagator in list(_propagators):
        propagator.inject(carrier)
    for key, value in carrier.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"a propagator put {key!r}: {value!r} in the carrier; keys and values must be str."
            )
    return carrier or None


def extracted(carrier: Mapping[str, str]) -> AbstractContextManager[object] | None:
    """Every propagator's context from *carrier*, current for the block; ``None``
    without propagators (every event a worker runs comes through here)."""
    if not _propagators:
        return None
    return _extracted(carrier)


@contextlib.contextmanager
def _extracted(carrier: Mapping[str, str]) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for propagator in list(_propagators):
            stack.enter_context(propagator.extract(carrier))
        yield
