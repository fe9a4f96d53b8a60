"""The transport contract (tocsin.remote.transports.base), run against every implementation.

Each test runs on MemoryTransport and on RedisStreamsTransport (see conftest.py),
and the ``test_async_*`` ones on their asyncio versions: what passes in memory
must pass on Redis. Waits are short but real (idle times are measured on the
broker's clock), with generous upper bounds so that a loaded machine does not fail them.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tocsin.exceptions import TransportError
from tocsin.remote import AsyncTransport, Attempts, Consumer, Message, Pending, Transport

GROUP = "workers"
IDLE = 0.2  # the min_idle of the redelivery tests: long enough to tell "too early"


def key(id: str) -> tuple[int, int]:
    """A stream id as a pair that sorts as the ids do."""
    ms, _, seq = id.partition("-")
    return int(ms), int(seq)


@pytest.fixture
def publisher(transport: Transport, stream: str) -> Iterator[Callable[[bytes, float], None]]:
    """``publish_later(payload, delay)`` publishes from another thread after *delay* seconds."""
    threads: list[threading.Thread] = []

    def publish_later(payload: bytes, delay: float) -> None:
        def run() -> None:
            time.sleep(delay)
            transport.publish(stream, payload)

        threads.append(threading.Thread(target=run))
        threads[-1].start()

    yield publish_later
    for thread in threads:
        thread.join()


# publish, publish_many


def test_publish_returns_increasing_redis_style_ids(transport: Transport, stream: str) -> None:
    """publish() returns ids like ``1718000000000-0`` that increase with each message."""
    ids = [transport.publish(stream, b"%d" % n) for n in range(5)]
    assert all(re.fullmatch(r"\d+-\d+", id) for id in ids)
    assert [key(id) for id in ids] == sorted({key(id) for id in ids})


def test_publish_creates_the_stream(transport: Transport, stream: str) -> None:
    """A stream that does not exist has length 0, and publishing creates it."""
    assert transport.length(stream) == 0
    transport.publish(stream, b"first")
    assert transport.length(stream) == 1


def test_publish_many_appends_in_order(transport: Transport, stream: str) -> None:
    """publish_many() appends every payload in order and returns their increasing ids."""
    first = transport.publish(stream, b"before")
    ids = transport.publish_many(stream, [b"a", b"b", b"c"])
    assert [key(id) for id in [first, *ids]] == sorted(key(id) for id in [first, *ids])
    messages = transport.read(stream)
    assert [(m.id, m.payload) for m in messages[1:]] == list(
        zip(ids, [b"a", b"b", b"c"], strict=True)
    )


def test_publish_many_of_nothing_publishes_nothing(transport: Transport, stream: str) -> None:
    """An empty publish_many() returns ``[]`` and leaves the stream as it was."""
    assert transport.publish_many(stream, []) == []
    assert transport.length(stream) == 0


def test_published_messages_have_no_headers(transport: Transport, stream: str) -> None:
    """A published event is its payload only: no headers, and 0 deliveries when read."""
    id = transport.publish(stream, b"\x00\xffbinary")
    assert transport.read(stream) == [Message(id, b"\x00\xffbinary", 0, {})]


# ensure_group, consume


def test_ensure_group_is_idempotent_and_sees_existing_messages(
    transport: Transport, stream: str
) -> None:
    """A new group starts at the beginning of the stream; creating it again changes nothing."""
    ids = transport.publish_many(stream, [b"a", b"b"])
    transport.ensure_group(stream, GROUP)
    transport.ensure_group(stream, GROUP)
    assert transport.consume(stream, GROUP, "c1") == [
        Message(ids[0], b"a", 1, {}),
        Message(ids[1], b"b", 1, {}),
    ]


def test_ensure_group_creates_a_missing_stream(transport: Transport, stream: str) -> None:
    """ensure_group() on a new stream makes an empty stream the group can wait on."""
    transport.ensure_group(stream, GROUP)
    assert transport.length(stream) == 0
    assert transport.consume(stream, GROUP, "c1") == []


def test_groups_read_the_stream_independently(transport: Transport, stream: str) -> None:
    """Every group gets every message, whatever the other groups have consumed."""
    id = transport.publish(stream, b"event")
    transport.ensure_group(stream, "one")
    transport.ensure_group(stream, "two")
    assert [m.id for m in transport.consume(stream, "one", "c")] == [id]
    assert [m.id for m in transport.consume(stream, "two", "c")] == [id]


def test_consume_distributes_messages_without_duplicates(transport: Transport, stream: str) -> None:
    """Consumers of a group share its messages: each goes to exactly one of them, oldest first."""
    ids = transport.publish_many(stream, [b"%d" % n for n in range(10)])
    transport.ensure_group(stream, GROUP)
    first = transport.consume(stream, GROUP, "c1", count=4)
    second = transport.consume(stream, GROUP, "c2", count=100)
    assert [m.id for m in first] == ids[:4]
    assert [m.id for m in second] == ids[4:]
    assert transport.consume(stream, GROUP, "c1") == []
    assert transport.pending(stream, GROUP).consumers == {"c1": 4, "c2": 6}


def test_consume_hands_out_only_new_messages(transport: Transport, stream: str) -> None:
    """A message published after a consume is the only one the next consume returns."""
    transport.ensure_group(stream, GROUP)
    transport.publish(stream, b"old")
    transport.consume(stream, GROUP, "c1")
    new = transport.publish(stream, b"new")
    assert transport.consume(stream, GROUP, "c1") == [Message(new, b"new", 1, {})]


def test_consume_without_block_returns_at_once(transport: Transport, stream: str) -> None:
    """``block=None`` returns ``[]`` at once when there is nothing to consume."""
    transport.ensure_group(stream, GROUP)
    started = time.monotonic()
    assert transport.consume(stream, GROUP, "c1", block=None) == []
    assert time.monotonic() - started < 0.5


def test_consume_block_returns_when_another_thread_publishes(
    transport: Transport, stream: str, publisher: Callable[[bytes, float], None]
) -> None:
    """A blocking consume returns as soon as a message arrives, well before *block* ends."""
    transport.ensure_group(stream, GROUP)
    publisher(b"late", 0.1)
    started = time.monotonic()
    messages = transport.consume(stream, GROUP, "c1", block=10)
    assert [m.payload for m in messages] == [b"late"]
    assert time.monotonic() - started < 5


def test_consume_block_gives_up_after_block_seconds(transport: Transport, stream: str) -> None:
    """A blocking consume with nothing to take returns ``[]`` after about *block* seconds."""
    transport.ensure_group(stream, GROUP)
    started = time.monotonic()
    assert transport.consume(stream, GROUP, "c1", block=0.2) == []
    assert 0.15 <= time.monotonic() - started < 5


def test_consume_on_a_missing_group_raises_transport_error(
    transport: Transport, stream: str
) -> None:
    """Consuming for a group nobody created is a TransportError (Redis: NOGROUP)."""
    transport.publish(stream, b"event")
    with pytest.raises(TransportError):
        transport.consume(stream, "nobody", "c1")
    with pytest.raises(TransportError):
        transport.consume(f"{stream}:missing", GROUP, "c1")


# ack, pending


def test_ack_counts_only_pending_messages(transport: Transport, stream: str) -> None:
    """ack() returns how many of the ids were pending: acknowledged or unknown ones count 0."""
    ids = transport.publish_many(stream, [b"a", b"b", b"c"])
    transport.ensure_group(stream, GROUP)
    transport.consume(stream, GROUP, "c1", count=2)
    assert transport.ack(stream, GROUP, ids) == 2  # the third was never delivered
    assert transport.ack(stream, GROUP, ids[:2]) == 0
    assert transport.ack(stream, GROUP, []) == 0
    assert transport.ack(stream, "nobody", ids) == 0
    assert transport.pending(stream, GROUP).count == 0


def test_consume_acknowledges_first_what_it_is_given(transport: Transport, stream: str) -> None:
    """consume(ack=ids) acknowledges those ids, then reads as consume() does."""
    ids = transport.publish_many(stream, [b"a", b"b", b"c", b"d"])
    transport.ensure_group(stream, GROUP)
    transport.consume(stream, GROUP, "c1", count=2)
    messages = transport.consume(stream, GROUP, "c1", count=2, ack=ids[:2])
    assert [m.id for m in messages] == ids[2:]
    assert transport.pending(stream, GROUP) == Pending(2, ids[2], ids[3], {"c1": 2})
    # Acknowledging again, with nothing left to read, is harmless.
    assert transport.consume(stream, GROUP, "c1", ack=ids) == []
    assert transport.pending(stream, GROUP).count == 0


def test_consume_acknowledges_even_when_it_waits_for_messages(
    transport: Transport, stream: str
) -> None:
    """The acknowledgement is not held back while consume(block=...) waits."""
    [id] = transport.publish_many(stream, [b"a"])
    transport.ensure_group(stream, GROUP)
    transport.consume(stream, GROUP, "c1")
    assert transport.consume(stream, GROUP, "c1", block=0.05, ack=[id]) == []
    assert transport.pending(stream, GROUP).count == 0


def test_pending_summarizes_what_the_group_holds(transport: Transport, stream: str) -> None:
    """pending() counts the unacknowledged messages, with the oldest, newest, and per consumer."""
    ids = transport.publish_many(stream, [b"a", b"b", b"c", b"d"])
    transport.ensure_group(stream, GROUP)
    assert transport.pending(stream, GROUP) == Pending(0, None, None, {})
    transport.consume(stream, GROUP, "c1", count=2)
    transport.consume(stream, GROUP, "c2", count=2)
    transport.ack(stream, GROUP, [ids[0]])
    assert transport.pending(stream, GROUP) == Pending(3, ids[1], ids[3], {"c1": 1, "c2": 2})


def test_pending_on_a_missing_group_raises_transport_error(
    transport: Transport, stream: str
) -> None:
    """pending() for a group nobody created is a TransportError, as consume() is."""
    with pytest.raises(TransportError):
        transport.pending(stream, "nobody")


# redeliver, claim_stale


def test_redeliver_waits_for_min_idle(transport: Transport, stream: str) -> None:
    """redeliver() gives a message again only once it has been idle for *min_idle* seconds."""
    id = transport.publish(stream, b"retry me")
    transport.ensure_group(stream, GROUP)
    transport.consume(stream, GROUP, "c1")
    assert transport.redeliver(stream, GROUP, "c1", id, min_idle=IDLE) is None
    time.sleep(IDLE + 0.05)
    assert transport.redeliver(stream, GROUP, "c1", id, min_idle=IDLE) == Message(
        id, b"retry me", 2, {}
    )
    # Redelivering made it busy again: idle time starts over.
    assert transport.redeliver(stream, GROUP, "c1", id, min_idle=IDLE) is None
    assert transport.redeliver(stream, GROUP, "c1", id) == Message(id, b"retry me", 3, {})


def test_redeliver_after_ack_returns_none(transport: Transport, stream: str) -> None:
    """An acknowledged message is not pending any more: redeliver() returns None."""
    id = transport.publish(stream, b"done")
    transport.ensure_group(stream, GROUP)
    transport.consume(stream, GROUP, "c1")
    transport.ack(stream, GROUP, [id])
    assert transport.redeliver(stream, GROUP, "c1", id) is None


def test_redeliver_of_a_never_delivered_message_returns_none(
    transport: Transport, stream: str
) -> None:
    """A message nobody has consumed yet is not pending, so redeliver() leaves it alone."""
    id = transport.publish(stream, b"new")
    transport.ensure_group(stream, GROUP)
    assert transport.redeliver(stream, GROUP, "c1", id) is None
    assert [m.id for m in transport.consume(stream, GROUP, "c1")] == [id]


def test_redeliver_moves_the_message_to_the_named_consumer(
    transport: Transport, stream: str
) -> None:
    """redeliver() to another consumer makes the message pending for that consumer."""
    id = transport.publish(stream, b"event")
    transport.ensure_group(stream, GROUP)
    transport.consume(stream, GROUP, "c1")
    assert transport.redeliver(stream, GROUP, "c2", id) == Message(id, b"event", 2, {})
    assert transport.pending(stream, GROUP).consumers == {"c2": 1}


def test_redeliver_of_a_deleted_message_drops_it_from_pending(
    transport: Transport, stream: str
) -> None:
    """A pending message deleted from the stream cannot be redelivered, and stops being pending."""
    id = transport.publish(stream, b"gone")
    transport.ensure_group(stream, GROUP)
    transport.consume(stream, GROUP, "c1")
    transport.delete(stream, [id])
    assert transport.pending(stream, GROUP).count == 1  # deleting does not acknowledge
    assert transport.redeliver(stream, GROUP, "c1", id) is None
    assert transport.pending(stream, GROUP).count == 0


def test_claim_stale_takes_over_messages_held_too_long(transport: Transport, stream: str) -> None:
    """claim_stale() takes another consumer's messages once idle for *min_idle*, oldest first."""
    ids = transport.publish_many(stream, [b"a", b"b", b"c"])
    transport.ensure_group(stream, GROUP)
    transport.consume(stream, GROUP, "dead worker")
    assert transport.claim_stale(stream, GROUP, "rescuer", min_idle=IDLE) == []
    time.sleep(IDLE + 0.05)
    claimed = transport.claim_stale(stream, GROUP, "rescuer", min_idle=IDLE)
    assert claimed == [Message(id, p, 2, {}) for id, p in zip(ids, [b"a", b"b", b"c"], strict=True)]
    assert transport.pending(stream, GROUP).consumers == {"rescuer": 3}
    assert transport.claim_stale(stream, GROUP, "other", min_idle=IDLE) == []


