"""tocsin.contrib.otel: a span per send and per receiver, read back from the SDK's
in-memory exporter. The provider is passed explicitly; the global one is never set."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import importlib.metadata
import logging
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tocsin import Signal, hooks, tracing
from tocsin.contrib import otel
from tocsin.contrib.otel import OpenTelemetryTracer
from tocsin.oncommit import Deferred
from tocsin.signals import post_save
from tocsin.testing import FakeTransaction

# Module-level, so that their spans have stable names ("send tests.contrib.test_otel.placed").
placed = Signal()
shipped = Signal()
MODULE = __name__


class Order:
    """A sender."""


class Exporter(InMemorySpanExporter):
    """The in-memory exporter, with the lookups the tests need."""

    def spans(self) -> list[ReadableSpan]:
        return list(self.get_finished_spans())

    def named(self, name: str) -> ReadableSpan:
        found = [s for s in self.get_finished_spans() if s.name == name]
        assert len(found) == 1, f"{len(found)} spans named {name!r}: {self.names()}"
        return found[0]

    def names(self) -> list[str]:
        return [s.name for s in self.get_finished_spans()]


@pytest.fixture(autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """Each test starts and ends with no tracer subscribed and the signals empty."""
    assert not tracing.tracing_active()
    yield
    otel.uninstrument()
    placed.receivers = []
    shipped.receivers = []
    assert not tracing.tracing_active(), "a test left a tracer subscribed"


@pytest.fixture
def exporter() -> Exporter:
    return Exporter()


@pytest.fixture
def provider(exporter: Exporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def subscribe(provider: TracerProvider) -> Iterator[Callable[..., OpenTelemetryTracer]]:
    """``subscribe(**options)`` adds an OpenTelemetryTracer on the test's provider."""
    removers: list[Callable[[], None]] = []

    def add(**options: Any) -> OpenTelemetryTracer:
        tracer = OpenTelemetryTracer(provider, **options)
        removers.append(tracing.add_tracer(tracer))
        return tracer

    yield add
    for remove in removers:
        remove()


@pytest.fixture
def traced(subscribe: Callable[..., OpenTelemetryTracer]) -> OpenTelemetryTracer:
    """An OpenTelemetryTracer with the default options, subscribed for the test."""
    return subscribe()


def attributes(span: ReadableSpan) -> Mapping[str, Any]:
    assert span.attributes is not None
    return span.attributes


def parent_of(span: ReadableSpan, exporter: Exporter) -> str | None:
    """The name of *span*'s parent, or None for a root span."""
    if span.parent is None:
        return None
    for other in exporter.get_finished_spans():
        assert other.context is not None
        if other.context.span_id == span.parent.span_id:
            return other.name
    return "<not exported>"


def exception_types(span: ReadableSpan) -> list[str]:
    return [
        str(attributes_["exception.type"])
        for event in span.events
        if event.name == "exception" and (attributes_ := event.attributes) is not None
    ]


# -- receivers used below --------------------------------------------------------------


def on_placed(sender: object, **kwargs: Any) -> str:
    return "noted"


def also_on_placed(sender: object, **kwargs: Any) -> str:
    return "also"


def failing(sender: object, **kwargs: Any) -> None:
    raise ValueError("no stock")


async def on_placed_async(sender: object, **kwargs: Any) -> str:
    await asyncio.sleep(0)
    return "async"


SEND = f"send {MODULE}.placed"
ON_PLACED = f"{MODULE}.on_placed"


# -- spans of a send -------------------------------------------------------------------


