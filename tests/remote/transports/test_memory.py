"""What only the in-memory transports do: share streams between sync and asyncio
code, wake blocked consumers on close, and keep ids increasing on a stalled clock."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest

from tocsin.exceptions import TransportError
from tocsin.remote import AsyncMemoryTransport, MemoryTransport

GROUP = "workers"


@pytest.fixture
def backend() -> str:
    """These tests run in memory only."""
    return "memory"


def test_async_transport_shares_a_sync_transports_streams(stream: str) -> None:
    """A publish from a thread on the shared MemoryTransport wakes an async consumer at once."""
    shared = MemoryTransport()
    shared.ensure_group(stream, GROUP)

    async def main() -> list[bytes]:
        async with AsyncMemoryTransport(shared) as transport:
            timer = threading.Timer(0.1, shared.publish, (stream, b"from sync code"))
            timer.start()
            started = time.monotonic()
            messages = await transport.consume(stream, GROUP, "c1", block=10)
            assert time.monotonic() - started < 5
            timer.join()
            return [m.payload for m in messages]

    assert asyncio.run(main()) == [b"from sync code"]
    # Closing the async transport left the shared one open.
    assert shared.length(stream) == 1
    shared.close()


def test_close_wakes_a_blocked_consumer(stream: str) -> None:
    """A consume() blocked in another thread raises TransportError when the transport closes."""
    transport = MemoryTransport()
    transport.ensure_group(stream, GROUP)
    raised: list[BaseException] = []

    def consume() -> None:
        try:
            transport.consume(stream, GROUP, "c1", block=30)
        except TransportError as err:
            raised.append(err)

    thread = threading.Thread(target=consume)
    thread.start()
    time.sleep(0.1)
    transport.close()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert len(raised) == 1


def test_async_close_wakes_a_waiting_consumer(stream: str) -> None:
    """An async consume() waiting when its transport closes raises TransportError."""

    async def main() -> None:
        transport = AsyncMemoryTransport()
        await transport.ensure_group(stream, GROUP)
        waiting = asyncio.create_task(transport.consume(stream, GROUP, "c1", block=30))
        await asyncio.sleep(0.05)
        await transport.close()
        with pytest.raises(TransportError, match="closed"):
            await asyncio.wait_for(waiting, 5)

    asyncio.run(main())


def test_ids_increase_when_the_clock_stalls_or_goes_back(
    stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ids count up their sequence while the clock stands still, and never go back with it."""
    transport = MemoryTransport()
    now_ns = [5_000_000_000]
    monkeypatch.setattr(time, "time_ns", lambda: now_ns[0])
    ids = [transport.publish(stream, b"a"), transport.publish(stream, b"b")]
    now_ns[0] = 4_000_000_000
    ids.append(transport.publish(stream, b"c"))
    now_ns[0] = 6_000_000_000
    ids.append(transport.publish(stream, b"d"))
    assert ids == ["5000-0", "5000-1", "5000-2", "6000-0"]
    transport.close()


def test_messages_are_copies(stream: str) -> None:
    """Changing a message's headers does not change the stream it came from."""
    transport = MemoryTransport()
    transport.ensure_group(stream, GROUP)
    transport.publish(stream, b"x")
    [message] = transport.consume(stream, GROUP, "c1")
    transport.dead_letter(stream, GROUP, message, f"{stream}:dead", error="boom")
    [dead] = transport.read(f"{stream}:dead")
    dead.headers["error"] = "changed"  # type: ignore[index]
    assert transport.read(f"{stream}:dead")[0].headers["error"] == "boom"
    transport.close()


def test_threads_publish_and_consume_without_losing_or_repeating(stream: str) -> None:
    """Publishers and blocking consumers in several threads deliver each message exactly once."""
    transport = MemoryTransport()
    transport.ensure_group(stream, GROUP)
    received: Counter[bytes] = Counter()
    received_lock = threading.Lock()
    done = threading.Event()

    def publish(n: int) -> None:
        for i in range(200):
            transport.publish(stream, b"%d-%d" % (n, i))

    def consume(name: str) -> None:
        while not done.is_set():
            for message in transport.consume(stream, GROUP, name, count=7, block=0.05):
                with received_lock:
                    received[message.payload] += 1
                transport.ack(stream, GROUP, [message.id])

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=consume, args=(f"c{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads[:4]:
        thread.join()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with received_lock:
            if received.total() == 800:
                break
        time.sleep(0.01)
    done.set()
    for thread in threads[4:]:
        thread.join()
    assert len(received) == 800
    assert set(received.values()) == {1}
    assert transport.pending(stream, GROUP).count == 0
    transport.close()