def test_claim_stale_takes_at_most_count(transport: Transport, stream: str) -> None:
    """claim_stale() claims no more than *count* messages, the oldest ones."""
    ids = transport.publish_many(stream, [b"%d" % n for n in range(5)])
    transport.ensure_group(stream, GROUP)
    transport.consume(stream, GROUP, "c1")
    claimed = transport.claim_stale(stream, GROUP, "c2", min_idle=0, count=2)
    assert [(m.id, m.deliveries) for m in claimed] == [(ids[0], 2), (ids[1], 2)]
    assert transport.pending(stream, GROUP).consumers == {"c1": 3, "c2": 2}


def test_claim_stale_counts_every_delivery(transport: Transport, stream: str) -> None:
    """Each claim is one more delivery, as is each redelivery in between."""
    id = transport.publish(stream, b"event")
    transport.ensure_group(stream, GROUP)
    transport.consume(stream, GROUP, "c1")
    transport.redeliver(stream, GROUP, "c1", id)
    [claimed] = transport.claim_stale(stream, GROUP, "c2", min_idle=0)
    assert claimed.deliveries == 3


def test_claim_stale_drops_deleted_messages(transport: Transport, stream: str) -> None:
    """Pending messages deleted from the stream are not claimed, and stop being pending."""
    ids = transport.publish_many(stream, [b"a", b"b"])
    transport.ensure_group(stream, GROUP)
    transport.consume(stream, GROUP, "c1")
    transport.delete(stream, [ids[0]])
    claimed = transport.claim_stale(stream, GROUP, "c2", min_idle=0)
    assert claimed == [Message(ids[1], b"b", 2, {})]
    assert transport.pending(stream, GROUP) == Pending(1, ids[1], ids[1], {"c2": 1})


