"""Remote events survive faults: a worker killed mid-batch, Redis restarted, SIGTERM,
receivers that always fail; on the real Redis server, with real worker processes.

Workers are ``python -m tocsin worker remote_app:remote`` processes (tests/remote_app.py)
that record every event they handle in files under the test's ``tmp_path``; a test
compares the ids of the events it sent with the ids the workers recorded. Every wait has
a deadline, after which the test fails with what was handled and the workers' logs.

Redis is the server at TOCSIN_REDIS_URL (127.0.0.1:6379, database 0), on a stream of the
test's own that is deleted afterwards. Without a server the tests are skipped, unless
TOCSIN_REQUIRE_SERVICES=1 (CI), where they fail. The restart test runs a redis-server of
its own, and needs only the binary.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal as signals
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import remote_app
from tocsin import Signal
from tocsin.exceptions import PublishError, TransportError
from tocsin.remote import (
    AsyncRedisStreamsTransport,
    Event,
    Message,
    Pending,
    RedisStreamsTransport,
    Remote,
)

TESTS = Path(__file__).resolve().parent.parent  # where remote_app.py is
REDIS_URL = os.environ.get("TOCSIN_REDIS_URL", "redis://127.0.0.1:6379/0")
GROUP = "workers"
# The longest any one wait may take before the test fails; each takes a few seconds at most.
PATIENCE = 30.0


def _required(reason: str) -> None:
    """Skip the test for want of *reason*, or fail it on CI (TOCSIN_REQUIRE_SERVICES=1)."""
    if os.environ.get("TOCSIN_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (TOCSIN_REQUIRE_SERVICES=1 requires it)")
    pytest.skip(reason)


# -- what the workers did --------------------------------------------------------------


class WorkerProcess:
    """A ``tocsin worker`` process: one consumer of the group, logging to a file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self.exiting = False  # True once the test stops or kills it on purpose
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                command, cwd=TESTS, env=env, stdout=output, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL it, if it still runs, and reap it."""
        self.exiting = True
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class Handled:
    """What the workers recorded: an ``(event id, pid)`` pair each time the receiver finished."""

    def __init__(self, records: list[tuple[str, int]]) -> None:
        self.records = records
        self.times = Counter(id for id, _ in records)
        self.ids = set(self.times)

    @property
    def duplicates(self) -> int:
        """Handlings beyond the first of each event."""
        return len(self.records) - len(self.ids)

    def duplicated_ids(self) -> set[str]:
        return {id for id, times in self.times.items() if times > 1}

    def by(self, worker: WorkerProcess) -> set[str]:
        return {id for id, pid in self.records if pid == worker.pid}


class Lab:
    """One test's stream on a Redis server, the workers it started and what they recorded.

    The test sends through :attr:`app`, the same app the workers run (its ``work``
    signal publishes an event for ``remote_app.handle_work``).
    """

    def __init__(self, url: str, directory: Path) -> None:
        self.url = url
        self.stream = f"tocsin-test:{uuid.uuid4().hex}:events"
        self.dead_stream = f"{self.stream}:dead"
        self.directory = directory
        self.records = directory / "handled"
        self.records.mkdir(parents=True)
        self.app = remote_app.make_app(url, self.stream)
        self.redis = redis.Redis.from_url(url)
        self.workers: list[WorkerProcess] = []
        self.failed_sends = 0

    @property
    def transport(self) -> RedisStreamsTransport:
        transport = self.app.remote.transport
        assert isinstance(transport, RedisStreamsTransport)
        return transport

    def close(self) -> None:
        """Kill the workers still running and delete the test's streams."""
        for worker in self.workers:
            worker.kill()
        with contextlib.suppress(redis.RedisError):
            self.redis.delete(self.stream, self.dead_stream)
        self.redis.close()
        self.transport.close()

    # -- workers -------------------------------------------------------------------

    def start_worker(
        self, name: str, *options: str, sleep: float = 0.0, asynchronous: bool = False
    ) -> WorkerProcess:
        """Start ``tocsin worker`` as consumer *name* of the group, with CLI *options*.

        :param sleep: the receiver pauses up to this many seconds per event.
        :param asynchronous: the app's remote has an AsyncRedisStreamsTransport.
        """
        env = {
            **os.environ,
            remote_app.REDIS_URL: self.url,
            remote_app.STREAM: self.stream,
            remote_app.RECORDS: str(self.records),
            remote_app.SLEEP: str(sleep),
            remote_app.ASYNC: "1" if asynchronous else "0",
        }
        command = [sys.executable, "-m", "tocsin", "worker", "remote_app:remote"]
        command += ["--group", GROUP, "--consumer", name, *options]
        worker = WorkerProcess(name, command, env, self.directory / f"{name}.log")
        self.workers.append(worker)
        return worker

    def freeze_mid_batch(self, worker: WorkerProcess) -> set[str]:
        """Stop *worker* (SIGSTOP) in the middle of a batch: at a moment it has handled
        some of the events it holds and acknowledged none of them. Returns the ids of
        all the events it holds (read and not acknowledged)."""
        deadline = time.monotonic() + PATIENCE
        while True:
            worker.process.send_signal(signals.SIGSTOP)
            _wait_stopped(worker.pid)
            held = self.held_by(worker)
            if held & self.handled().by(worker):
                return held
            worker.process.send_signal(signals.SIGCONT)
            self._check("the worker in the middle of a batch", deadline)
            time.sleep(0.002)

    def thaw(self, worker: WorkerProcess) -> None:
        """Let a frozen worker go on (SIGCONT)."""
        worker.process.send_signal(signals.SIGCONT)

    def kill(self, worker: WorkerProcess) -> None:
        """SIGKILL *worker*: no cleanup, no acknowledgement, nothing."""
        worker.kill()

    def stop(self, worker: WorkerProcess, timeout: float = 10.0) -> int:
        """SIGTERM *worker* (and SIGCONT, in case it is frozen); its exit code."""
        worker.exiting = True
        worker.process.send_signal(signals.SIGTERM)
        worker.process.send_signal(signals.SIGCONT)
        try:
            return worker.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker {worker.name} still runs {timeout:g} s after SIGTERM\n{self}")

    # -- sending -------------------------------------------------------------------

    def send(self, n: int, **kwargs: Any) -> str:
        """Send work *n* (published, or held by the batch block in progress); its event's id."""
        [(_, event)] = self.app.work.send(None, n=n, **kwargs)
        assert isinstance(event, Event)
        return event.id

    def publish(self, count: int) -> set[str]:
        """Send works 0 to *count* - 1, published 500 at a time; their events' ids."""
        with self.app.remote.batch(size=500):
            return {self.send(n) for n in range(count)}

    def publish_one_by_one(self, numbers: range) -> set[str]:
        """Send each work on its own (an XADD each), and send it again while it raises
        :class:`TransportError`; the ids of the events that were published.

        A send that raised published nothing, or (its reply lost) an event whose id the
        caller never learns; either way it is the caller's to send again, as here (or an
        outbox's: ``Remote(outbox=...)`` stores the event with the transaction and relays
        it until Redis takes it).
        """
        ids = set()
        for n in numbers:
            deadline = time.monotonic() + PATIENCE
            while True:
                try:
                    ids.add(self.send(n))
                    break
                except TransportError:
                    self.failed_sends += 1
                    self._check(f"Redis to take work {n} again", deadline)
                    time.sleep(0.02)
        return ids

    # -- looking -------------------------------------------------------------------

    def handled(self) -> Handled:
        records = []
        for path in self.records.iterdir():
            # A line is whole once it ends with a newline (it may be being written).
            for line in path.read_text().split("\n")[:-1]:
                id, pid = line.split()
                records.append((id, int(pid)))
        return Handled(records)

    def pending(self) -> Pending:
        return self.transport.pending(self.stream, GROUP)

    def held_by(self, worker: WorkerProcess) -> set[str]:
        """The ids of the events *worker* has read and not acknowledged."""
        entries = self.redis.xpending_range(
            self.stream, GROUP, min="-", max="+", count=10_000, consumername=worker.name
        )
        held = set()
        for entry in entries:
            message_id = entry["message_id"]
            assert isinstance(message_id, bytes)
            [message] = self.transport.read(self.stream, start=message_id.decode(), count=1)
            held.add(self.event_id(message))
        return held

    def dead_letters(self) -> list[Message]:
        return self.transport.read(self.dead_stream, count=10_000)

    def event_id(self, message: Message) -> str:
        return self.app.remote.decode(message.payload).id

    # -- waiting -------------------------------------------------------------------

    def wait_until(self, what: str, condition: Callable[[], bool]) -> None:
        """Wait until *condition* holds; fail, with the workers' logs, if a worker
        exits unasked or *what* takes longer than PATIENCE."""
        deadline = time.monotonic() + PATIENCE
        while not condition():
            self._check(what, deadline)
            time.sleep(0.05)

    def wait_until_handled(self, ids: set[str]) -> Handled:
        """Wait until every event of *ids* was handled and nothing is pending; what was handled."""
        self.wait_until(
            f"all {len(ids)} events handled and acknowledged",
            lambda: ids <= self.handled().ids and self.pending().count == 0,
        )
        return self.handled()

    def _check(self, what: str, deadline: float) -> None:
        for worker in self.workers:
            code = worker.process.poll()
            if code is not None and not worker.exiting:
                pytest.fail(f"worker {worker.name} exited ({code}) before {what}\n{self}")
        if time.monotonic() > deadline:
            pytest.fail(f"waited {PATIENCE:g} s for {what}\n{self}")

    def __str__(self) -> str:
        handled = self.handled()
        try:
            pending: object = self.pending()
        except TransportError as error:
            pending = error
        lines = [
            f"stream {self.stream} on {self.url}: {len(handled.ids)} events handled "
            f"({handled.duplicates} duplicates), {self.failed_sends} failed sends; {pending}"
        ]
        for worker in self.workers:
            lines.append(f"--- worker {worker.name} (pid {worker.pid}), last lines of its log:")
            lines += worker.logs().splitlines()[-40:]
        return "\n".join(lines)


