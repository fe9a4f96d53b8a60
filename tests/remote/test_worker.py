"""Workers: acknowledge after success, retry with backoff, dead-letter, take over, stop."""

from __future__ import annotations

import asyncio
import os
import random
import signal as signals
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tocsin import Signal
from tocsin.exceptions import TransportError
from tocsin.remote import (
    AsyncMemoryTransport,
    AsyncWorker,
    Attempts,
    MemoryTransport,
    Remote,
    Worker,
    current_event,
)

job_done = Signal()
STREAM = "jobs"
DEAD = "jobs:dead"


@pytest.fixture
def transport() -> Iterator[MemoryTransport]:
    with MemoryTransport() as transport:
        yield transport


@pytest.fixture
def remote(transport: MemoryTransport) -> Iterator[Remote]:
    remote = Remote(transport, stream=STREAM)
    remote.publish(job_done)
    yield remote
    job_done.receivers = []
    job_done.sender_receivers_cache.clear()


def enqueue(remote: Remote, **kwargs: Any) -> None:
    """Publish a job_done event as another process's send() would."""
    [name] = remote.signals
    _, payload = remote.encode(name, None, None, kwargs)
    assert isinstance(remote.transport, MemoryTransport)
    remote.transport.publish(STREAM, payload)


def fast_worker(remote: Remote, **options: Any) -> Worker:
    options = {"retry_delay": 0.01, "block": 0.01, "claim_after": 30.0, **options}
    return Worker(remote, **options)