def test_claim_stale_on_a_missing_group_raises_transport_error(
    transport: Transport, stream: str
) -> None:
    """claim_stale() and redeliver() for a group nobody created are TransportErrors."""
    id = transport.publish(stream, b"event")
    with pytest.raises(TransportError):
        transport.claim_stale(stream, "nobody", "c1", min_idle=0)
    with pytest.raises(TransportError):
        transport.redeliver(stream, "nobody", "c1", id)


# dead_letter


def test_dead_letter_moves_the_message_and_acknowledges_it(
    transport: Transport, stream: str
) -> None:
    """dead_letter() appends the message with its headers to the dead stream, and acks it."""
    dead_stream = f"{stream}:dead"
    id = transport.publish(stream, b"poison")
    transport.ensure_group(stream, GROUP)
    transport.consume(stream, GROUP, "c1")
    message = transport.redeliver(stream, GROUP, "c1", id)
    assert message is not None
    dead_id = transport.dead_letter(stream, GROUP, message, dead_stream, error="ValueError: bad")
    assert transport.read(dead_stream) == [
        Message(
            dead_id,
            b"poison",
            0,
            {
                "error": "ValueError: bad",
                "attempts": "2",
                "source-stream": stream,
                "source-id": id,
                "group": GROUP,
            },
        )
    ]
    assert transport.pending(stream, GROUP).count == 0
    assert transport.length(stream) == 1  # acknowledged, not deleted


