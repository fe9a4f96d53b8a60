"""OpenTelemetry spans for signals: one per send, and one per receiver inside it.

::

    from tocsin.contrib import otel

    otel.instrument()     # every send of every signal makes spans from now on
    ...
    otel.uninstrument()   # and no longer: Signal.send is the untraced one again

A send's span is named ``send <module>.<signal>`` (``send tocsin.signals.post_save``);
each receiver it calls gets a child span named after the receiver, made current
while the receiver runs, so that the spans the receiver makes (a database query,
an HTTP call, a nested send) are its children. A receiver that raises marks its
span as an error; so does a send that raises, but not a ``send_robust()`` that
caught the error. Argument values are not recorded unless asked for
(``record_arguments``): they may be personal data.

It is a :class:`tocsin.tracing.Tracer`, so it costs nothing until instrumented.
Without code, ``opentelemetry-instrument python app.py`` instruments tocsin as it
does other libraries: it finds :class:`TocsinInstrumentor` through the
``opentelemetry_instrumentor`` entry point named ``tocsin``.
See docs/tracing.md. Needs the ``otel`` extra: ``pip install 'tocsin[otel]'``.
"""

from __future__ import annotations

try:
    from opentelemetry import trace
    from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
        BaseInstrumentor,  # its module opts out of type checking: mypy sees no names there
    )
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"tocsin.contrib.otel needs the OpenTelemetry API and instrumentation packages "
        f"({_error.name} is missing): pip install 'tocsin[otel]'"
    ) from _error

import contextlib
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from types import FunctionType, MethodType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from .. import __version__, tracing
from .._inspect import describe
from ..introspect import signal_name
from ..oncommit import Deferred
from ..remote import add_propagator

__all__ = [
    "OpenTelemetryTracer",
    "TocsinInstrumentor",
    "TraceContextPropagator",
    "instrument",
    "uninstrument",
]

logger: logging.Logger = logging.getLogger("tocsin")

Attributes = dict[str, str | int]

# Senders whose repr() is a short, plain value; any other object is named by its
# class only, since its repr() may show personal data.
_PLAIN = (str, int, float, bool, type(None))


