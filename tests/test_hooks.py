"""tocsin.hooks: the dispatcher's one extension point.

A hook changes who receives a send (``plan``) or watches it (``observe``).
Tracing and the testing helpers' local overlays use it; integrations such as
the SQLAlchemy one use Signal's documented methods (``would_send()``,
``send_with_awaiter()``), through which hooks see their sends too. The last
tests here check that no module outside the dispatcher reaches into
``Signal`` instead.
"""

from __future__ import annotations

import ast
import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from tocsin import Signal, hooks, oncommit
from tocsin.hooks import Plan, SendHook, SendInfo, SendObserver
from tocsin.oncommit import Deferred
from tocsin.testing import connected_to, muted

ROOT = Path(__file__).resolve().parent.parent


def first(**kwargs: Any) -> str:
    return "first"


def second(**kwargs: Any) -> str:
    return "second"


async def later_async(**kwargs: Any) -> str:
    await asyncio.sleep(0)
    return "async"


def fails(**kwargs: Any) -> str:
    raise RuntimeError("fails")


class Sender:
    pass


@pytest.fixture(autouse=True)
def no_hook_left_behind() -> Iterator[None]:
    assert not hooks.installed(Signal())
    yield
    assert not hooks.installed(Signal()), "a test left a hook installed"


@pytest.fixture
def signal() -> Signal:
    signal = Signal()
    signal.connect(first)
    signal.connect(second)
    return signal


class Reversed(SendHook):
    """Calls the sync receivers in reverse order."""

    def __init__(self) -> None:
        self.asked: list[object] = []

    def plan(self, signal: Signal, sender: object, plan: Plan) -> Plan:
        self.asked.append(sender)
        return plan._replace(sync=plan.sync[::-1])


class Log(SendObserver):
    def __init__(self, log: list[str], name: str = "") -> None:
        self.log = log
        self.name = name

    def __enter__(self) -> Log:
        self.log.append(f"{self.name}enter")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.log.append(f"{self.name}exit {exc_type.__name__ if exc_type else None}")

    def call(self, receiver: Callable[..., Any], call: Callable[[], Any]) -> Any:
        self.log.append(f"{self.name}before {receiver.__name__}")
        response = call()
        self.log.append(f"{self.name}after {receiver.__name__} -> {response}")
        return response

    async def acall(self, receiver: Callable[..., Any], call: Callable[[], Awaitable[Any]]) -> Any:
        task = asyncio.current_task()
        self.log.append(f"{self.name}before {receiver.__name__} in a task: {task is not None}")
        response = await call()
        self.log.append(f"{self.name}after {receiver.__name__} -> {response}")
        return response

    def deferred(self, receiver: Callable[..., Any], deferred: Deferred) -> None:
        self.log.append(f"{self.name}deferred {receiver.__name__} {deferred.state}")


class Watching(SendHook):
    def __init__(self, name: str = "") -> None:
        self.log: list[str] = []
        self.sends: list[SendInfo] = []
        self.name = name

    def observe(self, send: SendInfo) -> SendObserver:
        self.sends.append(send)
        return Log(self.log, self.name)


def send_with(method: str, signal: Signal, sender: object = Sender) -> list[tuple[Any, Any]]:
    send = getattr(signal, method)
    asynchronous = method.startswith("a")
    result: list[tuple[Any, Any]] = (
        asyncio.run(send(sender, item=1)) if asynchronous else send(sender, item=1)
    )
    return result


METHODS = ["send", "send_robust", "asend", "asend_robust"]


# -- plan hooks -----------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_a_plan_hook_changes_who_receives_every_kind_of_send(signal: Signal, method: str) -> None:
    hook = Reversed()
    undo = hooks.install(hook, signal)
    try:
        assert send_with(method, signal) == [(second, "second"), (first, "first")]
        assert hook.asked == [Sender]
    finally:
        undo()
    assert send_with(method, signal) == [(first, "first"), (second, "second")]
    assert hook.asked == [Sender]  # not asked once undone


@pytest.mark.parametrize("method", METHODS)
def test_a_plan_hook_gives_receivers_to_a_signal_nobody_listens_to(method: str) -> None:
    """With nobody connected a send returns [] at once, but not past a hook."""
    signal = Signal()
    assert send_with(method, signal) == []

    class Adds(SendHook):
        def plan(self, signal: Signal, sender: object, plan: Plan) -> Plan:
            return plan._replace(sync=(*plan.sync, lambda: first))

    undo = hooks.install(Adds(), signal)
    try:
        assert send_with(method, signal) == [(first, "first")]
    finally:
        undo()
    assert send_with(method, signal) == []