def test_dead_letters_can_be_consumed_with_their_headers(transport: Transport, stream: str) -> None:
    """A group on the dead stream gets the dead letters with their headers."""
    dead_stream = f"{stream}:dead"
    transport.ensure_group(dead_stream, "inspectors")
    transport.publish(stream, b"poison")
    transport.ensure_group(stream, GROUP)
    [message] = transport.consume(stream, GROUP, "c1")
    transport.dead_letter(stream, GROUP, message, dead_stream, error="boom")
    [dead] = transport.consume(dead_stream, "inspectors", "i1")
    assert (dead.payload, dead.deliveries, dead.headers["error"]) == (b"poison", 1, "boom")


# read, delete, length


def test_read_starts_at_an_id_and_stops_at_count(transport: Transport, stream: str) -> None:
    """read() returns messages from *start* (inclusive), at most *count*, making nothing pending."""
    ids = transport.publish_many(stream, [b"a", b"b", b"c"])
    transport.ensure_group(stream, GROUP)
    assert [m.id for m in transport.read(stream)] == ids
    assert [m.id for m in transport.read(stream, start=ids[1])] == ids[1:]
    assert [m.id for m in transport.read(stream, start=ids[0], count=2)] == ids[:2]
    assert transport.read(f"{stream}:missing") == []
    assert transport.pending(stream, GROUP).count == 0


