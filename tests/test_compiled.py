"""The compiled send path (``tocsin._speedups``) and the pure-Python one behave alike.

The whole suite runs on both: ``python3 dev.py test`` runs it compiled on every
Python where the module was built, and once more on the first Python with
``TOCSIN_PURE_PYTHON=1``. These tests pin what is particular to the compiled
path: what ``Signal.send`` is, the frame receivers are called from, the
buffers and caches of the C code, and that it lets nothing leak. The tests
that need the compiled module are skipped on the pure path.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import inspect
import os
import sys
import tracemalloc
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tocsin import Signal, dispatcher
from tocsin._compiled import speedups

compiled_only = pytest.mark.skipif(speedups is None, reason="the pure-Python path is in use")


class Sender:
    pass


class Owner:
    def __init__(self, name: str) -> None:
        self.name = name

    def method(self, **kwargs: Any) -> str:
        return self.name


def make_receiver(result: object) -> Callable[..., object]:
    def receive(**kwargs: Any) -> object:
        return result

    return receive


def test_the_run_uses_the_path_the_test_command_asked_for() -> None:
    """dev.py names each pytest job's path in TOCSIN_TEST_PATH; the job really runs it."""
    path = os.environ.get("TOCSIN_TEST_PATH")
    if path is None:
        pytest.skip("not run by dev.py test (TOCSIN_TEST_PATH is not set)")
    assert path in ("compiled", "pure")
    assert (speedups is not None) == (path == "compiled")


def test_pure_python_is_asked_for_with_an_environment_variable() -> None:
    """TOCSIN_PURE_PYTHON=1 makes a fresh interpreter use the pure path; 0 does not."""
    import subprocess

    check = "from tocsin._compiled import speedups; print(speedups is None)"
    built = importlib.util.find_spec("tocsin._speedups") is not None
    for value, pure in (("1", True), ("0", not built)):
        env = {**os.environ, "TOCSIN_PURE_PYTHON": value}
        out = subprocess.run(
            [sys.executable, "-c", check], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == str(pure)


def test_receivers_are_called_one_frame_below_the_sending_line() -> None:
    """On both paths, the frame between a receiver and its sender is dispatcher.py's send."""
    signal = Signal()
    seen: list[tuple[str, str, str]] = []

    def receive(**kwargs: Any) -> None:
        frame = sys._getframe(1)
        caller = sys._getframe(2)
        seen.append((frame.f_code.co_name, frame.f_code.co_filename, caller.f_code.co_name))

    signal.connect(receive)
    for _ in range(2):  # once alone, once beside another receiver
        seen.clear()
        signal.send(Sender)
        assert seen == [("send", dispatcher.__file__, inspect.currentframe().f_code.co_name)]  # type: ignore[union-attr]
        signal.connect(make_receiver(None), weak=False)


def test_keyword_arguments_in_every_shape_reach_every_receiver() -> None:
    """Many names, names built at run time, and more receivers than the C code's small
    buffers hold: each receiver gets exactly the send's arguments, in a dict of its own."""
    signal = Signal()
    seen: list[dict[str, Any]] = []

    def make() -> Callable[..., None]:
        def receive(**kwargs: Any) -> None:
            kwargs["scribbled"] = True  # changes nothing for the next receiver
            seen.append(kwargs)

        return receive

    receivers = [make() for _ in range(20)]
    for receiver in receivers:
        signal.connect(receiver)
    for count in (0, 1, 7, 8, 9, 30):
        for attempt in range(3):  # new names each time: a new tuple of names per call
            named = {f"name_{attempt}_{i}": i for i in range(count)}
            seen.clear()
            responses = signal.send(Sender, **named)
            assert [r for r, _ in responses] == receivers
            expected = {"signal": signal, "sender": Sender, **named, "scribbled": True}
            assert seen == [expected] * len(receivers)


def test_the_sender_may_be_given_by_keyword_and_signal_may_not() -> None:
    signal = Signal()
    receiver = make_receiver("ok")
    signal.connect(receiver)
    assert signal.send(sender=Sender) == [(receiver, "ok")]
    assert signal.send(Sender, value=1) == [(receiver, "ok")]
    with pytest.raises(TypeError, match="multiple values for keyword argument 'signal'"):
        signal.send(Sender, signal="mine")
    with pytest.raises(TypeError, match="multiple values for argument 'sender'"):
        signal.send(Sender, sender=Sender)  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"send\(\) takes 2 positional arguments but 3"):
        signal.send(Sender, 1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"send\(\) missing 1 required positional argument"):
        signal.send()  # type: ignore[call-arg]


def test_dead_receivers_are_skipped_and_bound_methods_rebuilt() -> None:
    signal = Signal()
    owners = [Owner(f"owner {n}") for n in range(12)]
    for owner in owners:
        signal.connect(owner.method)
    del owners[3], owners[7]  # two die: their weak references are dead at the next send
    gc.collect()
    responses = signal.send(Sender)
    assert [response for _, response in responses] == [owner.name for owner in owners]
    assert all(
        receiver == owner.method for (receiver, _), owner in zip(responses, owners, strict=True)
    )