class OpenTelemetryTracer(tracing.Tracer):
    """Makes an OpenTelemetry span for each send, and one for each receiver it calls.

    Subscribe it with :func:`instrument`, or with :func:`tocsin.tracing.add_tracer`
    to hold one of your own (a second provider, say).

    :param tracer_provider: where the spans go; by default the global provider
        (``opentelemetry.trace.get_tracer_provider()``), also one set later.
    :param record_arguments: record the send's keyword arguments on its span, as
        ``tocsin.argument.<name>`` = their ``repr()``: all of them (True), none
        (False, the default: values may be personal data), or only the names given.
    :param max_length: the longest ``repr()`` recorded; longer ones are cut, with
        a final ``…``.
    :param empty_sends: also make a span for a send that calls no receiver
        (by default such a send, a ``post_init`` nobody listens to, makes none).
    :raises TypeError: if *record_arguments* is a string (write ``["created"]``).
    :raises ValueError: if *max_length* is not a positive ``int``.

    The options are kept as attributes of the same names (``record_arguments``
    as True, False or a ``frozenset`` of names). What the spans hold is in
    docs/tracing.md#the-spans.
    """

    record_arguments: bool | frozenset[str]
    max_length: int
    empty_sends: bool

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        *,
        record_arguments: bool | Iterable[str] = False,
        max_length: int = 256,
        empty_sends: bool = False,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.record_arguments, self.max_length, self.empty_sends = _checked(
            record_arguments, max_length, empty_sends
        )
        self._tracer = trace.get_tracer(__name__, __version__, tracer_provider)
        # The context of each send in progress, with its span current: the parent
        # of its receivers' spans, whatever the context they run in holds then.
        self._parents: dict[tracing.SendEvent, Context] = {}

    def trace_send(self, event: tracing.SendEvent) -> AbstractContextManager[Any] | None:
        if not self.empty_sends and not event.signal.has_listeners(event.sender):
            return None
        return self._send_span(event)

    @contextlib.contextmanager
    def _send_span(self, event: tracing.SendEvent) -> Iterator[None]:
        name = signal_name(event.signal)
        attributes: Attributes = {
            "tocsin.signal": name,
            "tocsin.method": event.method,
            "tocsin.sender": self._describe_sender(event.sender),
        }
        if self.record_arguments:
            attributes.update(self._arguments(event.named))
        # start_as_current_span records an exception that escapes the send and
        # sets the ERROR status, as OpenTelemetry's instrumentations do.
        with self._tracer.start_as_current_span(
            f"send {name}", kind=SpanKind.INTERNAL, attributes=attributes
        ) as span:
            self._parents[event] = trace.set_span_in_context(span)
            try:
                yield
            finally:
                del self._parents[event]
                deferred = sum(isinstance(call.response, Deferred) for call in event.calls)
                span.set_attribute("tocsin.receivers", len(event.calls) - deferred)
                if deferred:
                    span.set_attribute("tocsin.receivers.deferred", deferred)

    def trace_receiver(
        self, event: tracing.SendEvent, receiver: Callable[..., Any]
    ) -> AbstractContextManager[Any]:
        name = describe(receiver)
        attributes: Attributes = {"tocsin.receiver": name, **_code_attributes(receiver)}
        # The parent is named rather than read from the current context, where
        # an earlier receiver may have left a span of its own (or, for async
        # receivers sharing one context, made one current). None for a send that
        # began before this tracer was subscribed: the current context, then.
        return self._tracer.start_as_current_span(
            name, context=self._parents.get(event), kind=SpanKind.INTERNAL, attributes=attributes
        )

    def _describe_sender(self, sender: object) -> str:
        if isinstance(sender, _PLAIN):
            return self._repr(sender)
        return describe(sender)  # a class's qualified name, or "module.Class instance"

    def _arguments(self, named: Mapping[str, Any]) -> Attributes:
        wanted = self.record_arguments
        return {
            f"tocsin.argument.{key}": self._repr(value)
            for key, value in named.items()
            if isinstance(wanted, bool) or key in wanted
        }

    def _repr(self, value: object) -> str:
        try:
            text = repr(value)
        except Exception:  # a tracer must not raise into the send
            text = f"<{describe(type(value))} object; repr() failed>"
        if len(text) > self.max_length:
            text = text[: self.max_length - 1] + "…"
        return text


def _checked(
    record_arguments: bool | Iterable[str], max_length: int, empty_sends: bool
) -> tuple[bool | frozenset[str], int, bool]:
    if isinstance(record_arguments, str):
        raise TypeError(
            f"record_arguments takes True, False or a collection of argument names; "
            f"got the string {record_arguments!r} (write [{record_arguments!r}])."
        )
    if type(max_length) is not int or max_length < 1:
        raise ValueError(f"max_length must be a positive int; got {max_length!r}.")
    if not isinstance(record_arguments, bool):
        record_arguments = frozenset(record_arguments)
    return record_arguments, max_length, bool(empty_sends)


def _code_attributes(receiver: object) -> Attributes:
    """OpenTelemetry's ``code.*`` attributes of the function a receiver runs, or {}."""
    function = _function_of(receiver)
    if function is None:
        return {}
    namespace, _, name = function.__qualname__.rpartition(".")
    module = function.__module__ or ""
    return {
        "code.function": name,
        "code.namespace": f"{module}.{namespace}" if module and namespace else module,
        "code.filepath": function.__code__.co_filename,
        "code.lineno": function.__code__.co_firstlineno,
    }


def _function_of(receiver: object) -> FunctionType | None:
    """The Python function behind *receiver* (a partial's, a method's, a callable
    object's ``__call__``, under any ``functools.wraps`` decorators), or None."""
    target: Any = receiver
    try:
        while isinstance(target, functools.partial):
            target = target.func
        if isinstance(target, MethodType):
            target = target.__func__
        elif not isinstance(target, FunctionType):
            target = getattr(type(target), "__call__", None)  # noqa: B004 - a callable object
        target = inspect.unwrap(target)
    except Exception:  # nice to have, never worth breaking a send for
        return None
    return target if isinstance(target, FunctionType) else None