def _wait_stopped(pid: int) -> None:
    """Wait until the kernel has stopped *pid* (SIGSTOP is delivered asynchronously)."""
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + 5.0
    # The state follows the command name, which is in parentheses.
    while stat.read_text().rpartition(")")[2].split()[0] != "T":
        assert time.monotonic() < deadline, f"process {pid} did not stop"
        time.sleep(0.001)


@contextlib.contextmanager
def open_lab(url: str, directory: Path) -> Iterator[Lab]:
    lab = Lab(url, directory)
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A lab on the Redis server; skipped (failed on CI) when nothing answers there."""
    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2) as client:
            client.ping()
    except redis.RedisError as error:
        _required(f"Redis is not reachable at {REDIS_URL}: {error}")
    with open_lab(REDIS_URL, tmp_path) as lab:
        yield lab


# -- a Redis server to restart ---------------------------------------------------------


class RedisServer:
    """A redis-server of the test's own on a free port, writing every change to its
    append-only file before it replies (``appendfsync always``): killing it loses
    nothing it acknowledged, and starting it again on the same files brings all back."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{port}/0"
        self.log = directory / "redis.log"
        self.command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
        self.command += ["--dir", str(directory), "--save", ""]
        self.command += ["--appendonly", "yes", "--appendfsync", "always"]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until it answers."""
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(self.command, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + PATIENCE
        with redis.Redis.from_url(self.url, socket_connect_timeout=1) as client:
            while True:
                try:
                    client.ping()
                except redis.RedisError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        log = self.log.read_text(errors="replace")
                        pytest.fail(f"redis-server did not start: {self.command}\n{log}")
                    time.sleep(0.01)
                else:
                    return

    def kill(self) -> None:
        """SIGKILL the server: no shutdown, no final save."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait()

    @contextlib.contextmanager
    def outage(self, seconds: float) -> Iterator[None]:
        """Kill the server now, and start it again (same port, same files) *seconds*
        later, while the block runs; the server is back when the block ends."""
        self.kill()
        failures: list[BaseException] = []

        def come_back() -> None:
            time.sleep(seconds)
            try:
                self.start()
            except BaseException as error:  # pytest.fail() raises a BaseException
                failures.append(error)

        thread = threading.Thread(target=come_back, name="redis-comes-back")
        thread.start()
        try:
            yield
        finally:
            thread.join()
        if failures:
            raise failures[0]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running redis-server of the test's own; skipped (failed on CI) without the binary."""
    if shutil.which("redis-server") is None:
        _required("redis-server is not installed")
    server = RedisServer(tmp_path / "redis")
    try:
        server.start()
        yield server
    finally:
        server.kill()


