#!/usr/bin/env python3
"""Time tocsin against django.dispatch, blinker, psygnal and bare-Python baselines.

    python benchmarks/bench.py                 # the full run (well under a minute)
    python benchmarks/bench.py --quick         # tiny counts, a few seconds: smoke test only
    python benchmarks/bench.py --json out.json # also write every number to out.json
    python benchmarks/bench.py --only send-10,asend-10

What each scenario measures, and how: benchmarks/README.md ("Method").
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tracemalloc
import weakref
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field, replace
from importlib import metadata
from itertools import repeat
from pathlib import Path
from typing import Any

import _harness as harness

ROOT = Path(__file__).resolve().parent.parent

perf_counter_ns = time.perf_counter_ns

Receiver = Callable[..., Any]
AsyncReceiver = Callable[..., Coroutine[Any, Any, Any]]

UNROLL = 10  # sends per loop iteration in the send/asend loops
SLEEP = 0.01  # seconds each receiver sleeps in the concurrency check
SCENARIO_IDS = (
    "send-0",
    "send-1",
    "send-10",
    "send-100",
    "send-10-priority",
    "send-filtered",
    "send-bound",
    "connect-disconnect",
    "asend-10",
    "bytes-per-receiver",
    "bytes-per-cycle",
    "asend-concurrency",
    "import",
)


@dataclass(frozen=True)
class Config:
    repeats: int
    sample_ns: int  # calibrated duration of one timed sample
    receivers_for_memory: int
    cycles_for_memory: int

    @property
    def name(self) -> str:
        return "quick" if self.sample_ns < 10_000_000 else "default"


DEFAULT = Config(
    repeats=7, sample_ns=80_000_000, receivers_for_memory=10_000, cycles_for_memory=10_000
)
QUICK = Config(repeats=2, sample_ns=1_000_000, receivers_for_memory=500, cycles_for_memory=500)


# -- receivers, senders and the bare-Python baselines ------------------------------------


def make_receivers(n: int) -> list[Receiver]:
    """*n* distinct trivial receivers ``def r(sender=None, **kw): return None``."""

    def make() -> Receiver:
        def r(sender: object = None, **kw: Any) -> None:
            return None

        return r

    return [make() for _ in range(n)]


def make_async_receivers(n: int, sleep: float = 0.0) -> list[AsyncReceiver]:
    """*n* distinct async receivers; with *sleep*, each really suspends that long."""

    def make() -> AsyncReceiver:
        async def r(sender: object = None, **kw: Any) -> None:
            return None

        async def sleeper(sender: object = None, **kw: Any) -> None:
            await asyncio.sleep(sleep)

        return sleeper if sleep else r

    return [make() for _ in range(n)]


class Handler:
    """Owner of a bound-method receiver."""

    def on_signal(self, sender: object = None, **kw: Any) -> None:
        return None


class Model:
    """The sender of the send scenarios (a class, as Django's model signals have)."""


class BareLoop:
    """``for r in rs: r(sender, **kw)``: the floor, builds nothing."""

    def __init__(self, receivers: Iterable[Receiver]) -> None:
        self.receivers = list(receivers)

    def send(self, sender: object, **kw: Any) -> None:
        for r in self.receivers:
            r(sender, **kw)


class BareWeak:
    """What Django's ``send()`` must do at least: deref weak refs, build the response list."""

    def __init__(self, receivers: Iterable[Receiver] = ()) -> None:
        self.refs = [weakref.ref(r) for r in receivers]

    def connect(self, receiver: Receiver) -> None:
        self.refs.append(weakref.ref(receiver))

    def disconnect(self, receiver: Receiver) -> None:
        for i, ref in enumerate(self.refs):
            if ref() is receiver:
                del self.refs[i]
                return

    def send(self, sender: object, **kw: Any) -> list[tuple[Any, Any]]:
        responses = []
        for ref in self.refs:
            r = ref()
            if r is not None:
                responses.append((r, r(signal=self, sender=sender, **kw)))
        return responses


class BareWeakMethod(BareWeak):
    """``BareWeak`` over ``weakref.WeakMethod``: how Django holds bound methods."""

    def __init__(self, receivers: Iterable[Receiver] = ()) -> None:
        self.refs = [weakref.WeakMethod(r) for r in receivers]


class SeqAwait:
    """Await each async receiver in turn: no concurrency, no tasks."""

    def __init__(self, receivers: Iterable[AsyncReceiver]) -> None:
        self.receivers = list(receivers)

    async def asend(self, sender: object, **kw: Any) -> list[tuple[Any, Any]]:
        responses = []
        for r in self.receivers:
            responses.append((r, await r(signal=self, sender=sender, **kw)))
        return responses


# -- timed loops -------------------------------------------------------------------------


def send_runner(send: Callable[..., Any], sender: object) -> harness.Runner:
    """``send(sender, value=1)``, UNROLL times per loop."""

    def run(loops: int) -> int:
        f, s = send, sender
        t0 = perf_counter_ns()
        for _ in repeat(None, loops):
            f(s, value=1)
            f(s, value=1)
            f(s, value=1)
            f(s, value=1)
            f(s, value=1)
            f(s, value=1)
            f(s, value=1)
            f(s, value=1)
            f(s, value=1)
            f(s, value=1)
        return perf_counter_ns() - t0

    return run


def emit_runner(emit: Callable[..., Any]) -> harness.Runner:
    """``emit(1)`` (psygnal's positional payload), UNROLL times per loop."""

    def run(loops: int) -> int:
        f = emit
        t0 = perf_counter_ns()
        for _ in repeat(None, loops):
            f(1)
            f(1)
            f(1)
            f(1)
            f(1)
            f(1)
            f(1)
            f(1)
            f(1)
            f(1)
        return perf_counter_ns() - t0

    return run


def asend_runner(asend: Callable[..., Any], sender: object) -> harness.Runner:
    """``await asend(sender, value=1)``, UNROLL times per loop, timed inside the event loop."""

    async def timed_loop(loops: int) -> int:
        f, s = asend, sender
        t0 = perf_counter_ns()
        for _ in repeat(None, loops):
            await f(s, value=1)
            await f(s, value=1)
            await f(s, value=1)
            await f(s, value=1)
            await f(s, value=1)
            await f(s, value=1)
            await f(s, value=1)
            await f(s, value=1)
            await f(s, value=1)
            await f(s, value=1)
        return perf_counter_ns() - t0

    def run(loops: int) -> int:
        return asyncio.run(timed_loop(loops))

    return run


def cycle_runner(
    connect: Callable[[Receiver], Any], disconnect: Callable[[Receiver], Any], receiver: Receiver
) -> harness.Runner:
    """``connect(receiver); disconnect(receiver)``, once per loop."""

    def run(loops: int) -> int:
        c, d, r = connect, disconnect, receiver
        t0 = perf_counter_ns()
        for _ in repeat(None, loops):
            c(r)
            d(r)
        return perf_counter_ns() - t0

    return run


# -- the implementations under test ------------------------------------------------------


class Unsupported(Exception):
    """The implementation has no equivalent of what a scenario needs."""


class Impl:
    """How the benchmark drives one dispatcher; subclasses adapt the API."""

    name = ""
    version = ""
    import_name = ""  # what ``import`` loads (the import scenario)

    def new_signal(self) -> Any:
        raise NotImplementedError

    def connect(self, sig: Any, receiver: Receiver, sender: object = None) -> None:
        sig.connect(receiver, sender=sender)

    def send_once(self, sig: Any, sender: object) -> Any:
        return sig.send(sender, value=1)

    def send_runner(self, sig: Any, sender: object) -> harness.Runner:
        return send_runner(sig.send, sender)

    def asend(self, sig: Any) -> Callable[..., Any]:
        return sig.asend  # type: ignore[no-any-return]


class TocsinImpl(Impl):
    def __init__(self, module: Any, name: str = "tocsin") -> None:
        self.module = module
        self.name = name
        self.import_name = module.__name__
        self.version = f"{module.__version__} ({Path(module.__file__).parent})"

    def new_signal(self) -> Any:
        return self.module.Signal()


class DjangoImpl(Impl):
    def __init__(self, django: Any, module: Any, use_caching: bool = False) -> None:
        self.module = module
        self.use_caching = use_caching
        self.name = "django(use_caching)" if use_caching else "django"
        self.import_name = "django.dispatch"
        self.version = django.get_version()

    def new_signal(self) -> Any:
        return self.module.Signal(use_caching=self.use_caching)


class BlinkerImpl(Impl):
    """``connect(r, sender=ANY, weak=True)``; ``send(sender, **kw)`` calls ``r(sender, **kw)``."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.name = "blinker"
        self.import_name = "blinker"
        self.version = metadata.version("blinker")

    def new_signal(self) -> Any:
        return self.module.Signal()

    def connect(self, sig: Any, receiver: Receiver, sender: object = None) -> None:
        sig.connect(receiver, sender=self.module.ANY if sender is None else sender)

    def asend(self, sig: Any) -> Callable[..., Any]:
        return sig.send_async  # type: ignore[no-any-return]


class PsygnalImpl(Impl):
    """A ``SignalInstance`` with one argument: no senders, ``emit(value)``, no asend."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.name = "psygnal"
        self.import_name = "psygnal"
        compiled = "compiled" if getattr(module, "_compiled", False) else "pure Python"
        self.version = f"{module.__version__} ({compiled})"

    def new_signal(self) -> Any:
        return self.module.SignalInstance((object,))

    def connect(self, sig: Any, receiver: Receiver, sender: object = None) -> None:
        if sender is not None:
            raise Unsupported("no sender filtering")
        sig.connect(receiver)

    def send_once(self, sig: Any, sender: object) -> Any:
        sig.emit(1)
        return None  # emit() returns nothing to check

    def send_runner(self, sig: Any, sender: object) -> harness.Runner:
        return emit_runner(sig.emit)

    def asend(self, sig: Any) -> Callable[..., Any]:
        raise Unsupported("no async emit")


def load_tocsin_at(ref: str) -> Impl:
    """tocsin as it was at git *ref*, imported beside today's under another
    name (``tocsin_at_<ref>``), to compare the two in one run."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    package = f"tocsin_at_{commit}"
    target = Path(tempfile.mkdtemp(prefix="tocsin-bench-"))
    archive = subprocess.run(
        ["git", "archive", commit, "src/tocsin"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    (target / "src" / "tocsin").rename(target / package)
    sys.path.insert(0, str(target))
    return TocsinImpl(importlib.import_module(package), name=f"tocsin@{commit}")


def load_tocsin_pure(tocsin: Any) -> Impl:
    """Today's tocsin on its pure-Python path, imported beside the compiled one under
    another name (``tocsin_pure``: a copy of the package without the extension)."""
    target = Path(tempfile.mkdtemp(prefix="tocsin-bench-")) / "tocsin_pure"
    shutil.copytree(
        Path(tocsin.__file__).parent,
        target,
        ignore=shutil.ignore_patterns("_speedups.*.so", "_speedups.*.pyd", "__pycache__"),
    )
    sys.path.insert(0, str(target.parent))
    module = importlib.import_module("tocsin_pure")
    assert harness.send_path("tocsin_pure") == "pure"
    return TocsinImpl(module, name="tocsin(pure)")


def load_impls(against: str | None = None) -> tuple[list[Impl], dict[str, str]]:
    """tocsin (required), on its pure-Python path too when it is compiled, tocsin at
    git ref *against* if given, and whichever peers are importable; why the others
    are not."""
    try:
        import tocsin
    except ImportError as err:
        sys.exit(f"cannot import tocsin ({err}); install it first: pip install -e .")
    impls: list[Impl] = [TocsinImpl(tocsin)]
    if harness.send_path(tocsin.__name__) == "compiled":
        impls.append(load_tocsin_pure(tocsin))
    if against:
        impls.append(load_tocsin_at(against))
    skipped: dict[str, str] = {}

    def django_impl() -> Impl:
        import django
        import django.dispatch

        return DjangoImpl(django, django.dispatch)

    def blinker_impl() -> Impl:
        import blinker

        return BlinkerImpl(blinker)

    def psygnal_impl() -> Impl:
        import psygnal

        return PsygnalImpl(psygnal)

    for name, load in (
        ("django", django_impl),
        ("blinker", blinker_impl),
        ("psygnal", psygnal_impl),
    ):
        try:
            impls.append(load())
        except ImportError as err:
            skipped[name] = f"skipped: not importable ({err})"
    return impls, skipped


# -- scenarios ---------------------------------------------------------------------------


@dataclass
class Case:
    """One implementation in one scenario: a timed loop, or why there is none."""

    name: str
    run: harness.Runner | None
    ops_per_loop: int = UNROLL
    note: str = ""
    keep: object = None  # whatever must stay alive while the case runs


@dataclass
class Result:
    value: float | None
    samples: list[float] = field(default_factory=list)
    note: str = ""


@dataclass
class Scenario:
    id: str
    title: str
    unit: str
    baseline: str
    results: dict[str, Result] = field(default_factory=dict)

    def ratio(self, name: str) -> float | None:
        value = self.results[name].value if name in self.results else None
        base = self.results[self.baseline].value if self.baseline in self.results else None
        return harness.ratio(value, base)


def expect_responses(name: str, result: Any, expected: int) -> None:
    """Check, untimed, that a send really reached the receivers it should."""
    if result is not None and len(result) != expected:
        raise RuntimeError(f"{name}: expected {expected} responses, got {len(result)}")


def na(name: str, err: Exception) -> Case:
    return Case(name, None, note=f"n/a ({err})")


def run_cases(cases: list[Case], cfg: Config) -> dict[str, Result]:
    """Calibrate every case, then sample them round-robin; ns/op is the fastest sample."""
    runnable = [
        harness.TimedCase(c.name, c.run, c.ops_per_loop) for c in cases if c.run is not None
    ]
    samples = harness.sample_cases(runnable, cfg.repeats, cfg.sample_ns)
    return {
        c.name: Result(None, note=c.note)
        if c.run is None
        else Result(min(samples[c.name]), samples[c.name])
        for c in cases
    }


Connect = Callable[[Impl, Any], None]  # connects receivers to a signal of the Impl


def signal_cases(
    impls: list[Impl], sender: object, expected: int, connect: Connect, keep: object
) -> list[Case]:
    """Each implementation's send loop from *sender*, once ``connect(impl, signal)`` has
    connected its receivers to a new signal and a send has checked, untimed, that it reaches
    *expected* of them; n/a where *connect* raises Unsupported."""
    cases = []
    for impl in impls:
        sig = impl.new_signal()
        try:
            connect(impl, sig)
        except Unsupported as err:
            cases.append(na(impl.name, err))
            continue
        expect_responses(impl.name, impl.send_once(sig, sender), expected)
        cases.append(Case(impl.name, impl.send_runner(sig, sender), keep=keep))
    return cases


def connecting(receivers: list[Receiver]) -> Connect:
    """*receivers* connected for any sender."""

    def connect(impl: Impl, sig: Any) -> None:
        for r in receivers:
            impl.connect(sig, r)

    return connect


def scenario_send(impls: list[Impl], cfg: Config, n: int) -> Scenario:
    receivers = make_receivers(n)
    cases = [
        Case("bare-loop", send_runner(BareLoop(receivers).send, Model)),
        Case("bare-weak", send_runner(BareWeak(receivers).send, Model), keep=receivers),
        *signal_cases(impls, Model, n, connecting(receivers), receivers),
    ]
    plural = "receiver" if n == 1 else "receivers"
    title = f"send() with {n} {plural}"
    baseline = "bare-loop" if n == 0 else "bare-weak"
    return Scenario(f"send-{n}", title, "ns/op", baseline, run_cases(cases, cfg))


def scenario_priority(impls: list[Impl], cfg: Config) -> Scenario:
    """The same 10 receivers, connected without and with priorities (tocsin, psygnal)."""
    receivers = make_receivers(10)

    def by_priority(impl: Impl, sig: Any) -> None:
        if not isinstance(impl, TocsinImpl) and impl.name != "psygnal":
            raise Unsupported("no receiver priority")
        for i, r in enumerate(reversed(receivers)):
            sig.connect(r, priority=i)  # the last connected runs first: a real reordering

    cases = [
        Case("bare-weak", send_runner(BareWeak(receivers).send, Model), keep=receivers),
        *signal_cases(impls, Model, 10, by_priority, receivers),
    ]
    title = "send() with 10 receivers, connected with priorities 9..0 (reverse order)"
    return Scenario("send-10-priority", title, "ns/op", "bare-weak", run_cases(cases, cfg))


def scenario_filtered(impls: list[Impl], cfg: Config) -> Scenario:
    senders = [type(f"Model{i}", (), {}) for i in range(100)]
    receivers = make_receivers(100)

    def each_for_its_sender(impl: Impl, sig: Any) -> None:
        for r, s in zip(receivers, senders, strict=True):
            impl.connect(sig, r, sender=s)

    with_cached = list(impls)
    for i, impl in enumerate(impls):
        if isinstance(impl, DjangoImpl):
            with_cached.insert(i + 1, DjangoImpl(sys.modules["django"], impl.module, True))
    sender = senders[42]
    cases = [
        Case("bare-weak(1)", send_runner(BareWeak(receivers[42:43]).send, sender)),
        *signal_cases(with_cached, sender, 1, each_for_its_sender, (receivers, senders)),
    ]
    title = "send() from one of 100 senders, each with its own receiver (1 matches)"
    return Scenario("send-filtered", title, "ns/op", "bare-weak(1)", run_cases(cases, cfg))


def scenario_bound(impls: list[Impl], cfg: Config) -> Scenario:
    handlers = [Handler() for _ in range(10)]
    methods: list[Receiver] = [h.on_signal for h in handlers]

    def each_handler(impl: Impl, sig: Any) -> None:
        for h in handlers:
            impl.connect(sig, h.on_signal)

    cases = [
        Case("bare-loop", send_runner(BareLoop(methods).send, Model)),
        Case("bare-weakmethod", send_runner(BareWeakMethod(methods).send, Model)),
        *signal_cases(impls, Model, 10, each_handler, handlers),
    ]
    title = "send() with 10 bound-method receivers (10 instances)"
    return Scenario("send-bound", title, "ns/op", "bare-loop", run_cases(cases, cfg))


def scenario_connect(impls: list[Impl], cfg: Config) -> Scenario:
    cases = []
    for impl in impls:
        sig = impl.new_signal()
        receivers = make_receivers(101)
        for r in receivers[:100]:
            impl.connect(sig, r)

        # Every peer's connect(r) / disconnect(r) means "for any sender": time them bare.
        run = cycle_runner(sig.connect, sig.disconnect, receivers[100])
        cases.append(Case(impl.name, run, ops_per_loop=1, keep=receivers))
    title = "connect() + disconnect() of one receiver, 100 others connected"
    return Scenario("connect-disconnect", title, "ns/op", "blinker", run_cases(cases, cfg))


def scenario_asend(impls: list[Impl], cfg: Config) -> Scenario:
    receivers = make_async_receivers(10)
    cases = [Case("seq-await", asend_runner(SeqAwait(receivers).asend, Model))]
    for impl in impls:
        sig = impl.new_signal()
        try:
            asend = impl.asend(sig)
        except Unsupported as err:
            cases.append(na(impl.name, err))
            continue
        for r in receivers:
            impl.connect(sig, r)
        expect_responses(impl.name, asyncio.run(asend(Model, value=1)), 10)
        cases.append(Case(impl.name, asend_runner(asend, Model), keep=receivers))
    title = "asend() with 10 async receivers that do not suspend"
    return Scenario("asend-10", title, "ns/op", "seq-await", run_cases(cases, cfg))


def traced_bytes(action: Callable[[], object]) -> int:
    """Bytes that *action* leaves allocated, after a collection (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        action()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def scenario_bytes_per_receiver(impls: list[Impl], cfg: Config) -> Scenario:
    n = cfg.receivers_for_memory
    scenario = Scenario(
        "bytes-per-receiver",
        f"memory per connected receiver ({n:,} distinct functions, receivers excluded)",
        "B/receiver",
        "bare-weak",
    )
    receivers = make_receivers(n)  # allocated before tracing starts: not counted

    def connecting_all(connect: Callable[[Receiver], Any]) -> Callable[[], None]:
        def connect_all() -> None:
            for r in receivers:
                connect(r)

        return connect_all

    bare = BareWeak()
    used = traced_bytes(connecting_all(bare.connect))
    scenario.results["bare-weak"] = Result(used / n, [used / n])
    for impl in impls:
        sig = impl.new_signal()
        used = traced_bytes(connecting_all(sig.connect))  # each peer's connect(r): any sender
        expect_responses(impl.name, impl.send_once(sig, Model), n)
        scenario.results[impl.name] = Result(used / n, [used / n])
    return scenario


def retained_per_cycle(
    connect: Callable[[Receiver], Any], disconnect: Callable[[Receiver], Any], cycles: int
) -> float:
    """Bytes retained per connect+disconnect cycle.

    One round of *cycles* runs traced before the measured one, so that the
    containers reach their steady size: a dict that resizes during the
    measured round then frees a traced table as it allocates the new one.
    """
    receiver = make_receivers(1)[0]

    def cycle() -> None:
        for _ in range(cycles):
            connect(receiver)
            disconnect(receiver)

    gc.collect()
    tracemalloc.start()
    try:
        cycle()
        gc.collect()
        mid = tracemalloc.get_traced_memory()[0]
        cycle()
        gc.collect()
        end = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (end - mid) / cycles


def scenario_bytes_per_cycle(impls: list[Impl], cfg: Config) -> Scenario:
    cycles = cfg.cycles_for_memory
    scenario = Scenario(
        "bytes-per-cycle",
        f"memory retained per connect()+disconnect() ({cycles:,} cycles, 100 others connected)",
        "B/cycle",
        "bare-weak",
    )
    bare = BareWeak(keep := make_receivers(100))
    value = retained_per_cycle(bare.connect, bare.disconnect, cycles)
    scenario.results["bare-weak"] = Result(value, [value])
    for impl in impls:
        sig = impl.new_signal()
        others = make_receivers(100)
        for r in others:
            impl.connect(sig, r)
        value = retained_per_cycle(sig.connect, sig.disconnect, cycles)
        expect_responses(impl.name, impl.send_once(sig, Model), 100)
        scenario.results[impl.name] = Result(value, [value])
    del keep
    return scenario


def scenario_concurrency(impls: list[Impl], cfg: Config) -> Scenario:
    """Not a benchmark: do receivers that really suspend run concurrently?"""
    scenario = Scenario(
        "asend-concurrency",
        f"asend() wall time, 10 receivers each awaiting asyncio.sleep({SLEEP}) (one run)",
        "ms",
        "seq-await",
    )
    receivers = make_async_receivers(10, sleep=SLEEP)

    async def wall_ms(asend: Callable[..., Any]) -> float:
        t0 = time.perf_counter()
        responses = await asend(Model, value=1)
        elapsed = time.perf_counter() - t0
        expect_responses("asend", responses, 10)
        return elapsed * 1000

    value = asyncio.run(wall_ms(SeqAwait(receivers).asend))
    scenario.results["seq-await"] = Result(value, [value])
    for impl in impls:
        sig = impl.new_signal()
        try:
            asend = impl.asend(sig)
        except Unsupported as err:
            scenario.results[impl.name] = Result(None, note=f"n/a ({err})")
            continue
        for r in receivers:
            impl.connect(sig, r)
        value = asyncio.run(wall_ms(asend))
        scenario.results[impl.name] = Result(value, [value])
    return scenario


def build(sid: str, impls: list[Impl], cfg: Config) -> Scenario:
    if sid.startswith("send-") and sid.removeprefix("send-").isdigit():
        return scenario_send(impls, cfg, int(sid.removeprefix("send-")))
    builders: dict[str, Callable[[list[Impl], Config], Scenario]] = {
        "send-filtered": scenario_filtered,
        "send-10-priority": scenario_priority,
        "send-bound": scenario_bound,
        "connect-disconnect": scenario_connect,
        "asend-10": scenario_asend,
        "bytes-per-receiver": scenario_bytes_per_receiver,
        "bytes-per-cycle": scenario_bytes_per_cycle,
        "asend-concurrency": scenario_concurrency,
        "import": scenario_import,
    }
    return builders[sid](impls, cfg)


def import_ms(module: str, pythonpath: str | None, repeats: int) -> float:
    """Milliseconds ``import module`` adds to a fresh interpreter's start (the fastest
    of *repeats* runs, minus the fastest start without it). Bytecode is written and
    used, as in an installed package: the first run compiles, the fastest does not."""
    env = {**os.environ, "PYTHONPATH": pythonpath or ""}
    env.pop("PYTHONDONTWRITEBYTECODE", None)

    def start(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
        return time.perf_counter() - started

    # Taking turns, so that a busy moment of the machine falls on both alike.
    with_it, without = [], []
    for _ in range(repeats):
        with_it.append(start(f"import {module}"))
        without.append(start("pass"))
    return (min(with_it) - min(without)) * 1000


def scenario_import(impls: list[Impl], cfg: Config) -> Scenario:
    scenario = Scenario("import", "import, in a fresh interpreter", "ms", "blinker")
    repeats = cfg.repeats * 3
    for impl in impls:
        # tocsin at another git ref lives in a folder of its own (see load_tocsin_at).
        folder = None
        if isinstance(impl, TocsinImpl) and impl.name != "tocsin":
            folder = str(Path(impl.module.__file__).parent.parent)
        scenario.results[impl.name] = Result(import_ms(impl.import_name, folder, repeats))
    return scenario


# -- reporting ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    scenario: str
    limit: float
    relative: bool  # a ratio to the scenario's baseline, else an absolute value
    unit: str = ""  # of an absolute value


# With the compiled send path (issue 17): sends to 10 and 100 receivers at most 0.7x
# bare-weak, the pure-Python weak-reference floor; the other targets are the same.
COMPILED_LIMITS = {"send-10": 0.70, "send-100": 0.70}

TARGETS = (
    Target("send-0", 1.00, relative=True),
    Target("send-1", 1.10, relative=True),
    Target("send-10", 1.10, relative=True),
    Target("send-100", 1.10, relative=True),
    Target("send-10-priority", 1.10, relative=True),
    Target("send-filtered", 1.20, relative=True),
    Target("send-bound", 1.30, relative=True),
    Target("connect-disconnect", 1.00, relative=True),
    Target("asend-10", 1.50, relative=True),
    Target("bytes-per-receiver", 150.0, relative=False, unit="B"),
    Target("bytes-per-cycle", 0.0, relative=False, unit="B"),
    Target("asend-concurrency", 2 * SLEEP * 1000, relative=False, unit="ms"),
    Target("import", 1.50, relative=True),
)


def print_scenario(scenario: Scenario) -> None:
    harness.heading(f"{scenario.id}: {scenario.title}")
    columns = [
        harness.Column("implementation", 22, "<"),
        harness.Column(scenario.unit, 14),
        harness.Column("x " + scenario.baseline, 18, gap=2),
        harness.Column("", 0, "<"),
    ]
    rows = []
    for name, result in scenario.results.items():
        if result.value is None:
            rows.append([name, result.note])
            continue
        marker = "  (baseline)" if name == scenario.baseline else ""
        shown = harness.fmt_ratio(scenario.ratio(name))
        rows.append([name, harness.fmt(result.value, ",.1f"), shown, marker])
    harness.print_table(columns, rows)


def summarize(scenarios: dict[str, Scenario], path: str = "pure") -> list[dict[str, Any]]:
    rows = []
    compiled = path == "compiled"
    targets = [
        replace(t, limit=COMPILED_LIMITS[t.scenario])
        if compiled and t.scenario in COMPILED_LIMITS
        else t
        for t in TARGETS
    ]
    for target in targets:
        scenario = scenarios.get(target.scenario)
        row: dict[str, Any] = {"scenario": target.scenario, "limit": target.limit}
        if target.relative:
            row["target"] = f"<= {target.limit:.2f}x"
            measured = scenario.ratio("tocsin") if scenario else None
            if scenario is None:
                row["shown"] = "- (not run)"
            elif measured is None:
                row["shown"] = f"- (no {scenario.baseline})"
            else:
                row["shown"] = f"{measured:.3f}x {scenario.baseline}"
        else:
            result = scenario.results.get("tocsin") if scenario else None
            measured = result.value if result else None
            unit = target.unit
            row["target"] = f"<= {target.limit:g} {unit}" if target.limit else f"0 {unit} (< 1)"
            row["shown"] = harness.fmt(measured, ",.1f", missing="- (not run)", suffix=f" {unit}")
        row["measured"] = measured
        if target.limit == 0 and measured is not None:
            # A real leak retains at least one small block (>= 16 B) per cycle.
            row["result"] = "PASS" if measured < 1 else "MISS"
        else:
            row["result"] = harness.verdict(measured, target.limit)
        rows.append(row)
    return rows


def print_summary(rows: list[dict[str, Any]]) -> None:
    harness.heading("SUMMARY: tocsin against its targets")
    columns = [harness.Column("scenario", 22, "<"), harness.Column("measured", 24, "<")]
    columns += harness.verdict_columns(16, gap=0)
    harness.print_table(
        columns, ([r["scenario"], r["shown"], r["target"], r["result"]] for r in rows)
    )


def header(cfg: Config) -> dict[str, Any]:
    path = harness.send_path()
    also = " (the tocsin(pure) rows: the pure-Python one)" if path == "compiled" else ""
    info = harness.header(
        before=[("tocsin", f"send path: {path}{also}")],
        after=[
            (
                "mode",
                f"{cfg.name}: {cfg.repeats} samples of ~{cfg.sample_ns / 1e6:g} ms per case, "
                "fastest reported, gc disabled while timing",
            )
        ],
    )
    return {**info, "send path": path}


def main(argv: list[str] | None = None) -> int:
    args_parser = harness.parser(__doc__)
    args_parser.add_argument("--only", metavar="IDS", help="comma-separated scenario ids to run")
    args_parser.add_argument(
        "--against",
        metavar="REF",
        help="also run tocsin as it was at this git ref (before/after a change, in one run)",
    )
    args = args_parser.parse_args(argv)
    selected = (
        harness.comma_list(args_parser, "--only", args.only or "", SCENARIO_IDS) or SCENARIO_IDS
    )
    cfg = QUICK if args.quick else DEFAULT

    started = time.perf_counter()
    info = header(cfg)
    print("peers")
    impls, skipped = load_impls(args.against)
    for impl in impls:
        print(f"  {impl.name:<10} {impl.version}")
    for name, why in skipped.items():
        print(f"  {name:<10} {why}")

    scenarios: dict[str, Scenario] = {}
    for sid in SCENARIO_IDS:
        if sid in selected:
            scenarios[sid] = build(sid, impls, cfg)
            print_scenario(scenarios[sid])
    rows = summarize(scenarios, info["send path"])
    print_summary(rows)
    harness.finish(
        started,
        args.json,
        cfg,
        info,
        peers={impl.name: impl.version for impl in impls} | skipped,
        scenarios={
            sid: {
                "title": s.title,
                "unit": s.unit,
                "baseline": s.baseline,
                "results": {
                    name: {
                        "value": r.value,
                        "ratio": s.ratio(name),
                        "median": harness.median(r.samples) if r.samples else None,
                        "samples": r.samples,
                        "note": r.note,
                    }
                    for name, r in s.results.items()
                },
            }
            for sid, s in scenarios.items()
        },
        summary=rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