def test_a_failing_receiver_propagates_and_leaks_nothing() -> None:
    signal = Signal()
    first = make_receiver("first")

    def failing(**kwargs: Any) -> None:
        raise LookupError("no such order")

    signal.connect(first)
    signal.connect(failing)
    before = sys.getrefcount(first), sys.getrefcount(Sender)
    for _ in range(1000):
        with pytest.raises(LookupError, match="no such order"):
            signal.send(Sender, order=1)
    assert (sys.getrefcount(first), sys.getrefcount(Sender)) == before


def test_sending_again_and_again_keeps_no_memory() -> None:
    """Sends of every shape, failing ones included, leave nothing behind."""
    signal = Signal()
    owner = Owner("owner")
    signal.connect(owner.method)
    receivers = [make_receiver(n) for n in range(10)]
    for receiver in receivers:
        signal.connect(receiver)
    filtered = Signal()
    filtered.connect(make_receiver("for Sender"), sender=Sender, weak=False)
    empty = Signal()

    def failing(**kwargs: Any) -> None:
        raise ValueError("no")

    broken = Signal()
    broken.connect(failing)

    def round_of_sends() -> None:
        for n in range(200):
            signal.send(Sender, value=n)
            signal.send(Sender, **{f"key{n % 7}": n})
            filtered.send(Sender, value=n)
            empty.send(Sender, value=n)
            with contextlib.suppress(ValueError):
                broken.send(Sender)

    round_of_sends()  # warm-up: caches, interned names, free lists
    gc.collect()
    tracemalloc.start()
    try:
        round_of_sends()
        gc.collect()
        start = tracemalloc.get_traced_memory()[0]
        for _ in range(5):
            round_of_sends()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert grown < 2_000, f"{grown} bytes kept by 5,000 sends"


def test_would_send_answers_from_the_plan_in_every_state() -> None:
    """Any sender, one sender, a plan not built yet, a hook, a receiver that died."""
    from tocsin import hooks

    signal = Signal()
    assert signal.would_send(Sender) is False  # no plan built yet
    assert signal.would_send(Sender) is False  # the empty plan, cached
    receiver = make_receiver("ok")
    signal.connect(receiver, sender=Sender)
    assert signal.would_send(Sender) is True
    assert signal.would_send(Owner) is False
    assert signal.would_send(None) is False
    signal.disconnect(receiver, sender=Sender)
    assert signal.would_send(Sender) is False
    signal.connect(receiver)
    assert (signal.would_send(Sender), signal.would_send(None)) == (True, True)
    signal.disconnect(receiver)

    undo = hooks.install(hooks.SendHook(), signal)
    assert signal.would_send(Sender) is True  # a hook hears of every send
    undo()
    assert signal.would_send(Sender) is False

    def dying(**kwargs: Any) -> None:
        pass

    signal.connect(dying)
    assert signal.would_send(Sender) is True
    del dying
    gc.collect()
    assert signal.would_send(Sender) is False


def test_would_send_refuses_what_the_pure_method_refuses() -> None:
    signal = Signal()
    with pytest.raises(TypeError, match="would_send"):
        signal.would_send()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="would_send"):
        signal.would_send(Sender, Sender)  # type: ignore[call-arg]
    assert signal.would_send(sender=Sender) is False


# -- the compiled path only ------------------------------------------------------------


@compiled_only
@pytest.mark.parametrize(
    ("method", "kind"), [("send", "SendMethod"), ("would_send", "WouldSendMethod")]
)
def test_signal_send_is_the_compiled_method_wrapping_the_pure_one(method: str, kind: str) -> None:
    """Introspection sees the pure function: name, docstring, signature, module."""
    assert speedups is not None
    send = Signal.__dict__[method]
    assert type(send) is getattr(speedups, kind)
    pure = send.__wrapped__
    assert inspect.isfunction(pure)
    assert pure.__code__.co_filename == dispatcher.__file__
    for name in ("__name__", "__qualname__", "__doc__", "__module__", "__annotations__"):
        assert getattr(send, name) == getattr(pure, name)
    assert getattr(Signal, method) is send  # as a method descriptor: the class gets it unbound
    signal = Signal()
    bound = getattr(signal, method)
    assert bound.__func__ is send
    assert str(inspect.signature(bound)) == str(inspect.signature(pure.__get__(signal)))
    assert repr(send) == f"<compiled {pure!r}>"


@compiled_only
def test_the_compiled_methods_refuse_what_is_not_callable() -> None:
    assert speedups is not None
    with pytest.raises(TypeError, match="callable"):
        speedups.WouldSendMethod(None)
    with pytest.raises(TypeError, match="callables"):
        speedups.SendMethod(print, None)