# -- the scenarios ---------------------------------------------------------------------


def test_two_workers_in_a_group_share_10000_events_and_lose_none(lab: Lab) -> None:
    """Two workers of one group handle every one of 10,000 events exactly once between them."""
    sent = lab.publish(10_000)

    # Each pauses up to 0.5 ms per event, so neither is done before the other starts.
    first = lab.start_worker("first", sleep=0.0005)
    second = lab.start_worker("second", sleep=0.0005)

    handled = lab.wait_until_handled(sent)
    assert handled.ids == sent
    assert handled.duplicates == 0
    assert handled.by(first)
    assert handled.by(second)
    assert lab.pending().count == 0


def test_a_worker_killed_in_the_middle_of_a_batch_loses_no_event(lab: Lab) -> None:
    """SIGKILL a worker mid-batch: the events it held are taken over after --claim-after,
    all 10,000 are handled, and exactly those it had handled but not acknowledged run twice."""
    sent = lab.publish(10_000)
    options = ("--batch", "50", "--claim-after", "1")
    victim = lab.start_worker("victim", *options, sleep=0.001)
    lab.start_worker("survivor", *options, sleep=0.001)
    lab.wait_until("a quarter of the events handled", lambda: len(lab.handled().ids) >= 2_500)

    held = lab.freeze_mid_batch(victim)
    lab.kill(victim)
    handled_unacknowledged = held & lab.handled().by(victim)
    assert handled_unacknowledged  # it died in the middle of a batch
    lab.start_worker("replacement", *options, sleep=0.001)

    handled = lab.wait_until_handled(sent)
    assert handled.ids == sent
    assert handled.duplicated_ids() == handled_unacknowledged
    assert handled.duplicates <= len(held)
    assert lab.pending().count == 0


