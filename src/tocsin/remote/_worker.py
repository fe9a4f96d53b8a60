"""Workers: read remote events from a stream and run them here.

A :class:`Worker` is one consumer of a consumer group (many workers in one
group share the events; each event goes to one of them). For each event it
runs the receivers (:meth:`tocsin.remote.Remote.handle`) and acknowledges the
event only after they all succeeded. Otherwise:

* a failed event stays pending and is retried by this worker after a random
  delay (full jitter) below a bound that doubles with each attempt
  (``retry_delay``, ``retry_backoff``, ``max_retry_delay``), so that events
  that failed together are not all retried at once;
* after ``max_attempts`` deliveries it is moved to the dead-letter stream
  (``<stream>:dead``) with the error, and acknowledged;
* an event that cannot be read (bad payload) goes there at once;
* events left pending by a worker that died are taken over by another after
  ``claim_after`` seconds (``XAUTOCLAIM``).

Delivery is at least once: an event handled by a worker killed before its
acknowledgement runs again elsewhere. ``SIGTERM`` (and ``SIGINT``) stop
:meth:`Worker.run` gracefully: the batch in hand is finished and acknowledged
first; a second signal stops at once.

:class:`AsyncWorker` does the same in an event loop, with an
:class:`~tocsin.remote.AsyncTransport`, awaiting async receivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import os
import random
import signal as signals
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict, Unpack

from ..exceptions import ForgedEventError, SerializationError, TransportError
from ._remote import Event, Remote
from .transports.base import AsyncTransport, Attempts, Message, Transport

__all__ = ["AsyncWorker", "Worker", "WorkerOptions", "WorkerStats"]

logger = logging.getLogger("tocsin.worker")


class WorkerOptions(TypedDict, total=False):
    """The options of :class:`Worker` and :class:`AsyncWorker`, each described there;
    for type checkers, and for code that builds them (``Worker(remote, **options)``)."""

    group: str
    consumer: str | None
    batch: int
    block: float
    max_attempts: int
    max_kills: int
    retry_delay: float
    retry_backoff: float
    max_retry_delay: float
    claim_after: float
    dead_stream: str | None
    relay_every: float
    trim_every: float | None
    concurrency: int


@dataclass(slots=True)
class WorkerStats:
    """What a worker has done since it started (``worker.stats``), a dataclass of counts."""

    handled: int = 0
    """Events whose receivers all succeeded (and were acknowledged)."""
    failed: int = 0
    """Attempts that raised."""
    retried: int = 0
    """Events delivered again after a failure."""
    dead: int = 0
    """Events moved to the dead-letter stream."""
    poison: int = 0
    """Of the dead ones, events that killed (or wedged) their worker."""
    duplicates: int = 0
    """Events skipped: marked done already (deduplication)."""
    claimed: int = 0
    """Events taken over from other consumers."""
    trimmed: int = 0
    """Acknowledged events removed from the stream."""


@dataclass(frozen=True, slots=True)
class _Call:
    """An effect of a worker's round: call this transport method (awaited by an
    AsyncWorker) and send the result back."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Run:
    """An effect: run these events here; the reply is, per event, what its
    receivers raised (empty: success) or why it cannot run (a str)."""

    messages: list[Message]


class _Relay:
    """An effect: relay the remote's outbox (errors logged, never raised)."""


_RELAY = _Relay()
_Outcome = list[BaseException] | str
# A worker's round, written once for Worker and AsyncWorker: a generator that
# yields effects, receives their results and returns the events handled.
_Plan = Generator[_Call | _Run | _Relay, Any, int]


@dataclass(frozen=True, slots=True)
class _Retry:
    delay: float


@dataclass(frozen=True, slots=True)
class _Dead:
    reason: str


