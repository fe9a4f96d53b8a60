"""The signal panel's hub and request bookkeeping, without a server: each bound
(history bytes for the whole server, per panel, per event; open streams; a slow
stream's queue; forgotten ids), forgetting a panel or a login session's panels,
and what a request reports of its on-commit calls.

``test_the_memory_bound_holds_for_10000_panels`` measures, with tracemalloc, what
a flood of anonymous panels costs; docs/tutorial.md quotes its figures.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import secrets
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tocsin import Signal
from tocsin.testing import FakeTransaction
from todo.panel import (
    DEFERRED_MAX,
    EVENT_MAX,
    MAX_BYTES,
    PENDING_MAX,
    Hub,
    Panel,
    RequestEvents,
    StreamRefused,
    _current,
    encode,
)

Event = dict[str, Any]
ANN, BOB = "ann-session", "bob-session"

# What a page view publishes (request_started, request_finished), as the panel
# describes them: about 500 bytes each once encoded.
PAGE_VIEW: list[Event] = [
    {
        "type": "send",
        "signal": signal,
        "name": f"tocsin.signals.{signal}",
        "kind": "request",
        "method": "asend",
        "sender": "RequestSignalsMiddleware",
        "args": {"scope": "GET /login"},
        "receivers": [
            {"name": f"todo.receivers.{receiver}", "ms": 0.01, "deferred": False, "error": None}
        ],
        "error": None,
        "ms": 0.05,
        "at": "2026-01-01T00:00:00.000+00:00",
        "request": "GET /login",
        "request_id": "0123456789abcdef",
        "request_at": "2026-01-01T00:00:00.000+00:00",
        "offset_ms": 0.1,
    }
    for signal, receiver in (
        ("request_started", "start_timer"),
        ("request_finished", "log_request"),
    )
]
# An event as large as a send can make: 30 arguments of 200 astral characters
# (12 bytes each in ASCII JSON) and 50 receivers.
OVERSIZED: Event = {
    **PAGE_VIEW[0],
    "args": {f"argument_{n}": "\U0001f600" * 200 for n in range(30)},
    "receivers": PAGE_VIEW[0]["receivers"] * 50,
}


def texts(hub: Hub, panel_id: str, session_id: str | None = None) -> list[Event]:
    return [json.loads(text) for text in hub.history(panel_id, session_id)]


def run(scenario: Callable[[], Any]) -> None:
    """Run an async scenario (streams need a running loop)."""

    async def main() -> None:
        await scenario()

    asyncio.run(main())


# -- publishing and streams ----------------------------------------------------------------


def test_the_hub_sends_each_panel_its_own_events() -> None:
    async def scenario() -> None:
        hub = Hub()
        ann, bob = hub.subscribe("ann"), hub.subscribe("bob")
        hub.publish("ann", None, "r1", {"signal": "for ann"})
        batch = await ann.next(1)
        assert batch is not None
        (text,) = batch
        assert json.loads(text)["signal"] == "for ann"
        with pytest.raises(TimeoutError):
            await bob.next(0.05)
        assert hub.history("ann") == [text]
        assert hub.history("bob") == []
        ann.close()
        bob.close()
        assert hub.streams() == 0

    run(scenario)


def test_the_hub_takes_events_from_other_threads() -> None:
    async def scenario() -> None:
        hub = Hub()
        stream = hub.subscribe("ann")
        threads = [
            threading.Thread(target=hub.publish, args=("ann", None, "r", {"n": n}))
            for n in range(20)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        received: list[int] = []
        while len(received) < 20:
            batch = await stream.next(1)
            assert batch is not None
            received += [json.loads(text)["n"] for text in batch]
        assert sorted(received) == list(range(20))
        stream.close()

    run(scenario)


def test_a_stream_starts_with_the_history_after_its_last_event() -> None:
    async def scenario() -> None:
        hub = Hub()
        for n in range(3):
            hub.publish("ann", None, "r", {"n": n})
        first, second, _ = texts(hub, "ann")

        def backlog(after: str | None) -> list[int]:
            stream = hub.subscribe("ann", None, after)
            stream.close()
            return [json.loads(text)["n"] for text in stream.backlog]

        assert backlog(None) == [0, 1, 2]
        assert backlog(first["id"]) == [1, 2]
        assert backlog(second["id"]) == [2]
        assert backlog("other-epoch.2") == [0, 1, 2]
        assert hub.subscribe("bob").backlog == []

    run(scenario)


def test_closing_the_hub_ends_its_streams() -> None:
    async def scenario() -> None:
        hub = Hub()
        stream = hub.subscribe("ann")
        hub.close()
        assert await stream.next(1) is None
        assert await hub.subscribe("ann").next(1) is None
        assert hub.streams() == 0

    run(scenario)


# -- the history's bounds ------------------------------------------------------------------


def test_the_history_of_every_panel_together_stays_under_max_bytes() -> None:
    """Past the bound the least recently active panels lose their oldest events
    first, and a panel left empty is dropped."""
    hub = Hub()
    hub.max_bytes = 64 * 1024
    for n in range(200):
        for event in PAGE_VIEW:
            hub.publish(f"panel-{n}", None, f"request-{n}", event)
            assert hub.bytes <= hub.max_bytes
    assert hub.panels() < 200
    assert hub.history("panel-0") == []  # the least recently active went first
    assert len(hub.history("panel-199")) == 2

    hub.publish("panel-190", None, "again", PAGE_VIEW[0])  # active again: kept longer
    for n in range(200, 300):
        if not hub.history("panel-191"):
            break
        hub.publish(f"panel-{n}", None, f"request-{n}", PAGE_VIEW[0])
    assert hub.history("panel-191") == []
    assert len(hub.history("panel-190")) == 3


def test_a_panel_keeps_at_most_its_history_length_and_bytes() -> None:
    hub = Hub()
    hub.history_length = 5
    for n in range(8):
        hub.publish("ann", None, "r", {"n": n})
    assert [e["n"] for e in texts(hub, "ann")] == [3, 4, 5, 6, 7]

    hub.history_length = 1000
    hub.panel_bytes = 16 * 1024
    for _ in range(100):
        hub.publish("bob", None, "r", PAGE_VIEW[0])
    kept = hub.history("bob")
    assert 16 * 1024 // 1024 < len(kept) < 100
    assert hub.bytes < 2 * 16 * 1024  # ann's five small events, and bob's 16 KiB


def test_an_oversized_event_is_cut_to_event_max() -> None:
    text = encode(OVERSIZED)
    assert len(text) <= EVENT_MAX
    event = json.loads(text)
    assert event["cut"] is True
    assert event["signal"] == "request_started"
    assert event["request"] == "GET /login"
    assert encode(PAGE_VIEW[0]) == json.dumps(PAGE_VIEW[0], separators=(",", ":"))

    keys = {f"k{n}" * 50: "\U0001f600" * 500 for n in range(2000)}
    worst = encode(dict.fromkeys(PAGE_VIEW[0], "😀" * 10000) | {"args": keys})
    assert len(worst) <= EVENT_MAX


def test_the_memory_bound_holds_for_10000_panels(capsys: pytest.CaptureFixture[str]) -> None:
    """A flood of 10,000 anonymous visitors, each with a page view, one in ten with an
    oversized event too: the hub's count never passes MAX_BYTES, and the memory
    tracemalloc sees it hold is less than its count."""
    hub = Hub()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        highest = 0
        for n in range(10_000):
            panel_id, request_id = secrets.token_urlsafe(16), secrets.token_hex(8)
            for event in PAGE_VIEW if n % 10 else [*PAGE_VIEW, OVERSIZED]:
                hub.publish(panel_id, None, request_id, event)
            highest = max(highest, hub.bytes)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert highest <= MAX_BYTES
    assert held <= hub.bytes
    with capsys.disabled():
        print(
            f"\n10,000 anonymous panels: {hub.panels()} kept, counted {hub.bytes / 2**20:.2f} MiB"
            f" (bound {MAX_BYTES / 2**20:.0f} MiB), tracemalloc {held / 2**20:.2f} MiB"
        )


# -- streams' bounds ----------------------------------------------------------------------


def test_open_streams_are_bounded_per_panel_and_for_the_server() -> None:
    async def scenario() -> None:
        hub = Hub()
        hub.streams_per_panel, hub.max_streams = 2, 3
        ann = [hub.subscribe("ann"), hub.subscribe("ann")]
        with pytest.raises(StreamRefused) as refused:
            hub.subscribe("ann")
        assert refused.value.status == 429
        bob = hub.subscribe("bob")
        with pytest.raises(StreamRefused) as refused:
            hub.subscribe("carol")
        assert refused.value.status == 503
        assert hub.streams() == 3
        ann[0].close()
        hub.subscribe("carol").close()
        for stream in [ann[1], bob]:
            stream.close()
        assert hub.streams() == 0

    run(scenario)


def test_a_slow_streams_queue_is_bounded_in_bytes() -> None:
    """A stream nobody reads keeps at most queue_bytes, losing the oldest events."""

    async def scenario() -> None:
        hub = Hub()
        hub.queue_bytes = 8 * 1024
        stream = hub.subscribe("ann")
        for n in range(100):
            hub.publish("ann", None, "r", {**PAGE_VIEW[0], "n": n})
            assert stream.queued_bytes <= hub.queue_bytes
        batch = await stream.next(1)
        assert batch is not None
        assert stream.dropped == 100 - len(batch) > 0
        assert json.loads(batch[-1])["n"] == 99
        stream.close()

    run(scenario)


# -- forgetting ----------------------------------------------------------------------------


def test_a_forgotten_panel_ends_its_streams_and_refuses_what_comes_later() -> None:
    async def scenario() -> None:
        hub = Hub()
        hub.publish("ann", None, "r", {"n": 1})
        stream = hub.subscribe("ann")
        hub.forget("ann")
        assert await stream.next(1) is None
        assert hub.streams() == 0
        assert hub.history("ann") == []
        assert hub.publish("ann", None, "r", {"n": 2}) is None  # a request still running
        assert hub.history("ann") == []
        with pytest.raises(StreamRefused) as refused:
            hub.subscribe("ann")
        assert refused.value.status == 204
        assert hub.bytes == 0

    run(scenario)


def test_forget_keeps_one_requests_events_for_a_new_panel() -> None:
    hub = Hub()
    hub.publish("old", None, "earlier", {"n": 1})
    hub.publish("old", None, "login", {"n": 2})
    kept = hub.forget("old", keep="login")
    hub.adopt("new", None, kept)
    assert [e["n"] for e in texts(hub, "new")] == [2]
    assert hub.history("old") == []


def test_a_panel_is_bound_to_one_login_session() -> None:
    """A panel made anonymous gains its session once (a login's request), and then
    refuses another session's events and readers; a stream only gets events
    published under its own session."""

    async def scenario() -> None:
        hub = Hub()
        hub.publish("p", None, "login", {"n": 1})
        hub.publish("p", ANN, "login", {"n": 2})
        assert hub.publish("p", BOB, "other", {"n": 3}) is None
        assert hub.publish("p", None, "other", {"n": 4}) is None
        assert [e["n"] for e in texts(hub, "p", ANN)] == [1, 2]
        assert hub.history("p", BOB) == []
        assert hub.history("p", None) == []
        with pytest.raises(StreamRefused):
            hub.subscribe("p", BOB)

        anonymous = hub.subscribe("q", None)
        hub.publish("q", None, "r", {"n": 5})
        hub.publish("q", ANN, "r", {"n": 6})  # gains ann's session: not for this stream
        batch = await anonymous.next(1)
        assert batch is not None
        assert [json.loads(text)["n"] for text in batch] == [5]
        anonymous.close()

    run(scenario)


def test_ended_sessions_lose_their_panels() -> None:
    async def scenario() -> None:
        hub = Hub()
        hub.publish("ann-1", ANN, "r", {"n": 1})
        hub.publish("ann-2", ANN, "r", {"n": 2})
        hub.publish("bob-1", BOB, "r", {"n": 3})
        hub.publish("visitor", None, "r", {"n": 4})
        stream = hub.subscribe("ann-1", ANN)
        hub.forget_sessions(frozenset({ANN}))
        assert await stream.next(1) is None
        assert hub.history("ann-1", ANN) == []
        assert hub.history("ann-2", ANN) == []
        assert hub.publish("ann-3", ANN, "late", {"n": 5}) is None  # a request still running
        with pytest.raises(StreamRefused):
            hub.subscribe("ann-3", ANN)
        assert len(hub.history("bob-1", BOB)) == 1
        assert len(hub.history("visitor")) == 1

    run(scenario)


def test_the_forgotten_ids_are_bounded() -> None:
    hub = Hub()
    hub.forgotten_length = 2
    for panel_id in ("a", "b", "c"):
        hub.forget(panel_id)
    hub.forget_sessions(["s1", "s2", "s3"])
    assert hub.publish("a", None, "r", {}) is not None  # the oldest were let go
    assert hub.publish("c", None, "r", {}) is None
    assert hub.publish("d", "s1", "r", {}) is not None
    assert hub.publish("e", "s3", "r", {}) is None


# -- what a request reports of its on-commit calls ------------------------------------------

things_happened = Signal()


def fine(sender: object, **kwargs: object) -> None:
    pass


def broken(sender: object, **kwargs: object) -> None:
    raise LookupError("no such thing")


@pytest.fixture
def waiting_request() -> Iterator[RequestEvents]:
    """A request of a running panel, its panel not known yet."""
    panel = Panel()
    panel.start()
    events = RequestEvents(panel, "POST /things")
    token = _current.set(events)
    try:
        yield events
    finally:
        _current.reset(token)
        panel.stop()


@pytest.fixture
def request_events(waiting_request: RequestEvents) -> RequestEvents:
    """A request of a running panel, attached to the panel "p"."""
    waiting_request.attach("p", {})
    return waiting_request


def test_a_request_keeps_at_most_pending_max_events_until_its_panel_is_known(
    waiting_request: RequestEvents,
) -> None:
    for _ in range(PENDING_MAX + 10):
        things_happened.send(sender="app")
    waiting_request.attach("p", {})
    assert len(waiting_request.panel.hub.history("p")) == PENDING_MAX


def test_a_request_follows_at_most_deferred_max_on_commit_calls(
    request_events: RequestEvents,
) -> None:
    things_happened.connect(fine, on_commit=True)
    try:
        with FakeTransaction():
            for _ in range(DEFERRED_MAX + 10):
                things_happened.send(sender="app")
        request_events.finish()
    finally:
        things_happened.disconnect(fine)
    events = texts(request_events.panel.hub, "p")
    numbers = [r["deferred"] for e in events if e["type"] == "send" for r in e["receivers"]]
    assert numbers == [*range(1, DEFERRED_MAX + 1), *[True] * 10]  # the rest not followed
    assert len([e for e in events if e["type"] == "after_commit"]) == DEFERRED_MAX


def test_a_request_reports_its_on_commit_calls_done_failed_and_dropped(
    request_events: RequestEvents,
) -> None:
    things_happened.connect(fine, on_commit=True)
    things_happened.connect(broken, on_commit=True)
    try:
        with pytest.MonkeyPatch.context() as patch, FakeTransaction():
            patch.setattr(logging.getLogger("tocsin"), "disabled", True)  # broken() fails robustly
            things_happened.send(sender="app")
        with FakeTransaction() as rolled_back:
            things_happened.send(sender="app")
            rolled_back.rollback()
        request_events.finish()
    finally:
        things_happened.disconnect(fine)
        things_happened.disconnect(broken)

    events = texts(request_events.panel.hub, "p")
    sends = [e for e in events if e["type"] == "send"]
    assert [r["deferred"] for e in sends for r in e["receivers"]] == [1, 2, 3, 4]
    outcomes = [e for e in events if e["type"] == "after_commit"]
    assert [(e["deferred"], e["receiver"].rsplit(".", 1)[-1], e["state"]) for e in outcomes] == [
        (1, "fine", "done"),
        (2, "broken", "failed"),
        (3, "fine", "dropped"),
        (4, "broken", "dropped"),
    ]
    done, failed, *dropped = outcomes
    assert done["signal"] == "things_happened"
    assert done["kind"] == "app"
    assert done["ms"] >= 0
    assert done["offset_ms"] >= sends[0]["offset_ms"]
    assert failed["error"] == "LookupError: no such thing"
    assert all(e["ms"] is None and e["offset_ms"] is None for e in dropped)
    assert {e["request_id"] for e in events} == {request_events.request_id}
    assert {e["request"] for e in events} == {"POST /things"}