def test_delete_removes_messages_and_counts_those_that_existed(
    transport: Transport, stream: str
) -> None:
    """delete() removes the messages it finds and returns how many there were."""
    ids = transport.publish_many(stream, [b"a", b"b", b"c"])
    assert transport.delete(stream, [ids[0], ids[2], "1-1"]) == 2
    assert transport.delete(stream, [ids[0]]) == 0
    assert transport.delete(stream, []) == 0
    assert transport.delete(f"{stream}:missing", ["1-1"]) == 0
    assert [m.id for m in transport.read(stream)] == [ids[1]]
    assert transport.length(stream) == 1


def test_ids_keep_increasing_after_the_newest_is_deleted(transport: Transport, stream: str) -> None:
    """Deleting the newest message does not let a later publish reuse its id."""
    newest = transport.publish(stream, b"a")
    transport.delete(stream, [newest])
    assert key(transport.publish(stream, b"b")) > key(newest)


# trimming


def test_trim_removes_what_every_group_acknowledged(transport: Transport, stream: str) -> None:
    """Acknowledged messages go; pending and unread ones stay, for every group."""
    ids = transport.publish_many(stream, [b"1", b"2", b"3", b"4", b"5"])
    transport.ensure_group(stream, "fast")
    transport.ensure_group(stream, "slow")
    fast = transport.consume(stream, "fast", "c1", count=5)
    transport.ack(stream, "fast", [m.id for m in fast])
    slow = transport.consume(stream, "slow", "c1", count=3)
    transport.ack(stream, "slow", [slow[0].id, slow[2].id])  # the second stays pending
    assert transport.trim_acknowledged(stream) == 1
    assert [m.id for m in transport.read(stream)] == ids[1:]
    transport.ack(stream, "slow", [slow[1].id])
    assert transport.trim_acknowledged(stream) == 2  # "4" and "5" were never read by slow
    assert [m.payload for m in transport.read(stream)] == [b"4", b"5"]
    rest = transport.consume(stream, "slow", "c1", count=5)
    assert [m.payload for m in rest] == [b"4", b"5"]  # nothing lost for the slow group


def test_trim_keeps_everything_without_a_group(transport: Transport, stream: str) -> None:
    """With no group nobody is done with anything; a missing stream trims nothing."""
    transport.publish_many(stream, [b"1", b"2"])
    assert transport.trim_acknowledged(stream) == 0
    assert transport.length(stream) == 2
    assert transport.trim_acknowledged(f"{stream}:missing") == 0


def test_trim_keeps_a_pending_message_of_a_dead_consumer(transport: Transport, stream: str) -> None:
    """A message another consumer holds stays until it is acknowledged."""
    transport.publish_many(stream, [b"held", b"done"])
    transport.ensure_group(stream, GROUP)
    _held, done = transport.consume(stream, GROUP, "c1", count=2)
    transport.ack(stream, GROUP, [done.id])
    assert transport.trim_acknowledged(stream) == 0
    [claimed] = transport.claim_stale(stream, GROUP, "c2", min_idle=0)
    assert claimed.payload == b"held"


# close, bad arguments


