#!/usr/bin/env python3
"""Throughput and latency of remote receivers on Redis Streams: tocsin against its peers.

    python benchmarks/bench_remote.py                  # the full run (a few minutes)
    python benchmarks/bench_remote.py --quick          # tiny counts, a few seconds: smoke test only
    python benchmarks/bench_remote.py --only tocsin,redis-py --events 20000
    python benchmarks/bench_remote.py --modes threads,tasks --workers 1
    python benchmarks/bench_remote.py --json out.json  # also write every number

The systems, the modes, the figures and the targets: benchmarks/README.md ("Remote
receivers on Redis Streams"). The workers run this module too: ``python -m tocsin worker
benchmarks/bench_remote.py:remote`` for tocsin, ``celery -A bench_remote:celery_app
worker`` for Celery, ``bench_remote.py --worker redis-py|rq`` for the others; they report
their counts through a pipe and write their records to a file when they stop.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import importlib
import json
import os
import select
import shutil
import signal as signals
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import redis
import redis.asyncio

import _harness as harness
from tocsin import Signal
from tocsin.remote import (
    AsyncRedisStreamsTransport,
    JSONSerializer,
    RedisStreamsTransport,
    Remote,
    current_event,
)

HERE = Path(__file__).resolve().parent
SYSTEMS = ("tocsin", "redis-py", "rq", "celery")
FLOOR = "redis-py"
MODES = {
    "one": "one by one",
    "batch": "batched",
    "threads": "8 threads, one by one",
    "tasks": "8 asyncio tasks, one by one",
}
PUBLISHERS = 8  # threads or tasks sending at once, one by one, in those modes
# The remote-receivers issue's targets, with one worker: concurrent publishers one by
# one, at least TARGET events/s published and end to end; batched, end to end at least
# BATCH_TARGET times the pipelined redis-py loop's.
TARGET = harness.Target(20_000, at_least=True, unit="/s")
CONCURRENT_MODES = ("threads", "tasks")
BATCH_TARGET = harness.Target(0.8, at_least=True)
SIGNAL_NAME = "bench_remote.item_saved"
GROUP = "bench"  # the consumer group of tocsin's workers and of the redis-py loop
WORKER_BATCH = 100  # events a worker reads at a time (tocsin's default)
EVENT = b"event"  # the stream entry's field, as tocsin's transport writes it

# What a worker process learns from its parent.
ROLE_ENV = "BENCH_REMOTE_ROLE"
URL_ENV = "BENCH_REMOTE_URL"
NAME_ENV = "BENCH_REMOTE_NAME"  # the stream or queue
FD_ENV = "BENCH_REMOTE_REPORT_FD"
RESULTS_ENV = "BENCH_REMOTE_RESULTS"
REPORT_EVERY = 0.01  # seconds between a worker's progress reports


@dataclass(frozen=True)
class Config:
    name: str
    events: int  # per round, tocsin and redis-py
    peer_events: int  # per round, rq and celery (at most `events`)
    rounds: int
    warmup: int  # events per warm-up step
    batch: int  # events per batch in the batched mode
    workers: tuple[int, ...]
    modes: tuple[str, ...] = tuple(MODES)  # the sending modes to run, of MODES


DEFAULT = Config(
    "default", events=50_000, peer_events=2_000, rounds=3, warmup=1_000, batch=100, workers=(1, 2)
)
QUICK = Config(
    "quick", events=500, peer_events=200, rounds=1, warmup=100, batch=100, workers=(1, 2)
)


# -- what the workers run ----------------------------------------------------------------


class Item:
    """The sender: a model class, as Django's ``post_save`` has."""


item_saved = Signal()  # the published signal; its receiver runs in the workers
# The same signal for the asyncio publisher (asend()), published under the same name
# by a Remote on the asyncio transport: the workers cannot tell them apart.
item_saved_async = Signal()


@dataclass(slots=True)
class Record:
    """What one worker saw of one round: when its first and last receiver ran,
    and each event's latency (seconds)."""

    sample: int
    first: float
    last: float
    latencies: list[float] = field(default_factory=list)
    # The worker process's CPU time (all its threads) at its first receiver, and
    # when its reporter last saw the count grow (at most REPORT_EVERY later).
    cpu_first: float = 0.0
    cpu_last: float = 0.0


