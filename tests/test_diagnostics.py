"""Tests of ``tocsin.diagnostics``: a warning when a weakly connected receiver
is garbage collected too soon.

With the diagnostic on, a lambda, closure, ``functools.partial`` or callable
object connected weakly is watched: when it is collected, a
:class:`LostReceiverWarning` names it and the line that connected it.
Module-level functions and bound methods are never watched. It is off by
default; every test here starts with it off and leaves it as it found it.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import re
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tocsin import Signal, diagnostics, receiver
from tocsin.diagnostics import LostReceiverWarning, lost_receiver_warnings, warn_on_lost_receivers


def module_level(**kwargs: Any) -> str:
    return "module_level"


class Handler:
    """Its instances are callable receivers; its methods are receivers too."""

    def __call__(self, **kwargs: Any) -> str:
        return "called"

    def method(self, **kwargs: Any) -> str:
        return "method"

    @classmethod
    def class_method(cls, **kwargs: Any) -> str:
        return "class_method"

    @staticmethod
    def static_method(**kwargs: Any) -> str:
        return "static_method"


@pytest.fixture(autouse=True)
def diagnostic_off() -> Iterator[None]:
    """Every test starts with the diagnostic off (the default) and ends with it off."""
    assert not switch_on(), "the diagnostic was left on"
    try:
        yield
    finally:
        warn_on_lost_receivers(False)


@pytest.fixture
def diagnostic_on(diagnostic_off: None) -> None:
    warn_on_lost_receivers()


def switch_on() -> bool:
    """Whether the diagnostic is on (read through a call, so that mypy does not narrow)."""
    return diagnostics._switch.on


def line_below(lines: int = 1) -> str:
    """``file:line`` of the line *lines* below the caller's: where it connects."""
    frame = sys._getframe(1)
    assert frame.f_code.co_filename == __file__
    return f"{__file__}:{frame.f_lineno + lines}"


class NoLostReceiverWarnings:
    """Collects warnings; ``check()`` asserts that none was a LostReceiverWarning."""

    def __init__(self) -> None:
        self._catcher = warnings.catch_warnings(record=True)
        self.caught: list[warnings.WarningMessage] = []

    def __enter__(self) -> NoLostReceiverWarnings:
        self.caught = self._catcher.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc: Any) -> None:
        self._catcher.__exit__(*exc)
        lost = [w for w in self.caught if issubclass(w.category, LostReceiverWarning)]
        assert lost == [], f"unexpected warnings: {[str(w.message) for w in lost]}"


def message_of(record: pytest.WarningsRecorder) -> str:
    lost = [w for w in record if issubclass(w.category, LostReceiverWarning)]
    assert len(lost) == 1, [str(w.message) for w in lost]
    return str(lost[0].message)


# -- what is watched ------------------------------------------------------------------


@pytest.mark.usefixtures("diagnostic_on")
def test_a_lost_lambda_is_reported() -> None:
    signal = Signal()
    site = line_below(2)
    with pytest.warns(LostReceiverWarning) as record:
        signal.connect(lambda **kwargs: None)
    message = message_of(record)
    assert "test_diagnostics.test_a_lost_lambda_is_reported.<locals>.<lambda>" in message
    assert f"connected weakly at {site}," in message
    assert "weak=False" in message
    assert signal.send(None) == []
    assert signal.receivers == []


@pytest.mark.usefixtures("diagnostic_on")
def test_a_lost_closure_is_reported() -> None:
    def make(greeting: str) -> Callable[..., str]:
        def greet(**kwargs: Any) -> str:
            return greeting

        return greet

    signal = Signal()
    site = line_below(2)
    with pytest.warns(LostReceiverWarning) as record:
        signal.connect(make("hello"))
    message = message_of(record)
    assert "test_a_lost_closure_is_reported.<locals>.make.<locals>.greet" in message
    assert f"at {site}," in message
    assert signal.send(None) == []


