"""Propagators carry context (a request id, a trace) from a send to the worker that runs it."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from tocsin import Signal
from tocsin.exceptions import SerializationError
from tocsin.remote import MemoryTransport, Remote, Worker, add_propagator
from tocsin.remote._propagation import inject

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
report_ready = Signal()


class RequestIdPropagator:
    """Carries the request id of the code that sends."""

    def inject(self, carrier: dict[str, str]) -> None:
        carrier["request-id"] = request_id.get()

    @contextlib.contextmanager
    def extract(self, carrier: Mapping[str, str]) -> Iterator[None]:
        token = request_id.set(carrier.get("request-id", "-"))
        try:
            yield
        finally:
            request_id.reset(token)


@pytest.fixture
def remote() -> Iterator[Remote]:
    remote = Remote(MemoryTransport(), stream="reports")
    remote.publish(report_ready)
    yield remote
    remote.disconnect()
    report_ready.receivers = []


def test_the_worker_runs_the_event_in_the_senders_context(remote: Remote) -> None:
    """What a propagator injects at the send is current again in the worker's receivers."""
    remove = add_propagator(RequestIdPropagator())
    try:
        token = request_id.set("req-42")
        [(_, event)] = report_ready.send(None)
        request_id.reset(token)
        assert event.context == {"request-id": "req-42"}
        seen: list[str] = []
        report_ready.connect(lambda **kw: seen.append(request_id.get()), weak=False)
        Worker(remote, block=0.01).run_once()
    finally:
        remove()
    assert seen == ["req-42"]
    assert request_id.get() == "-"  # and not after


def test_without_propagators_nothing_travels(remote: Remote) -> None:
    """Events carry no context field unless a propagator put something in it."""
    assert inject() is None
    [(_, event)] = report_ready.send(None)
    assert event.context == {}
    assert isinstance(remote.transport, MemoryTransport)
    [message] = remote.transport.read("reports")
    assert b"context" not in message.payload


def test_remove_is_idempotent() -> None:
    """The function add_propagator() returns removes it, once."""
    remove = add_propagator(RequestIdPropagator())
    assert inject() == {"request-id": "-"}
    remove()
    remove()
    assert inject() is None


def test_bad_propagators_and_carriers_are_refused() -> None:
    """A propagator must have both methods, and put only strings in the carrier."""
    with pytest.raises(TypeError, match="inject"):
        add_propagator(object())  # type: ignore[arg-type]

    class Sloppy(RequestIdPropagator):
        def inject(self, carrier: dict[str, Any]) -> None:
            carrier["attempt"] = 1

    remove = add_propagator(Sloppy())
    try:
        with pytest.raises(TypeError, match="must be str"):
            inject()
    finally:
        remove()


def test_a_bad_context_in_a_payload_is_unreadable(remote: Remote) -> None:
    """A context that is not an object of strings makes the event unreadable."""
    payload = b'{"v":1,"id":"x","signal":"s","time":0,"sender":null,"kwargs":{},"context":[1]}'
    with pytest.raises(SerializationError, match="context"):
        remote.decode(payload)
