"""What only the Redis transports do: report a broker they cannot reach, leave a
client they were given open, trim, reconnect, and read every reply shape redis-py gives."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import inspect
import signal
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from tocsin.exceptions import TransportError
from tocsin.remote import AsyncRedisStreamsTransport, Message, RedisStreamsTransport
from tocsin.remote.transports import _pipelined

GROUP = "workers"
NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connection refused
# redis-py 8 added unified replies (legacy_responses=False); before it, RESP2 and RESP3 only.
UNIFIED = "legacy_responses" in inspect.signature(redis.Redis.__init__).parameters
needs_unified = pytest.mark.skipif(not UNIFIED, reason="redis-py < 8 has no legacy_responses")


@pytest.fixture
def backend(redis_url: str) -> str:
    """These tests run on the Redis server only."""
    return "redis"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test's own, closed after it."""
    with redis.Redis.from_url(redis_url) as made:
        yield made


def test_unreachable_redis_raises_transport_error_naming_the_command(stream: str) -> None:
    """Every command on a server that refuses connections raises TransportError saying which."""
    with RedisStreamsTransport(url=NOWHERE) as transport:
        with pytest.raises(TransportError, match=r"XADD on stream '.*:events'") as raised:
            transport.publish(stream, b"x")
        assert isinstance(raised.value.__cause__, redis.ConnectionError)
        with pytest.raises(TransportError, match="XREADGROUP"):
            transport.consume(stream, GROUP, "c1")
        with pytest.raises(TransportError, match="XPENDING"):
            transport.pending(stream, GROUP)


def test_unreachable_redis_raises_transport_error_in_asyncio(stream: str) -> None:
    """The asyncio transport wraps a refused connection in TransportError too."""

    async def main() -> None:
        async with AsyncRedisStreamsTransport(url=NOWHERE) as transport:
            with pytest.raises(TransportError, match="XADD") as raised:
                await transport.publish(stream, b"x")
            assert isinstance(raised.value.__cause__, redis.ConnectionError)

    asyncio.run(main())


def test_close_leaves_a_given_client_open(client: redis.Redis, stream: str) -> None:
    """close() does not close a client passed in: its owner goes on using it."""
    transport = RedisStreamsTransport(client)
    transport.publish(stream, b"x")
    transport.close()
    assert client.xlen(stream) == 1
    with pytest.raises(TransportError, match="closed"):
        transport.publish(stream, b"y")


def test_close_leaves_a_given_async_client_open(redis_url: str, stream: str) -> None:
    """The asyncio transport's close() does not close a client passed in either."""

    async def main() -> None:
        async with redis.asyncio.Redis.from_url(redis_url) as client:
            async with AsyncRedisStreamsTransport(client) as transport:
                await transport.publish(stream, b"x")
            assert await client.xlen(stream) == 1

    asyncio.run(main())


def test_bad_construction_raises_value_error(client: redis.Redis, redis_url: str) -> None:
    """A client and a url together, a decoding client, or a bad maxlen are refused."""
    with pytest.raises(ValueError, match="not both"):
        RedisStreamsTransport(client, url=redis_url)
    with (
        redis.Redis.from_url(redis_url, decode_responses=True) as decoding,
        pytest.raises(ValueError, match="decode_responses=False"),
    ):
        RedisStreamsTransport(decoding)
    with pytest.raises(ValueError, match=r"count|maxlen"):
        RedisStreamsTransport(client, maxlen=0)


def test_from_url_makes_a_transport_with_its_own_client(redis_url: str, stream: str) -> None:
    """from_url() is the constructor with a url."""
    with RedisStreamsTransport.from_url(redis_url) as transport:
        transport.publish(stream, b"x")
        assert transport.length(stream) == 1


def test_maxlen_trims_the_stream_about_there(redis_url: str, stream: str) -> None:
    """With maxlen, publishing keeps the stream near that length (Redis trims whole nodes)."""
    with RedisStreamsTransport(url=redis_url, maxlen=10) as transport:
        for n in range(500):
            transport.publish(stream, b"%d" % n)
        transport.publish_many(stream, [b"more"] * 300)
        assert 10 <= transport.length(stream) < 300


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"protocol": 2}, id="resp2"),
        pytest.param({"protocol": 3}, id="resp3"),
        pytest.param({"legacy_responses": False}, id="unified-responses", marks=needs_unified),
    ],
)
def test_any_reply_shape_of_the_client_is_read(
    redis_url: str, stream: str, options: dict[str, Any]
) -> None:
    """Clients on RESP2, on RESP3, or with redis-py's unified replies, consume alike."""
    with redis.Redis.from_url(redis_url, **options) as client, RedisStreamsTransport(client) as t:
        id = t.publish(stream, b"x")
        t.ensure_group(stream, GROUP)
        assert t.consume(stream, GROUP, "c1") == [Message(id, b"x", 1, {})]
        assert t.claim_stale(stream, GROUP, "c2", min_idle=0) == [Message(id, b"x", 2, {})]