def test_a_redis_restart_loses_no_event(redis_server: RedisServer, tmp_path: Path) -> None:
    """Redis killed and started again mid-stream: the publisher sends again what raised,
    the worker reconnects by itself and handles again the batch whose acknowledgement
    failed, and every event is handled."""
    with open_lab(redis_server.url, tmp_path / "lab") as lab:
        # A backlog before the worker starts, so that it still has batches of 50 to be
        # frozen in when it is busy (a worker that keeps pace with one-by-one sends reads
        # an event at a time, and may be done before it is caught mid-batch).
        sent = lab.publish(3_000)
        options = ("--batch", "50", "--claim-after", "1")
        worker = lab.start_worker("steady", *options, sleep=0.001)
        lab.wait_until("the worker busy", lambda: len(lab.handled().ids) >= 200)

        held = lab.freeze_mid_batch(worker)
        with redis_server.outage(seconds=0.3):
            lab.thaw(worker)  # its acknowledgement of the batch in hand fails
            sent |= lab.publish_one_by_one(range(3_000, 4_000))

        handled = lab.wait_until_handled(sent)
        assert lab.failed_sends > 0  # the publisher met the outage, and sent again
        # No send was on its way when Redis died, so none that raised published an event.
        assert handled.ids == sent
        assert held <= handled.ids
        assert "broker unavailable" in worker.logs()
        assert worker.process.poll() is None


def test_tasks_publishing_through_a_redis_restart_lose_no_event(
    redis_server: RedisServer,
) -> None:
    """8 tasks publish one by one through the asyncio transport's pipelined connection
    while Redis is killed and started again: each publish returns its event, or raises a
    PublishError whose events the task publishes again (the same ids) until Redis takes
    them. Every event ends in the stream; an id appears twice only if its first attempt
    got through unanswered."""
    stream = f"tocsin-test:{uuid.uuid4().hex}:events"
    signal = Signal()
    returned: set[str] = set()
    raised: set[str] = set()

    async def main() -> None:
        transport = AsyncRedisStreamsTransport(url=redis_server.url)
        remote = Remote(transport, stream=stream)
        remote.publish(signal, name="faults.restart")

        async def publisher(number: int) -> None:
            for n in range(300):
                try:
                    [(_, event)] = await signal.asend(None, number=number, n=n)
                    returned.add(event.id)
                except PublishError as error:
                    raised.update(error.event_ids)
                    while True:
                        await asyncio.sleep(0.02)
                        try:
                            await remote.arepublish(error)
                            break
                        except PublishError:
                            pass

        tasks = [asyncio.create_task(publisher(number)) for number in range(8)]
        await asyncio.sleep(0.1)  # publishing
        await asyncio.to_thread(redis_server.kill)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(redis_server.start)
        await asyncio.wait_for(asyncio.gather(*tasks), PATIENCE)
        remote.disconnect()
        await transport.close()

    asyncio.run(main())
    assert raised  # the outage was met
    with RedisStreamsTransport(url=redis_server.url) as transport:
        messages = transport.read(stream, count=10_000)
    ids = Counter(json.loads(message.payload)["id"] for message in messages)
    assert set(ids) == returned | raised
    assert len(returned | raised) == 8 * 300
    assert {id for id, count in ids.items() if count > 1} <= raised | returned