def test_a_plan_hook_is_seen_by_has_listeners_and_live_receivers() -> None:
    signal = Signal()
    assert not signal.has_listeners()

    class Adds(SendHook):
        def plan(self, signal: Signal, sender: object, plan: Plan) -> Plan:
            return plan._replace(sync=(*plan.sync, lambda: first))

    undo = hooks.install(Adds(), signal)
    try:
        assert signal.has_listeners()
        assert signal._live_receivers(None) == ([first], [])
        assert signal.send(None) == [(first, "first")]
    finally:
        undo()
    assert not signal.has_listeners()


def test_a_plan_hook_must_return_a_plan(signal: Signal) -> None:
    class Wrong(SendHook):
        def plan(self, signal: Signal, sender: object, plan: Plan) -> Plan:
            return list(plan)  # type: ignore[return-value]

    undo = hooks.install(Wrong(), signal)
    try:
        with pytest.raises(TypeError, match=r"plan\(\) must return a tocsin.hooks.Plan; got list"):
            signal.send(Sender)
    finally:
        undo()


def test_plan_hooks_run_in_installation_order(signal: Signal) -> None:
    seen: list[tuple[str, int]] = []

    class Records(SendHook):
        def __init__(self, name: str) -> None:
            self.name = name

        def plan(self, signal: Signal, sender: object, plan: Plan) -> Plan:
            seen.append((self.name, len(plan.sync)))
            return plan._replace(sync=plan.sync[:1])

    undo_everywhere = hooks.install(Records("everywhere"))
    undo_here = hooks.install(Records("here"), signal)
    try:
        assert signal.send(Sender) == [(first, "first")]
    finally:
        undo_here()
        undo_everywhere()
    # Every-signal hooks first; each gets the previous one's plan.
    assert seen == [("everywhere", 2), ("here", 1)]


# -- observers ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_an_observer_wraps_the_send_and_each_sync_receiver(signal: Signal, method: str) -> None:
    hook = Watching()
    undo = hooks.install(hook, signal)
    try:
        responses = send_with(method, signal)
    finally:
        undo()
    # Responses name the receivers themselves, never a wrapper.
    assert responses == [(first, "first"), (second, "second")]
    assert hook.log == [
        "enter",
        "before first",
        "after first -> first",
        "before second",
        "after second -> second",
        "exit None",
    ]
    (info,) = hook.sends
    assert (info.signal, info.sender, info.named, info.method) == (
        signal,
        Sender,
        {"item": 1},
        method,
    )


@pytest.mark.parametrize("method", METHODS)
def test_an_observer_runs_around_async_receivers_in_their_task(method: str) -> None:
    signal = Signal()
    signal.connect(later_async)
    hook = Watching()
    undo = hooks.install(hook, signal)
    try:
        assert send_with(method, signal) == [(later_async, "async")]
    finally:
        undo()
    assert hook.log == [
        "enter",
        "before later_async in a task: True",
        "after later_async -> async",
        "exit None",
    ]


def test_an_observer_hears_of_deferred_on_commit_receivers() -> None:
    signal = Signal()
    signal.connect(first, on_commit=True)

    class Scope:
        def __init__(self) -> None:
            self.calls: list[Deferred] = []

        def defer(self, call: Deferred) -> bool:
            self.calls.append(call)
            return True

    hook = Watching()
    undo = hooks.install(hook, signal)
    scope = Scope()
    try:
        with oncommit.bind(scope):
            ((receiver, deferred),) = signal.send(Sender)
    finally:
        undo()
    assert receiver is first
    assert scope.calls == [deferred]
    assert hook.log == ["enter", "deferred first pending", "exit None"]


def test_an_observer_exits_with_the_error_and_cannot_swallow_it(signal: Signal) -> None:
    signal.connect(fails)

    class Swallowing(Log):
        def __exit__(self, *exc_info: Any) -> None:
            super().__exit__(*exc_info)
            return True  # type: ignore[return-value]

    class Hook(SendHook):
        log: list[str] = []

        def observe(self, send: SendInfo) -> SendObserver:
            return Swallowing(self.log)

    undo = hooks.install(Hook(), signal)
    try:
        with pytest.raises(RuntimeError, match="fails"):
            signal.send(Sender)
    finally:
        undo()
    assert Hook.log[-1] == "exit RuntimeError"


def test_a_robust_failure_is_logged_with_the_receivers_name_under_an_observer(
    signal: Signal, caplog: pytest.LogCaptureFixture
) -> None:
    signal.connect(fails)
    undo = hooks.install(Watching(), signal)
    try:
        with caplog.at_level(logging.ERROR, logger="tocsin"):
            responses = signal.send_robust(Sender)
    finally:
        undo()
    assert responses[-1][0] is fails
    assert isinstance(responses[-1][1], RuntimeError)
    assert "Error calling fails in Signal.send_robust()" in caplog.text