@pytest.mark.usefixtures("diagnostic_on")
def test_an_inner_function_is_reported_when_it_is_collected() -> None:
    signal = Signal()

    def inner(**kwargs: Any) -> str:
        return "inner"

    site = line_below()
    signal.connect(inner)
    assert signal.send(None) == [(inner, "inner")]  # alive while the name holds it
    with pytest.warns(LostReceiverWarning) as record:
        del inner
    message = message_of(record)
    assert "<locals>.inner" in message
    assert f"at {site}," in message
    assert signal.send(None) == []
    assert signal.receivers == []


@pytest.mark.usefixtures("diagnostic_on")
def test_a_lost_partial_is_reported() -> None:
    signal = Signal()
    site = line_below(2)
    with pytest.warns(LostReceiverWarning) as record:
        signal.connect(functools.partial(module_level, extra=1))
    message = message_of(record)
    assert "functools.partial(test_diagnostics.module_level)" in message
    assert f"at {site}," in message
    assert signal.send(None) == []


@pytest.mark.usefixtures("diagnostic_on")
def test_a_lost_callable_object_is_reported() -> None:
    signal = Signal()
    site = line_below(2)
    with pytest.warns(LostReceiverWarning) as record:
        signal.connect(Handler())
    message = message_of(record)
    assert "test_diagnostics.Handler instance" in message
    assert f"at {site}," in message
    assert signal.send(None) == []


@pytest.mark.usefixtures("diagnostic_on")
def test_a_lost_async_closure_is_reported() -> None:
    signal = Signal()

    async def later(**kwargs: Any) -> None:
        pass

    site = line_below()
    signal.connect(later)
    with pytest.warns(LostReceiverWarning) as record:
        del later
    assert f"at {site}," in message_of(record)
    assert asyncio.run(signal.asend(None)) == []


@pytest.mark.usefixtures("diagnostic_on")
def test_a_lost_receiver_of_one_sender_is_reported() -> None:
    signal = Signal()
    sender = Handler()
    site = line_below(2)
    with pytest.warns(LostReceiverWarning) as record:
        signal.connect(lambda **kwargs: None, sender=sender, priority=2)
    assert f"at {site}," in message_of(record)
    assert signal.send(sender) == []
    assert signal.receivers == []


@pytest.mark.usefixtures("diagnostic_on")
def test_a_receiver_in_a_reference_cycle_is_reported_when_gc_collects_it() -> None:
    signal = Signal()

    def in_a_cycle(**kwargs: Any) -> None:
        pass

    in_a_cycle.self = in_a_cycle  # type: ignore[attr-defined]
    site = line_below()
    signal.connect(in_a_cycle)
    del in_a_cycle
    assert len(signal.receivers) == 1
    with pytest.warns(LostReceiverWarning) as record:
        gc.collect()
    assert f"at {site}," in message_of(record)
    assert signal.send(None) == []


@pytest.mark.usefixtures("diagnostic_on")
def test_the_receiver_decorator_reports_the_decorated_line() -> None:
    """The site is where @receiver is used, not tocsin's code that calls connect()."""
    signal = Signal()
    decorator_line = sys._getframe().f_lineno + 2

    @receiver(signal)
    def decorated(**kwargs: Any) -> str:
        return "decorated"

    assert signal.send(None) == [(decorated, "decorated")]
    with pytest.warns(LostReceiverWarning) as record:
        del decorated
    message = message_of(record)
    assert "<locals>.decorated" in message
    sites = [f"{__file__}:{line}" for line in (decorator_line, decorator_line + 1)]
    site = re.search(r"connected weakly at (.*?), was", message)
    assert site is not None
    assert site.group(1) in sites
    assert "src/tocsin" not in message
    assert signal.send(None) == []


@pytest.mark.usefixtures("diagnostic_on")
def test_the_receiver_decorator_on_several_signals_reports_each() -> None:
    first, second = Signal(), Signal()

    @receiver([first, second])
    def decorated(**kwargs: Any) -> None:
        pass

    with pytest.warns(LostReceiverWarning) as record:
        del decorated
    lost = [str(w.message) for w in record if issubclass(w.category, LostReceiverWarning)]
    assert len(lost) == 2
    assert all(__file__ in message for message in lost)
    assert first.send(None) == []
    assert second.send(None) == []


