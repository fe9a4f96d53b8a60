"""A bounded stress test of ``tocsin.dispatcher`` under threads.

Eight threads connect, disconnect and send on three shared signals at once,
for about two seconds (or a fixed number of rounds, whichever ends first).
Every send passes a fresh list in which each receiver it calls records itself,
so a receiver called twice, or not called, is seen by the very send that
went wrong:

* *permanent* receivers are connected before the threads start and never
  disconnected: each must be called exactly once by every send it matches,
  in connection order;
* each thread has its own *temporary* receivers, which only that thread
  connects and disconnects: each must be called exactly once when the thread
  has it connected, and never otherwise;
* receivers and senders that a thread creates and then drops exercise the
  weak-reference callbacks; they must all be collected at the end.

Each receiver also counts its calls per thread, and the totals must match
what the sends expected.
"""

from __future__ import annotations

import gc
import random
import sys
import threading
import time
import traceback
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tocsin import Signal

THREADS = 8
DURATION = 2.0  # seconds; each thread also stops after MAX_ROUNDS rounds
MAX_ROUNDS = 50_000


class Sender:
    """A weakly referenceable sender."""


class Recorder:
    """A receiver that records its name in the send's ``hits`` and counts its calls per thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = [0] * THREADS  # one counter per thread: no two threads write the same one

    def __call__(self, **kwargs: Any) -> str:
        return self.record(**kwargs)

    def record(self, *, hits: list[str], thread: int, **kwargs: Any) -> str:
        self.calls[thread] += 1
        hits.append(self.name)
        return self.name


@contextmanager
def fast_thread_switching() -> Iterator[None]:
    """Make the interpreter switch threads often, to provoke more interleavings."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


class World:
    """The shared signals, senders and permanent receivers, and what each send must call."""

    def __init__(self) -> None:
        self.signals = [Signal() for _ in range(3)]
        self.first, self.second = Sender(), Sender()
        # (signal index, sender or None, receiver) in connection order.
        self.permanent: list[tuple[int, Sender | None, Recorder]] = []
        for index, signal in enumerate(self.signals):
            for label, sender, weak, method in [
                ("any, weak", None, True, False),
                ("first, weak", self.first, True, False),
                ("any, strong", None, False, False),
                ("second, strong", self.second, False, False),
                ("any, bound method", None, True, True),
                ("first, bound method", self.first, True, True),
            ]:
                recorder = Recorder(f"permanent {index}: {label}")
                receiver = recorder.record if method else recorder
                signal.connect(receiver, sender=sender, weak=weak)
                self.permanent.append((index, sender, recorder))
        # How many calls each permanent receiver must have had, per thread.
        self.expected_calls: dict[str, list[int]] = {
            recorder.name: [0] * THREADS for _, _, recorder in self.permanent
        }

    def permanent_for(self, index: int, sender: object) -> list[str]:
        """Names of the permanent receivers ``signals[index].send(sender)`` must call, in order."""
        return [
            recorder.name
            for signal_index, connected_sender, recorder in self.permanent
            if signal_index == index and connected_sender in (None, sender)
        ]