class _Policy:
    """Every decision a worker takes about an event that did not succeed, from
    the facts alone (no I/O, no clock): retry it after a delay, or dead-letter
    it and why.

    Deliveries are not the measure: an event reclaimed with the batch of a
    worker that died was delivered again for a fault that may not be its own.
    What counts is in the group's :class:`Attempts` record: the runs that
    raised (``failures``), and the runs *alone in their worker* that the worker
    did not survive (``kills``).
    """

    # Waits between rounds while the broker is down: the same shape as retries.
    OUTAGE_DELAY, OUTAGE_MAX_DELAY = 0.1, 5.0

    def __init__(
        self,
        *,
        max_attempts: int,
        max_kills: int,
        retry_delay: float,
        retry_backoff: float,
        max_retry_delay: float,
        rng: random.Random | None = None,
    ) -> None:
        self.max_attempts = max_attempts
        self.max_kills = max_kills
        self.retry_delay = retry_delay
        self.retry_backoff = retry_backoff
        self.max_retry_delay = max_retry_delay
        # The one source of randomness: seed it (random.Random(7)) to replay decisions.
        self.random = rng if rng is not None else random.Random()

    def ceiling(self, attempts: int) -> float:
        """The longest delay before retrying an event that failed on attempt *attempts*."""
        return _backoff(self.retry_delay, self.retry_backoff, self.max_retry_delay, attempts)

    def delay(self, attempts: int) -> float:
        """Seconds before retrying an event that failed on attempt *attempts*:
        random between 0 and :meth:`ceiling` ("full jitter"), so that the events
        of a failed batch, or of many workers, do not all come back at once."""
        return self.random.uniform(0.0, self.ceiling(attempts))

    def outage_delay(self, outages: int) -> float:
        """Seconds to wait after the *outages*-th round in a row the broker failed:
        random up to 0.1 s, doubling up to 5 s, so that workers do not all
        reconnect at the same instant when it comes back."""
        ceiling = _backoff(self.OUTAGE_DELAY, 2.0, self.OUTAGE_MAX_DELAY, outages)
        return self.random.uniform(0.0, ceiling)

    def taken_over(self, record: Attempts) -> tuple[Attempts, _Dead | None]:
        """An event taken over from another consumer: its record, a kill counted
        if it was running alone there; and whether it is poison."""
        if record.running is not None:
            record = replace(record, kills=record.kills + 1, running=None)
        if record.kills >= self.max_kills:
            times = "once" if record.kills == 1 else f"{record.kills} times"
            return record, _Dead(
                f"poison: killed its worker {times}, running alone "
                f"(the worker died, or wedged for longer than claim_after)"
            )
        return record, None

    def after_failure(self, record: Attempts, outcome: _Outcome) -> tuple[Attempts, _Retry | _Dead]:
        """An event whose run failed with *outcome*: its record, this failure
        counted; and whether to retry it or dead-letter it."""
        if isinstance(outcome, str):  # unreadable or forged: it never will run
            return record, _Dead(outcome)
        error = "; ".join(_describe(error) for error in outcome)
        record = replace(record, failures=record.failures + 1, error=error, running=None)
        if record.failures >= self.max_attempts:
            return record, _Dead(error)
        return record, _Retry(self.delay(record.failures))