@pytest.mark.usefixtures("diagnostic_on")
def test_a_receiver_is_still_watched_after_its_rows_are_assigned_back() -> None:
    """Assigning ``receivers`` back (as fixtures that pause a signal do) keeps
    the connections, so it keeps them watched too."""
    signal = Signal()

    def inner(**kwargs: Any) -> None:
        pass

    site = line_below()
    signal.connect(inner)
    signal.receivers = list(signal.receivers)  # the saved list is dropped at once
    gc.collect()
    with pytest.warns(LostReceiverWarning) as record:
        del inner
    assert f"at {site}," in message_of(record)
    assert signal.send(None) == []


@pytest.mark.usefixtures("diagnostic_on")
def test_the_site_of_code_in_a_package_named_like_tocsin_is_its_own() -> None:
    """Only tocsin's own files are skipped when looking for the connect site, not
    those of a package whose directory merely starts with the same name
    (``site-packages/tocsin_shop/`` next to ``site-packages/tocsin/``)."""
    filename = os.path.join(diagnostics._PACKAGE + "_shop", "app.py")
    namespace: dict[str, Any] = {"signal": Signal()}
    source = "\n\nsignal.connect(lambda **kwargs: None)\n"
    with pytest.warns(LostReceiverWarning) as record:
        exec(compile(source, filename, "exec"), namespace)
    assert f"connected weakly at {filename}:3," in message_of(record)


# -- what is not watched ------------------------------------------------------------


@pytest.mark.usefixtures("diagnostic_on")
def test_a_module_level_function_is_not_watched() -> None:
    """A module's functions go away with their module: that is not a mistake."""
    module = types.ModuleType("lost_module")
    exec(
        compile("def handler(**kwargs):\n    return 'handler'\n", "lost_module.py", "exec"),
        vars(module),
    )
    signal = Signal()
    signal.connect(module.handler)
    signal.connect(module_level)
    assert [response for _, response in signal.send(None)] == ["handler", "module_level"]
    with NoLostReceiverWarnings():
        del module
        gc.collect()
    assert signal.send(None) == [(module_level, "module_level")]


@pytest.mark.usefixtures("diagnostic_on")
def test_a_bound_method_is_not_watched() -> None:
    signal = Signal()
    handler = Handler()
    signal.connect(handler.method)
    signal.connect(handler)  # the object itself is a callable object: watched
    signal.disconnect(handler)
    assert signal.send(None) == [(handler.method, "method")]
    with NoLostReceiverWarnings():
        del handler
        gc.collect()
    assert signal.send(None) == []
    assert signal.receivers == []


@pytest.mark.usefixtures("diagnostic_on")
def test_a_bound_method_of_a_short_lived_object_is_not_watched() -> None:
    signal = Signal()
    with NoLostReceiverWarnings():
        signal.connect(Handler().method)
        gc.collect()
    assert signal.send(None) == []


@pytest.mark.usefixtures("diagnostic_on")
def test_strong_receivers_never_warn() -> None:
    signal = Signal()
    with NoLostReceiverWarnings():
        signal.connect(lambda **kwargs: "lambda", weak=False)
        signal.connect(functools.partial(module_level), weak=False)
        signal.connect(Handler(), weak=False)
        assert [response for _, response in signal.send(None)] == [
            "lambda",
            "module_level",
            "called",
        ]
        signal.receivers = []  # drops the only references to them
        gc.collect()
    assert signal.send(None) == []


@pytest.mark.usefixtures("diagnostic_on")
def test_a_disconnected_receiver_does_not_warn() -> None:
    signal = Signal()

    def inner(**kwargs: Any) -> None:
        pass

    signal.connect(inner)
    assert signal.disconnect(inner)
    with NoLostReceiverWarnings():
        del inner
        gc.collect()