def test_observers_nest_the_first_installed_outermost(signal: Signal) -> None:
    outer, inner = Watching("outer "), Watching("inner ")
    log: list[str] = []
    outer.log = inner.log = log
    undo_outer = hooks.install(outer, signal)
    undo_inner = hooks.install(inner, signal)
    try:
        signal.send(Sender)
    finally:
        undo_inner()
        undo_outer()
    assert log[:4] == ["outer enter", "inner enter", "outer before first", "inner before first"]
    assert log[-2:] == ["inner exit None", "outer exit None"]


def test_every_observer_is_exited_even_when_an_inner_one_fails(signal: Signal) -> None:
    log: list[str] = []

    class Failing(Log):
        def __exit__(self, *exc_info: Any) -> None:
            super().__exit__(*exc_info)
            raise ValueError("observer failed")

    class Hook(SendHook):
        def __init__(self, observer: type[Log], name: str) -> None:
            self.observer, self.name = observer, name

        def observe(self, send: SendInfo) -> SendObserver:
            return self.observer(log, self.name)

    undo_outer = hooks.install(Hook(Log, "outer "), signal)
    undo_inner = hooks.install(Hook(Failing, "inner "), signal)
    try:
        with pytest.raises(ValueError, match="observer failed"):
            signal.send(Sender)
    finally:
        undo_inner()
        undo_outer()
    assert log[-2:] == ["inner exit None", "outer exit None"]


def test_an_observer_may_decline_a_send(signal: Signal) -> None:
    class Declines(SendHook):
        def observe(self, send: SendInfo) -> None:
            return None

    undo = hooks.install(Declines(), signal)
    try:
        assert signal.send(Sender) == [(first, "first"), (second, "second")]
    finally:
        undo()


# -- installing ------------------------------------------------------------------------


def test_a_hook_on_every_signal_reaches_signals_made_later_and_goes_with_undo() -> None:
    hook = Watching()
    undo = hooks.install(hook)
    try:
        made_later = Signal()
        made_later.connect(first)
        made_later.send(Sender)
        Signal().send(Sender)  # nobody listens: still observed
    finally:
        undo()
    assert len(hook.sends) == 2
    made_later.send(Sender)
    assert len(hook.sends) == 2


def test_a_hook_on_one_signal_leaves_the_others_alone(signal: Signal) -> None:
    other = Signal()
    other.connect(first)
    hook = Watching()
    undo = hooks.install(hook, signal)
    try:
        other.send(Sender)
        signal.send(Sender)
    finally:
        undo()
    assert [send.signal for send in hook.sends] == [signal]


def test_undo_is_idempotent_and_each_installation_has_its_own(signal: Signal) -> None:
    hook = Watching()
    undo_once = hooks.install(hook, signal)
    undo_twice = hooks.install(hook, signal)
    assert hooks.installed(signal) == (hook, hook)
    undo_once()
    undo_once()
    assert hooks.installed(signal) == (hook,)
    undo_twice()
    assert hooks.installed(signal) == ()