def test_close_makes_every_method_raise(transport: Transport, stream: str) -> None:
    """After close() (harmless to repeat) every method raises TransportError."""
    transport.ensure_group(stream, GROUP)
    id = transport.publish(stream, b"event")
    transport.close()
    transport.close()
    message = Message(id, b"event")
    calls: list[Callable[[], Any]] = [
        lambda: transport.publish(stream, b"x"),
        lambda: transport.publish_many(stream, [b"x"]),
        lambda: transport.ensure_group(stream, GROUP),
        lambda: transport.consume(stream, GROUP, "c1"),
        lambda: transport.ack(stream, GROUP, [id]),
        lambda: transport.redeliver(stream, GROUP, "c1", id),
        lambda: transport.claim_stale(stream, GROUP, "c1", min_idle=0),
        lambda: transport.dead_letter(stream, GROUP, message, f"{stream}:dead", error="e"),
        lambda: transport.pending(stream, GROUP),
        lambda: transport.read(stream),
        lambda: transport.delete(stream, [id]),
        lambda: transport.length(stream),
        lambda: transport.trim_acknowledged(stream),
        lambda: transport.groups(stream),
        lambda: transport.consumers(stream, GROUP),
    ]
    for call in calls:
        with pytest.raises(TransportError, match="closed"):
            call()


def test_a_transport_is_a_context_manager_that_closes(transport: Transport, stream: str) -> None:
    """Leaving ``with transport:`` closes it."""
    with transport as entered:
        assert entered is transport
    with pytest.raises(TransportError):
        transport.length(stream)


BAD_CALLS: list[tuple[str, Callable[[Transport, str], Any], type[Exception]]] = [
    ("empty stream", lambda t, s: t.publish("", b"x"), ValueError),
    ("str payload", lambda t, s: t.publish(s, "text"), TypeError),  # type: ignore[arg-type]
    ("str in publish_many", lambda t, s: t.publish_many(s, [b"ok", "text"]), TypeError),  # type: ignore[list-item]
    ("empty group", lambda t, s: t.ensure_group(s, ""), ValueError),
    ("empty consumer to join", lambda t, s: t.ensure_group(s, "g", consumer=""), ValueError),
    ("consumers of an empty group", lambda t, s: t.consumers(s, ""), ValueError),
    ("empty consumer", lambda t, s: t.consume(s, GROUP, ""), ValueError),
    ("count 0", lambda t, s: t.consume(s, GROUP, "c", count=0), ValueError),
    ("block 0", lambda t, s: t.consume(s, GROUP, "c", block=0), ValueError),
    ("negative block", lambda t, s: t.consume(s, GROUP, "c", block=-1), ValueError),
    ("lone id", lambda t, s: t.ack(s, GROUP, "1-0"), TypeError),
    ("bad id", lambda t, s: t.ack(s, GROUP, ["one"]), ValueError),
    (
        "bad id to ack on reading",
        lambda t, s: t.consume(s, GROUP, "c", ack=["1-0", "x"]),
        ValueError,
    ),
    ("id with a newline", lambda t, s: t.ack(s, GROUP, ["1-0\n2-0"]), ValueError),
    ("id past 64 bits", lambda t, s: t.ack(s, GROUP, ["18446744073709551616-0"]), ValueError),
    ("lone id to ack on reading", lambda t, s: t.consume(s, GROUP, "c", ack="1-0"), TypeError),
    ("negative idle", lambda t, s: t.redeliver(s, GROUP, "c", "1-0", min_idle=-1), ValueError),
    ("bad redeliver id", lambda t, s: t.redeliver(s, GROUP, "c", "1-x"), ValueError),
    ("claim negative", lambda t, s: t.claim_stale(s, GROUP, "c", min_idle=-0.1), ValueError),
    ("claim count 0", lambda t, s: t.claim_stale(s, GROUP, "c", min_idle=0, count=0), ValueError),
    (
        "empty dead stream",
        lambda t, s: t.dead_letter(s, GROUP, Message("1-0", b"x"), "", error="e"),
        ValueError,
    ),
    ("read count 0", lambda t, s: t.read(s, count=0), ValueError),
    ("read bad start", lambda t, s: t.read(s, start="first"), ValueError),
    ("delete bad id", lambda t, s: t.delete(s, ["-1"]), ValueError),
    ("empty length", lambda t, s: t.length(""), ValueError),
]