@pytest.mark.usefixtures("traced")
def test_a_send_makes_a_span_with_a_child_per_receiver(exporter: Exporter) -> None:
    """A send's span is named after the signal, and each receiver's span is its child."""
    placed.connect(on_placed)
    placed.connect(also_on_placed)

    assert placed.send(sender=Order, order=1) == [(on_placed, "noted"), (also_on_placed, "also")]

    assert exporter.names() == [ON_PLACED, f"{MODULE}.also_on_placed", SEND]
    send = exporter.named(SEND)
    assert send.kind is SpanKind.INTERNAL
    assert send.status.status_code is StatusCode.UNSET
    assert dict(attributes(send)) == {
        "tocsin.signal": f"{MODULE}.placed",
        "tocsin.method": "send",
        "tocsin.sender": f"{MODULE}.Order",
        "tocsin.receivers": 2,
    }
    for receiver in (on_placed, also_on_placed):
        span = exporter.named(f"{MODULE}.{receiver.__name__}")
        assert parent_of(span, exporter) == SEND
        assert span.kind is SpanKind.INTERNAL
        assert span.context is not None
        assert send.context is not None
        assert span.context.trace_id == send.context.trace_id
        assert dict(attributes(span)) == {
            "tocsin.receiver": f"{MODULE}.{receiver.__name__}",
            "code.function": receiver.__name__,
            "code.namespace": MODULE,
            "code.filepath": __file__,
            "code.lineno": receiver.__code__.co_firstlineno,
        }


@pytest.mark.usefixtures("traced")
def test_the_span_is_named_after_a_built_in_signal(exporter: Exporter) -> None:
    """post_save's span is "send tocsin.signals.post_save"."""
    post_save.connect(on_placed, sender=Order)
    try:
        post_save.send(sender=Order, instance=Order(), created=True)
    finally:
        post_save.disconnect(on_placed, sender=Order)
    assert exporter.names() == [ON_PLACED, "send tocsin.signals.post_save"]
    assert attributes(exporter.named("send tocsin.signals.post_save"))["tocsin.signal"] == (
        "tocsin.signals.post_save"
    )


@pytest.mark.usefixtures("traced")
def test_a_send_is_the_child_of_the_current_span(
    exporter: Exporter, provider: TracerProvider
) -> None:
    """The send's span joins the trace the sending code is in."""
    placed.connect(on_placed)
    with provider.get_tracer("app").start_as_current_span("request"):
        placed.send(sender=None)
    assert parent_of(exporter.named(SEND), exporter) == "request"
    assert parent_of(exporter.named(ON_PLACED), exporter) == SEND


@pytest.mark.parametrize(
    ("sender", "described"),
    [
        (Order, f"{MODULE}.Order"),
        (None, "None"),
        ("orders", "'orders'"),
        (42, "42"),
        (Order(), f"{MODULE}.Order instance"),  # an object's repr() may hold personal data
        (on_placed, ON_PLACED),
        ("x" * 300, "'" + "x" * 254 + "…"),
    ],
    ids=["class", "None", "str", "int", "object", "function", "long-str"],
)
@pytest.mark.usefixtures("traced")
def test_the_sender_is_described_briefly(
    exporter: Exporter, sender: object, described: str
) -> None:
    """A class or function by its qualified name, a plain value by its repr, cut at 256."""
    placed.connect(on_placed)
    placed.send(sender=sender)
    assert attributes(exporter.named(SEND))["tocsin.sender"] == described


def test_a_send_no_receiver_hears_makes_no_span(
    exporter: Exporter, subscribe: Callable[..., OpenTelemetryTracer]
) -> None:
    """Unless empty_sends=True: a post_init for every loaded row would be noise."""
    placed.connect(on_placed, sender=Order)
    tracer = subscribe()
    placed.send(sender=None)  # on_placed listens to Order only
    shipped.send(sender=None)
    assert exporter.spans() == []

    tracer.empty_sends = True
    shipped.send(sender=None)
    span = exporter.named(f"send {MODULE}.shipped")
    assert attributes(span)["tocsin.receivers"] == 0


@pytest.mark.usefixtures("traced")
def test_a_signal_no_module_holds_is_named_by_its_address(exporter: Exporter) -> None:
    """A local signal gets signal_name()'s fallback name."""
    local = Signal()
    local.connect(on_placed)
    local.send(sender=None)
    local.send(sender=None)
    names = [n for n in exporter.names() if n.startswith("send")]
    assert names == [f"send <Signal at {id(local):#x}>"] * 2