class Recorder:
    """The receivers' bookkeeping, in a worker: an append per event, nothing else.

    A thread writes "<round> <count>" to the parent's pipe when the count
    changes; at exit, every record goes to a JSON file the parent reads.
    """

    def __init__(self) -> None:
        self.records: dict[int, Record] = {}
        self.sample = -1
        self.current = Record(-1, 0.0, 0.0)

    def add(self, sample: int, sent: float) -> None:
        now = time.time()
        record = self.current
        if sample != self.sample:
            record = self._switch(sample, now)
        record.latencies.append(now - sent)
        record.last = now

    def _switch(self, sample: int, now: float) -> Record:
        record = self.records.get(sample)
        if record is None:
            cpu = time.process_time()
            record = self.records[sample] = Record(sample, now, now, cpu_first=cpu, cpu_last=cpu)
        self.current = record
        self.sample = sample
        return record

    def start(self, fd: int, results: Path, role: str) -> None:
        os.set_blocking(fd, False)
        threading.Thread(target=self._report, args=(fd,), daemon=True).start()
        atexit.register(self._dump, results / f"{os.getpid()}.json", role)

    def _report(self, fd: int) -> None:
        parent = os.getppid()
        written = (-1, 0)
        while os.getppid() == parent:
            time.sleep(REPORT_EVERY)
            record = self.current  # one read: its round and count belong together
            now = (record.sample, len(record.latencies))
            if now != written:
                record.cpu_last = time.process_time()
                try:
                    os.write(fd, f"{now[0]} {now[1]}\n".encode())
                except BlockingIOError:  # the parent is busy sending: next time
                    continue
                except OSError:  # the pipe is closed: the parent is gone
                    break
                written = now
        os.kill(os.getpid(), signals.SIGTERM)  # orphaned: stop as the parent would

    def _dump(self, path: Path, role: str) -> None:
        records = {str(s): asdict(r) for s, r in self.records.items()}
        path.write_text(json.dumps({"pid": os.getpid(), "role": role, "records": records}))


RECORDER = Recorder()


def on_item_saved(sender: object, pk: int, sample: int, **kwargs: Any) -> None:
    """tocsin's receiver, connected in the tocsin workers."""
    event = current_event()
    assert event is not None
    RECORDER.add(sample, event.time)


def on_raw_event(sender: str, pk: int, sample: int, sent: float) -> None:
    """The redis-py loop's receiver."""
    RECORDER.add(sample, sent)


def on_rq_job(pk: int, sample: int, sent: float) -> None:
    """RQ's job function."""
    RECORDER.add(sample, sent)


def on_celery_task(pk: int, sample: int, sent: float) -> None:
    """Celery's task."""
    RECORDER.add(sample, sent)


def make_remote(url: str, stream: str) -> Remote:
    """The Remote both sides declare; item_saved is published under SIGNAL_NAME."""
    serializer = JSONSerializer()
    serializer.register_class(Item, name="bench_remote.Item")  # the sender, by name
    remote = Remote(RedisStreamsTransport(url=url), stream=stream, serializer=serializer)
    remote.publish(item_saved, name=SIGNAL_NAME)
    return remote