@pytest.mark.parametrize(
    ("call", "error"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS]
)
def test_bad_arguments_raise_before_anything_is_sent(
    transport: Transport, stream: str, call: Callable[[Transport, str], Any], error: type[Exception]
) -> None:
    """Bad arguments raise ValueError (or TypeError for a wrong type) and change nothing."""
    transport.ensure_group(stream, GROUP)
    with pytest.raises(error):
        call(transport, stream)
    assert transport.length(stream) == 0


# asyncio


def test_async_publish_consume_ack(
    make_async_transport: Callable[[], AsyncTransport], stream: str
) -> None:
    """The asyncio transport publishes, hands out and acknowledges as the blocking one does."""

    async def main() -> None:
        async with make_async_transport() as transport:
            ids = [
                await transport.publish(stream, b"a"),
                *await transport.publish_many(stream, [b"b"]),
            ]
            await transport.ensure_group(stream, GROUP)
            await transport.ensure_group(stream, GROUP)
            messages = await transport.consume(stream, GROUP, "c1")
            assert messages == [Message(ids[0], b"a", 1, {}), Message(ids[1], b"b", 1, {})]
            assert await transport.pending(stream, GROUP) == Pending(2, ids[0], ids[1], {"c1": 2})
            assert await transport.ack(stream, GROUP, ids[:1]) == 1
            assert await transport.consume(stream, GROUP, "c1", ack=ids) == []
            assert await transport.pending(stream, GROUP) == Pending(0, None, None, {})
            assert await transport.length(stream) == 2
            assert await transport.delete(stream, ids[:1]) == 1
            assert [m.id for m in await transport.read(stream)] == ids[1:]

    asyncio.run(main())


def test_async_consume_block_waits_without_blocking_the_loop(
    make_async_transport: Callable[[], AsyncTransport], stream: str
) -> None:
    """A blocking consume lets the loop run other tasks, and returns when a message comes."""

    async def main() -> None:
        async with make_async_transport() as transport:
            await transport.ensure_group(stream, GROUP)
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            async def publish_later() -> None:
                await asyncio.sleep(0.2)
                await transport.publish(stream, b"late")

            ticker = asyncio.create_task(tick())
            publishing = asyncio.create_task(publish_later())
            started = time.monotonic()
            messages = await transport.consume(stream, GROUP, "c1", block=10)
            elapsed = time.monotonic() - started
            ticker.cancel()
            await publishing
            assert [m.payload for m in messages] == [b"late"]
            assert elapsed < 5
            assert ticks >= 5  # the loop went on while consume() waited
            assert await transport.consume(stream, GROUP, "c1", block=0.1) == []

    asyncio.run(main())


def test_async_redeliver_claim_and_dead_letter(
    make_async_transport: Callable[[], AsyncTransport], stream: str
) -> None:
    """Retries, take-overs and dead letters count deliveries as the blocking transport does."""

    async def main() -> None:
        async with make_async_transport() as transport:
            id = await transport.publish(stream, b"poison")
            await transport.ensure_group(stream, GROUP)
            await transport.consume(stream, GROUP, "c1")
            assert await transport.redeliver(stream, GROUP, "c1", id, min_idle=IDLE) is None
            await asyncio.sleep(IDLE + 0.05)
            again = await transport.redeliver(stream, GROUP, "c1", id, min_idle=IDLE)
            assert again == Message(id, b"poison", 2, {})
            [claimed] = await transport.claim_stale(stream, GROUP, "c2", min_idle=0)
            assert claimed == Message(id, b"poison", 3, {})
            dead_id = await transport.dead_letter(
                stream, GROUP, claimed, f"{stream}:dead", error="boom"
            )
            [dead] = await transport.read(f"{stream}:dead")
            assert (dead.id, dead.headers["attempts"], dead.headers["group"]) == (
                dead_id,
                "3",
                GROUP,
            )
            assert (await transport.pending(stream, GROUP)).count == 0
            assert await transport.trim_acknowledged(stream) == 1
            assert await transport.length(stream) == 0

    asyncio.run(main())


