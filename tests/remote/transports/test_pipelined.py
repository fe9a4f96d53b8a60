"""The asyncio Redis transport's pipelined publishing connection: its reply
parser, writes that take turns on the wire, and what happens when the
connection breaks, stalls or says something nobody asked for."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.exceptions import TransportError
from tocsin.remote import AsyncRedisStreamsTransport, RedisStreamsTransport
from tocsin.remote.transports import _pipelined
from tocsin.remote.transports._pipelined import INCOMPLETE, PyReader

T = TypeVar("T")
hiredis = _pipelined.hiredis
needs_hiredis = pytest.mark.skipif(hiredis is None, reason="hiredis is not installed")


@pytest.fixture
def backend(redis_url: str) -> str:
    """The connection tests run on the Redis server only."""
    return "redis"


@pytest.fixture(params=["hiredis", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The replies parsed by hiredis, and by the parser used without it."""
    if request.param == "hiredis" and hiredis is None:
        pytest.skip("hiredis is not installed")
    if request.param == "python":
        monkeypatch.setattr(_pipelined, "hiredis", None)
    return str(request.param)


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, T]], T]:
    """Runs a coroutine on asyncio's event loop, and on uvloop's (whose transports are
    not asyncio.Transport instances, and are taken over all the same)."""
    if request.param == "asyncio":
        return asyncio.run
    uvloop = pytest.importorskip("uvloop")

    def on_uvloop(coroutine: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coroutine)

    return on_uvloop


def _gets_all(reader: Any) -> list[Any]:
    replies = []
    while (reply := reader.gets()) is not INCOMPLETE:
        replies.append(reply)
    return replies


# -- the parser -------------------------------------------------------------------------------

RESP_CASES = [
    (b"+OK\r\n", b"OK"),
    (b":42\r\n", 42),
    (b":-7\r\n", -7),
    (b"$3\r\nabc\r\n", b"abc"),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"$4\r\na\r\nb\r\n", b"a\r\nb"),  # a bulk string may hold CRLF
    (b"*2\r\n$1\r\na\r\n:1\r\n", [b"a", 1]),
    (b"*-1\r\n", None),
    (b"*0\r\n", []),
    (b"*2\r\n*1\r\n+x\r\n*0\r\n", [[b"x"], []]),
    # RESP3
    (b"_\r\n", None),
    (b",3.5\r\n", 3.5),
    (b",inf\r\n", float("inf")),
    (b"#t\r\n", True),
    (b"#f\r\n", False),
    (b"(12345678901234567890\r\n", 12345678901234567890),
    (b"=8\r\ntxt:abcd\r\n", b"abcd"),
    (b"%1\r\n+k\r\n:1\r\n", {b"k": 1}),
    (b"~2\r\n:1\r\n:2\r\n", [1, 2]),
    (b"|1\r\n+key\r\n+meta\r\n:5\r\n", 5),  # attributes, then the reply they describe
]


@pytest.mark.parametrize(("data", "expected"), RESP_CASES)
def test_the_python_parser_reads_every_reply_type(data: bytes, expected: Any) -> None:
    """Whole, and fed one byte at a time (INCOMPLETE until the reply is)."""
    reader = PyReader()
    reader.feed(data)
    assert _gets_all(reader) == [expected]
    reader = PyReader()
    for index in range(len(data)):
        assert reader.gets() is INCOMPLETE
        reader.feed(data[index : index + 1])
    assert _gets_all(reader) == [expected]


def test_the_python_parser_returns_error_replies_and_marks_pushes() -> None:
    reader = PyReader()
    reader.feed(b"-WRONGTYPE Operation against a key\r\n!9\r\nERR blob!\r\n")
    reader.feed(b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n$2\r\nok\r\n")
    simple, blob, push, after = _gets_all(reader)
    assert isinstance(simple, redis.ResponseError)
    assert str(simple) == "WRONGTYPE Operation against a key"
    assert isinstance(blob, redis.ResponseError)
    assert str(blob) == "ERR blob!"
    assert isinstance(push, _pipelined._PUSHES)
    assert push == [b"invalidate", [b"k"]]
    assert after == b"ok"


@pytest.mark.parametrize("data", [b"?what\r\n", b"$x\r\n", b":1.5\r\n", b"*y\r\n"])
def test_the_python_parser_refuses_what_is_not_redis_protocol(data: bytes) -> None:
    reader = PyReader()
    reader.feed(data)
    with pytest.raises(redis.InvalidResponse, match="Protocol error"):
        reader.gets()


def _encode(value: Any) -> bytes:
    """*value* as Redis would send it (RESP2)."""
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, redis.ResponseError):
        return b"-%s\r\n" % str(value).encode()
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    return b"*%d\r\n" % len(value) + b"".join(_encode(item) for item in value)