@compiled_only
def test_the_unbound_and_the_inherited_send_are_the_same_send() -> None:
    class Audited(Signal):
        def send(self, sender: object, **named: Any) -> list[tuple[Any, Any]]:
            return [("audited", None), *super().send(sender, **named)]

    signal, audited = Signal(), Audited()
    receiver = make_receiver("ok")
    signal.connect(receiver)
    audited.connect(receiver)
    assert Signal.send(signal, Sender, value=1) == [(receiver, "ok")]
    assert audited.send(Sender) == [("audited", None), (receiver, "ok")]


@compiled_only
def test_a_sends_call_object_cannot_be_called_twice_or_after_its_send() -> None:
    """The frame's `call` borrows the send's arguments: only that send may use it."""
    signal = Signal()
    kept: list[Callable[[], object]] = []
    errors: list[str] = []

    def receive(**kwargs: Any) -> str:
        call = sys._getframe(1).f_locals["call"]
        kept.append(call)
        try:
            call()
        except RuntimeError as err:
            errors.append(str(err))
        return "called once"

    signal.connect(receive)
    assert signal.send(Sender, value=1) == [(receive, "called once")]
    assert errors == ["a send's call can only be made by that send, while it runs"]
    with pytest.raises(RuntimeError, match="only be made by that send"):
        kept[0]()
    with pytest.raises(TypeError, match="takes no arguments"):
        kept[0](1)  # type: ignore[call-arg]


@compiled_only
def test_method_derefs_take_two_weak_references_and_die_with_either() -> None:
    assert speedups is not None
    owner = Owner("owner")
    function = Owner.method
    deref = speedups.MethodDeref(weakref.ref(owner), weakref.ref(function))
    assert deref() == owner.method
    with pytest.raises(TypeError):
        speedups.MethodDeref(owner, function)
    with pytest.raises(TypeError, match="takes no arguments"):
        deref(1)
    del owner
    gc.collect()
    assert deref() is None


@compiled_only
def test_the_compiled_module_is_ignored_when_built_for_another_version() -> None:
    """An editable install whose C file changed since it was built: pure Python, not a crash."""
    import subprocess

    check = (
        "import tocsin._speedups as s; s.API_VERSION = -1; "
        "import tocsin._compiled as c; print(c._load() is None)"
    )
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


@compiled_only
def test_the_extension_was_built_from_the_source_beside_it() -> None:
    """A stale in-place build (src/tocsin/) is older than its source: dev.py rebuilds it."""
    assert speedups is not None
    assert speedups.__file__ is not None
    built = Path(speedups.__file__)
    source = Path(dispatcher.__file__).with_name("_speedups.c")
    if not source.exists() or built.parent != source.parent:
        pytest.skip("an installed wheel: no source beside it")
    assert built.stat().st_mtime >= source.stat().st_mtime, "rebuild: pip install -e ."


def test_async_receivers_get_the_sends_arguments_in_every_shape() -> None:
    """asend() calls its async receivers in C when compiled (call_each): many names,
    names of a str subclass (which C leaves to Python), a dict of their own each."""
    import asyncio

    class Name(str):
        __slots__ = ()

    signal = Signal()
    seen: list[dict[str, Any]] = []

    def make() -> Callable[..., Any]:
        async def receive(**kwargs: Any) -> int:
            kwargs["scribbled"] = True
            seen.append(kwargs)
            return len(seen)

        return receive

    receivers = [make() for _ in range(3)]
    for receiver in receivers:
        signal.connect(receiver)
    shapes: list[dict[str, int]] = [{}, {f"name_{i}": i for i in range(12)}, {Name("odd"): 1}]
    for named in shapes:
        seen.clear()
        responses = asyncio.run(signal.asend(Sender, **named))
        assert responses == [(receivers[0], 1), (receivers[1], 2), (receivers[2], 3)]
        assert seen == [{"signal": signal, "sender": Sender, **named, "scribbled": True}] * 3


def test_a_failing_async_receiver_call_closes_the_coroutines_made_before() -> None:
    import asyncio

    from asgiref.sync import markcoroutinefunction

    signal = Signal()
    started: list[str] = []

    async def first(**kwargs: Any) -> None:
        started.append("first")

    def not_async(**kwargs: Any) -> Any:
        raise LookupError("no awaitable here")

    signal.connect(first)
    signal.connect(markcoroutinefunction(not_async))  # async, as Django sees it
    with pytest.raises(LookupError, match="no awaitable here"):
        asyncio.run(signal.asend(Sender, value=1))
    assert started == []  # made, then closed: never run, and never "never awaited"


@compiled_only
def test_call_each_checks_its_arguments() -> None:
    assert speedups is not None
    with pytest.raises(TypeError, match=r"call_each\(receivers: list"):
        speedups.call_each((), None, None, {}, [])