class _Base:
    def __init__(
        self,
        remote: Remote,
        *,
        group: str = "tocsin",
        consumer: str | None = None,
        batch: int = 100,
        block: float = 1.0,
        max_attempts: int = 5,
        max_kills: int = 2,
        retry_delay: float = 1.0,
        retry_backoff: float = 2.0,
        max_retry_delay: float = 60.0,
        claim_after: float = 60.0,
        dead_stream: str | None = None,
        relay_every: float = 5.0,
        trim_every: float | None = 60.0,
        concurrency: int = 1,
    ) -> None:
        if not isinstance(remote, Remote):
            raise TypeError(f"a worker takes a Remote; got {type(remote).__name__}.")
        for label, text in (("group", group), ("consumer", consumer), ("dead_stream", dead_stream)):
            if text is not None and (not isinstance(text, str) or not text):
                raise ValueError(f"{label} must be a non-empty string; got {text!r}.")
        _positive_int("batch", batch)
        _positive_int("concurrency", concurrency)
        _positive_int("max_attempts", max_attempts)
        _positive_int("max_kills", max_kills)
        for label, seconds in (
            ("block", block),
            ("retry_delay", retry_delay),
            ("max_retry_delay", max_retry_delay),
            ("claim_after", claim_after),
            ("relay_every", relay_every),
        ):
            if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
                raise ValueError(f"{label} must be a positive number of seconds; got {seconds!r}.")
        if trim_every is not None and (
            not isinstance(trim_every, int | float)
            or isinstance(trim_every, bool)
            or trim_every <= 0
        ):
            raise ValueError(
                f"trim_every must be a positive number of seconds or None; got {trim_every!r}."
            )
        if not isinstance(retry_backoff, int | float) or retry_backoff < 1:
            raise ValueError(f"retry_backoff must be a number >= 1; got {retry_backoff!r}.")
        self.remote = remote
        self.stream: str = remote.stream
        self.group = group
        self.consumer: str = (
            consumer or f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        )
        self.batch = batch
        self.block = block
        self.max_attempts = max_attempts
        self.max_kills = max_kills
        self.retry_delay = retry_delay
        self.retry_backoff = retry_backoff
        self.max_retry_delay = max_retry_delay
        self.claim_after = claim_after
        self.dead_stream: str = dead_stream or f"{remote.stream}:dead"
        self.relay_every = relay_every
        self.concurrency = concurrency
        self.trim_every = trim_every
        self._next_trim = time.monotonic() + (trim_every or 0)
        self.stats: WorkerStats = WorkerStats()
        self._policy = _Policy(
            max_attempts=max_attempts,
            max_kills=max_kills,
            retry_delay=retry_delay,
            retry_backoff=retry_backoff,
            max_retry_delay=max_retry_delay,
        )
        self._stopping = threading.Event()
        self._retries: list[tuple[float, str, float]] = []  # (due, message id, delay)
        self._next_claim = 0.0
        self._next_relay = 0.0
        self._started = False
        self._outage = 0  # consecutive rounds the broker failed
        self._in_hand: list[str] = []  # ids of the batch being handled, until acknowledged
        # In run(): ids of events whose receivers all succeeded, acknowledged with
        # the next read (one round trip for both), or before anything else is done.
        self._owed: list[str] = []
        self._ack_later = False  # whether to owe acknowledgements (in run())

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.consumer!r} group={self.group!r} stream={self.stream!r}>"
        )

    def stop(self) -> None:
        """Ask :meth:`run` to return after the batch in hand (thread-safe)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called (or a stop signal received)."""
        return self._stopping.is_set()

    def _on_signal(self, number: int) -> None:
        """SIGTERM or SIGINT: finish the batch in hand, then stop; a second one stops now."""
        if self._stopping.is_set():
            raise KeyboardInterrupt
        logger.info(
            "Worker %s: %s received, finishing the batch in hand",
            self.consumer,
            signals.Signals(number).name,
        )
        self._stopping.set()

    def _broker_down(self, error: TransportError) -> float:
        """Log a broker failure; return the seconds to wait before the next round.

        The group is checked again afterwards: a broker restarted without its
        data has lost it. Events in hand that were not acknowledged stay
        pending for this worker, which takes them again as soon as the broker
        answers (as retries), rather than after ``claim_after``.
        """
        self._outage += 1
        self._started = False
        now = time.monotonic()
        for message_id in self._in_hand:
            heapq.heappush(self._retries, (now, message_id, 0.0))
        self._in_hand = []
        wait = self._policy.outage_delay(self._outage)
        log = logger.warning if self._outage == 1 else logger.debug
        log("Worker %s: broker unavailable (%s); retrying in %.3g s", self.consumer, error, wait)
        return wait

    def _unsettled(self, error: TransportError) -> None:
        """The acknowledgements owed when run() stopped could not be sent."""
        logger.warning(
            "Worker %s: %d handled event(s) not acknowledged (%s); they stay pending, "
            "and run again once taken over (after claim_after)",
            self.consumer,
            len(self._owed),
            error,
        )

    def delay(self, deliveries: int) -> float:
        """Seconds to wait before retrying an event that failed on this delivery:
        random, between 0 and :meth:`max_delay`."""
        return self._policy.delay(deliveries)

    def max_delay(self, deliveries: int) -> float:
        """The longest :meth:`delay` can be after this delivery:
        ``retry_delay * retry_backoff ** (deliveries - 1)``, at most
        ``max_retry_delay``. For showing when a retry will come at the latest."""
        return self._policy.ceiling(deliveries)

    def _decode(self, message: Message) -> Event | str:
        """The message's event, or why it is dead-lettered unread. Nothing a
        payload says is imported or called (see Remote.decode)."""
        try:
            return self.remote.decode(message.payload, message.id, message.deliveries)
        except ForgedEventError as error:
            return f"forged event: {error}"
        except SerializationError as error:
            return f"unreadable event: {error}"
        except Exception as error:  # a registered decoder's bug, say: never the worker's end
            logger.exception("Event %s could not be read", message.id)
            return f"unreadable event: {type(error).__name__}: {error}"

    def _round(self) -> _Plan:
        """One round of :meth:`Worker.run_once` (and of the async one): take over
        stale events, retry due ones, relay the outbox, trim, then read and
        handle one batch. Returns the events handled.

        In ``run()`` (``_ack_later``), the events of a batch that succeeded are
        acknowledged with the next round's read, in the same round trip, or
        alone (:meth:`_settle`) before that round does anything else with the
        stream, and when ``run()`` stops.
        """
        where = (self.stream, self.group)
        if not self._started:
            # Joined at once, so that `tocsin status` lists a worker still waiting.
            yield _Call("ensure_group", where, {"consumer": self.consumer})
            self._started = True
        done = 0
        if self._claim_due():
            yield from self._settle()  # not to take over events of our own
            claimed = yield _Call(
                "claim_stale",
                (*where, self.consumer),
                {"min_idle": self.claim_after, "count": self.batch},
            )
            self.stats.claimed += len(claimed)
            done += yield from self._isolated(claimed)
        for message_id, delay in self._due_retries():
            yield from self._settle()
            message = yield _Call(
                "redeliver", (*where, self.consumer, message_id), {"min_idle": delay}
            )
            if message is not None:
                self.stats.retried += 1
                done += yield from self._batch([message])
        if self._relay_due():
            yield _RELAY
        if self._trim_due():
            self._trimmed((yield _Call("trim_acknowledged", (self.stream,))))
        if self._stopping.is_set():
            yield from self._settle()
            return done
        owed = self._owed
        messages = yield _Call(
            "consume",
            (*where, self.consumer),
            {"count": self.batch, "block": self._wait(), "ack": owed},
        )
        # Only now: if the read failed, the acknowledgements may not have been
        # made, and go with the next one (acknowledging twice is harmless).
        self._owed = []
        self.stats.handled += len(owed)
        return done + (yield from self._batch(messages))

    def _settle(self) -> _Plan:
        """Acknowledge the events owed since the last read, alone."""
        if self._owed:
            yield _Call("ack", (self.stream, self.group, self._owed))
            self.stats.handled += len(self._owed)
            self._owed = []
        return 0

    def _batch(self, messages: list[Message]) -> _Plan:
        """Run *messages*, then acknowledge (in one call) those whose receivers
        all succeeded; retry or dead-letter the others, as the policy decides."""
        if not messages:
            return 0
        self._in_hand = [message.id for message in messages]
        # Only an event delivered before can have a record: a fresh batch costs nothing.
        again = [message.id for message in messages if message.deliveries > 1]
        records: dict[str, Attempts] = {}
        if again:
            records = yield _Call("attempts", (self.stream, self.group, again))
        succeeded = []
        outcomes: list[_Outcome] = yield _Run(messages)
        for message, outcome in zip(messages, outcomes, strict=True):
            if not outcome:
                succeeded.append(message.id)
                continue
            yield from self._failed(message, records.get(message.id, Attempts()), outcome)
        yield from self._acknowledge(succeeded, [id for id in succeeded if id in records])
        self._in_hand = []
        return len(succeeded)

    def _isolated(self, messages: list[Message]) -> _Plan:
        """Run events taken over from a consumer that died or wedged, one at a
        time, each marked as running here first: if this worker dies too, the
        next one knows which event did it, and the others are not blamed."""
        if not messages:
            return 0
        records = yield _Call("attempts", (self.stream, self.group, [m.id for m in messages]))
        done = 0
        for message in messages:
            record, poison = self._policy.taken_over(records.get(message.id, Attempts()))
            if poison is not None:
                self.stats.poison += 1
                yield from self._dead_letter(message, poison.reason)
                continue
            self._in_hand = [message.id]
            running = {message.id: replace(record, running=self.consumer)}
            yield _Call("record_attempts", (self.stream, self.group, running))
            [outcome] = yield _Run([message])
            if outcome:
                yield from self._failed(message, record, outcome)
            else:
                yield from self._acknowledge([message.id], [message.id])
                done += 1
            self._in_hand = []
        return done

    def _failed(self, message: Message, record: Attempts, outcome: _Outcome) -> _Plan:
        self.stats.failed += 1
        record, decision = self._policy.after_failure(record, outcome)
        if isinstance(decision, _Dead):
            yield from self._dead_letter(message, decision.reason)
            return 0
        # Recorded, so that whoever holds it next knows how often it failed, and why.
        yield _Call("record_attempts", (self.stream, self.group, {message.id: record}))
        self._retry_later(message, decision.delay, record.failures, outcome)
        return 0

    def _dead_letter(self, message: Message, reason: str) -> _Plan:
        where = (self.stream, self.group)
        yield _Call("dead_letter", (*where, message, self.dead_stream), {"error": reason})
        if message.deliveries > 1:
            yield _Call("record_attempts", (*where, {message.id: None}))
        self.stats.dead += 1
        logger.error("Event %s moved to %s: %s", message.id, self.dead_stream, reason)
        return 0

    def _acknowledge(self, ids: list[str], recorded: list[str]) -> _Plan:
        if self._ack_later and not recorded:
            self._owed += ids  # with the next read
            return 0
        if ids:
            yield _Call("ack", (self.stream, self.group, ids))
            self.stats.handled += len(ids)
        if recorded:
            yield _Call("record_attempts", (self.stream, self.group, dict.fromkeys(recorded)))
        return 0

    def _retry_later(
        self, message: Message, delay: float, failures: int, outcome: _Outcome
    ) -> None:
        heapq.heappush(self._retries, (time.monotonic() + delay, message.id, delay))
        logger.warning(
            "Event %s failed on attempt %d of %d (%s); retrying in %.3g s",
            message.id,
            failures,
            self.max_attempts,
            outcome if isinstance(outcome, str) else "; ".join(map(_describe, outcome)),
            delay,
        )

    def _due_retries(self) -> list[tuple[str, float]]:
        now = time.monotonic()
        due = []
        while self._retries and self._retries[0][0] <= now:
            _, message_id, delay = heapq.heappop(self._retries)
            due.append((message_id, delay))
        return due

    def _wait(self) -> float:
        """How long consume() may block: until the next retry or claim is due."""
        now = time.monotonic()
        until = min(self._next_claim, self._retries[0][0] if self._retries else self._next_claim)
        if self.remote.outbox is not None and hasattr(self.remote.outbox, "relay"):
            until = min(until, self._next_relay)
        return max(0.001, min(self.block, until - now))

    def _claim_due(self) -> bool:
        now = time.monotonic()
        if now < self._next_claim:
            return False
        # Checking a quarter as often as the idle time keeps a dead worker's
        # events waiting at most 1.25 x claim_after.
        self._next_claim = now + self.claim_after / 4
        return True

    def _trim_due(self) -> bool:
        if self.trim_every is None:
            return False
        now = time.monotonic()
        if now < self._next_trim:
            return False
        self._next_trim = now + self.trim_every
        return True

    def _trimmed(self, removed: int) -> None:
        self.stats.trimmed += removed
        logger.debug("Worker %s: %d acknowledged event(s) trimmed", self.consumer, removed)

    def _relay_due(self) -> bool:
        outbox = self.remote.outbox
        if outbox is None or not hasattr(outbox, "relay"):
            return False
        now = time.monotonic()
        if now < self._next_relay:
            return False
        self._next_relay = now + self.relay_every
        return True