_replies = st.recursive(
    st.none()
    | st.integers(-(2**63), 2**63 - 1)
    | st.binary(max_size=40)
    | st.from_regex(r"[A-Z]{3,9} [a-z ]{0,20}", fullmatch=True).map(redis.ResponseError),
    lambda items: st.lists(items, max_size=5),
    max_leaves=20,
)


def _comparable(value: Any) -> Any:
    if isinstance(value, redis.ResponseError):
        return ("error", str(value))
    if isinstance(value, list):
        return [_comparable(item) for item in value]
    return value


@needs_hiredis
@settings(max_examples=200, deadline=None)
@given(replies=st.lists(_replies, min_size=1, max_size=6), cuts=st.lists(st.integers(0, 400)))
def test_the_python_parser_reads_what_hiredis_reads(replies: list[Any], cuts: list[int]) -> None:
    """Any sequence of replies, cut into pieces anywhere, reads the same with both."""
    data = b"".join(_encode(reply) for reply in replies)
    assert hiredis is not None
    readers = [PyReader(), _pipelined.reader()]
    got: list[list[Any]] = [[], []]
    start = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        for reader, out in zip(readers, got, strict=True):
            reader.feed(data[start:cut])
            out.extend(_comparable(reply) for reply in _gets_all(reader))
        start = max(start, cut)
    assert got[0] == got[1] == [_comparable(reply) for reply in replies]


# -- the connection ---------------------------------------------------------------------------


def _spy(
    transport: AsyncRedisStreamsTransport, state: Callable[[], Any] | None = None
) -> list[tuple[int, Any]]:
    """Each write on the publishing connection: (XADDs in it, *state* when it
    left; by default, the publishes still waiting for replies)."""
    pipeline = transport._pipeline
    assert pipeline is not None
    assert pipeline._wire is not None
    writes: list[tuple[int, Any]] = []

    def waiting() -> int:
        return len(pipeline._sent)

    pipeline._wire = _CountingWire(pipeline._wire, writes, state or waiting)  # type: ignore[assignment]
    return writes


class _CountingWire:
    """An event loop transport that records each write (uvloop's cannot be patched)."""

    def __init__(self, wire: Any, writes: list[tuple[int, Any]], state: Callable[[], Any]) -> None:
        self._wire, self._writes, self._state = wire, writes, state

    def write(self, data: bytes) -> None:
        self._writes.append((data.count(b"$4\r\nXADD\r\n"), self._state()))
        self._wire.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wire, name)


@contextlib.asynccontextmanager
async def _connected(
    redis_url: str, stream: str, **options: Any
) -> AsyncIterator[tuple[AsyncRedisStreamsTransport, _pipelined.Pipeline]]:
    """A transport on a client of its own made with *options*, and its pipeline,
    connected by a first publish."""
    async with (
        redis.asyncio.Redis.from_url(redis_url, **options) as own,
        AsyncRedisStreamsTransport(own) as transport,
    ):
        await transport.publish(stream, b"first")
        pipeline = transport._pipeline
        assert pipeline is not None
        assert pipeline._wire is not None
        yield transport, pipeline


def _ids_match(client: redis.Redis, stream: str, returned: dict[bytes, str]) -> None:
    published = {m.id: m.payload for m in RedisStreamsTransport(client).read(stream, count=10**6)}
    assert {published[id]: id for id in returned.values()} == returned


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as made:
        yield made


def test_eight_publishers_write_in_two_halves_that_take_turns_on_the_wire(
    client: redis.Redis,
    redis_url: str,
    stream: str,
    parser: str,
    run: Callable[[Coroutine[Any, Any, list[tuple[int, int]]]], list[tuple[int, int]]],
) -> None:
    """8 tasks publishing one by one: once half of them wait to be written, they
    are written, while the other half's replies are still to come; every event
    once, under the id its caller got."""
    tasks, each = 8, 200
    returned: dict[bytes, str] = {}

    async def main() -> list[tuple[int, int]]:
        async with AsyncRedisStreamsTransport(url=redis_url) as transport:
            await transport.publish(stream, b"first")
            writes = _spy(transport)

            async def publish(number: int) -> None:
                for n in range(each):
                    payload = f"{number}:{n}".encode()
                    returned[payload] = await transport.publish(stream, payload)

            await asyncio.gather(*(publish(t) for t in range(tasks)))
            assert transport._pipeline is not None
            assert not transport._pipeline.unsupported  # taken over, uvloop's too
            return writes

    writes = run(main())
    assert sum(count for count, _ in writes) == tasks * each
    assert len(writes) <= tasks * each / 2  # shared: 4 a write when they keep in step
    overlapping = [count for count, waiting in writes if waiting]
    assert len(overlapping) > len(writes) / 2  # most writes leave while another is out
    _ids_match(client, stream, returned)