def test_sigterm_stops_a_worker_after_it_acknowledges_the_batch_in_hand(lab: Lab) -> None:
    """SIGTERM mid-batch: the worker finishes and acknowledges the batch, says it stopped
    and exits 0; a worker started afterwards handles the rest, and nothing runs twice."""
    sent = lab.publish(3_000)
    first = lab.start_worker("first", sleep=0.001)
    lab.wait_until("a tenth of the events handled", lambda: len(lab.handled().ids) >= 300)

    held = lab.freeze_mid_batch(first)
    assert lab.stop(first) == 0

    assert "SIGTERM received, finishing the batch in hand" in first.logs()
    assert "Worker first stopped" in first.logs()
    assert lab.pending().count == 0
    handled = lab.handled()
    assert held <= handled.ids  # the batch in hand was finished
    assert len(handled.ids) < len(sent)  # and nothing after it

    lab.start_worker("second")
    handled = lab.wait_until_handled(sent)
    assert handled.ids == sent
    assert handled.duplicates == 0


def test_events_that_always_fail_are_dead_lettered_after_three_attempts(lab: Lab) -> None:
    """With --max-attempts 3, each event whose receiver always fails is moved to
    <stream>:dead with its error and attempts=3; every other event is handled."""
    doomed: set[str] = set()
    fine: set[str] = set()
    with lab.app.remote.batch(size=500):
        for n in range(1_000):
            fails = n % 100 == 7
            (doomed if fails else fine).add(lab.send(n, fail=fails))

    lab.start_worker("worker", "--max-attempts", "3", "--retry-delay", "0.05")
    lab.wait_until(
        "the failing events dead-lettered",
        lambda: len(lab.dead_letters()) == len(doomed) and lab.pending().count == 0,
    )

    dead = lab.dead_letters()
    assert {lab.event_id(message) for message in dead} == doomed
    for message in dead:
        assert message.headers["attempts"] == "3"
        assert message.headers["error"].startswith("WorkFailed: work ")
        assert message.headers["source-stream"] == lab.stream
    handled = lab.handled()
    assert handled.ids == fine
    assert handled.duplicates == 0


def test_an_async_worker_handles_1000_events(lab: Lab) -> None:
    """An app whose remote has an AsyncRedisStreamsTransport runs an AsyncWorker (a
    Worker would refuse it), which handles all 1,000 events and stops on SIGTERM."""
    worker = lab.start_worker("async", asynchronous=True)

    sent = lab.publish(1_000)

    handled = lab.wait_until_handled(sent)
    assert handled.ids == sent
    assert handled.by(worker) == sent
    assert lab.stop(worker) == 0
    assert "Worker async stopped" in worker.logs()


def test_only_events_that_kill_their_worker_are_dead_lettered_as_poison(lab: Lab) -> None:
    """5 events whose receiver SIGKILLs its worker, among 2,000 healthy ones, two workers
    restarted as they die: exactly the 5 end in the dead letters, as poison; every healthy
    event is handled, and none is dead-lettered for being reclaimed beside a poison one."""
    poison: set[str] = set()
    healthy: set[str] = set()
    with lab.app.remote.batch(size=500):
        for n in range(2_005):
            kills = n % 401 == 200
            (poison if kills else healthy).add(lab.send(n, kill=kills))
    assert len(poison) == 5

    options = ("--batch", "50", "--claim-after", "0.5", "--max-attempts", "3")
    running = [lab.start_worker(f"w{i}", *options) for i in range(2)]
    restarts = 0
    deadline = time.monotonic() + 120.0
    while not (
        len(lab.dead_letters()) >= len(poison)
        and healthy <= lab.handled().ids
        and lab.pending().count == 0
    ):
        assert time.monotonic() < deadline, f"not done after 120 s, {restarts} restarts\n{lab}"
        for index, worker in enumerate(running):
            if worker.process.poll() is not None:  # killed by a poison event: a new one
                worker.exiting = True
                restarts += 1
                running[index] = lab.start_worker(f"w{index}-{restarts}", *options)
        time.sleep(0.05)

    dead = lab.dead_letters()
    assert {lab.event_id(message) for message in dead} == poison
    for message in dead:
        assert message.headers["error"].startswith("poison: killed its worker 2 times")
    handled = lab.handled()
    assert handled.ids == healthy
    # Each poison event killed a worker once in a batch, then twice running alone.
    assert restarts == 3 * len(poison)