class Worker(_Base):
    """Consume *remote*'s stream in this thread and run each event here.

    The options are keyword-only, and kept as attributes of the same names,
    with ``remote``, ``stream`` (the remote's), ``transport`` and ``stats`` (a
    :class:`WorkerStats`); the guide to choosing them is "Workers" in
    docs/scaling-out.md.

    :param group: the consumer group; workers in one group share the events.
        ``"tocsin"`` by default.
    :param consumer: this worker's name in the group (unique per process by
        default: ``host-pid-random``).
    :param batch: events read (and acknowledged) at a time; 100.
    :param block: seconds to wait for new events in one read; 1.
    :param max_attempts: failed runs (receivers that raised) before an event
        goes to the dead letters, with its last error; 5.
    :param max_kills: runs of an event, alone in its worker, that the worker
        did not survive (it died, or wedged for longer than *claim_after*),
        before the event goes to the dead letters as poison. Events taken over
        from a worker that died are run alone, one by one, so that only the one
        that kills is blamed. 2 by default.
    :param retry_delay: the bound of the first retry's delay, in seconds;
        multiplied by *retry_backoff* for each further one, up to
        *max_retry_delay*. Each delay is drawn at random between 0 and its
        bound (full jitter), so that events that failed together, in one
        worker or many, are not retried at the same instant. 1 by default.
    :param retry_backoff: what each retry multiplies the bound by; 2, at
        least 1.
    :param max_retry_delay: the largest bound, in seconds; 60.
    :param claim_after: seconds an event may stay pending with another
        consumer before this one takes it over; 60. Keep it above the longest
        time receivers take for a batch, or slow events run twice.
    :param dead_stream: the dead-letter stream (``<stream>:dead``).
    :param relay_every: with an outbox that has a ``relay()`` method, seconds
        between relays of events a crashed process left in it; 5.
    :param trim_every: seconds between trims of the stream: messages every
        group has acknowledged are removed (``XTRIM MINID``), so that the
        stream does not grow forever; 60. ``None`` never trims.
    :param concurrency: events of a batch run at once, each in a thread
        (tasks of the loop for :class:`AsyncWorker`); 1 runs them one after
        the other (the default). For receivers that wait (mail, HTTP);
        CPU-bound ones want more processes instead.
    :raises TypeError: if *remote* is not a :class:`Remote`, or its transport
        not a blocking ``Transport`` (use :class:`AsyncWorker`).
    :raises ValueError: if *group*, *consumer* or *dead_stream* is empty,
        *batch*, *concurrency*, *max_attempts* or *max_kills* is not a positive
        ``int``, a duration is not a positive number, or *retry_backoff* is
        less than 1.
    """

    def __init__(self, remote: Remote, **options: Unpack[WorkerOptions]) -> None:
        super().__init__(remote, **options)
        if not isinstance(remote.transport, Transport):
            raise TypeError(
                "Worker needs a blocking Transport; use AsyncWorker with an AsyncTransport."
            )
        self.transport: Transport = remote.transport

    def run(self, *, handle_signals: bool = True) -> None:
        """Handle events until :meth:`stop` (or SIGTERM/SIGINT when
        *handle_signals* and this is the main thread).

        A stop signal lets the batch in hand be handled and acknowledged
        first; a second one raises ``KeyboardInterrupt`` at once; the previous
        handlers are put back when it returns. A
        :class:`~tocsin.exceptions.TransportError` is logged and waited out (a
        random time below 0.1 s, a bound that doubles up to 5 s), and the
        worker goes on when the broker answers.
        """
        with self._stop_signals(handle_signals):
            self._ack_later = True
            try:
                while not self._stopping.is_set():
                    try:
                        self.run_once()
                    except TransportError as error:
                        self._stopping.wait(self._broker_down(error))
                    else:
                        self._outage = 0
            finally:
                self._ack_later = False
            try:
                self._play(self._settle())
            except TransportError as error:
                self._unsettled(error)
        logger.info("Worker %s stopped: %s", self.consumer, self.stats)

    def run_once(self) -> int:
        """One round: take over stale events, retry due ones, relay the
        outbox, then read and handle one batch. Returns the events handled
        (acknowledged before it returns, unless called by :meth:`run`)."""
        return self._play(self._round())

    def _play(self, plan: _Plan) -> int:
        result: Any = None
        try:
            while True:
                result = self._do(plan.send(result))
        except StopIteration as done:
            return int(done.value)

    def _do(self, effect: _Call | _Run | _Relay) -> Any:
        if isinstance(effect, _Call):
            return getattr(self.transport, effect.method)(*effect.args, **effect.kwargs)
        if isinstance(effect, _Run):
            return self._run_all(effect.messages)
        self._relay()
        return None

    def _run_all(self, messages: list[Message]) -> list[list[BaseException] | str]:
        """What each event's receivers raised, running up to ``concurrency`` events
        at once, in threads; what follows (acknowledging, retrying, dead-lettering)
        happens in this thread."""
        if self.concurrency == 1 or len(messages) < 2:
            return [self._handle(message) for message in messages]
        threads = min(self.concurrency, len(messages))
        with ThreadPoolExecutor(threads, thread_name_prefix=f"tocsin-{self.consumer}") as pool:
            return list(pool.map(self._handle, messages))

    def _handle(self, message: Message) -> list[BaseException] | str:
        event = self._decode(message)
        if isinstance(event, str):
            return event
        ttl = self.remote.dedupe_for(event)
        if ttl is not None and self.transport.is_done(self.stream, self.group, event.id):
            self.stats.duplicates += 1
            return []
        try:
            errors = self.remote.handle(event)
        except Exception as error:  # the send itself failed (unknown signal, a typed check)
            logger.exception("Event %s could not be sent here", message.id)
            return [error]
        if ttl is not None and not errors:
            self.transport.mark_done(self.stream, self.group, event.id, ttl)
        return errors

    def _relay(self) -> None:
        try:
            self.remote.outbox.relay(self.transport)  # type: ignore[union-attr]
        except Exception as error:  # the database or the broker: try again later
            logger.warning("Outbox relay failed (will retry): %s", error, exc_info=error)

    @contextlib.contextmanager
    def _stop_signals(self, enabled: bool) -> Iterator[None]:
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(number: int, frame: Any) -> None:
            self._on_signal(number)

        previous = {
            number: signals.signal(number, on_signal)
            for number in (signals.SIGTERM, signals.SIGINT)
        }
        try:
            yield
        finally:
            for number, handler in previous.items():
                signals.signal(number, handler)