def test_two_publishers_write_early_only_together(redis_url: str, stream: str) -> None:
    """Two tasks publishing one by one: a write leaves early (from a publish's own
    call, before the event loop's turn) only when it carries both publishes; one
    queued alone waits for the loop's turn, when the other may join it.

    (How many writes carry both depends on when the replies arrive: once the two
    tasks' replies come in separate reads, their writes alternate, one publish
    each, one on the wire while the other is prepared.)"""

    async def main() -> list[tuple[int, bool]]:
        async with AsyncRedisStreamsTransport(url=redis_url) as transport:
            await transport.publish(stream, b"first")
            pipeline = transport._pipeline
            assert pipeline is not None
            inside = [False]
            # (XADDs, whether the write left from a publish's own call)
            writes = _spy(transport, lambda: inside[0])
            publish = pipeline.publish

            def publishing(commands: list[bytes]) -> Any:
                inside[0] = True
                try:
                    return publish(commands)
                finally:
                    inside[0] = False

            pipeline.publish = publishing  # type: ignore[method-assign]

            async def publisher(number: int) -> None:
                for n in range(200):
                    await transport.publish(stream, b"%d:%d" % (number, n))

            await asyncio.gather(publisher(0), publisher(1))
            return writes

    writes = asyncio.run(main())
    assert sum(count for count, _ in writes) == 400
    early = [count for count, from_publish in writes if from_publish]
    # The very first publish leaves alone: one publisher is all the pipeline knows of yet.
    assert early[0] == 1
    assert early[1:]  # the two did queue together, and left at once
    assert all(count == 2 for count in early[1:])


def test_a_lone_publisher_is_written_at_once(
    redis_url: str, stream: str, run: Callable[[Coroutine[Any, Any, None]], None]
) -> None:
    """With nobody else publishing, a publish is written from its own call, not
    after a trip through the event loop."""

    async def main() -> None:
        async with AsyncRedisStreamsTransport(url=redis_url) as transport:
            await transport.publish(stream, b"first")
            writes = _spy(transport)
            for n in range(20):
                publishing = asyncio.ensure_future(transport.publish(stream, b"%d" % n))
                await asyncio.sleep(0)  # the task's first step: queued and written
                assert len(writes) == n + 1
                await publishing

    run(main())


def test_a_publish_cancelled_after_its_write_leaves_the_connection_in_step(
    client: redis.Redis, redis_url: str, stream: str
) -> None:
    """A caller that gives up once its XADD is written gets CancelledError (the
    event may have been published); its reply is read and dropped, and the
    publishes after it get their own ids."""
    returned: dict[bytes, str] = {}

    async def main() -> None:
        async with AsyncRedisStreamsTransport(url=redis_url) as transport:
            await transport.publish(stream, b"first")
            writes = _spy(transport)
            gone = asyncio.ensure_future(transport.publish(stream, b"gone"))
            await asyncio.sleep(0)
            assert writes  # written
            gone.cancel()
            for n in range(10):
                payload = b"%d" % n
                returned[payload] = await transport.publish(stream, payload)
            with pytest.raises(asyncio.CancelledError):
                await gone

    asyncio.run(main())
    _ids_match(client, stream, returned)
    assert client.xlen(stream) == 12  # first, gone (it did get there), 0-9