def test_install_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match=r"takes a tocsin\.hooks\.SendHook"):
        hooks.install(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes a Signal as signal="):
        hooks.install(SendHook(), "post_save")  # type: ignore[arg-type]


def test_installing_while_other_threads_send() -> None:
    """Sends racing installs and undos never fail, and each send is either
    fully hooked or not at all."""
    signal = Signal()
    signal.connect(first)
    stop = threading.Event()
    errors: list[BaseException] = []

    def sender() -> None:
        while not stop.is_set():
            try:
                responses = signal.send(Sender)
                assert responses in ([(first, "first")], [])
            except BaseException as err:  # pragma: no cover - the failure is reported
                errors.append(err)
                return

    class Mutes(SendHook):
        def plan(self, signal: Signal, sender: object, plan: Plan) -> Plan:
            return Plan()

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(300):
            hooks.install(Mutes(), signal)()
            hooks.install(Watching())()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert signal.send(Sender) == [(first, "first")]


def test_testing_helpers_are_hooks_and_leave_none_behind(signal: Signal) -> None:
    with muted(signal, local=True):
        assert len(hooks.installed(signal)) == 1
        with connected_to(first, signal, local=True):
            assert len(hooks.installed(signal)) == 1  # one overlay hook per signal
            assert signal.send(Sender) == [(first, "first")]
    assert hooks.installed(signal) == ()


# -- what integrations use ------------------------------------------------------------


def test_would_send_is_cheap_and_counts_hooks() -> None:
    signal = Signal()
    assert not signal.would_send(Sender)
    assert not signal.would_send_any()
    signal.connect(first, sender=Sender)
    assert signal.would_send(Sender)
    assert not signal.would_send(None)
    assert signal.would_send_any()
    signal.disconnect(first, sender=Sender)
    undo = hooks.install(SendHook(), signal)
    try:
        assert signal.would_send(Sender)  # a tracer hears of sends nobody receives
        assert signal.would_send_any()
    finally:
        undo()


def test_send_with_awaiter_waits_for_async_receivers_through_the_given_function() -> None:
    signal = Signal()
    signal.connect(first)
    signal.connect(later_async)
    awaited: list[object] = []

    def await_(awaitable: Awaitable[Any]) -> Any:
        awaited.append(awaitable)

        async def run() -> Any:
            return await awaitable

        return asyncio.run(run())

    responses = signal.send_with_awaiter(await_, Sender, item=1)
    assert responses == [(first, "first"), (later_async, "async")]
    assert len(awaited) == 1


def test_connections_lists_live_connections_in_call_order() -> None:
    signal = Signal()
    signal.connect(later_async)
    signal.connect(first, on_commit=True, robust=False)
    signal.connect(second, sender=Sender, priority=5, dispatch_uid="myapp.second")
    rows = signal.connections()
    assert [(row.receiver, row.priority) for row in rows] == [
        (second, 5),
        (later_async, 0),
        (first, 0),
    ]
    assert rows[0].identity == "myapp.second"
    assert rows[0].sender is Sender
    assert not rows[0].any_sender
    assert rows[2].on_commit
    assert not rows[2].robust


# -- nothing outside the dispatcher reaches into Signal ---------------------------------

# The dispatcher's own modules: they may use Signal's private names.
DISPATCHER = {"src/tocsin/dispatcher.py"}


def _private_names() -> set[str]:
    names = {name for name in vars(Signal) if name.startswith("_") and not name.endswith("__")}
    names |= {name for name in vars(Signal()) if name.startswith("_")}
    return names


def _method_names() -> set[str]:
    public = {n for n in dir(Signal) if not n.startswith("_") and callable(getattr(Signal, n))}
    return public | {name for name in _private_names() if callable(getattr(Signal, name, None))}


def _modules() -> list[Path]:
    files = sorted((ROOT / "src" / "tocsin").rglob("*.py")) + sorted((ROOT / "todo").rglob("*.py"))
    return [path for path in files if str(path.relative_to(ROOT)) not in DISPATCHER]


def _offences(name: str, source: str, private: set[str], methods: set[str]) -> list[str]:
    found = []
    tree = ast.parse(source, name)
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute) and node.attr in private and not _own(node, tree):
            found.append(f"{where} reads Signal's private {node.attr}")
        if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("dispatcher"):
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"{where} imports the dispatcher's private {alias.name}")
        targets = node.targets if isinstance(node, ast.Assign) else []
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and target.attr in methods
                and not _own(target, tree)
            ):
                found.append(f"{where} replaces a method: {ast.unparse(target)}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "setattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in methods
        ):
            found.append(f"{where} replaces a method with setattr()")
    return sorted(found, key=lambda offence: int(offence.split(":")[1].split(" ")[0]))


def _own(node: ast.Attribute, tree: ast.Module) -> bool:
    """``self._x`` in a class that is not a Signal: that class's own attribute,
    which may share a name with one of Signal's."""
    if not (isinstance(node.value, ast.Name) and node.value.id == "self"):
        return False
    for cls in ast.walk(tree):
        if isinstance(cls, ast.ClassDef) and any(inner is node for inner in ast.walk(cls)):
            bases = {ast.unparse(base) for base in cls.bases}
            if any("Signal" in base for base in bases):
                return False
    return True


def test_no_module_outside_the_dispatcher_touches_signals_private_state() -> None:
    """The extension point is tocsin.hooks (and Signal's documented methods): no
    module reads Signal's private attributes, imports the dispatcher's private
    names or replaces Signal's methods."""
    private, methods = _private_names(), _method_names()
    assert {"_registry", "_receivers_of", "_send_slow", "_plans"} <= private  # the check checks
    modules = _modules()
    assert len(modules) > 30
    offences = [
        offence
        for path in modules
        for offence in _offences(str(path.relative_to(ROOT)), path.read_text(), private, methods)
    ]
    assert offences == []


def test_the_private_state_check_finds_each_kind_of_offence() -> None:
    source = (
        "from .dispatcher import _Slow\n"
        "def patch(signal, Signal):\n"
        "    signal._registry.clear()\n"
        "    Signal.send = None\n"
        "    setattr(Signal, 'send_robust', None)\n"
        "class Mine(Signal):\n"
        "    def peek(self):\n"
        "        return self._plans\n"
        "class Other:\n"
        "    def own(self):\n"
        "        return self._plans\n"
    )
    offences = _offences("example.py", source, _private_names(), _method_names())
    assert [offence.split(" ", 1)[1] for offence in offences] == [
        "imports the dispatcher's private _Slow",
        "reads Signal's private _registry",
        "replaces a method: Signal.send",
        "replaces a method with setattr()",
        "reads Signal's private _plans",  # a subclass's self is a Signal
    ]