# -- receivers of every kind -----------------------------------------------------------


class Handler:
    def on_placed(self, sender: object, **kwargs: Any) -> str:
        return "method"

    def __call__(self, sender: object, **kwargs: Any) -> str:
        return "called"


def logged(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


@logged
def decorated(sender: object, **kwargs: Any) -> str:
    return "decorated"


@pytest.mark.usefixtures("traced")
def test_code_attributes_point_at_the_function_that_runs(exporter: Exporter) -> None:
    """Bound methods, callable objects, partials and decorated functions are seen through."""
    handler = Handler()
    placed.connect(handler.on_placed)
    placed.connect(handler, weak=False)
    placed.connect(functools.partial(on_placed, extra=1), weak=False)
    placed.connect(decorated)
    placed.send(sender=None)

    method = attributes(exporter.named(f"{MODULE}.Handler.on_placed"))
    assert method["code.function"] == "on_placed"
    assert method["code.namespace"] == f"{MODULE}.Handler"
    assert method["code.lineno"] == Handler.on_placed.__code__.co_firstlineno

    instance = attributes(exporter.named(f"{MODULE}.Handler instance"))
    assert instance["tocsin.receiver"] == f"{MODULE}.Handler instance"
    assert (instance["code.namespace"], instance["code.function"]) == (
        f"{MODULE}.Handler",
        "__call__",
    )

    partial = attributes(exporter.named(f"functools.partial({ON_PLACED})"))
    assert partial["code.function"] == "on_placed"

    wrapped = attributes(exporter.named(f"{MODULE}.decorated"))
    assert wrapped["code.lineno"] == decorated.__wrapped__.__code__.co_firstlineno  # type: ignore[attr-defined]


@pytest.mark.usefixtures("traced")
def test_a_builtin_receiver_has_no_code_attributes(exporter: Exporter) -> None:
    """Only what is cheap and true is recorded."""
    placed.connect(dict, weak=False)  # dict(signal=..., sender=...) is a receiver
    placed.send(sender=None)
    assert dict(attributes(exporter.named("builtins.dict"))) == {"tocsin.receiver": "builtins.dict"}


# -- errors ----------------------------------------------------------------------------


@pytest.mark.usefixtures("traced")
def test_an_error_in_send_marks_the_receiver_and_the_send(exporter: Exporter) -> None:
    """Both spans record the exception and have the ERROR status; later receivers never run."""
    placed.connect(failing)
    placed.connect(on_placed)
    with pytest.raises(ValueError, match="no stock"):
        placed.send(sender=None)

    assert exporter.names() == [f"{MODULE}.failing", SEND]
    for span in exporter.spans():
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "ValueError: no stock"
        assert exception_types(span) == ["ValueError"]
    assert attributes(exporter.named(SEND))["tocsin.receivers"] == 1


class Interrupted(BaseException):
    """Not an Exception, like KeyboardInterrupt."""


@pytest.mark.usefixtures("traced")
def test_a_base_exception_ends_the_spans_without_marking_them(exporter: Exporter) -> None:
    """As OpenTelemetry's use_span does: only Exceptions are errors."""

    def interrupted(sender: object, **kwargs: Any) -> None:
        raise Interrupted

    placed.connect(interrupted, weak=False)
    with pytest.raises(Interrupted):
        placed.send(sender=None)
    assert len(exporter.spans()) == 2
    for span in exporter.spans():
        assert span.status.status_code is StatusCode.UNSET
        assert span.end_time is not None


@pytest.mark.usefixtures("traced")
def test_send_robust_marks_only_the_failing_receiver(
    exporter: Exporter, caplog: pytest.LogCaptureFixture
) -> None:
    """The send caught the error, so its span is not an error; the receiver's is."""
    placed.connect(failing)
    placed.connect(on_placed)
    with caplog.at_level(logging.CRITICAL, logger="tocsin"):
        responses = placed.send_robust(sender=None)
    assert [r for r, _ in responses] == [failing, on_placed]

    failed = exporter.named(f"{MODULE}.failing")
    assert failed.status.status_code is StatusCode.ERROR
    assert exception_types(failed) == ["ValueError"]
    assert parent_of(failed, exporter) == SEND
    assert exporter.named(ON_PLACED).status.status_code is StatusCode.UNSET
    send = exporter.named(SEND)
    assert send.status.status_code is StatusCode.UNSET
    assert exception_types(send) == []
    assert dict(attributes(send))["tocsin.method"] == "send_robust"
    assert attributes(send)["tocsin.receivers"] == 2


# -- async -----------------------------------------------------------------------------


async def first(sender: object, **kwargs: Any) -> str:
    await asyncio.sleep(0)
    return "first"


async def second(sender: object, **kwargs: Any) -> str:
    await asyncio.sleep(0)
    return "second"


@pytest.mark.usefixtures("traced")
def test_asend_concurrent_receivers_are_children_of_the_send(exporter: Exporter) -> None:
    """Each async receiver runs in its own task; its span's parent is still the send's."""
    placed.connect(first)
    placed.connect(second)
    placed.connect(on_placed)  # a sync receiver: asend runs it in a worker thread

    async def main() -> list[tuple[Any, Any]]:
        return await placed.asend(sender=None)

    assert asyncio.run(main()) == [(on_placed, "noted"), (first, "first"), (second, "second")]
    send = exporter.named(SEND)
    assert attributes(send)["tocsin.method"] == "asend"
    assert attributes(send)["tocsin.receivers"] == 3
    for name in ("first", "second", "on_placed"):
        assert parent_of(exporter.named(f"{MODULE}.{name}"), exporter) == SEND


@pytest.mark.usefixtures("traced")
def test_send_waits_for_async_receivers_under_its_span(exporter: Exporter) -> None:
    """A sync send() with async receivers runs them on a loop; their spans are still children."""
    placed.connect(first)
    placed.connect(on_placed)
    placed.send(sender=None)
    assert parent_of(exporter.named(f"{MODULE}.first"), exporter) == SEND
    assert parent_of(exporter.named(ON_PLACED), exporter) == SEND


@pytest.mark.usefixtures("traced")
def test_asend_robust_marks_the_failing_async_receiver(
    exporter: Exporter, caplog: pytest.LogCaptureFixture
) -> None:
    """An async receiver's failure is on its own span; asend_robust's span is no error."""

    async def broken(sender: object, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        raise KeyError("gone")

    placed.connect(broken)
    placed.connect(first)
    with caplog.at_level(logging.CRITICAL, logger="tocsin"):
        responses = asyncio.run(placed.asend_robust(sender=None))
    assert isinstance(responses[0][1], KeyError)

    failed = exporter.named(f"{MODULE}.{broken.__qualname__}")
    assert failed.status.status_code is StatusCode.ERROR
    assert exception_types(failed) == ["KeyError"]
    assert parent_of(failed, exporter) == SEND
    send = exporter.named(SEND)
    assert send.status.status_code is StatusCode.UNSET
    assert attributes(send)["tocsin.method"] == "asend_robust"


@pytest.mark.usefixtures("traced")
def test_asend_error_marks_the_send(exporter: Exporter) -> None:
    """An async receiver's error that escapes asend() is recorded on both spans."""

    async def broken(sender: object, **kwargs: Any) -> None:
        raise KeyError("gone")

    placed.connect(broken)
    with pytest.raises(KeyError):
        asyncio.run(placed.asend(sender=None))
    assert exporter.named(SEND).status.status_code is StatusCode.ERROR
    assert exporter.named(f"{MODULE}.{broken.__qualname__}").status.status_code is (
        StatusCode.ERROR
    )


@pytest.mark.usefixtures("traced")
def test_spans_a_sync_receiver_makes_are_its_children(
    exporter: Exporter, provider: TracerProvider
) -> None:
    """The receiver's span is current while it runs."""
    app = provider.get_tracer("app")

    def queries(sender: object, **kwargs: Any) -> None:
        with app.start_as_current_span("SELECT"):
            pass

    placed.connect(queries)
    placed.send(sender=None)
    assert parent_of(exporter.named("SELECT"), exporter) == f"{MODULE}.{queries.__qualname__}"


@pytest.mark.usefixtures("traced")
def test_spans_concurrent_async_receivers_make_are_their_children(
    exporter: Exporter, provider: TracerProvider
) -> None:
    """Two receivers that interleave each see their own span as the current one.

    Fails until tracing.py runs each traced async receiver in a context of its own:
    the receivers of one send share one contextvars.Context (_async.run_concurrently),
    so the span one makes current is current in the other too.
    """
    app = provider.get_tracer("app")

    async def fetch(sender: object, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        with app.start_as_current_span("fetch"):
            await asyncio.sleep(0)

    async def store(sender: object, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        with app.start_as_current_span("store"):
            await asyncio.sleep(0)

    placed.connect(fetch)
    placed.connect(store)

    async def main() -> object:
        await placed.asend(sender=None)
        return trace.get_current_span()

    assert asyncio.run(main()) is trace.INVALID_SPAN
    assert parent_of(exporter.named("fetch"), exporter) == f"{MODULE}.{fetch.__qualname__}"
    assert parent_of(exporter.named("store"), exporter) == f"{MODULE}.{store.__qualname__}"


set_by_receivers: contextvars.ContextVar[str] = contextvars.ContextVar("set_by_receivers")


@pytest.mark.usefixtures("traced")
def test_a_value_an_async_receiver_sets_survives_a_slower_receiver() -> None:
    """Tracing does not change what the sender's context holds after asend().

    A test of tracing.py, kept here with the other async-context test: untraced, the
    receivers share one context and "quick"'s value is what the caller sees. Copying
    the whole of each traced receiver's context back when it ends (what
    _async.restore_context does) lets "slow", which finishes last, put back the value
    it copied before "quick" set it; only what a receiver changed must be copied back.
    """

    async def quick(sender: object, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        set_by_receivers.set("set by quick")

    async def slow(sender: object, **kwargs: Any) -> None:
        for _ in range(3):
            await asyncio.sleep(0)

    placed.connect(quick)
    placed.connect(slow)

    async def main() -> str:
        set_by_receivers.set("before")
        await placed.asend(sender=None)
        return set_by_receivers.get()

    assert asyncio.run(main()) == "set by quick"


@pytest.mark.usefixtures("traced")
def test_the_receiver_span_parent_is_the_send_even_if_a_receiver_leaks_a_span(
    exporter: Exporter, provider: TracerProvider
) -> None:
    """The parent is named, not read from the context, which a receiver may have changed."""
    leaked = provider.get_tracer("app").start_span("leaked")

    def leaks(sender: object, **kwargs: Any) -> None:
        context_api.attach(trace.set_span_in_context(leaked))  # never detached

    placed.connect(leaks)
    placed.connect(on_placed)

    contextvars.copy_context().run(placed.send, None)  # the leak stays in that copy
    leaked.end()
    assert parent_of(exporter.named(ON_PLACED), exporter) == SEND


# -- nesting and threads ---------------------------------------------------------------


@pytest.mark.usefixtures("traced")
def test_a_receiver_that_sends_nests_the_second_send_under_it(exporter: Exporter) -> None:
    """send placed -> receiver -> send shipped -> its receiver: one trace, four levels."""

    def ship(sender: object, **kwargs: Any) -> None:
        shipped.send(sender=sender)

    placed.connect(ship)
    shipped.connect(on_placed)
    placed.send(sender=Order)

    ship_name = f"{MODULE}.{ship.__qualname__}"
    assert parent_of(exporter.named(ship_name), exporter) == SEND
    assert parent_of(exporter.named(f"send {MODULE}.shipped"), exporter) == ship_name
    assert parent_of(exporter.named(ON_PLACED), exporter) == f"send {MODULE}.shipped"
    assert len({s.context.trace_id for s in exporter.spans() if s.context}) == 1


@pytest.mark.usefixtures("traced")
def test_async_nested_sends_nest(exporter: Exporter) -> None:
    """The same from an async receiver awaiting asend()."""

    async def ship(sender: object, **kwargs: Any) -> None:
        await shipped.asend(sender=sender)

    placed.connect(ship)
    shipped.connect(first)
    asyncio.run(placed.asend(sender=Order))

    ship_name = f"{MODULE}.{ship.__qualname__}"
    assert parent_of(exporter.named(f"send {MODULE}.shipped"), exporter) == ship_name
    assert parent_of(exporter.named(f"{MODULE}.first"), exporter) == f"send {MODULE}.shipped"


@pytest.mark.usefixtures("traced")
def test_sends_from_threads_make_separate_traces(exporter: Exporter) -> None:
    """The tracer keeps no per-thread state: each thread's send has its own trace."""
    barrier = threading.Barrier(4)

    def wait(sender: object, **kwargs: Any) -> None:
        barrier.wait(timeout=5)  # all four sends are in progress at once

    placed.connect(wait)
    threads = [threading.Thread(target=placed.send, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    sends = {s.context.span_id: s for s in exporter.spans() if s.name == SEND and s.context}
    receivers = [s for s in exporter.spans() if s.name != SEND]
    assert len(sends) == 4
    assert len(receivers) == 4
    assert {s.parent.span_id for s in receivers if s.parent} == set(sends)
    assert len({s.context.trace_id for s in sends.values() if s.context}) == 4


# -- on-commit receivers ---------------------------------------------------------------


@pytest.mark.usefixtures("traced")
def test_a_deferred_on_commit_receiver_has_no_span(exporter: Exporter) -> None:
    """It does not run during the send; its later run is outside any send."""
    placed.connect(on_placed, on_commit=True)
    with FakeTransaction():
        ((receiver, response),) = placed.send(sender=None)
        assert receiver is on_placed
        assert isinstance(response, Deferred)
        assert exporter.names() == [SEND]
        assert attributes(exporter.named(SEND))["tocsin.receivers"] == 0

    assert response.state == "done"  # committed at the end of the block
    assert exporter.names() == [SEND]


@pytest.mark.usefixtures("traced")
def test_the_send_span_counts_the_deferred_receivers(exporter: Exporter) -> None:
    """``tocsin.receivers`` counts the receivers that ran, ``.deferred`` those deferred.

    Fails until tracing.py reports deferred receivers in SendEvent.calls (with their
    Deferred as the response), as tests/test_tracing.py expects.
    """
    placed.connect(on_placed)
    placed.connect(also_on_placed, on_commit=True)
    with FakeTransaction():
        placed.send(sender=None)
    send = attributes(exporter.named(SEND))
    assert (send["tocsin.receivers"], send["tocsin.receivers.deferred"]) == (1, 1)


@pytest.mark.usefixtures("traced")
def test_an_on_commit_receiver_outside_a_transaction_has_a_span(exporter: Exporter) -> None:
    """With no transaction it is called during the send, like any receiver.

    Fails until tracing.py wraps on-commit receivers too: _wrap() leaves them
    unwrapped, and outside a transaction _defer() calls them at once, untraced.
    """
    placed.connect(on_placed, on_commit=True)
    assert placed.send(sender=None) == [(on_placed, "noted")]
    assert exporter.names() == [ON_PLACED, SEND]


# -- arguments -------------------------------------------------------------------------


@pytest.mark.usefixtures("traced")
def test_arguments_are_not_recorded_by_default(exporter: Exporter) -> None:
    """Values may be personal data."""
    placed.connect(on_placed)
    placed.send(sender=None, email="ada@example.com")
    assert not any(key.startswith("tocsin.argument") for key in attributes(exporter.named(SEND)))


def test_record_arguments_records_each_repr_cut_short(
    exporter: Exporter, subscribe: Callable[..., OpenTelemetryTracer]
) -> None:
    """``tocsin.argument.<name>`` is the repr, at most max_length characters."""
    subscribe(record_arguments=True, max_length=10)
    placed.connect(on_placed)
    placed.send(sender=None, order=42, note="a long note indeed")
    recorded = {
        key: value
        for key, value in attributes(exporter.named(SEND)).items()
        if key.startswith("tocsin.argument.")
    }
    assert recorded == {"tocsin.argument.order": "42", "tocsin.argument.note": "'a long n…"}


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_a_failing_repr_is_not_an_error(
    exporter: Exporter, subscribe: Callable[..., OpenTelemetryTracer]
) -> None:
    """A tracer must not raise into the send: the value is named by its class instead."""
    subscribe(record_arguments=True)
    placed.connect(on_placed)
    placed.send(sender=None, odd=Unprintable())
    assert attributes(exporter.named(SEND))["tocsin.argument.odd"] == (
        f"<{MODULE}.Unprintable object; repr() failed>"
    )


def test_record_arguments_can_name_the_arguments(
    exporter: Exporter, subscribe: Callable[..., OpenTelemetryTracer]
) -> None:
    """Only the arguments named are recorded."""
    subscribe(record_arguments={"order"})
    placed.connect(on_placed)
    placed.send(sender=None, order=42, email="ada@example.com")
    keys = [k for k in attributes(exporter.named(SEND)) if k.startswith("tocsin.argument.")]
    assert keys == ["tocsin.argument.order"]


def test_options_are_checked() -> None:
    """A bare string for record_arguments would be read as a set of letters."""
    with pytest.raises(TypeError, match=r"write \['order'\]"):
        OpenTelemetryTracer(record_arguments="order")
    with pytest.raises(ValueError, match="max_length must be a positive int"):
        OpenTelemetryTracer(max_length=0)


# -- instrument() / uninstrument() -----------------------------------------------------


def test_instrument_then_uninstrument(exporter: Exporter, provider: TracerProvider) -> None:
    """uninstrument() stops the spans and puts the untraced send methods back."""
    placed.connect(on_placed)
    tracer = otel.instrument(tracer_provider=provider)
    assert isinstance(tracer, OpenTelemetryTracer)
    assert tracing.tracing_active()
    placed.send(sender=None)
    assert exporter.names() == [ON_PLACED, SEND]

    otel.uninstrument()
    assert not tracing.tracing_active()
    assert not hooks.installed(Signal())
    placed.send(sender=None)
    assert len(exporter.spans()) == 2
    otel.uninstrument()  # again: nothing to do


def test_instrument_twice_is_one_tracer(
    exporter: Exporter, provider: TracerProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """The second call returns the first tracer, and a send still makes one span."""
    placed.connect(on_placed)
    tracer = otel.instrument(tracer_provider=provider)
    with caplog.at_level(logging.WARNING, logger="tocsin"):
        assert otel.instrument(tracer_provider=provider) is tracer
    assert caplog.records == []
    placed.send(sender=None)
    assert exporter.names() == [ON_PLACED, SEND]

    with caplog.at_level(logging.WARNING, logger="tocsin"):
        assert otel.instrument(tracer_provider=provider, record_arguments=True) is tracer
    assert "already instrumented" in caplog.text
    assert tracer.record_arguments is False

    otel.uninstrument()
    assert otel.instrument(tracer_provider=provider, record_arguments=True) is not tracer


def test_the_default_provider_is_the_global_one(
    exporter: Exporter, provider: TracerProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without tracer_provider, spans go where OpenTelemetry's global provider says."""
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    placed.connect(on_placed)
    otel.instrument()
    placed.send(sender=None)
    assert exporter.names() == [ON_PLACED, SEND]
    scope = exporter.named(SEND).instrumentation_scope
    assert scope is not None
    assert scope.name == "tocsin.contrib.otel"


def test_instrumenting_during_a_traced_send(exporter: Exporter, provider: TracerProvider) -> None:
    """A tracer subscribed during a send sees nothing of that send: a send is seen
    whole, by the tracers subscribed when it started, or not at all."""
    events: list[tracing.SendEvent] = []

    def start_tracing(sender: object, **kwargs: Any) -> None:
        otel.instrument(tracer_provider=provider)

    placed.connect(start_tracing)
    placed.connect(on_placed)
    stop = tracing.subscribe(events.append)
    try:
        placed.send(sender=None)
    finally:
        stop()
    assert len(events) == 1
    assert exporter.names() == []
    otel.uninstrument()


def test_a_missing_opentelemetry_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ImportError names the extra."""
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "tocsin.contrib.otel")
    with pytest.raises(ImportError, match=r"pip install 'tocsin\[otel\]'"):
        importlib.import_module("tocsin.contrib.otel")


def test_a_worker_continues_the_trace_of_the_send(
    exporter: Exporter, provider: TracerProvider
) -> None:
    """With instrument(), the spans of an event's receivers in a worker are in the trace of
    the send that published it, under the publisher's span."""
    from tocsin.remote import MemoryTransport, Remote, Worker

    remote = Remote(MemoryTransport(), stream="orders")
    remote.publish(placed)
    otel.instrument(tracer_provider=provider)
    try:
        placed.send(sender=None)
        published = exporter.spans()
        remote.disconnect()  # now play the worker: the receiver runs here
        placed.connect(on_placed)
        Worker(remote, block=0.01).run_once()
    finally:
        remote.disconnect()
    sends = [s for s in exporter.spans() if s.name == SEND]
    assert len(sends) == 2  # the send, and the worker's send again
    first, again = sends
    assert first.context is not None
    assert again.context is not None
    assert again.context.trace_id == first.context.trace_id
    [publisher] = [s for s in published if s.name != SEND]
    assert publisher.context is not None
    assert again.parent is not None
    assert again.parent.span_id == publisher.context.span_id
    assert parent_of(exporter.named(ON_PLACED), exporter) == SEND


def test_remote_context_can_be_left_out(exporter: Exporter, provider: TracerProvider) -> None:
    """instrument(remote_context=False) adds no propagator."""
    from tocsin.remote import _propagation as propagation

    otel.instrument(tracer_provider=provider, remote_context=False)
    assert propagation.inject() is None
    otel.uninstrument()
    otel.instrument(tracer_provider=provider)
    assert propagation.inject() is None  # no span is current: nothing to carry
    with provider.get_tracer("test").start_as_current_span("request"):
        carrier = propagation.inject()
    assert carrier is not None
    assert set(carrier) == {"traceparent"}
    otel.uninstrument()
    assert propagation.inject() is None


# -- the instrumentor opentelemetry-instrument loads ---------------------------------------


def test_opentelemetry_instrument_finds_the_instrumentor(
    exporter: Exporter, provider: TracerProvider
) -> None:
    """The ``opentelemetry_instrumentor`` entry point named ``tocsin`` loads
    TocsinInstrumentor, whose instrument() and uninstrument() are otel's."""
    found = [
        entry_point
        for entry_point in importlib.metadata.entry_points(group="opentelemetry_instrumentor")
        if entry_point.name == "tocsin"
    ]
    assert len(found) == 1, "no entry point: reinstall tocsin (pip install -e .)"
    instrumentor = found[0].load()()
    assert isinstance(instrumentor, otel.TocsinInstrumentor)
    placed.connect(on_placed)
    # As in code, so its dependency check runs too: "tocsin", installed. (opentelemetry-instrument
    # checks the distribution's instead, and passes no options.)
    instrumentor.instrument(tracer_provider=provider)
    try:
        assert instrumentor.is_instrumented_by_opentelemetry
        placed.send(sender=None)
    finally:
        instrumentor.uninstrument()
    assert not tracing.tracing_active()
    placed.send(sender=None)  # no longer traced
    assert exporter.names() == [ON_PLACED, SEND]