def test_replies_that_stall_fail_after_socket_timeout_and_the_next_publish_reconnects(
    redis_url: str, stream: str, run: Callable[[Coroutine[Any, Any, None]], None]
) -> None:
    """A connection that makes no progress for socket_timeout fails the publishes
    waiting on it (TransportError from redis-py's TimeoutError) and is dropped;
    replies that keep coming, however slowly, are never cut short."""

    async def main() -> None:
        async with _connected(redis_url, stream, socket_timeout=0.2) as (transport, pipeline):
            received = pipeline.data_received
            loop = asyncio.get_running_loop()

            def trickle(data: bytes) -> None:  # in 8 pieces, 0.05 s apart
                size = -(-len(data) // 8)
                for index in range(8):
                    piece = data[index * size : (index + 1) * size]
                    loop.call_later(0.05 * (index + 1), received, piece)

            pipeline.data_received = trickle  # type: ignore[method-assign]
            ids = await transport.publish_many(stream, [b"%d" % i for i in range(8)])
            assert len(ids) == 8  # 0.4 s in all, progress every 0.05 s
            pipeline.data_received = received  # type: ignore[method-assign]

            wire = pipeline._wire
            assert wire is not None
            wire.pause_reading()  # the replies never come
            started = time.monotonic()
            with pytest.raises(TransportError, match="Timeout reading") as raised:
                await transport.publish(stream, b"stalled")
            assert 0.15 < time.monotonic() - started < 2
            assert isinstance(raised.value.__cause__, redis.TimeoutError)
            assert wire.is_closing()
            assert pipeline._wire is not wire
            assert await transport.publish(stream, b"after")

    run(main())


def test_a_reply_nobody_asked_for_fails_the_publishes_on_the_wire_and_reconnects(
    redis_url: str, stream: str
) -> None:
    async def main() -> None:
        async with AsyncRedisStreamsTransport(url=redis_url) as transport:
            await transport.publish(stream, b"first")
            pipeline = transport._pipeline
            assert pipeline is not None
            assert pipeline._wire is not None
            pipeline._wire.pause_reading()
            waiting = asyncio.ensure_future(transport.publish(stream, b"x"))
            await asyncio.sleep(0)
            pipeline.data_received(b"?garbage\r\n")
            with pytest.raises(TransportError, match="Protocol error"):
                await waiting
            pipeline.data_received(b"+OK\r\n")  # from the old connection: nobody's, ignored
            assert await transport.publish(stream, b"after")

    asyncio.run(main())


def test_push_frames_between_replies_are_skipped(
    client: redis.Redis, redis_url: str, stream: str, parser: str
) -> None:
    """On a RESP3 connection Redis may send pushes (here, client-side caching
    invalidations) between replies: they answer no publish."""
    returned: dict[bytes, str] = {}

    async def main() -> None:
        async with _connected(redis_url, stream, protocol=3) as (transport, pipeline):
            tracking = [b"*4\r\n$6\r\nCLIENT\r\n$8\r\nTRACKING\r\n$2\r\nON\r\n$5\r\nBCAST\r\n"]
            assert await pipeline.publish(tracking) == [b"OK"]
            pushed = 0
            received = pipeline.data_received

            def counting(data: bytes) -> None:
                nonlocal pushed
                pushed += data.count(b">2\r\n$10\r\ninvalidate")
                received(data)

            pipeline.data_received = counting  # type: ignore[method-assign]
            for n in range(20):
                client.set(f"{stream}:key", n)  # an invalidation to every tracking client
                payload = b"%d" % n
                returned[payload] = await transport.publish(stream, payload)
            assert pushed >= 10

    asyncio.run(main())
    _ids_match(client, stream, returned)


def test_a_publish_whose_connection_breaks_twice_says_it_may_have_been_published(
    client: redis.Redis,
    redis_url: str,
    stream: str,
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    """Written, then the connection broken, written again on a new one, broken
    again: the caller's TransportError says both attempts failed and that the
    event may have been published; the next publish works."""
    name = f"tocsin-test-{uuid.uuid4().hex}"

    def kill() -> None:
        for connection in client.client_list():
            if connection["name"] == name:
                client.client_kill_filter(_id=connection["id"])

    async def main() -> None:
        async with _connected(redis_url, stream, client_name=name) as (transport, pipeline):
            client.client_pause(10_000, all=False)  # writes wait: the XADD gets no reply
            try:
                publishing = asyncio.ensure_future(transport.publish(stream, b"twice"))
                killed: list[Any] = []
                for _ in range(2):
                    # Written (the second time on a new connection), then broken.
                    while not pipeline._sent or pipeline._wire in (None, *killed):
                        await asyncio.sleep(0.01)
                    killed.append(pipeline._wire)
                    await asyncio.to_thread(kill)
                with pytest.raises(TransportError, match="may have been published") as raised:
                    await publishing
                assert isinstance(raised.value.__cause__, redis.ConnectionError)
                assert "sent twice" in str(raised.value)
            finally:
                client.client_unpause()
            assert await transport.publish(stream, b"after")

    run(main())


def test_where_no_connection_can_be_taken_over_publishing_goes_through_redis_asyncio(
    client: redis.Redis, redis_url: str, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event loop whose transports cannot change protocols: the publishes queued
    for the first connection, and all later ones, go through redis.asyncio, each
    once under the id its caller got; one cancelled before it leaves is not sent."""
    monkeypatch.setattr(_pipelined, "take_over", lambda connection: None)
    returned: dict[bytes, str] = {}

    async def main() -> None:
        async with AsyncRedisStreamsTransport(url=redis_url) as transport:
            dropped = asyncio.ensure_future(transport.publish(stream, b"dropped"))

            async def publish(number: int) -> None:
                for n in range(50):
                    payload = b"%d:%d" % (number, n)
                    returned[payload] = await transport.publish(stream, payload)

            publishing = asyncio.gather(*(publish(t) for t in range(8)))
            await asyncio.sleep(0)
            dropped.cancel()
            await publishing
            assert transport._pipeline is not None
            assert transport._pipeline.unsupported
            assert transport._publisher is not None  # redis.asyncio's connection

    asyncio.run(main())
    _ids_match(client, stream, returned)
    assert client.xlen(stream) == 8 * 50