def test_async_transport_reads_every_reply_shape(redis_url: str, stream: str) -> None:
    """The asyncio transport reads RESP3 and unified replies (where redis-py has them) too."""

    async def main() -> None:
        shapes: list[dict[str, Any]] = [{"protocol": 3}]
        if UNIFIED:
            shapes.append({"legacy_responses": False})
        for n, options in enumerate(shapes):
            async with (
                redis.asyncio.Redis.from_url(redis_url, **options) as client,
                AsyncRedisStreamsTransport(client) as transport,
            ):
                id = await transport.publish(f"{stream}:{n}", b"x")
                await transport.ensure_group(f"{stream}:{n}", GROUP)
                [message] = await transport.consume(f"{stream}:{n}", GROUP, "c1")
                assert message.id == id

    asyncio.run(main())


def test_publish_reconnects_once_when_its_connection_was_dropped(
    client: redis.Redis, redis_url: str, stream: str
) -> None:
    """A publish after Redis dropped the publishing connection goes through on a new one."""
    name = f"tocsin-test-{uuid.uuid4().hex}"
    with (
        redis.Redis.from_url(redis_url, client_name=name) as own,
        RedisStreamsTransport(own) as transport,
    ):
        transport.publish(stream, b"before")
        for connection in client.client_list():
            if connection["name"] == name:
                client.client_kill_filter(_id=connection["id"])
        transport.publish(stream, b"after")
        assert [m.payload for m in transport.read(stream)] == [b"before", b"after"]