def make_celery(url: str, queue: str) -> tuple[Any, Any]:
    """A Celery app on the Redis broker whose default queue is *queue*, and its task."""
    celery = importlib.import_module("celery")
    app = celery.Celery("bench_remote", broker=url, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        task_ignore_result=True,
        # No pidbox queues in Redis: nothing here uses remote control.
        worker_enable_remote_control=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    task = app.task(name="bench_remote.on_celery_task")(on_celery_task)
    return app, task


remote: Remote | None = None  # what `python -m tocsin worker bench_remote.py:remote` runs
celery_app: Any = None  # what `celery -A bench_remote:celery_app worker` runs


def _setup_worker(role: str) -> None:
    """In a worker process: report to the parent, and declare what the worker runs."""
    global remote, celery_app
    url, name = os.environ[URL_ENV], os.environ[NAME_ENV]
    RECORDER.start(int(os.environ[FD_ENV]), Path(os.environ[RESULTS_ENV]), role)
    if role == "tocsin":
        remote = make_remote(url, name)
        item_saved.connect(on_item_saved)
    elif role == "celery":
        celery_app, _ = make_celery(url, name)


def raw_worker(url: str, stream: str) -> int:
    """The redis-py floor's worker: XREADGROUP 100 at a time, decode, call, XACK."""
    client = redis.Redis.from_url(url)
    consumer = f"raw-{os.getpid()}"
    stopping = threading.Event()
    signals.signal(signals.SIGTERM, lambda number, frame: stopping.set())
    loads, receiver = json.loads, on_raw_event
    while not stopping.is_set():
        reply: Any = client.xreadgroup(
            GROUP, consumer, {stream: ">"}, count=WORKER_BATCH, block=1000
        )
        if not reply:
            continue
        ids = []
        for message_id, fields in reply[0][1]:
            body = loads(fields[EVENT])
            receiver(body["sender"], sent=body["time"], **body["kwargs"])
            ids.append(message_id)
        client.xack(stream, GROUP, *ids)
    client.close()
    return 0


def rq_worker(url: str, queue_name: str) -> int:
    """RQ's worker that runs jobs in its own process (the default spawns one per job)."""
    rq = importlib.import_module("rq")
    connection = redis.Redis.from_url(url)
    queue = rq.Queue(queue_name, connection=connection)
    worker = rq.SimpleWorker([queue], connection=connection, name=f"{queue_name}-{os.getpid()}")
    worker.work(logging_level="WARNING", with_scheduler=False)
    return 0


# -- the systems, from the sending side --------------------------------------------------


class System:
    """One way of running the receiver in another process: how to publish, how to
    start a worker, what to check and clean afterwards."""

    name = ""
    modes: ClassVar[dict[str, str]] = {}  # mode -> what the sending loop does
    unsupported: ClassVar[dict[str, str]] = {}  # mode -> why there is no such mode

    def __init__(self, url: str, run_id: str, cfg: Config) -> None:
        self.url = url
        self.run_id = run_id  # in the name of every key the run makes
        self.key = f"bench-remote:{run_id}:{self.name}"  # the stream or queue
        self.cfg = cfg
        self.events = cfg.events
        self.client = redis.Redis.from_url(url)

    def prepare(self) -> None:
        """Before the workers start and anything is sent."""

    def worker_command(self, index: int) -> tuple[list[str], dict[str, str]]:
        """The command of worker number *index*, and environment variables to add."""
        command = [sys.executable, str(HERE / "bench_remote.py"), "--worker", self.name]
        return command, {}

    def publish(self, mode: str, sample: int, count: int) -> tuple[float, float]:
        """Send *count* events of round *sample*; return the wall time of the first
        send and the seconds the loop took."""
        raise NotImplementedError

    def check(self, published: int) -> None:
        """After the workers stopped: anything left undone raises."""

    def forget(self) -> None:
        """Delete what this system left in Redis."""
        keys = list(self.client.scan_iter(match=f"*{self.run_id}*", count=1000))
        for start in range(0, len(keys), 1000):
            self.client.delete(*keys[start : start + 1000])

    def close(self) -> None:
        self.client.close()


class TocsinSystem(System):
    name = "tocsin"
    modes: ClassVar[dict[str, str]] = {
        "one": "send(), an XADD each",
        "batch": "send() in remote.batch(size=100)",
        "threads": f"send() from {PUBLISHERS} threads",
        "tasks": f"await asend() from {PUBLISHERS} tasks",
    }

    def __init__(self, url: str, run_id: str, cfg: Config) -> None:
        super().__init__(url, run_id, cfg)
        self.remote = make_remote(url, self.key)  # once: it connects a publisher
        transport = self.remote.transport
        assert isinstance(transport, RedisStreamsTransport)
        self.transport = transport

    def prepare(self) -> None:
        self.transport.ensure_group(self.key, GROUP)

    def worker_command(self, index: int) -> tuple[list[str], dict[str, str]]:
        command = [sys.executable, "-m", "tocsin", "worker", f"{HERE / 'bench_remote.py'}:remote"]
        command += ["--group", GROUP, "--batch", str(WORKER_BATCH), "--log-level", "WARNING"]
        return [*command, "--consumer", f"{self.key}-{index}"], {}

    def publish(self, mode: str, sample: int, count: int) -> tuple[float, float]:
        send, sender = item_saved.send, Item
        if mode == "tasks":
            return asyncio.run(self._publish_from_tasks(sample, count))
        if mode == "threads":

            def send_all(pks: range) -> None:
                for pk in pks:
                    send(sender, pk=pk, sample=sample)

            return in_threads(send_all, count)
        if mode == "one":
            wall, t0 = time.time(), time.perf_counter()
            for pk in range(count):
                send(sender, pk=pk, sample=sample)
            return wall, time.perf_counter() - t0
        wall, t0 = time.time(), time.perf_counter()
        with self.remote.batch(size=self.cfg.batch):
            for pk in range(count):
                send(sender, pk=pk, sample=sample)
        return wall, time.perf_counter() - t0

    async def _publish_from_tasks(self, sample: int, count: int) -> tuple[float, float]:
        # A redis.asyncio client belongs to its event loop: a Remote per round.
        transport = AsyncRedisStreamsTransport(url=self.url)
        remote = Remote(transport, stream=self.key, serializer=self.remote.serializer)
        remote.publish(item_saved_async, name=SIGNAL_NAME)
        asend, sender = item_saved_async.asend, Item

        async def send_all(pks: range) -> None:
            for pk in pks:
                await asend(sender, pk=pk, sample=sample)

        try:
            return await in_tasks(send_all, count)
        finally:
            remote.disconnect()
            await transport.close()

    def check(self, published: int) -> None:
        _check_stream(self.client, self.key, published)

    def close(self) -> None:
        self.transport.close()
        super().close()


class RawSystem(System):
    name = "redis-py"
    modes: ClassVar[dict[str, str]] = {
        "one": "XADD per event",
        "batch": "XADD pipelined by 100",
        "threads": f"XADD per event from {PUBLISHERS} threads",
        "tasks": f"XADD per event from {PUBLISHERS} tasks (redis.asyncio)",
    }

    def prepare(self) -> None:
        with contextlib.suppress(redis.ResponseError):  # BUSYGROUP: it exists
            self.client.xgroup_create(self.key, GROUP, id="0", mkstream=True)

    def publish(self, mode: str, sample: int, count: int) -> tuple[float, float]:
        xadd, dumps, now, stream = self.client.xadd, json.dumps, time.time, self.key
        sender = "bench_remote:Item"
        if mode == "tasks":
            return asyncio.run(self._publish_from_tasks(sample, count))
        if mode == "threads":

            def send_all(pks: range) -> None:
                for pk in pks:
                    body = {"signal": SIGNAL_NAME, "sender": sender, "time": now()}
                    body["kwargs"] = {"pk": pk, "sample": sample}
                    xadd(stream, {EVENT: dumps(body).encode()})

            return in_threads(send_all, count)
        if mode == "one":
            wall, t0 = time.time(), time.perf_counter()
            for pk in range(count):
                body = {"signal": SIGNAL_NAME, "sender": sender, "time": now()}
                body["kwargs"] = {"pk": pk, "sample": sample}
                xadd(stream, {EVENT: dumps(body).encode()})
            return wall, time.perf_counter() - t0
        size = self.cfg.batch
        wall, t0 = time.time(), time.perf_counter()
        pipe = self.client.pipeline(transaction=False)
        for pk in range(count):
            body = {"signal": SIGNAL_NAME, "sender": sender, "time": now()}
            body["kwargs"] = {"pk": pk, "sample": sample}
            pipe.xadd(stream, {EVENT: dumps(body).encode()})
            if len(pipe) >= size:
                pipe.execute()
        pipe.execute()
        return wall, time.perf_counter() - t0

    async def _publish_from_tasks(self, sample: int, count: int) -> tuple[float, float]:
        client = redis.asyncio.Redis.from_url(self.url)
        xadd, dumps, now, stream = client.xadd, json.dumps, time.time, self.key

        async def send_all(pks: range) -> None:
            for pk in pks:
                body = {"signal": SIGNAL_NAME, "sender": "bench_remote:Item", "time": now()}
                body["kwargs"] = {"pk": pk, "sample": sample}
                await xadd(stream, {EVENT: dumps(body).encode()})

        try:
            return await in_tasks(send_all, count)
        finally:
            await client.aclose()

    def check(self, published: int) -> None:
        _check_stream(self.client, self.key, published)


async def in_tasks(send_all: Any, count: int) -> tuple[float, float]:
    """:func:`in_threads` with PUBLISHERS asyncio tasks in one event loop."""
    wall, t0 = time.time(), time.perf_counter()
    await asyncio.gather(
        *(send_all(range(first, count, PUBLISHERS)) for first in range(PUBLISHERS))
    )
    return wall, time.perf_counter() - t0


def in_threads(send_all: Any, count: int) -> tuple[float, float]:
    """Send events 0..count-1 from PUBLISHERS threads at once, each its share one by
    one (``send_all(range)``); the wall time of the start and the seconds until the
    last thread is done. The threads are started before the clock."""
    go = threading.Barrier(PUBLISHERS + 1)

    def run(first: int) -> None:
        go.wait()
        send_all(range(first, count, PUBLISHERS))

    threads = [threading.Thread(target=run, args=(t,)) for t in range(PUBLISHERS)]
    for thread in threads:
        thread.start()
    wall, t0 = time.time(), time.perf_counter()
    go.wait()
    for thread in threads:
        thread.join()
    return wall, time.perf_counter() - t0


class RqSystem(System):
    name = "rq"
    modes: ClassVar[dict[str, str]] = {
        "one": "enqueue() per event",
        "batch": "enqueue_many() by 100, pipelined",
    }
    unsupported: ClassVar[dict[str, str]] = {"threads": "not measured", "tasks": "not measured"}

    def __init__(self, url: str, run_id: str, cfg: Config) -> None:
        super().__init__(url, run_id, cfg)
        self.rq = importlib.import_module("rq")
        self.events = min(cfg.events, cfg.peer_events)
        self.queue = self.rq.Queue(self.key, connection=self.client)

    def publish(self, mode: str, sample: int, count: int) -> tuple[float, float]:
        # Job ids of our own, so that forget() finds every key the jobs leave.
        ids = f"bench-remote-{self.run_id}-{sample}-"
        func = "bench_remote.on_rq_job"
        if mode == "one":
            enqueue = self.queue.enqueue
            wall, t0 = time.time(), time.perf_counter()
            for pk in range(count):
                enqueue(func, pk=pk, sample=sample, sent=time.time(), job_id=f"{ids}{pk}")
            return wall, time.perf_counter() - t0
        prepare, size = self.rq.Queue.prepare_data, self.cfg.batch
        wall, t0 = time.time(), time.perf_counter()
        held: list[Any] = []
        for pk in range(count):
            kwargs = {"pk": pk, "sample": sample, "sent": time.time()}
            held.append(prepare(func, kwargs=kwargs, job_id=f"{ids}{pk}"))
            if len(held) >= size:
                self._enqueue_many(held)
                held = []
        if held:
            self._enqueue_many(held)
        return wall, time.perf_counter() - t0

    def _enqueue_many(self, held: list[Any]) -> None:
        with self.client.pipeline() as pipe:
            self.queue.enqueue_many(held, pipeline=pipe)
            pipe.execute()

    def check(self, published: int) -> None:
        registry = importlib.import_module("rq.registry")
        failed = registry.FailedJobRegistry(queue=self.queue).count
        if failed or self.queue.count:
            raise RuntimeError(f"rq: {failed} failed jobs, {self.queue.count} left in the queue")

    def forget(self) -> None:
        self.client.srem("rq:queues", self.queue.key)
        super().forget()


class CelerySystem(System):
    name = "celery"
    modes: ClassVar[dict[str, str]] = {"one": "delay() per event"}
    unsupported: ClassVar[dict[str, str]] = {
        "batch": "no batched publish",
        "threads": "not measured",
        "tasks": "not measured",
    }

    def __init__(self, url: str, run_id: str, cfg: Config) -> None:
        super().__init__(url, run_id, cfg)
        self.events = min(cfg.events, cfg.peer_events)
        self.app, self.task = make_celery(url, self.key)

    def worker_command(self, index: int) -> tuple[list[str], dict[str, str]]:
        command = [sys.executable, "-m", "celery", "-A", "bench_remote:celery_app", "worker"]
        command += ["--pool=solo", "--concurrency=1", "--loglevel=WARNING", "-Q", self.key]
        command += ["-n", f"bench{index}@%h", "--without-gossip", "--without-mingle"]
        command += ["--without-heartbeat"]
        path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
        return command, {"PYTHONPATH": path}

    def publish(self, mode: str, sample: int, count: int) -> tuple[float, float]:
        delay = self.task.delay
        wall, t0 = time.time(), time.perf_counter()
        for pk in range(count):
            delay(pk=pk, sample=sample, sent=time.time())
        return wall, time.perf_counter() - t0

    def close(self) -> None:
        self.app.close()
        super().close()


SYSTEM_CLASSES: dict[str, type[System]] = {
    "tocsin": TocsinSystem,
    "redis-py": RawSystem,
    "rq": RqSystem,
    "celery": CelerySystem,
}
PEER_PACKAGES = {"rq": ("rq",), "celery": ("celery", "kombu")}


def _check_stream(client: redis.Redis, stream: str, published: int) -> None:
    """Every event was added, delivered to the group and acknowledged. (Not XLEN: the
    worker trims acknowledged events; entries-added counts every XADD, Redis 7+.)"""
    info: Any = client.xinfo_stream(stream)
    groups: Any = client.xinfo_groups(stream)
    group = next(g for g in groups if g["name"] in (GROUP, GROUP.encode()))
    added = info.get("entries-added", info["length"])
    delivered = group["last-delivered-id"] == info["last-generated-id"]
    if added != published or not delivered or group["pending"]:
        raise RuntimeError(
            f"{stream}: {added} events added of {published} published, "
            f"{'all' if delivered else 'not all'} delivered, {group['pending']} unacknowledged"
        )


# -- worker processes --------------------------------------------------------------------


class WorkerProcess:
    """One worker, its progress pipe and its log."""

    def __init__(self, system: System, index: int, results: Path) -> None:
        self.index = index
        read_end, write_end = os.pipe()
        self.fd = read_end
        self.buffer = b""
        self.counts: dict[int, int] = {}  # round -> events its receiver ran
        self.terminated = False
        self.log = results / f"{system.name}-{index}.log"
        command, extra = system.worker_command(index)
        env = {
            **os.environ,
            **extra,
            ROLE_ENV: system.name,
            URL_ENV: system.url,
            NAME_ENV: system.key,
            FD_ENV: str(write_end),
            RESULTS_ENV: str(results),
        }
        try:
            with self.log.open("wb") as log:
                self.proc = subprocess.Popen(
                    command,
                    env=env,
                    pass_fds=(write_end,),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=HERE.parent,
                )
        finally:
            os.close(write_end)
        os.set_blocking(read_end, False)

    def read(self) -> None:
        """Take in the reports waiting in the pipe."""
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            if not data:
                return
            lines = (self.buffer + data).split(b"\n")
            self.buffer = lines.pop()
            for line in lines:
                sample, count = map(int, line.split())
                self.counts[sample] = max(count, self.counts.get(sample, 0))

    def output(self) -> str:
        """The end of what the worker printed."""
        text = self.log.read_text(errors="replace").strip()
        return "\n".join(text.splitlines()[-30:])

    def terminate(self) -> None:
        """Ask the worker to stop, once: a second SIGTERM stops a tocsin worker at once,
        or kills it after its handler is gone, before it writes its results."""
        if not self.terminated and self.proc.poll() is None:
            self.proc.terminate()
        self.terminated = True

    def stop(self) -> None:
        self.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Pool:
    """The workers of one system, started and warmed up; the rounds sent to them."""

    def __init__(self, system: System, count: int, results: Path) -> None:
        self.system = system
        self.results = results
        self.workers: list[WorkerProcess] = []
        self.sample = 0  # round 0 is the warm-up
        self.published = 0
        self.runs: list[Run] = []
        for index in range(count):
            self.workers.append(WorkerProcess(system, index, results))

    def warm_up(self, events: int, timeout: float = 60.0) -> bool:
        """Send warm-up events until every worker has run some: one still starting
        gets none, so try again until it is up (for at most *timeout* seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            wanted = sum(w.counts.get(0, 0) for w in self.workers) + events
            self.system.publish("one", 0, events)
            self.published += events
            self.wait(0, wanted, timeout=60 + events / 100)
            if all(w.counts.get(0, 0) for w in self.workers):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)

    def run(self, mode: str, count: int) -> None:
        self.sample += 1
        load, cpu = os.getloadavg()[0], time.process_time()
        wall, seconds = self.system.publish(mode, self.sample, count)
        cpu = time.process_time() - cpu
        self.published += count
        self.wait(self.sample, count, timeout=60 + count / 100)
        self.runs.append(Run(mode, self.sample, count, wall, seconds, cpu, load))

    def wait(self, sample: int, expected: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        fds = [w.fd for w in self.workers]
        while True:
            for worker in self.workers:
                worker.read()
            done = sum(w.counts.get(sample, 0) for w in self.workers)
            if done == expected:
                return
            if done > expected:
                raise RuntimeError(f"{self.system.name}: {done} events received of {expected}")
            for worker in self.workers:
                if worker.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.system.name} worker {worker.index} exited "
                        f"({worker.proc.returncode}):\n{worker.output()}"
                    )
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{self.system.name}: {done} of {expected} events received after "
                    f"{timeout:.0f} s; worker output:\n"
                    + "\n".join(w.output() for w in self.workers)
                )
            select.select(fds, [], [], min(left, 0.5))

    def stop(self) -> dict[int, list[Record]]:
        """Stop the workers; the records each left, by round."""
        for worker in self.workers:
            worker.terminate()
        records: dict[int, list[Record]] = {}
        for worker in self.workers:
            worker.stop()
            path = self.results / f"{worker.proc.pid}.json"
            if not path.exists():
                raise RuntimeError(
                    f"{self.system.name} worker {worker.index} left no results "
                    f"(exit {worker.proc.returncode}):\n{worker.output()}"
                )
            data = json.loads(path.read_text())
            for sample, record in data["records"].items():
                records.setdefault(int(sample), []).append(Record(**record))
        return records


# -- figures -----------------------------------------------------------------------------


@dataclass
class Run:
    """What the sending side knows of one round, until the workers' records come."""

    mode: str
    sample: int  # the round's number
    events: int
    wall: float  # time.time() at the first send
    seconds: float  # of the sending loop
    cpu: float  # seconds of CPU this process (all its threads) spent in the loop
    load: float  # the 1-minute load average as the round started


@dataclass
class Round:
    """One round of one scenario."""

    events: int
    publish: float  # events/s
    end_to_end: float
    consume: float
    p50_ms: float
    p99_ms: float
    send_cpu_us: float  # CPU of the sending process per event, in the loop
    worker_cpu_us: float  # CPU of the worker processes per event, first to last receiver
    load: float  # 1-minute load average at the start of the round


@dataclass
class Scenario:
    system: str
    mode: str
    workers: int
    title: str
    events: int = 0
    rounds: list[Round] = field(default_factory=list)
    note: str = ""  # why it did not run

    def median(self, name: str) -> float | None:
        if not self.rounds:
            return None
        return harness.median(getattr(r, name) for r in self.rounds)


def figures(run: Run, records: list[Record]) -> Round:
    count, wall, seconds = run.events, run.wall, run.seconds
    latencies = [latency for r in records for latency in r.latencies]
    if len(latencies) != count:
        raise RuntimeError(f"{len(latencies)} latencies recorded for {count} events")
    first = min(r.first for r in records)
    last = max(r.last for r in records)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return Round(
        events=count,
        publish=count / seconds,
        end_to_end=count / (last - wall),
        consume=count / (last - first) if last > first else float("inf"),
        p50_ms=cuts[49] * 1000,
        p99_ms=cuts[98] * 1000,
        send_cpu_us=run.cpu / count * 1e6,
        worker_cpu_us=sum(r.cpu_last - r.cpu_first for r in records) / count * 1e6,
        load=run.load,
    )


def _scenarios(systems: list[System], workers: int, cfg: Config) -> dict[tuple[str, str], Scenario]:
    """The scenarios of *cfg*'s modes for each system, those it cannot run with a note."""
    scenarios = {
        (s.name, mode): Scenario(s.name, mode, workers, title)
        for s in systems
        for mode, title in s.modes.items()
        if mode in cfg.modes
    }
    for s in systems:
        for mode, why in s.unsupported.items():
            if mode in cfg.modes:
                scenarios[s.name, mode] = Scenario(s.name, mode, workers, MODES[mode], note=why)
    return scenarios


def measure(
    systems: list[System], workers: int, cfg: Config, results: Path
) -> tuple[list[Scenario], list[str]]:
    """Every system's scenarios with *workers* workers each, the systems taking turns."""
    scenarios = _scenarios(systems, workers, cfg)
    notes: list[str] = []
    pools: list[Pool] = []
    try:
        for system in systems:
            system.prepare()
            pools.append(Pool(system, workers, results))
        for pool in pools:
            if not pool.warm_up(cfg.warmup):
                notes.append(f"not every {pool.system.name} worker got warm-up events")
        for pool in harness.turns(pools, cfg.rounds):
            for mode in (m for m in pool.system.modes if m in cfg.modes):
                pool.run(mode, pool.system.events)
    except BaseException:
        for pool in pools:
            with contextlib.suppress(Exception):
                pool.stop()
        raise
    for pool, records in stop_all(pools):
        pool.system.check(pool.published)
        for run in pool.runs:
            scenario = scenarios[pool.system.name, run.mode]
            scenario.events = run.events
            scenario.rounds.append(figures(run, records.get(run.sample, [])))
    return list(scenarios.values()), notes


def stop_all(pools: list[Pool]) -> list[tuple[Pool, dict[int, list[Record]]]]:
    """Stop every pool, even after one failed to; the records of each."""
    collected = []
    failure: Exception | None = None
    for pool in pools:
        try:
            collected.append((pool, pool.stop()))
        except Exception as error:
            failure = failure or error
    if failure is not None:
        raise failure
    return collected


# -- output ------------------------------------------------------------------------------


def header(
    cfg: Config, url: str, server: str, systems: list[str], skipped: dict[str, str]
) -> dict[str, Any]:
    load = os.getloadavg()
    packages = {"redis_py": "redis", "hiredis": "hiredis", "rq": "rq", "celery": "celery"}
    v = {key: harness.version(name) for key, name in {**packages, "kombu": "kombu"}.items()}
    tocsin = harness.version("tocsin")
    hiredis = f" with hiredis {v['hiredis']}" if v["hiredis"] else " (no hiredis)"
    peers = {"rq": f"rq {v['rq']}", "celery": f"celery {v['celery']} (kombu {v['kombu']})"}
    shown = [text for name, text in peers.items() if name in systems]
    info = harness.header(
        {"tocsin": tocsin},
        before=[("redis", f"server {server} at {url}; redis-py {v['redis_py']}{hiredis}")],
        after=[
            *([("peers", ", ".join(shown))] if shown else []),
            *(("note", f"{name} skipped: {why}") for name, why in skipped.items()),
            ("load", f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1, 5, 15 min) at start"),
            (
                "mode",
                f"{cfg.name}: {cfg.events:,} events per round (rq and celery "
                f"{min(cfg.events, cfg.peer_events):,}), {cfg.rounds} round(s) per scenario, "
                f"median reported; batches of {cfg.batch}; workers read {WORKER_BATCH} at a time",
            ),
        ],
    )
    return {**info, "tocsin": tocsin, "redis_server": server, **v, "load_at_start": load}


def floor_ratio(
    scenarios: list[Scenario], scenario: Scenario, figure: str = "end_to_end"
) -> float | None:
    floor = next(
        (s for s in scenarios if s.system == FLOOR and s.mode == scenario.mode and s.rounds), None
    )
    mine, base = scenario.median(figure), floor.median(figure) if floor else None
    return None if mine is None or base is None else mine / base


COLUMNS = harness.columns(
    ("scenario", 46),
    ("events", 8),
    ("publish/s", 11),
    ("end-to-end/s", 14),
    ("consume/s", 11),
    ("p50 ms", 8),
    ("p99 ms", 8),
    ("pub/floor", 11),
    ("e2e/floor", 11),
    ("send us", 9),
    ("work us", 9),
    ("load", 6),
)
# Each figure of a row after its events: the Scenario.median() name, and its format.
FIGURES = (
    ("publish", ",.0f"),
    ("end_to_end", ",.0f"),
    ("consume", ",.0f"),
    ("p50_ms", ".2f"),
    ("p99_ms", ".2f"),
)
COSTS = (("send_cpu_us", ".1f"), ("worker_cpu_us", ".1f"), ("load", ".2f"))


def table_row(scenarios: list[Scenario], s: Scenario) -> list[str]:
    title = f"{s.system}, {s.title}"
    if not s.rounds:
        return [title, "n/a", f"   ({s.note})"]
    cells = [title, f"{s.events:,}"]
    cells += [harness.fmt(s.median(name), spec, missing="n/a") for name, spec in FIGURES]
    for figure in ("publish", "end_to_end"):
        cells.append(harness.fmt_ratio(floor_ratio(scenarios, s, figure), missing="n/a "))
    cells += [harness.fmt(s.median(name), spec, missing="n/a") for name, spec in COSTS]
    return cells


def print_scenarios(workers: int, scenarios: list[Scenario], notes: list[str]) -> None:
    plural = "s" if workers > 1 else ""
    harness.heading(f"{workers} worker{plural}: events/s, and ms from send to receiver")
    harness.print_table(COLUMNS, [table_row(scenarios, s) for s in scenarios])
    for note in notes:
        print(f"   note: {note}")
    sys.stdout.flush()


def summarize(scenarios: list[Scenario]) -> list[dict[str, Any]]:
    """tocsin's rows with one worker, each against its mode's target (TARGETS)."""
    rows = []
    for s in scenarios:
        if s.system != "tocsin" or s.workers != 1 or not s.rounds:
            continue
        publish, e2e = s.median("publish"), s.median("end_to_end")
        assert publish is not None
        assert e2e is not None
        row: dict[str, Any] = {
            "scenario": f"{s.system}, {s.title}",
            "mode": s.mode,
            "publish": publish,
            "end_to_end": e2e,
            "end_to_end_vs_floor": floor_ratio(scenarios, s),
            "target": None,
            "verdict": "no target",
        }
        if s.mode in CONCURRENT_MODES:
            row["target"] = f"{TARGET.text} published and end to end"
            row["verdict"] = TARGET.verdict(min(publish, e2e))
        elif s.mode == "batch" and row["end_to_end_vs_floor"] is not None:
            row["target"] = f"{BATCH_TARGET.text} the floor end to end"
            row["verdict"] = BATCH_TARGET.verdict(row["end_to_end_vs_floor"])
        rows.append(row)
    return rows


def print_summary(rows: list[dict[str, Any]], rounds: int) -> None:
    plural = "s" if rounds > 1 else ""
    harness.heading(f"SUMMARY: the targets, 1 worker (median of {rounds} round{plural})")
    for row in rows:
        ratio = row["end_to_end_vs_floor"]
        versus = "" if ratio is None else f" ({ratio:.2f}x the floor)"
        target = f"   target {row['target']}" if row["target"] else ""
        print(
            f"   {row['scenario']:<46}published {row['publish']:>9,.0f}/s"
            f"   end to end {row['end_to_end']:>9,.0f}/s{versus}{target}   {row['verdict']}"
        )
    if not rows:
        print("   tocsin was not run with one worker: no verdict")


# -- main --------------------------------------------------------------------------------


def load_systems(
    names: list[str], url: str, run_id: str, cfg: Config
) -> tuple[list[System], dict[str, str]]:
    systems: list[System] = []
    skipped: dict[str, str] = {}
    for name in names:
        missing = [p for p in PEER_PACKAGES.get(name, ()) if not harness.importable(p)]
        if missing:
            skipped[name] = f"not installed ({', '.join(missing)}): pip install -e . --group bench"
            continue
        systems.append(SYSTEM_CLASSES[name](url, run_id, cfg))
    return systems, skipped


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Config]:
    args_parser = harness.parser(__doc__)
    config = harness.config_options(
        args_parser,
        QUICK,
        DEFAULT,
        events="events per round",
        peer_events="events per round for rq and celery",
        rounds="rounds per scenario",
    )
    args_parser.add_argument(
        "--workers", default="", help="worker counts, comma-separated (default 1,2)"
    )
    args_parser.add_argument(
        "--only", default="", help=f"systems to run, comma-separated, of {', '.join(SYSTEMS)}"
    )
    args_parser.add_argument(
        "--url",
        default=os.environ.get("TOCSIN_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="the Redis server (default: TOCSIN_REDIS_URL, else redis://127.0.0.1:6379/0)",
    )
    args_parser.add_argument(
        "--modes", default="", help=f"sending modes to run, comma-separated, of {', '.join(MODES)}"
    )
    args_parser.add_argument("--worker", choices=("redis-py", "rq"), help=argparse.SUPPRESS)
    args = args_parser.parse_args(argv)
    args.systems = harness.comma_list(args_parser, "--only", args.only, SYSTEMS) or list(SYSTEMS)
    modes = tuple(harness.comma_list(args_parser, "--modes", args.modes, MODES))
    try:
        workers = tuple(int(n) for n in args.workers.split(",") if n.strip())
    except ValueError:
        args_parser.error("--workers takes numbers: 1,2")
    if any(n <= 0 for n in workers):
        args_parser.error("--workers: counts must be positive")
    return args, config(args, workers=workers or None, modes=modes or None)


MEDIANS = [figure for figure, _ in (*FIGURES, *COSTS)]


def scenario_json(everything: list[Scenario], s: Scenario) -> dict[str, Any]:
    """What the JSON file keeps of a scenario: its medians, its ratios to the floor with
    the same workers, every round."""
    same_workers = [t for t in everything if t.workers == s.workers]
    return {
        "system": s.system,
        "mode": s.mode,
        "workers": s.workers,
        "title": s.title,
        "events": s.events,
        "note": s.note,
        "median": {name: s.median(name) for name in MEDIANS},
        "end_to_end_vs_floor": floor_ratio(same_workers, s),
        "publish_vs_floor": floor_ratio(same_workers, s, "publish"),
        "rounds": [asdict(r) for r in s.rounds],
    }


def main(argv: list[str] | None = None) -> int:
    args, cfg = parse_args(argv)
    if args.worker:
        stream = os.environ[NAME_ENV]
        work = raw_worker if args.worker == "redis-py" else rq_worker
        return work(os.environ[URL_ENV], stream)
    if cfg.events < 2 or cfg.peer_events < 2:
        sys.exit("bench_remote: a round needs at least 2 events")
    try:
        with redis.Redis.from_url(args.url, socket_connect_timeout=2) as client:
            server = str(client.info("server")["redis_version"])
    except redis.RedisError as err:
        print(f"bench_remote: Redis is not reachable at {args.url}: {err}", file=sys.stderr)
        return 2

    harness.exit_on_sigterm()  # stops the workers and cleans Redis up, as Ctrl-C does
    started = time.perf_counter()
    run_id = uuid.uuid4().hex[:12]  # in every key the run makes
    systems, skipped = load_systems(args.systems, args.url, run_id, cfg)
    info = header(cfg, args.url, server, [s.name for s in systems], skipped)
    info["run_id"] = run_id
    all_scenarios: list[Scenario] = []
    results = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    try:
        for workers in cfg.workers:
            scenarios, notes = measure(systems, workers, cfg, results)
            print_scenarios(workers, scenarios, notes)
            all_scenarios += scenarios
            for system in systems:  # a fresh stream and queue for the next worker count
                system.forget()
    finally:
        for system in systems:
            system.forget()
            system.close()
        shutil.rmtree(results, ignore_errors=True)
    rows = summarize(all_scenarios)
    print_summary(rows, cfg.rounds)
    load = os.getloadavg()
    harness.finish(
        started,
        args.json,
        cfg,
        info,
        f"; load {load[0]:.2f} at the end",
        skipped=skipped,
        load_at_end=load,
        scenarios=[scenario_json(all_scenarios, s) for s in all_scenarios],
        summary=rows,
    )
    return 0


_role = os.environ.get(ROLE_ENV)
if _role and __name__ != "__main__":
    _setup_worker(_role)


if __name__ == "__main__":
    # Run as the module ``bench_remote`` (this directory is on sys.path), so that the
    # sender class and the job functions have the import path the workers use.
    sys.exit(importlib.import_module("bench_remote").main())