# -- instrument() / uninstrument() ---------------------------------------------------


class _Instrumented:
    tracer: OpenTelemetryTracer | None = None
    remove: Callable[[], None] | None = None
    unpropagate: Callable[[], None] | None = None


class TraceContextPropagator:
    """Carries the current trace with remote events (:func:`tocsin.remote.add_propagator`).

    It uses OpenTelemetry's configured propagator (W3C ``traceparent`` by
    default): the worker's spans for an event are children of the span
    current where it was published, so one trace shows the send, the
    publish, and the receivers that ran in the worker.
    """

    def inject(self, carrier: dict[str, str]) -> None:
        propagate.inject(carrier)

    @contextlib.contextmanager
    def extract(self, carrier: Mapping[str, str]) -> Iterator[None]:
        token = otel_context.attach(propagate.extract(carrier))
        try:
            yield
        finally:
            otel_context.detach(token)


_instrumented = _Instrumented()
_lock = threading.Lock()


def instrument(
    *,
    tracer_provider: trace.TracerProvider | None = None,
    record_arguments: bool | Iterable[str] = False,
    max_length: int = 256,
    empty_sends: bool = False,
    remote_context: bool = True,
) -> OpenTelemetryTracer:
    """Make spans for every send of every signal, from now on; returns the tracer.

    The options are :class:`OpenTelemetryTracer`'s, and *remote_context*:
    carry the trace with remote events (:class:`TraceContextPropagator`), so
    that a worker continues the trace of the send that published each one. Calling it again while
    instrumented changes nothing and returns the same tracer, as OpenTelemetry's
    instrumentors do (with a logged warning if the options differ): call
    :func:`uninstrument` first to change them. :func:`uninstrument` removes
    the propagator too.

    :raises TypeError: as :class:`OpenTelemetryTracer` does, for wrong options.
    :raises ValueError: as :class:`OpenTelemetryTracer` does, for wrong options.
    """
    options = (tracer_provider, *_checked(record_arguments, max_length, empty_sends))
    with _lock:
        current = _instrumented.tracer
        if current is None:
            current = _instrumented.tracer = OpenTelemetryTracer(
                tracer_provider,
                record_arguments=record_arguments,
                max_length=max_length,
                empty_sends=empty_sends,
            )
            _instrumented.remove = tracing.add_tracer(current)
            if remote_context:
                _instrumented.unpropagate = add_propagator(TraceContextPropagator())
        elif options != _options_of(current):
            logger.warning(
                "tocsin.contrib.otel.instrument(): already instrumented, so the new options "
                "are ignored; call uninstrument() first to change them."
            )
        return current


def _options_of(tracer: OpenTelemetryTracer) -> tuple[object, ...]:
    return (tracer.tracer_provider, tracer.record_arguments, tracer.max_length, tracer.empty_sends)


def uninstrument() -> None:
    """Stop making spans. Does nothing when not instrumented.

    Once no other tracer is subscribed, tracing's hook is removed and sends
    take their untraced path again.
    """
    with _lock:
        if _instrumented.remove is not None:
            _instrumented.remove()
        if _instrumented.unpropagate is not None:
            _instrumented.unpropagate()
        _instrumented.tracer = _instrumented.remove = _instrumented.unpropagate = None


class TocsinInstrumentor(BaseInstrumentor):  # type: ignore[misc]  # the base is untyped
    """:func:`instrument` and :func:`uninstrument` as an OpenTelemetry instrumentor.

    ``opentelemetry-instrument`` loads it through tocsin's
    ``opentelemetry_instrumentor`` entry point (named ``tocsin``; leave it out
    with ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=tocsin``) and calls
    ``instrument()`` with no options. In code, ``TocsinInstrumentor().instrument()``
    takes :func:`instrument`'s options as keywords (``tracer_provider=``...),
    as other instrumentors do; ``uninstrument()`` undoes it.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        # What it instruments ships with it: any installed tocsin is the right one.
        return ("tocsin",)

    def _instrument(self, **options: Any) -> None:
        instrument(**options)

    def _uninstrument(self, **options: Any) -> None:
        uninstrument()