def test_async_errors(make_async_transport: Callable[[], AsyncTransport], stream: str) -> None:
    """The asyncio transports raise the same errors: bad arguments, a missing group, closed."""

    async def main() -> None:
        transport = make_async_transport()
        with pytest.raises(ValueError):
            await transport.consume(stream, GROUP, "c1", block=0)
        with pytest.raises(TypeError):
            await transport.publish(stream, "text")  # type: ignore[arg-type]
        with pytest.raises(TransportError):
            await transport.consume(stream, "nobody", "c1")
        await transport.close()
        await transport.close()
        with pytest.raises(TransportError, match="closed"):
            await transport.publish(stream, b"x")

    asyncio.run(main())


def test_groups_report_consumers_pending_and_waiting(transport: Transport, stream: str) -> None:
    """groups() says, per group, who consumes, what is pending and what waits."""
    assert transport.groups(stream) == []
    transport.publish_many(stream, [b"1", b"2", b"3", b"4"])
    transport.ensure_group(stream, "workers")
    transport.ensure_group(stream, "audit")
    taken = transport.consume(stream, "workers", "w1", count=2)
    transport.consume(stream, "workers", "w2", count=1)
    transport.ack(stream, "workers", [taken[0].id])
    audit, workers = transport.groups(stream)
    assert (audit.name, audit.consumers, audit.pending, audit.waiting) == ("audit", 0, 0, 4)
    assert audit.last_delivered == "0-0"
    assert (workers.name, workers.consumers, workers.pending, workers.waiting) == (
        "workers",
        2,
        2,
        1,
    )
    assert key(workers.last_delivered) > key(taken[1].id)


def test_consumers_lists_idle_consumers_too(transport: Transport, stream: str) -> None:
    """consumers() lists a group's consumers with their pending counts and idle
    times, one that joined with ensure_group(consumer=) and was never given
    anything too (Redis 7.0 adds consumers only when they are given messages)."""
    assert transport.consumers(stream, "workers") == []
    transport.ensure_group(stream, "workers", consumer="waiting")
    transport.ensure_group(stream, "workers", consumer="waiting")  # harmless again
    assert transport.consumers(stream, "nobody") == []
    transport.publish_many(stream, [b"1", b"2"])
    transport.consume(stream, "workers", "busy", count=2)
    busy, waiting = transport.consumers(stream, "workers")
    assert (busy.name, busy.pending, waiting.name, waiting.pending) == ("busy", 2, "waiting", 0)
    assert 0 <= busy.idle <= waiting.idle < 5
    [group] = transport.groups(stream)
    assert group.consumers == 2
    time.sleep(0.05)
    transport.consume(stream, "workers", "waiting")  # nothing new: still idle, as on Redis 7.0
    assert transport.consumers(stream, "workers")[1].idle >= 0.05


def test_async_consumers_match(
    make_async_transport: Callable[[], AsyncTransport], stream: str
) -> None:
    """The async transports list consumers the same way."""

    async def main() -> list[Consumer]:
        async with make_async_transport() as transport:
            await transport.ensure_group(stream, "g", consumer="idle")
            return await transport.consumers(stream, "g")

    [consumer] = asyncio.run(main())
    assert (consumer.name, consumer.pending) == ("idle", 0)


def test_attempts_are_recorded_and_forgotten(transport: Transport, stream: str) -> None:
    """record_attempts() keeps each message's Attempts for the group; None forgets them."""
    transport.ensure_group(stream, "g")
    first, second = transport.publish_many(stream, [b"a", b"b"])
    record = Attempts(failures=2, kills=1, error="ValueError: no", running="w1")
    transport.record_attempts(stream, "g", {first: record, second: Attempts(failures=1)})
    assert transport.attempts(stream, "g", [first, second, "9-9"]) == {
        first: record,
        second: Attempts(failures=1),
    }
    transport.record_attempts(stream, "g", {first: None})
    assert transport.attempts(stream, "g", [first]) == {}


def test_an_event_marked_done_is_done_until_its_ttl_expires(
    transport: Transport, stream: str
) -> None:
    """mark_done() marks an event id done for one group, for ttl seconds."""
    assert not transport.is_done(stream, "g", "e1")
    transport.mark_done(stream, "g", "e1", 0.2)
    assert transport.is_done(stream, "g", "e1")
    assert not transport.is_done(stream, "other", "e1")
    time.sleep(0.25)
    assert not transport.is_done(stream, "g", "e1")
    with pytest.raises(ValueError, match="ttl"):
        transport.mark_done(stream, "g", "e1", 0)