@pytest.mark.usefixtures("diagnostic_on")
def test_a_dead_signal_does_not_warn() -> None:
    signal = Signal()

    def inner(**kwargs: Any) -> None:
        pass

    signal.connect(inner)
    with NoLostReceiverWarnings():
        del signal
        gc.collect()
        del inner


@pytest.mark.usefixtures("diagnostic_on")
def test_connecting_twice_warns_once() -> None:
    signal = Signal()

    def inner(**kwargs: Any) -> None:
        pass

    signal.connect(inner)
    signal.connect(inner)
    with pytest.warns(LostReceiverWarning) as record:
        del inner
    message_of(record)  # exactly one


# -- switching it on and off ----------------------------------------------------------


def test_off_by_default() -> None:
    assert not switch_on()
    signal = Signal()
    with NoLostReceiverWarnings():
        signal.connect(lambda **kwargs: None)
        signal.connect(functools.partial(module_level))
        signal.connect(Handler())
        gc.collect()
    assert signal.send(None) == []


def test_the_diagnostic_is_off_in_a_fresh_interpreter() -> None:
    import subprocess

    code = "import tocsin, tocsin.diagnostics as d; assert d._switch.on is False"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_turning_it_off_stops_watching_new_connections() -> None:
    signal = Signal()

    def watched(**kwargs: Any) -> None:
        pass

    warn_on_lost_receivers(True)
    signal.connect(watched)
    warn_on_lost_receivers(False)
    with NoLostReceiverWarnings():
        signal.connect(lambda **kwargs: None)
    # A receiver connected while it was on is still watched.
    with pytest.warns(LostReceiverWarning):
        del watched
    assert signal.send(None) == []


def test_lost_receiver_warnings_is_scoped() -> None:
    signal = Signal()

    def inside(**kwargs: Any) -> None:
        pass

    def outside(**kwargs: Any) -> None:
        pass

    with lost_receiver_warnings():
        assert switch_on()
        signal.connect(inside)
    assert not switch_on()
    signal.connect(outside)
    with NoLostReceiverWarnings():
        del outside
    with pytest.warns(LostReceiverWarning) as record:
        del inside
    assert "<locals>.inside" in message_of(record)


def test_lost_receiver_warnings_restores_the_switch_after_an_error() -> None:
    with pytest.raises(KeyError), lost_receiver_warnings():
        raise KeyError("boom")
    assert not switch_on()


def test_lost_receiver_warnings_keeps_the_diagnostic_on_if_it_was() -> None:
    warn_on_lost_receivers()
    with lost_receiver_warnings():
        pass
    assert switch_on()
    with lost_receiver_warnings(), lost_receiver_warnings():
        pass
    assert switch_on()


@pytest.mark.parametrize("enabled", ["yes", 1, 0, None, "False"])
def test_warn_on_lost_receivers_takes_a_bool(enabled: Any) -> None:
    with pytest.raises(TypeError, match="True or False"):
        warn_on_lost_receivers(enabled)
    assert not switch_on()


def test_lost_receiver_warning_is_a_user_warning() -> None:
    assert issubclass(LostReceiverWarning, UserWarning)


# -- ephemeral() --------------------------------------------------------------------


def test_ephemeral() -> None:
    def inner(**kwargs: Any) -> None:
        pass

    handler = Handler()
    assert diagnostics.ephemeral(lambda **kwargs: None)
    assert diagnostics.ephemeral(inner)
    assert diagnostics.ephemeral(functools.partial(module_level))
    assert diagnostics.ephemeral(handler)
    assert not diagnostics.ephemeral(module_level)
    assert not diagnostics.ephemeral(Handler.static_method)
    assert not diagnostics.ephemeral(handler.method)
    assert not diagnostics.ephemeral(Handler.class_method)
    assert not diagnostics.ephemeral(Handler)


def test_watching_keeps_no_reference_to_the_receiver() -> None:
    signal = Signal()
    with lost_receiver_warnings():

        def inner(**kwargs: Any) -> None:
            pass

        signal.connect(inner)
    assert sys.getrefcount(inner) == 2  # the name, and getrefcount's argument
    with pytest.warns(LostReceiverWarning):
        del inner