class AsyncWorker(_Base):
    """:class:`Worker` for asyncio: reads with an
    :class:`~tocsin.remote.AsyncTransport` and awaits async
    receivers in the running loop (sync receivers run as ``asend_robust``
    runs them). Same options.
    """

    def __init__(self, remote: Remote, **options: Unpack[WorkerOptions]) -> None:
        super().__init__(remote, **options)
        if not isinstance(remote.transport, AsyncTransport):
            raise TypeError("AsyncWorker needs an AsyncTransport; use Worker with a Transport.")
        self.transport: AsyncTransport = remote.transport

    async def run(self, *, handle_signals: bool = True) -> None:
        """Handle events until :meth:`stop` or the task is cancelled (or
        SIGTERM/SIGINT when *handle_signals* and the loop supports them)."""
        loop = asyncio.get_running_loop()
        installed = self._install_signals(loop) if handle_signals else []
        try:
            self._ack_later = True
            try:
                while not self._stopping.is_set():
                    try:
                        await self.run_once()
                    except TransportError as error:
                        await asyncio.sleep(self._broker_down(error))
                    else:
                        self._outage = 0
            except asyncio.CancelledError:
                # Cancelling the task is a way to stop: the events handled are
                # acknowledged first, not left to run again elsewhere.
                await self._settle_owed()
                raise
            finally:
                self._ack_later = False
            await self._settle_owed()
        finally:
            for number in installed:
                loop.remove_signal_handler(number)
        logger.info("Worker %s stopped: %s", self.consumer, self.stats)

    async def _settle_owed(self) -> None:
        try:
            await self._play(self._settle())
        except TransportError as error:
            self._unsettled(error)

    async def run_once(self) -> int:
        """One round, as :meth:`Worker.run_once`."""
        return await self._play(self._round())

    async def _play(self, plan: _Plan) -> int:
        result: Any = None
        try:
            while True:
                result = await self._do(plan.send(result))
        except StopIteration as done:
            return int(done.value)

    async def _do(self, effect: _Call | _Run | _Relay) -> Any:
        if isinstance(effect, _Call):
            return await getattr(self.transport, effect.method)(*effect.args, **effect.kwargs)
        if isinstance(effect, _Run):
            return await self._run_all(effect.messages)
        await self._relay()
        return None

    async def _run_all(self, messages: list[Message]) -> list[list[BaseException] | str]:
        """What each event's receivers raised, running up to ``concurrency`` events
        at once, as tasks of this loop."""
        if self.concurrency == 1 or len(messages) < 2:
            return [await self._handle(message) for message in messages]
        limit = asyncio.Semaphore(self.concurrency)

        async def run(message: Message) -> list[BaseException] | str:
            async with limit:
                return await self._handle(message)

        return list(await asyncio.gather(*(run(message) for message in messages)))

    async def _handle(self, message: Message) -> list[BaseException] | str:
        event = self._decode(message)
        if isinstance(event, str):
            return event
        ttl = self.remote.dedupe_for(event)
        if ttl is not None and await self.transport.is_done(self.stream, self.group, event.id):
            self.stats.duplicates += 1
            return []
        try:
            errors = await self.remote.ahandle(event)
        except Exception as error:  # the send itself failed (unknown signal, a typed check)
            logger.exception("Event %s could not be sent here", message.id)
            return [error]
        if ttl is not None and not errors:
            await self.transport.mark_done(self.stream, self.group, event.id, ttl)
        return errors

    async def _relay(self) -> None:
        relay: Callable[..., Any] = self.remote.outbox.relay  # type: ignore[union-attr]
        try:
            result = relay(self.transport)
            if asyncio.iscoroutine(result):
                await result
        except Exception as error:  # the database or the broker: try again later
            logger.warning("Outbox relay failed (will retry): %s", error, exc_info=error)

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        installed: list[int] = []
        for number in (signals.SIGTERM, signals.SIGINT):
            try:
                loop.add_signal_handler(number, self._on_signal, number)
            except (
                NotImplementedError,
                RuntimeError,
                ValueError,
            ):  # not the main thread, or Windows
                continue
            installed.append(number)
        return installed


def _backoff(first: float, factor: float, longest: float, attempts: int) -> float:
    """*first*, multiplied by *factor* for each attempt after the first, up to *longest*."""
    # min() before the power would overflow: past the cap, the cap.
    exponent = attempts - 1
    if factor > 1 and exponent > math.log(longest / first, factor):
        return float(longest)
    return float(min(first * factor**exponent, longest))


def _positive_int(label: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{label} must be a positive integer; got {value!r}.")


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