class Worker:
    """One thread's work: random operations, each checked at once."""

    def __init__(self, world: World, thread: int, deadline: float) -> None:
        self.world = world
        self.thread = thread
        self.deadline = deadline
        self.random = random.Random(thread)
        self.rounds = 0
        # This thread's temporary receivers: name -> (signal index, sender or None).
        self.temporaries = {
            f"thread {thread}: temporary {k}": (k % 3, [None, world.first, world.second][k % 3])
            for k in range(6)
        }
        self.temporary_receivers = {name: Recorder(name) for name in self.temporaries}
        # What this thread has connected right now: name -> (signal index, sender or None).
        self.connected: dict[str, tuple[int, object]] = {}
        self.dropped: list[weakref.ref[Any]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        try:
            while self.rounds < MAX_ROUNDS and time.monotonic() < self.deadline:
                self.rounds += 1
                self.step()
        except BaseException:
            self.errors.append(traceback.format_exc())

    def step(self) -> None:
        roll = self.random.random()
        if roll < 0.5:
            index = self.random.randrange(3)
            sender = self.random.choice([None, self.world.first, self.world.second, Sender()])
            self.send_and_check(index, sender)
        elif roll < 0.8:
            self.toggle_temporary()
        elif roll < 0.9:
            self.drop_receiver()
        elif roll < 0.95:
            self.drop_sender()
        else:
            index = self.random.randrange(3)
            assert self.world.signals[index].has_listeners()
            assert self.world.signals[index].has_listeners(self.world.first)

    def send_and_check(self, index: int, sender: object) -> list[str]:
        """Send, and check that every receiver that must be called was, exactly once."""
        signal = self.world.signals[index]
        hits: list[str] = []
        robust = self.random.random() < 0.2
        send = signal.send_robust if robust else signal.send
        results = send(sender, hits=hits, thread=self.thread)
        assert [response for _, response in results] == hits
        counts = Counter(hits)
        assert max(counts.values(), default=1) == 1, f"called twice: {counts}"
        permanent = self.world.permanent_for(index, sender)
        assert [name for name in hits if name in permanent] == permanent, (
            f"permanent receivers lost or out of order: {hits}"
        )
        for name in permanent:
            self.world.expected_calls[name][self.thread] += 1
        for name in self.temporaries:
            connection = self.connected.get(name)
            must_call = connection is not None and connection[0] == index
            must_call = must_call and connection is not None and connection[1] in (None, sender)
            assert counts[name] == int(must_call), f"{name}: {counts[name]} calls"
        return hits

    def toggle_temporary(self) -> None:
        """Connect or disconnect one of this thread's temporary receivers."""
        name = self.random.choice(list(self.temporaries))
        index, sender = self.temporaries[name]
        signal = self.world.signals[index]
        receiver = self.temporary_receivers[name]
        if name in self.connected:
            assert signal.disconnect(receiver, sender=sender) is True
            del self.connected[name]
        else:
            signal.connect(receiver, sender=sender, weak=self.random.random() < 0.5)
            self.connected[name] = (index, sender)

    def drop_receiver(self) -> None:
        """Connect a receiver weakly, check that it is called, and let it go."""
        index = self.random.randrange(3)
        sender = self.random.choice([None, self.world.first])
        name = f"thread {self.thread}: dropped {self.rounds}"
        recorder = Recorder(name)
        if self.random.random() < 0.5:
            self.world.signals[index].connect(recorder, sender=sender)
        else:
            self.world.signals[index].connect(recorder.record, sender=sender)
        hits = self.send_and_check(index, sender)
        assert hits.count(name) == 1
        self.dropped.append(weakref.ref(recorder))
        del recorder

    def drop_sender(self) -> None:
        """Connect a receiver strongly for a new sender, send from it, and let the sender go."""
        index = self.random.randrange(3)
        sender = Sender()
        name = f"thread {self.thread}: for dropped sender {self.rounds}"
        recorder = Recorder(name)
        self.world.signals[index].connect(recorder, sender=sender, weak=False)
        hits = self.send_and_check(index, sender)
        assert hits.count(name) == 1
        self.dropped.append(weakref.ref(recorder))
        self.dropped.append(weakref.ref(sender))
        del recorder, sender


def test_concurrent_connect_disconnect_and_send() -> None:
    """Eight threads connecting, disconnecting and sending lose no receiver and call none twice."""
    world = World()
    deadline = time.monotonic() + DURATION
    workers = [Worker(world, thread, deadline) for thread in range(THREADS)]
    threads = [threading.Thread(target=worker.run) for worker in workers]
    with fast_thread_switching():
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    errors = [error for worker in workers for error in worker.errors]
    assert errors == [], "\n".join(errors)
    assert all(worker.rounds > 100 for worker in workers)

    # Every permanent receiver was called exactly as often as the sends required.
    for _, _, recorder in world.permanent:
        assert recorder.calls == world.expected_calls[recorder.name], recorder.name

    # Everything dropped is collected once the signals purge their dead connections.
    for signal in world.signals:
        signal.connect(Recorder("purge"), weak=False, dispatch_uid="purge")
    gc.collect()
    dropped = [ref for worker in workers for ref in worker.dropped]
    assert dropped
    assert [ref for ref in dropped if ref() is not None] == []

    # What is left connected is the permanent receivers and what each thread left connected.
    for index, signal in enumerate(world.signals):
        hits: list[str] = []
        signal.send(world.first, hits=hits, thread=0)
        left_connected = {
            name
            for worker in workers
            for name, (signal_index, sender) in worker.connected.items()
            if signal_index == index and sender in (None, world.first)
        }
        assert sorted(hits) == sorted(
            [*world.permanent_for(index, world.first), *left_connected, "purge"]
        )