def test_consume_sends_its_acknowledgement_in_the_same_round_trip(
    client: redis.Redis, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """consume(ack=ids) writes XACK and XREADGROUP at once, and reads both replies."""
    from tocsin.remote.transports import redis as module

    writes: list[list[bytes]] = []

    def pipeline(connection: Any, commands: list[bytes]) -> list[Any]:
        writes.append([command.split(b"\r\n")[2] for command in commands])
        return original(connection, commands)

    original = module._pipeline
    with RedisStreamsTransport(client) as transport:
        ids = transport.publish_many(stream, [b"a", b"b"])
        transport.ensure_group(stream, GROUP)
        assert [m.id for m in transport.consume(stream, GROUP, "c1", count=1)] == ids[:1]
        monkeypatch.setattr(module, "_pipeline", pipeline)
        assert [m.id for m in transport.consume(stream, GROUP, "c1", ack=ids[:1])] == ids[1:]
    assert writes == [[b"XACK", b"XREADGROUP"]]
    assert client.xpending(stream, GROUP)["pending"] == 1


def test_reads_keep_one_connection_and_threads_reading_at_once_take_others(
    redis_url: str, stream: str
) -> None:
    """consume() reads on one connection it keeps (no pool checkout per read); a
    thread that reads while another waits on it takes a connection of the pool, and
    gives it back; close() gives the kept one back."""
    with RedisStreamsTransport(url=redis_url) as transport:
        pool = transport._client.connection_pool
        transport.ensure_group(stream, GROUP)
        transport.consume(stream, GROUP, "c1", block=0.01)
        kept = transport._reader
        assert kept is not None
        assert kept in pool._in_use_connections
        transport.consume(stream, GROUP, "c1", block=0.01)
        assert transport._reader is kept
        waiting = threading.Thread(
            target=transport.consume, args=(stream, GROUP, "c2"), kwargs={"block": 1.0}
        )
        waiting.start()
        _wait_for(transport._reader_lock.locked)
        [id] = transport.publish_many(stream, [b"x"])
        got = transport.consume(stream, GROUP, "c3", block=0.5)  # on a connection of the pool
        waiting.join(5)
        assert [m.id for m in got] in ([id], [])  # the waiting read may have taken it
        assert pool._in_use_connections == {kept, transport._publisher}
    assert not pool._in_use_connections


def test_close_while_a_thread_reads_gives_the_reading_connection_back_after(
    client: redis.Redis, stream: str
) -> None:
    """close() does not wait for a read blocked in Redis: the reading thread gives
    its connection back to the (caller's) pool when the read ends."""
    pool = client.connection_pool
    transport = RedisStreamsTransport(client)
    transport.ensure_group(stream, GROUP)
    done: list[Any] = []
    reading = threading.Thread(
        target=lambda: done.append(transport.consume(stream, GROUP, "c1", block=0.3))
    )
    reading.start()
    _wait_for(transport._reader_lock.locked)
    started = time.monotonic()
    transport.close()
    assert time.monotonic() - started < 0.2
    reading.join(5)
    assert done == [[]]
    assert transport._reader is None
    assert not pool._in_use_connections


def test_a_refused_read_after_an_acknowledgement_keeps_the_connection_in_step(
    client: redis.Redis, stream: str
) -> None:
    """If Redis refuses the read, consume(ack=...) raises TransportError, and the
    connection stays in step for the next command."""
    with RedisStreamsTransport(client) as transport:
        [id] = transport.publish_many(stream, [b"a"])
        transport.ensure_group(stream, GROUP)
        transport.consume(stream, GROUP, "c1")
        with pytest.raises(TransportError, match=r"XACK\+XREADGROUP.*NOGROUP"):
            transport.consume(stream, "no-such-group", "c1", ack=[id])
        assert [m.id for m in transport.consume(stream, GROUP, "c2")] == []
        assert transport.consume(stream, GROUP, "c1", ack=[id]) == []
        assert transport.pending(stream, GROUP).count == 0


def test_refused_commands_name_their_stream(client: redis.Redis, stream: str) -> None:
    """A command Redis refuses (a stream key holding a string) is a TransportError."""
    client.set(stream, "not a stream")
    with RedisStreamsTransport(client) as transport:
        with pytest.raises(TransportError, match="WRONGTYPE") as raised:
            transport.publish(stream, b"x")
        assert isinstance(raised.value.__cause__, redis.ResponseError)
        # The refusal was the reply: the publishing connection is still in step.
        assert transport.publish(f"{stream}:ok", b"x")
        with pytest.raises(TransportError, match="XGROUP CREATE"):
            transport.ensure_group(stream, GROUP)


def test_import_without_redis_py_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-py, importing the module raises ImportError naming the extra."""
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.delitem(sys.modules, "tocsin.remote.transports.redis")
    with pytest.raises(ImportError, match=r"tocsin\[redis\]"):
        importlib.import_module("tocsin.remote.transports.redis")


def test_threads_publish_side_by_side(redis_url: str, stream: str) -> None:
    """Threads that publish at once all succeed, in order per thread, none lost."""
    import threading

    from tocsin.remote import RedisStreamsTransport

    with RedisStreamsTransport(url=redis_url) as transport:

        def publish(number: int) -> None:
            for n in range(200):
                transport.publish(stream, f"{number}:{n}".encode())

        threads = [threading.Thread(target=publish, args=(t,)) for t in range(4)]
        for started in threads:
            started.start()
        for started in threads:
            started.join(30)
        payloads = [m.payload.decode() for m in transport.read(stream, count=1000)]
    assert len(payloads) == 800
    for thread in range(4):
        mine = [int(p.split(":")[1]) for p in payloads if p.startswith(f"{thread}:")]
        assert mine == list(range(200))


def _spy_writes(transport: RedisStreamsTransport) -> list[int]:
    """The number of commands in each write on the publishing connection (after a
    first publish took it), appended as they are sent to the real server."""
    connection = transport._publisher
    assert connection is not None
    writes: list[int] = []
    send = connection.send_packed_command

    def counted(command: Any, check_health: bool = True) -> None:
        writes.append(b"".join(command).count(b"$4\r\nXADD\r\n"))
        send(command, check_health)  # type: ignore[no-untyped-call]

    connection.send_packed_command = counted  # type: ignore[method-assign]
    return writes


def _queue_behind_a_held_connection(
    transport: RedisStreamsTransport, calls: list[Callable[[], Any]]
) -> list[Any]:
    """Run each call in a thread while the publishing connection is held, so that
    they all queue, then let go: the first leads, and sends every one in one write.
    Returns each call's result or exception."""
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    with transport._publish_lock:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(transport._queue) < len(calls) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(transport._queue) == len(calls)
    for thread in threads:
        thread.join(10)
    return results


def test_concurrent_publishes_share_round_trips_exactly_once_in_order(
    redis_url: str, stream: str
) -> None:
    """8 threads publishing one by one at once are coalesced into fewer writes; every
    event is published exactly once, with the id its caller got, in each thread's order."""
    threads, each = 8, 400
    returned: dict[int, list[str]] = {}
    with RedisStreamsTransport(url=redis_url) as transport:
        transport.publish(f"{stream}:warm", b"x")
        writes = _spy_writes(transport)
        start = threading.Barrier(threads)

        def publish(number: int) -> None:
            start.wait()
            returned[number] = [
                transport.publish(stream, f"{number}:{n}".encode()) for n in range(each)
            ]

        workers = [threading.Thread(target=publish, args=(t,)) for t in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        messages = transport.read(stream, count=threads * each + 1)
    assert len(messages) == threads * each
    by_id = {m.id: m.payload.decode() for m in messages}
    assert len(by_id) == threads * each
    for number, ids in returned.items():
        assert [by_id[id] for id in ids] == [f"{number}:{n}" for n in range(each)]
        assert ids == sorted(ids, key=lambda id: tuple(map(int, id.split("-"))))
    assert sum(writes) == threads * each
    assert len(writes) < threads * each  # some round trips were shared


def _assert_only_the_refused_failed(
    targets: list[str], bad: str, results: list[Any], published: dict[str, bytes]
) -> None:
    """After publishing ``str(i)`` to each of *targets*, then ``[b"m1", b"m2"]``
    (the last result) in one shared write: the XADDs to *bad* failed with Redis'
    refusal, each other one is in the stream once, under the id its caller got."""
    for index, target in enumerate(targets):
        if target == bad:
            assert isinstance(results[index], TransportError)
            assert "WRONGTYPE" in str(results[index])
            assert isinstance(results[index].__cause__, redis.ResponseError)
        else:
            assert published[results[index]] == f"{index}".encode()
    assert [published[id] for id in results[-1]] == [b"m1", b"m2"]
    assert len(published) == 1 + 3 + 2


def test_a_refused_command_in_a_shared_pipeline_fails_only_its_caller(
    client: redis.Redis, redis_url: str, stream: str
) -> None:
    """In one write with others, the XADDs Redis refuses (a key holding a string) raise
    in exactly their callers, and the others are published."""
    bad = f"{stream}:string"
    client.set(bad, "not a stream")
    with RedisStreamsTransport(url=redis_url) as transport:
        transport.publish(stream, b"first")
        writes = _spy_writes(transport)
        targets = [stream, bad, stream, bad, stream]
        results = _queue_behind_a_held_connection(
            transport,
            [
                functools.partial(transport.publish, s, f"{i}".encode())
                for i, s in enumerate(targets)
            ]
            + [functools.partial(transport.publish_many, stream, [b"m1", b"m2"])],
        )
        assert writes == [7]
        published = {m.id: m.payload for m in transport.read(stream)}
    _assert_only_the_refused_failed(targets, bad, results, published)


def test_a_shared_pipeline_is_sent_again_once_on_a_dropped_connection(
    client: redis.Redis, redis_url: str, stream: str
) -> None:
    """When Redis dropped the publishing connection, the queued publishes go through,
    once each, on a new one; each caller gets its own id."""
    name = f"tocsin-test-{uuid.uuid4().hex}"
    with (
        redis.Redis.from_url(redis_url, client_name=name) as own,
        RedisStreamsTransport(own) as transport,
    ):
        transport.publish(stream, b"before")
        for connection in client.client_list():
            if connection["name"] == name:
                client.client_kill_filter(_id=connection["id"])
        calls: list[Callable[[], Any]] = [
            functools.partial(transport.publish, stream, f"{i}".encode()) for i in range(6)
        ]
        results = _queue_behind_a_held_connection(transport, calls)
        published = {m.id: m.payload for m in transport.read(stream)}
    assert [published[id] for id in results] == [f"{i}".encode() for i in range(6)]
    assert len(published) == 7


def test_a_leader_interrupted_before_sending_hands_over(redis_url: str, stream: str) -> None:
    """A caller interrupted while it waits for the connection as leader leaves the
    queue, and the callers behind it are sent by the next leader."""
    with RedisStreamsTransport(url=redis_url) as transport:
        transport.publish(stream, b"first")
        lock = transport._publish_lock

        class Interrupted(BaseException):
            pass

        class Interrupting:
            """The connection's lock, interrupted once for the first caller."""

            def __enter__(self) -> None:
                if threading.current_thread().name == "leader":
                    transport._publish_lock = lock  # the others take the real lock
                    while len(transport._queue) < 3:
                        time.sleep(0.001)
                    raise Interrupted
                lock.acquire()

            def __exit__(self, *exc_info: Any) -> None:
                lock.release()

        transport._publish_lock = Interrupting()  # type: ignore[assignment]
        raised: list[BaseException] = []

        def lead() -> None:
            try:
                transport.publish(stream, b"interrupted")
            except Interrupted as error:
                raised.append(error)

        leader = threading.Thread(target=lead, name="leader")
        leader.start()
        while not transport._queue:
            time.sleep(0.001)
        followers = [
            threading.Thread(target=transport.publish, args=(stream, f"{i}".encode()))
            for i in range(2)
        ]
        for follower in followers:
            follower.start()
        for thread in (leader, *followers):
            thread.join(10)
        assert not any(thread.is_alive() for thread in (leader, *followers))
        assert len(raised) == 1
        payloads = sorted(m.payload for m in transport.read(stream))
    assert payloads == [b"0", b"1", b"first"]


def _hold_rounds(transport: RedisStreamsTransport) -> tuple[threading.Event, threading.Event]:
    """Hold every round of *transport* before it is written: the first event is set
    when a round is taken (its callers' publishes then count as on the wire), and
    rounds go out once the second is set."""
    send, taken, gate = transport._send, threading.Event(), threading.Event()

    def held(batch: Any) -> None:
        taken.set()
        gate.wait(10)
        send(batch)

    transport._send = held  # type: ignore[method-assign]
    return taken, gate


def test_the_next_leader_is_woken_after_every_caller_of_the_round(
    redis_url: str, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The callers of a round are woken one after the other, and the one that leads the
    next round after them all (not first), so that those of them that publish again at
    once can go in that round too, not only the quickest."""
    from tocsin.remote.transports import redis as module

    woken: list[bytes] = []  # the payload of each publish whose caller was woken

    class Recorded(module._Slot):
        def __init__(self, commands: list[bytes]) -> None:
            super().__init__(commands)
            self.wake = _RecordedWake(self.wake, commands[0].rsplit(b"\r\n", 2)[-2], woken)  # type: ignore[assignment]

    monkeypatch.setattr(module, "_Slot", Recorded)
    with RedisStreamsTransport(url=redis_url) as transport:
        transport.publish(stream, b"first")
        taken, gate = _hold_rounds(transport)

        def publish(payload: bytes) -> threading.Thread:
            thread = threading.Thread(target=transport.publish, args=(stream, payload))
            thread.start()
            return thread

        with transport._publish_lock:
            threads = [publish(f"{number}:0".encode()) for number in range(4)]
            _wait_for(lambda: len(transport._queue) == 4)
        taken.wait(10)  # the round of four is on the wire
        threads.append(publish(b"next"))  # it leads the next round
        _wait_for(lambda: len(transport._queue) == 1)
        gate.set()
        for thread in threads:
            thread.join(10)
        assert not any(thread.is_alive() for thread in threads)
        payloads = sorted(m.payload for m in transport.read(stream))
    assert len(woken) == 4
    assert all(payload.endswith(b":0") for payload in woken[:3])
    assert woken[3] == b"next"
    assert payloads == sorted([b"first", b"next", *(f"{n}:0".encode() for n in range(4))])


class _RecordedWake:
    """A slot's wake-up lock that notes its publish's payload when released."""

    def __init__(self, lock: Any, payload: bytes, woken: list[bytes]) -> None:
        self.lock, self.payload, self.woken = lock, payload, woken

    def acquire(self, blocking: bool = True) -> bool:
        return bool(self.lock.acquire(blocking))

    def release(self) -> None:
        self.woken.append(self.payload)
        self.lock.release()


def test_callers_that_stop_publishing_at_different_times_never_hold_up_the_others(
    redis_url: str, stream: str
) -> None:
    """The callers of a round are woken one by one, each by the one before it: threads
    that publish once and stop, or publish on, all finish, each event once, in order."""
    counts = [1, 2, 3, 5, 8, 50, 200, 400, 1, 300]
    returned: dict[int, list[str]] = {}
    with RedisStreamsTransport(url=redis_url) as transport:
        start = threading.Barrier(len(counts))

        def publish(number: int) -> None:
            start.wait()
            ids = []
            for n in range(counts[number]):
                ids.append(transport.publish(stream, f"{number}:{n}".encode()))
                if n % 7 == number % 7:
                    time.sleep(0.0005)  # off the connection for a while, mid-round
            returned[number] = ids

        threads = [threading.Thread(target=publish, args=(t,)) for t in range(len(counts))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in threads)
        by_id = {m.id: m.payload.decode() for m in transport.read(stream, count=2000)}
    assert len(by_id) == sum(counts)
    for number, ids in returned.items():
        assert [by_id[id] for id in ids] == [f"{number}:{n}" for n in range(counts[number])]


class _Interrupted(BaseException):
    pass


@contextlib.contextmanager
def _interruptible_main_thread() -> Iterator[Callable[[], None]]:
    """A function that interrupts the main thread (this test's) with _Interrupted once it
    waits in the transport's _wait(), as Ctrl-C would; from another thread."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals go to the main thread")

    def on_signal(number: int, frame: Any) -> None:
        raise _Interrupted

    def interrupt() -> None:
        main = threading.main_thread().ident
        assert main is not None
        deadline = time.monotonic() + 10
        while sys._current_frames()[main].f_code.co_name != "_wait":
            assert time.monotonic() < deadline
            time.sleep(0.001)
        signal.pthread_kill(main, signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, on_signal)
    try:
        yield interrupt
    finally:
        signal.signal(signal.SIGUSR1, previous)


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.001)


def _publish_interrupted_among(
    transport: RedisStreamsTransport,
    stream: str,
    arrange: Callable[[Callable[[bytes], None]], None],
) -> dict[bytes, str]:
    """Publish ``b"a"`` from a thread, held as the next round's leader by the
    publishing lock, then ``b"interrupted"`` from the main thread, which *arrange*
    (run in a helper thread, given a function that publishes a payload from a
    thread of its own) must interrupt. Returns the id each thread's payload got,
    once every thread has ended."""
    returned: dict[bytes, str] = {}
    threads: list[threading.Thread] = []

    def publish(payload: bytes) -> None:
        def run() -> None:
            returned[payload] = transport.publish(stream, payload)

        thread = threading.Thread(target=run)
        thread.start()
        threads.append(thread)

    transport._publish_lock.acquire()
    publish(b"a")
    helper = threading.Thread(target=arrange, args=(publish,))
    helper.start()
    with pytest.raises(_Interrupted):
        transport.publish(stream, b"interrupted")
    helper.join(10)
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    return returned


def test_a_queued_caller_interrupted_is_not_sent_and_the_others_are(
    redis_url: str, stream: str
) -> None:
    """A caller interrupted while it waits in the queue leaves it unsent; the leader
    sends the others, and every one of them is woken."""
    with RedisStreamsTransport(url=redis_url) as transport, _interruptible_main_thread() as stop:
        transport.publish(stream, b"first")

        def arrange(publish: Callable[[bytes], None]) -> None:
            _wait_for(lambda: len(transport._queue) == 2)  # the leader, then this test
            publish(b"b")
            publish(b"c")
            _wait_for(lambda: len(transport._queue) == 4)
            stop()
            _wait_for(lambda: len(transport._queue) == 3)  # this test's publish left it
            transport._publish_lock.release()

        returned = _publish_interrupted_among(transport, stream, arrange)
        assert len(returned) == 3
        payloads = sorted(m.payload for m in transport.read(stream))
    assert payloads == [b"a", b"b", b"c", b"first"]


def test_a_caller_interrupted_while_its_round_is_sent_still_wakes_those_after_it(
    redis_url: str, stream: str
) -> None:
    """A caller interrupted while its round is on the wire is skipped: the callers
    after it in the round are woken all the same, each with its own id."""
    with RedisStreamsTransport(url=redis_url) as transport, _interruptible_main_thread() as stop:
        transport.publish(stream, b"first")
        taken, gate = _hold_rounds(transport)

        def arrange(publish: Callable[[bytes], None]) -> None:
            _wait_for(lambda: len(transport._queue) == 2)  # the leader, then this test
            publish(b"b")
            _wait_for(lambda: len(transport._queue) == 3)
            publish(b"c")
            _wait_for(lambda: len(transport._queue) == 4)
            transport._publish_lock.release()
            taken.wait(10)  # the round is taken: this test's publish is on the wire
            stop()
            time.sleep(0.05)  # the interruption handled
            gate.set()

        returned = _publish_interrupted_among(transport, stream, arrange)
        published = {m.id: m.payload for m in transport.read(stream)}
    assert {published[id] for id in returned.values()} == {b"a", b"b", b"c"}
    assert sorted(published.values()) == [b"a", b"b", b"c", b"first", b"interrupted"]


# -- the asyncio transport's shared writes ---------------------------------------------------
# On a redis-py whose connections it can take over, the asyncio transport publishes
# on a pipelined connection of its own (tests/remote/transports/test_pipelined.py);
# otherwise through redis.asyncio, one round at a time. Both keep these promises.


@pytest.fixture(params=["pipelined", "redis.asyncio"])
def publishing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How the asyncio transport publishes, both ways."""
    if request.param == "redis.asyncio":
        monkeypatch.setattr(_pipelined, "take_over", lambda connection: None)
    return str(request.param)


@pytest.fixture
def through_redis_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    """The asyncio transport publishing through redis.asyncio, as where it cannot
    take a connection over."""
    monkeypatch.setattr(_pipelined, "take_over", lambda connection: None)


def _spy_async_writes(transport: AsyncRedisStreamsTransport) -> list[int]:
    """:func:`_spy_writes` for the asyncio transport's publishing connection (after
    a first publish has made it)."""
    writes: list[int] = []
    pipeline = transport._pipeline
    if pipeline is not None and not pipeline.unsupported:
        wire = pipeline._wire
        assert wire is not None
        write = wire.write

        def counted_write(data: Any) -> None:
            writes.append(bytes(data).count(b"$4\r\nXADD\r\n"))
            write(data)

        wire.write = counted_write  # type: ignore[method-assign]
        return writes
    connection = transport._publisher
    assert connection is not None
    send = connection.send_packed_command

    async def counted(command: Any, check_health: bool = True) -> None:
        writes.append(b"".join(command).count(b"$4\r\nXADD\r\n"))
        await send(command, check_health)

    connection.send_packed_command = counted  # type: ignore[method-assign]
    return writes


def test_concurrent_async_publishes_share_round_trips_exactly_once_in_order(
    redis_url: str, stream: str, publishing: str
) -> None:
    """8 tasks publishing one by one at once share writes on one connection; every
    event is published exactly once, with the id its caller got, in each task's order."""
    tasks, each = 8, 300
    returned: dict[int, list[str]] = {}

    async def main() -> list[Message]:
        async with AsyncRedisStreamsTransport(url=redis_url) as transport:
            await transport.publish(f"{stream}:warm", b"x")
            writes = _spy_async_writes(transport)

            async def publish(number: int) -> None:
                returned[number] = [
                    await transport.publish(stream, f"{number}:{n}".encode()) for n in range(each)
                ]

            await asyncio.gather(*(publish(t) for t in range(tasks)))
            assert sum(writes) == tasks * each
            if publishing == "redis.asyncio":  # every round carries the 8 tasks' next publishes
                assert len(writes) <= each + 2
            else:  # in two writes that take turns (test_pipelined.py), 4 each when in step
                assert len(writes) <= tasks * each / 2
            return await transport.read(stream, count=tasks * each + 1)

    messages = asyncio.run(main())
    assert len(messages) == tasks * each
    by_id = {m.id: m.payload.decode() for m in messages}
    for number, ids in returned.items():
        assert [by_id[id] for id in ids] == [f"{number}:{n}" for n in range(each)]


def test_a_refused_command_in_a_shared_async_pipeline_fails_only_its_caller(
    client: redis.Redis, redis_url: str, stream: str, publishing: str
) -> None:
    """Refused XADDs (a key holding a string) raise in exactly their tasks; the others
    of the same write are published, publish_many's together."""
    bad = f"{stream}:string"
    client.set(bad, "not a stream")
    targets = [stream, bad, stream, bad, stream]

    async def main() -> list[Any]:
        async with AsyncRedisStreamsTransport(url=redis_url, maxlen=1000) as transport:
            await transport.publish(stream, b"first")
            writes = _spy_async_writes(transport)
            calls: list[Awaitable[Any]] = [
                transport.publish(s, f"{i}".encode()) for i, s in enumerate(targets)
            ]
            calls.append(transport.publish_many(stream, [b"m1", b"m2"]))
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert sum(writes) == 7
            return results

    results = asyncio.run(main())
    published = {m.id: m.payload for m in RedisStreamsTransport(client).read(stream)}
    _assert_only_the_refused_failed(targets, bad, results, published)


def test_an_async_publish_cancelled_before_its_round_leaves_is_not_sent(
    redis_url: str, stream: str, publishing: str
) -> None:
    """A task cancelled while its publish waits to be written (here: for the
    connection) is not published; the publishes beside it are."""

    async def main() -> None:
        async with AsyncRedisStreamsTransport(url=redis_url) as transport:
            kept = asyncio.create_task(transport.publish(stream, b"kept"))
            dropped = asyncio.create_task(transport.publish(stream, b"dropped"))
            await asyncio.sleep(0)  # both queued; nothing has left
            dropped.cancel()
            await kept
            with pytest.raises(asyncio.CancelledError):
                await dropped
            assert [m.payload for m in await transport.read(stream)] == [b"kept"]

    asyncio.run(main())


def test_a_shared_async_pipeline_is_sent_again_once_on_a_dropped_connection(
    client: redis.Redis, redis_url: str, stream: str, publishing: str
) -> None:
    """When Redis dropped the publishing connection, the publishes of the round go
    through, once each, on a new one; each task gets its own id."""
    name = f"tocsin-test-{uuid.uuid4().hex}"

    async def main() -> list[str]:
        async with (
            redis.asyncio.Redis.from_url(redis_url, client_name=name) as own,
            AsyncRedisStreamsTransport(own) as transport,
        ):
            await transport.publish(stream, b"before")
            for connection in client.client_list():
                if connection["name"] == name:
                    client.client_kill_filter(_id=connection["id"])
            calls = [transport.publish(stream, f"{i}".encode()) for i in range(6)]
            return list(await asyncio.gather(*calls))

    ids = asyncio.run(main())
    published = {m.id: m.payload for m in RedisStreamsTransport(client).read(stream)}
    assert [published[id] for id in ids] == [f"{i}".encode() for i in range(6)]
    assert len(published) == 7


def test_an_async_round_interrupted_on_the_wire_fails_its_callers_and_the_next_works(
    redis_url: str, stream: str, through_redis_asyncio: None
) -> None:
    """Through redis.asyncio: if the task sending a round is cancelled while it
    waits for the replies (its loop closing, say), its callers get a
    TransportError saying the publish may have been sent, the connection is
    dropped (no reply left unread) and publishing goes on."""

    async def main() -> None:
        async with AsyncRedisStreamsTransport(url=redis_url) as transport:
            await transport.publish(stream, b"first")
            connection = transport._publisher
            assert connection is not None
            read, reading = connection.read_response, asyncio.Event()

            async def stuck(*args: Any, **kwargs: Any) -> Any:
                reading.set()
                await asyncio.Event().wait()  # the replies never come

            connection.read_response = stuck  # type: ignore[method-assign]
            calls = [asyncio.create_task(transport.publish(stream, b"%d" % i)) for i in range(3)]
            await reading.wait()
            assert transport._sender is not None
            transport._sender.cancel()
            results = await asyncio.gather(*calls, return_exceptions=True)
            for result in results:
                assert isinstance(result, TransportError), result
                assert "interrupted before the reply was read" in str(result)
            assert not connection.is_connected  # dropped: its replies are never read
            connection.read_response = read  # type: ignore[method-assign]
            assert await transport.publish(stream, b"after")
            payloads = [m.payload for m in await transport.read(stream)]
            assert payloads == [b"first", b"0", b"1", b"2", b"after"]

    asyncio.run(main())


def test_closing_the_async_transport_finishes_the_round_on_the_wire(
    redis_url: str, stream: str, publishing: str
) -> None:
    """close() lets the publishes already queued go out, then refuses new ones."""

    async def main() -> None:
        transport = AsyncRedisStreamsTransport(url=redis_url)
        await transport.publish(stream, b"first")
        calls = [asyncio.create_task(transport.publish(stream, b"%d" % i)) for i in range(3)]
        await asyncio.sleep(0)  # queued
        await transport.close()
        assert all(isinstance(id, str) for id in await asyncio.gather(*calls))
        with pytest.raises(TransportError, match="closed"):
            await transport.publish(stream, b"late")

    asyncio.run(main())
    with RedisStreamsTransport(url=redis_url) as transport:
        assert transport.length(stream) == 4


def test_an_async_round_whose_replies_stall_times_out_after_socket_timeout(
    redis_url: str, stream: str, through_redis_asyncio: None
) -> None:
    """Through redis.asyncio, the replies of a round are read without redis-py's
    timer per reply, under one timer: a connection that makes no progress for
    socket_timeout fails the round with a TransportError (redis-py's
    TimeoutError), is dropped, and the next round works; a round that keeps
    making progress is never cut short."""

    async def main() -> None:
        async with (
            redis.asyncio.Redis.from_url(redis_url, socket_timeout=0.2) as own,
            AsyncRedisStreamsTransport(own) as transport,
        ):
            await transport.publish(stream, b"first")
            connection = transport._publisher
            assert connection is not None
            read = connection.read_response

            async def slow(*args: Any, **kwargs: Any) -> Any:
                await asyncio.sleep(0.05)  # each reply late, but well within the limit
                return await read(*args, **kwargs)

            connection.read_response = slow  # type: ignore[method-assign]
            ids = await transport.publish_many(stream, [b"%d" % i for i in range(8)])
            assert len(ids) == 8  # 0.4 s in all, progress every 0.05 s

            async def stuck(*args: Any, **kwargs: Any) -> Any:
                await asyncio.Event().wait()

            connection.read_response = stuck  # type: ignore[method-assign]
            started = time.monotonic()
            with pytest.raises(TransportError, match="Timeout reading") as raised:
                await transport.publish(stream, b"stalled")
            assert 0.15 < time.monotonic() - started < 2
            assert isinstance(raised.value.__cause__, redis.TimeoutError)
            assert not connection.is_connected
            connection.read_response = read  # type: ignore[method-assign]
            assert await transport.publish(stream, b"after")

    asyncio.run(main())


def test_bad_publishes_among_30_tasks_at_once_are_refused_alone(
    redis_url: str, stream: str, publishing: str
) -> None:
    """30 tasks publish at once, a third of them with a payload that is not bytes or
    an empty stream name: those raise before anything is queued, each with its own
    error, and the others' events are published exactly once, sharing round trips."""

    async def main() -> tuple[list[Any], list[Message]]:
        async with AsyncRedisStreamsTransport(url=redis_url) as transport:
            await transport.publish(stream, b"first")
            writes = _spy_async_writes(transport)
            calls: list[Awaitable[Any]] = []
            for i in range(30):
                if i % 3 == 1:
                    calls.append(transport.publish(stream, f"{i}"))  # type: ignore[arg-type]
                elif i % 3 == 2:
                    calls.append(transport.publish("", b"%d" % i))
                else:
                    calls.append(transport.publish(stream, b"%d" % i))
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert sum(writes) == 10
            assert len(writes) < 10
            return results, await transport.read(stream)

    results, messages = asyncio.run(main())
    published = {m.id: m.payload for m in messages}
    for i, result in enumerate(results):
        if i % 3 == 1:
            assert isinstance(result, TypeError), result
        elif i % 3 == 2:
            assert isinstance(result, ValueError), result
            assert "stream must not be empty" in str(result)
        else:
            assert published[result] == b"%d" % i
    assert len(published) == 1 + 10