def drain(worker: Worker, until: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"timed out; stats: {worker.stats}"
        worker.run_once()


def test_an_event_reaches_the_receivers_and_is_acknowledged(
    remote: Remote, transport: MemoryTransport
) -> None:
    """The worker sends the event to local receivers, then acknowledges it."""
    seen: list[Any] = []
    job_done.connect(lambda sender, **kw: seen.append((sender, kw["job"])), weak=False)
    enqueue(remote, job=1)
    worker = fast_worker(remote)
    assert worker.run_once() == 1
    assert seen == [(None, 1)]
    assert transport.pending(STREAM, "tocsin").count == 0
    assert worker.stats.handled == 1


def test_a_failed_event_is_retried_with_its_delivery_count(remote: Remote) -> None:
    """It stays pending and is delivered again after the delay, counting deliveries."""
    deliveries: list[int] = []

    def flaky(**kwargs: Any) -> None:
        event = current_event()
        assert event is not None
        deliveries.append(event.deliveries)
        if len(deliveries) < 3:
            raise RuntimeError("not yet")

    job_done.connect(flaky)
    enqueue(remote, job=1)
    worker = fast_worker(remote)
    drain(worker, lambda: worker.stats.handled == 1)
    assert deliveries == [1, 2, 3]
    assert worker.stats.retried == 2
    assert worker.stats.failed == 2
    assert worker.stats.dead == 0


def test_retries_back_off_with_full_jitter(remote: Remote) -> None:
    """Each delay is random below a bound that doubles with each failed delivery,
    up to the maximum; a seeded policy draws the same delays again."""
    worker = Worker(remote, retry_delay=0.5, retry_backoff=2, max_retry_delay=3)
    policy = worker._policy
    policy.random = random.Random(1)
    assert [policy.ceiling(n) for n in (1, 2, 3, 4, 5, 10_000)] == [0.5, 1, 2, 3, 3, 3]
    assert [worker.max_delay(n) for n in (1, 2, 3, 4)] == [0.5, 1, 2, 3]  # the public bound
    for attempts in (1, 2, 3, 4, 5, 10_000):
        delays = [worker.delay(attempts) for _ in range(500)]
        assert all(0 <= d <= policy.ceiling(attempts) for d in delays)
        # Spread over the whole range, not bunched: all of them would retry at once.
        assert min(delays) < 0.1 * policy.ceiling(attempts)
        assert max(delays) > 0.9 * policy.ceiling(attempts)
    policy.random = random.Random(7)
    drawn = [worker.delay(n) for n in (1, 2, 3)]
    policy.random = random.Random(7)
    assert [worker.delay(n) for n in (1, 2, 3)] == drawn
    assert drawn == [random.Random(7).uniform(0, 0.5), *drawn[1:]]


def test_broker_outages_back_off_with_full_jitter(remote: Remote) -> None:
    """The waits between rounds while the broker is down are random below 0.1 s,
    doubling up to 5 s."""
    policy = Worker(remote)._policy
    policy.random = random.Random(3)
    for outages, ceiling in ((1, 0.1), (2, 0.2), (3, 0.4), (7, 5.0), (10_000, 5.0)):
        waits = [policy.outage_delay(outages) for _ in range(300)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > 0.9 * ceiling
        assert min(waits) < 0.1 * ceiling


def test_an_event_that_keeps_failing_goes_to_the_dead_letters(
    remote: Remote, transport: MemoryTransport
) -> None:
    """After max_attempts deliveries it moves to <stream>:dead with the error."""

    def broken(**kwargs: Any) -> None:
        raise ValueError("bad job")

    job_done.connect(broken)
    enqueue(remote, job=1)
    worker = fast_worker(remote, max_attempts=3)
    drain(worker, lambda: worker.stats.dead == 1)
    [dead] = transport.read(DEAD)
    assert dead.headers["attempts"] == "3"
    assert "ValueError: bad job" in dead.headers["error"]
    assert remote.decode(dead.payload).kwargs == {"job": 1}
    assert transport.pending(STREAM, "tocsin").count == 0


def test_an_unreadable_event_is_dead_lettered_at_once(
    remote: Remote, transport: MemoryTransport
) -> None:
    """A payload that cannot be read is never retried."""
    transport.publish(STREAM, b"{not json")
    worker = fast_worker(remote)
    worker.run_once()
    [dead] = transport.read(DEAD)
    assert dead.payload == b"{not json"
    assert "unreadable event" in dead.headers["error"]
    assert worker.stats.dead == 1


def test_an_unknown_signal_is_retried_then_dead_lettered(
    remote: Remote, transport: MemoryTransport
) -> None:
    """A worker that lacks the signal's module fails the event and says what to import."""
    _, payload = remote.encode("elsewhere.signal", None, None, {})
    transport.publish(STREAM, payload)
    worker = fast_worker(remote, max_attempts=2)
    drain(worker, lambda: worker.stats.dead == 1)
    errors = [m.headers["error"] for m in transport.read(DEAD)]
    assert any("not published here" in error for error in errors)


def test_a_dead_workers_events_are_taken_over(remote: Remote, transport: MemoryTransport) -> None:
    """Events pending for a consumer that stopped are claimed after claim_after."""
    seen: list[int] = []
    job_done.connect(lambda **kw: seen.append(kw["job"]), weak=False)
    for job in range(3):
        enqueue(remote, job=job)
    transport.ensure_group(STREAM, "tocsin")
    taken = transport.consume(STREAM, "tocsin", "crashed-worker", count=10)
    assert len(taken) == 3  # ... and it died before acknowledging them
    worker = fast_worker(remote, claim_after=0.05)
    time.sleep(0.06)
    drain(worker, lambda: len(seen) == 3)
    assert sorted(seen) == [0, 1, 2]
    assert worker.stats.claimed == 3
    assert transport.pending(STREAM, "tocsin").count == 0


def test_events_taken_over_from_dead_workers_are_run_alone_not_dead_lettered(
    remote: Remote, transport: MemoryTransport
) -> None:
    """Delivered more than max_attempts times by workers that died, an event is not
    condemned for it: it runs again, alone, and its record is forgotten once it succeeds."""
    ran: list[int] = []
    job_done.connect(lambda **kw: ran.append(kw["job"]), weak=False)
    for job in range(3):
        enqueue(remote, job=job)
    transport.ensure_group(STREAM, "tocsin")
    transport.consume(STREAM, "tocsin", "a", count=3)
    for _ in range(3):  # three workers took the batch and died, nothing running alone
        transport.claim_stale(STREAM, "tocsin", "a", min_idle=0)
    worker = fast_worker(remote, max_attempts=2, claim_after=0.01)
    time.sleep(0.02)
    drain(worker, lambda: worker.stats.handled == 3)
    assert sorted(ran) == [0, 1, 2]
    assert worker.stats.dead == 0
    assert transport.read(DEAD) == []
    ids = [message.id for message in transport.read(STREAM)]
    assert transport.attempts(STREAM, "tocsin", ids) == {}


def test_an_event_that_killed_its_worker_running_alone_is_poison(
    remote: Remote, transport: MemoryTransport
) -> None:
    """An event found marked as running alone on a consumer that vanished has killed it:
    at max_kills it goes to the dead letters unrun, as poison; the others run."""
    ran: list[int] = []
    job_done.connect(lambda **kw: ran.append(kw["job"]), weak=False)
    enqueue(remote, job=1)
    enqueue(remote, job=2)
    transport.ensure_group(STREAM, "tocsin")
    first, second = transport.consume(STREAM, "tocsin", "dead-worker", count=2)
    transport.record_attempts(STREAM, "tocsin", {first.id: Attempts(running="dead-worker")})
    worker = fast_worker(remote, max_kills=1, claim_after=0.01)
    time.sleep(0.02)
    drain(worker, lambda: worker.stats.dead == 1 and worker.stats.handled == 1)
    assert ran == [2]
    assert worker.stats.poison == 1
    [dead] = transport.read(DEAD)
    assert dead.headers["source-id"] == first.id
    assert dead.headers["error"].startswith("poison: killed its worker once, running alone")
    assert transport.attempts(STREAM, "tocsin", [first.id, second.id]) == {}


def test_a_failing_event_taken_over_keeps_its_failures_and_error(
    remote: Remote, transport: MemoryTransport
) -> None:
    """Failures are counted in the group's record, not in deliveries: a worker that takes
    over an event that failed elsewhere goes on counting, and dead-letters it with its error."""

    def fail(**kwargs: Any) -> None:
        raise ValueError(f"job {kwargs['job']} is broken")

    job_done.connect(fail, weak=False)
    enqueue(remote, job=7)
    first = fast_worker(remote, max_attempts=2, consumer="first")
    first.run_once()  # fails once, then "dies" before its retry
    assert first.stats.failed == 1
    [message] = transport.read(STREAM)
    assert transport.attempts(STREAM, "tocsin", [message.id])[message.id].failures == 1
    second = fast_worker(remote, max_attempts=2, claim_after=0.01, consumer="second")
    time.sleep(0.02)
    drain(second, lambda: second.stats.dead == 1)
    [dead] = transport.read(DEAD)
    assert dead.headers["error"] == "ValueError: job 7 is broken"
    assert second.stats.poison == 0


def test_two_workers_share_a_group_without_duplicates(remote: Remote) -> None:
    """Each event goes to one worker of the group."""
    seen: list[tuple[str, int]] = []

    def record(**kwargs: Any) -> None:
        time.sleep(0.001)  # slow enough that both workers get a share
        seen.append((threading.current_thread().name, kwargs["job"]))

    job_done.connect(record)
    for job in range(200):
        enqueue(remote, job=job)
    workers = [fast_worker(remote, batch=10, consumer=f"w{i}") for i in range(2)]
    threads = [
        threading.Thread(target=lambda w=w: drain(w, lambda: len(seen) >= 200), name=w.consumer)
        for w in workers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(job for _, job in seen) == list(range(200))
    assert {name for name, _ in seen} == {"w0", "w1"}


def test_stop_ends_run_after_the_batch(remote: Remote) -> None:
    """stop() from another thread makes run() return."""
    worker = fast_worker(remote)
    thread = threading.Thread(target=worker.run, kwargs={"handle_signals": False})
    thread.start()
    time.sleep(0.05)
    worker.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert worker.stopping


def test_sigterm_stops_run_gracefully(remote: Remote, transport: MemoryTransport) -> None:
    """SIGTERM finishes and acknowledges the batch in hand, then run() returns."""
    seen: list[int] = []

    def slow(**kwargs: Any) -> None:
        if kwargs["job"] == 0:
            os.kill(os.getpid(), signals.SIGTERM)  # arrives in the middle of the batch
        seen.append(kwargs["job"])

    job_done.connect(slow)
    for job in range(5):
        enqueue(remote, job=job)
    previous = signals.getsignal(signals.SIGTERM)
    worker = fast_worker(remote, batch=5)
    worker.run()
    assert seen == [0, 1, 2, 3, 4]
    assert transport.pending(STREAM, "tocsin").count == 0
    assert signals.getsignal(signals.SIGTERM) is previous  # handler restored


class FlakyBroker(MemoryTransport):
    """A memory transport whose broker is down for the first reads."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def consume(self, *args: Any, **kwargs: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise TransportError("connection refused")
        return super().consume(*args, **kwargs)


def test_run_survives_the_broker_going_away(caplog: pytest.LogCaptureFixture) -> None:
    """A broker outage is logged and waited out; events are handled once it is back."""
    broker = FlakyBroker(failures=3)
    remote = Remote(broker, stream=STREAM)
    remote.publish(job_done)
    seen: list[int] = []
    worker = fast_worker(remote)

    def record(**kwargs: Any) -> None:
        seen.append(kwargs["job"])
        worker.stop()

    job_done.connect(record)
    try:
        enqueue(remote, job=1)
        worker.run(handle_signals=False)
    finally:
        job_done.receivers = []
        broker.close()
    assert seen == [1]
    assert "broker unavailable" in caplog.text


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"batch": 0}, "batch"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"block": 0}, "block"),
        ({"retry_delay": -1}, "retry_delay"),
        ({"retry_backoff": 0.5}, "retry_backoff"),
        ({"claim_after": "60"}, "claim_after"),
        ({"group": ""}, "group"),
    ],
)
def test_worker_checks_its_options(remote: Remote, options: dict[str, Any], match: str) -> None:
    """Bad options raise ValueError naming them."""
    with pytest.raises(ValueError, match=match):
        Worker(remote, **options)


def test_the_worker_must_match_the_transport(remote: Remote) -> None:
    """Worker needs a blocking transport, AsyncWorker an async one."""
    with pytest.raises(TypeError, match="AsyncWorker"):
        AsyncWorker(remote)
    with pytest.raises(TypeError, match="Remote"):
        Worker(object())  # type: ignore[arg-type]


def test_the_async_worker_awaits_async_receivers() -> None:
    """AsyncWorker reads with an AsyncTransport and awaits receivers in its loop."""
    seen: list[int] = []

    async def on_job(**kwargs: Any) -> None:
        await asyncio.sleep(0)
        seen.append(kwargs["job"])
        if len(seen) == 3:
            worker.stop()

    async def main() -> None:
        async with AsyncMemoryTransport() as transport:
            remote = Remote(transport, stream=STREAM)
            remote.publish(job_done)
            job_done.connect(on_job)
            global worker
            worker = AsyncWorker(remote, block=0.01)
            for job in range(3):
                _, payload = remote.encode(f"{__name__}.job_done", None, None, {"job": job})
                await transport.publish(STREAM, payload)
            await asyncio.wait_for(worker.run(handle_signals=False), 5)
            assert (await transport.pending(STREAM, "tocsin")).count == 0

    try:
        asyncio.run(main())
    finally:
        job_done.receivers = []
    assert seen == [0, 1, 2]


worker: AsyncWorker


class MarkDoneFailsOnce(MemoryTransport):
    """A memory transport whose broker goes away the first time an event is marked done."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def mark_done(self, stream: str, group: str, event_id: str, ttl: float) -> None:
        if not self.failed:
            self.failed = True
            raise TransportError("connection lost")
        super().mark_done(stream, group, event_id, ttl)


def test_events_in_hand_during_an_outage_are_taken_again_at_once() -> None:
    """An event handled but not acknowledged when the broker went away runs again as soon as
    the broker is back, without waiting for claim_after."""
    broker = MarkDoneFailsOnce()
    remote = Remote(broker, stream=STREAM)
    remote.publish(job_done, dedupe=60)  # the broker fails after the receivers, in hand
    deliveries: list[int] = []
    worker = fast_worker(remote, claim_after=60.0)

    def record(**kwargs: Any) -> None:
        event = current_event()
        assert event is not None
        deliveries.append(event.deliveries)
        if len(deliveries) == 2:
            worker.stop()

    job_done.connect(record)
    try:
        enqueue(remote, job=1)
        started = time.monotonic()
        worker.run(handle_signals=False)
    finally:
        job_done.receivers = []
        broker.close()
    assert deliveries == [1, 2]  # at least once: it ran again, as a counted redelivery
    assert time.monotonic() - started < 5
    assert broker.failed


class CountingBroker(MemoryTransport):
    """A memory transport that counts round trips of acknowledgements, and can fail
    the next read after acknowledging (*then* "ack") or before (*then* "read")."""

    def __init__(self) -> None:
        super().__init__()
        self.acks = 0  # ack() calls: a round trip each
        self.acks_with_reads = 0  # reads that acknowledged too
        self.fail: str | None = None

    def ack(self, stream: str, group: str, ids: Any) -> int:
        self.acks += 1
        return super().ack(stream, group, ids)

    def _ack_and_consume(self, *args: Any) -> Any:
        stream, group, _, ids, *_ = args
        fail, self.fail = self.fail, None
        if fail == "read":
            raise TransportError("connection lost before the XACK")
        self.acks_with_reads += 1
        acknowledged = self._ack(stream, group, ids)
        if fail == "ack":
            raise TransportError(f"connection lost after the XACK ({acknowledged} acknowledged)")
        return self._consume(*args[:3], *args[4:])


def run_until(worker: Worker, done: Any) -> None:
    """Run *worker* in this thread until done() is true (checked by a receiver)."""
    timer = threading.Timer(5.0, worker.stop)  # a test that fails does not hang
    timer.start()
    try:
        worker.run(handle_signals=False)
    finally:
        timer.cancel()
    assert done(), f"stopped by the timer; stats: {worker.stats}"


def test_run_acknowledges_each_batch_with_the_next_read() -> None:
    """In run(), a batch's acknowledgement travels with the next read: one round trip
    less per batch; the last batch is acknowledged alone when the worker stops."""
    broker = CountingBroker()
    remote = Remote(broker, stream=STREAM)
    remote.publish(job_done)
    seen: list[int] = []
    worker = fast_worker(remote, batch=2)

    def record(**kwargs: Any) -> None:
        seen.append(kwargs["job"])
        # Every event is handled; stop after the last batch was read.
        if len(seen) == 6:
            worker.stop()

    job_done.connect(record)
    try:
        for job in range(6):
            enqueue(remote, job=job)
        run_until(worker, lambda: len(seen) == 6)
    finally:
        job_done.receivers = []
    assert seen == [0, 1, 2, 3, 4, 5]
    assert (broker.acks_with_reads, broker.acks) == (2, 1)  # batches 1 and 2, then 3 alone
    assert broker.pending(STREAM, "tocsin").count == 0
    assert worker.stats.handled == 6


@pytest.mark.parametrize("failure", ["ack", "read"])
def test_a_failed_read_loses_neither_acknowledgements_nor_events(failure: str) -> None:
    """When the read that carries a batch's acknowledgement fails, after the XACK
    went through or before, the acknowledgement goes again with the next read: no
    event runs twice, none is lost, and none stays pending."""
    broker = CountingBroker()
    remote = Remote(broker, stream=STREAM)
    remote.publish(job_done)
    seen: list[int] = []
    worker = fast_worker(remote, batch=2)

    def record(**kwargs: Any) -> None:
        seen.append(kwargs["job"])
        if len(seen) == 2:
            broker.fail = failure  # the read after this batch fails
        if len(seen) == 4:
            worker.stop()

    job_done.connect(record)
    try:
        for job in range(4):
            enqueue(remote, job=job)
        run_until(worker, lambda: len(seen) == 4)
    finally:
        job_done.receivers = []
    assert seen == [0, 1, 2, 3]  # each once: the first batch was not run again
    assert worker.stats.handled == 4
    assert broker.pending(STREAM, "tocsin").count == 0


def test_acknowledgements_that_fail_when_run_stops_leave_the_events_pending(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """If the last acknowledgement fails as run() stops, the events stay pending
    (to run again once taken over: at least once), and the worker says so."""
    broker = CountingBroker()
    remote = Remote(broker, stream=STREAM)
    remote.publish(job_done)
    worker = fast_worker(remote)

    def stop(**kwargs: Any) -> None:
        worker.stop()
        broker.close()  # every call fails from now on

    job_done.connect(stop)
    try:
        enqueue(remote, job=1)
        worker.run(handle_signals=False)
    finally:
        job_done.receivers = []
    assert worker.stats.handled == 0
    assert "1 handled event(s) not acknowledged" in caplog.text


class CancelledAtRead(AsyncMemoryTransport):
    """An async memory transport whose task is cancelled at the first read that
    carries acknowledgements, before it acknowledges anything."""

    async def _ack_and_consume(self, *args: Any) -> Any:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)  # raises CancelledError
        raise AssertionError("not cancelled")


def test_an_async_worker_cancelled_acknowledges_what_it_handled() -> None:
    """Cancelling AsyncWorker.run() before the read that carries the last batch's
    acknowledgement still acknowledges the events handled: they do not run again."""
    seen: list[int] = []

    async def main() -> None:
        async with CancelledAtRead() as transport:
            remote = Remote(transport, stream=STREAM)
            remote.publish(job_done)
            job_done.connect(lambda **kwargs: seen.append(kwargs["job"]), weak=False)
            for job in range(3):
                _, payload = remote.encode(f"{__name__}.job_done", None, None, {"job": job})
                await transport.publish(STREAM, payload)
            worker = AsyncWorker(remote, block=0.01)
            with pytest.raises(asyncio.CancelledError):
                await worker.run(handle_signals=False)
            assert (await transport.pending(STREAM, "tocsin")).count == 0
            assert worker.stats.handled == 3

    try:
        asyncio.run(main())
    finally:
        job_done.receivers = []
    assert seen == [0, 1, 2]


def test_the_worker_trims_what_every_group_acknowledged(
    remote: Remote, transport: MemoryTransport
) -> None:
    """Every trim_every seconds, acknowledged events leave the stream; others stay."""
    job_done.connect(lambda **kw: None, weak=False)
    for job in range(3):
        enqueue(remote, job=job)
    transport.ensure_group(STREAM, "analytics")  # another group, which has read nothing
    worker = fast_worker(remote, trim_every=0.01)
    drain(worker, lambda: worker.stats.handled == 3)
    time.sleep(0.02)
    worker.run_once()
    assert transport.length(STREAM) == 3  # the analytics group still needs them
    transport.consume(STREAM, "analytics", "a", count=3)
    transport.ack(STREAM, "analytics", [m.id for m in transport.read(STREAM)])
    time.sleep(0.02)
    worker.run_once()
    assert transport.length(STREAM) == 0
    assert worker.stats.trimmed == 3


def test_trim_every_none_keeps_the_stream(remote: Remote, transport: MemoryTransport) -> None:
    """trim_every=None leaves trimming to you."""
    job_done.connect(lambda **kw: None, weak=False)
    enqueue(remote, job=1)
    worker = fast_worker(remote, trim_every=None)
    drain(worker, lambda: worker.stats.handled == 1)
    assert transport.length(STREAM) == 1
    with pytest.raises(ValueError, match="trim_every"):
        fast_worker(remote, trim_every=0)


def test_a_send_that_raises_in_the_worker_fails_the_event_not_the_worker(
    remote: Remote, transport: MemoryTransport
) -> None:
    """An exception from the send itself (a checked typed signal refusing an argument)
    counts as a failed delivery: retried, then dead-lettered; the worker goes on."""
    from tocsin import TypedSignal

    def spec(sender: None, *, job: int) -> None: ...

    checked = TypedSignal(spec, check=True)
    strict = Remote(transport, stream=STREAM)
    strict.publish(checked, name="strict.job")
    strict.disconnect()
    checked.connect(lambda **kw: None, weak=False)
    _, payload = strict.encode("strict.job", None, None, {"job": "not a number"})
    transport.publish(STREAM, payload)
    worker = fast_worker(strict, max_attempts=2)
    drain(worker, lambda: worker.stats.dead == 1)
    [dead] = transport.read(DEAD)
    assert "TypeError" in dead.headers["error"]
    assert "job must be int" in dead.headers["error"]


def test_concurrency_runs_a_batchs_events_at_once(remote: Remote) -> None:
    """With concurrency=N, N events that wait run side by side, in threads; each is still
    acknowledged, retried or dead-lettered by the worker itself."""
    started = threading.Barrier(4, timeout=5)  # passes only if 4 events run at the same time
    threads: dict[int, str] = {}
    failed_once: set[int] = set()

    def slow(**kwargs: Any) -> None:
        threads[kwargs["job"]] = threading.current_thread().name
        if kwargs["job"] < 4:
            started.wait()
        if kwargs["job"] == 5 and 5 not in failed_once:
            failed_once.add(5)
            raise RuntimeError("flaky")

    job_done.connect(slow)
    for job in range(6):
        enqueue(remote, job=job)
    worker = fast_worker(remote, concurrency=4, batch=6)
    drain(worker, lambda: worker.stats.handled == 6)
    first_four = {threads[job] for job in range(4)}
    assert len(first_four) == 4  # one thread each
    assert threading.main_thread().name not in first_four
    assert (worker.stats.failed, worker.stats.retried) == (1, 1)


def test_the_async_worker_runs_a_batch_concurrently() -> None:
    """AsyncWorker(concurrency=N) awaits up to N events' receivers at once."""
    running = 0
    most = 0

    async def on_job(**kwargs: Any) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1

    async def main() -> int:
        async with AsyncMemoryTransport() as transport:
            remote = Remote(transport, stream=STREAM)
            remote.publish(job_done)
            remote.disconnect()
            for job in range(10):
                _, payload = remote.encode(f"{__name__}.job_done", None, None, {"job": job})
                await transport.publish(STREAM, payload)
            job_done.connect(on_job)
            async_worker = AsyncWorker(remote, block=0.01, concurrency=3)
            while async_worker.stats.handled < 10:
                await async_worker.run_once()
            return async_worker.stats.handled

    try:
        assert asyncio.run(main()) == 10
    finally:
        job_done.receivers = []
    assert most == 3


def test_concurrency_must_be_positive(remote: Remote) -> None:
    """concurrency=0 is refused."""
    with pytest.raises(ValueError, match="concurrency"):
        Worker(remote, concurrency=0)


def test_a_waiting_worker_is_listed_among_the_consumers(remote: Remote) -> None:
    """A worker joins its group as it starts, so it is listed before it is given anything."""
    worker = Worker(remote, consumer="waiting", block=0.001)
    assert worker.run_once() == 0
    assert isinstance(remote.transport, MemoryTransport)
    [consumer] = remote.transport.consumers(STREAM, "tocsin")
    assert (consumer.name, consumer.pending) == ("waiting", 0)
