"""Tests of ``tocsin.typed``: typed signals, as mypy and pyright see them and at run time.

The snippets in tests/typing/ are checked by both type checkers. A ``pass_*.py``
snippet must get no error at all; a ``fail_*.py`` snippet must get an error on
every line marked ``# E:`` (the words after it say why, for the reader) and on
no other line.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

import tocsin
from tocsin import Signal, TypedSignal, receiver, tracing, typed_signal

if TYPE_CHECKING:
    from decimal import Decimal  # resolvable by type checkers only

ROOT = Path(__file__).resolve().parent.parent
TYPING = ROOT / "tests" / "typing"
SNIPPETS = sorted(TYPING.glob("*.py"))
MARKER = re.compile(r"#\s*E:")

# Errors found by a checker: snippet -> line number (1-based) -> messages.
Errors = dict[Path, dict[int, list[str]]]


def marked_lines(snippet: Path) -> set[int]:
    lines = snippet.read_text(encoding="utf-8").splitlines()
    return {number for number, line in enumerate(lines, 1) if MARKER.search(line)}


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> Errors:
    """mypy --strict on every snippet, in one run."""
    from mypy import api

    cache = tmp_path_factory.mktemp("mypy-cache")
    stdout, stderr, status = api.run(
        [
            "--strict",
            "--config-file=",  # the snippets, not the project's settings
            f"--cache-dir={cache}",
            "--show-absolute-path",
            "--no-error-summary",
            *map(str, SNIPPETS),
        ]
    )
    if status not in (0, 1):
        pytest.fail(f"mypy could not check the snippets (exit status {status}):\n{stderr}")
    errors: Errors = {snippet: {} for snippet in SNIPPETS}
    for line in stdout.splitlines():
        if match := re.match(r"^(.+?):(\d+): error: (.*)$", line):
            path, number, message = match.groups()
            errors[Path(path)].setdefault(int(number), []).append(message)
    return errors


@pytest.fixture(scope="module")
def pyright_errors() -> Errors:
    """pyright on every snippet, in one run (each snippet asks for strict mode)."""
    pyright = Path(sys.executable).with_name("pyright")
    if not pyright.exists():
        pytest.fail(
            f"pyright is not installed next to {sys.executable}; it is in tocsin's test "
            f"group: pip install -e . --group test"
        )
    command = [str(pyright), "--outputjson", "--pythonpath", sys.executable, *map(str, SNIPPETS)]
    cannot_run = (
        "pyright could not run. It needs Node.js (pyright[nodejs], in the test group, "
        "brings it) and, on its first run, the npm registry, to download its package."
    )
    try:
        # The first run may download pyright's npm package: allow for it.
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=600, cwd=ROOT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.fail(f"{cannot_run}\n{error!r}")
    try:
        # Skip whatever a first run prints before the report (download progress).
        report = json.loads(result.stdout[result.stdout.find("{") :])
    except json.JSONDecodeError:
        pytest.fail(
            f"{cannot_run}\nexit status {result.returncode}\nstdout:\n{result.stdout[-3000:]}"
            f"\nstderr:\n{result.stderr[-3000:]}"
        )
    errors: Errors = {snippet: {} for snippet in SNIPPETS}
    for diagnostic in report["generalDiagnostics"]:
        if diagnostic["severity"] == "error":
            number = diagnostic["range"]["start"]["line"] + 1
            messages = errors[Path(diagnostic["file"])].setdefault(number, [])
            messages.append(diagnostic["message"].splitlines()[0])
    return errors


def test_snippets_are_there() -> None:
    """The snippets exist, pass_ ones carry no marker and every fail_ one has some."""
    names = {s.name for s in SNIPPETS}
    assert {"pass_send.py", "pass_receivers.py", "pass_plain_signal.py"} <= names
    assert {"fail_send.py", "fail_receivers.py"} <= names
    for snippet in SNIPPETS:
        assert snippet.name.startswith(("pass_", "fail_")), snippet.name
        assert bool(marked_lines(snippet)) == snippet.name.startswith("fail_"), snippet.name


@pytest.mark.parametrize("checker", ["mypy", "pyright"])
@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.name for s in SNIPPETS])
def test_type_checkers(request: pytest.FixtureRequest, checker: str, snippet: Path) -> None:
    """The checker reports an error on exactly the lines marked ``# E:``."""
    errors: Errors = request.getfixturevalue(f"{checker}_errors")
    found = errors[snippet]
    expected = marked_lines(snippet)
    lines = snippet.read_text(encoding="utf-8").splitlines()
    unexpected = {n: found[n] for n in sorted(found.keys() - expected)}
    missing = [f"{n}: {lines[n - 1].strip()}" for n in sorted(expected - found.keys())]
    assert not unexpected, f"{checker} reported errors on unmarked lines: {unexpected}"
    assert not missing, f"{checker} accepted lines that must fail: {missing}"


# -- run time --------------------------------------------------------------------------


class Todo:
    def __init__(self, title: str = "buy milk") -> None:
        self.title = title

    def __repr__(self) -> str:
        return f"Todo({self.title!r})"


class UrgentTodo(Todo):
    pass


class HasTitle(Protocol):
    title: str


@TypedSignal
def todo_completed(sender: type[Todo], *, todo: Todo) -> None:
    """Sent when a todo is marked as done."""


@typed_signal(check=True)
def checked_completed(sender: type[Todo], *, todo: Todo) -> None:
    """The same, checked at run time."""


@typed_signal(check=True)
def checked_renamed(
    sender: type[Todo] | None,
    *,
    todo: Todo,
    old_title: str | None = None,
    ratio: float = 0.0,
    tags: list[str] | None = None,
    amount: Decimal | None = None,
    anything: Any = None,
) -> None:
    """Sent when a todo is renamed; every argument but todo may be left out."""


def on_done(sender: type[Todo], todo: Todo, **kwargs: Any) -> str:
    return f"done: {todo.title}"


def on_renamed(sender: object, todo: Todo, old_title: str | None = None, **kwargs: Any) -> str:
    return f"renamed: {old_title} -> {todo.title}"


def test_a_typed_signal_is_a_signal() -> None:
    """A TypedSignal is a Signal, exported from tocsin."""
    assert isinstance(todo_completed, Signal)
    assert isinstance(checked_completed, TypedSignal)
    assert tocsin.TypedSignal is TypedSignal
    assert tocsin.typed_signal is typed_signal
    assert TypedSignal.__module__ == typed_signal.__module__ == "tocsin"


def test_unchecked_methods_are_signals_own() -> None:
    """Without check=True, a TypedSignal runs Signal's methods: send() is Signal.send."""
    assert type(todo_completed) is TypedSignal
    for name in ("send", "send_robust", "asend", "asend_robust", "connect", "disconnect"):
        assert getattr(type(todo_completed), name) is getattr(Signal, name), name
        assert name not in TypedSignal.__dict__, name
        assert name not in vars(todo_completed), name
    assert todo_completed.send.__func__ is Signal.send  # type: ignore[attr-defined]


def test_spec_gives_doc_and_repr() -> None:
    """The spec's docstring is the signal's __doc__; its name is in the repr."""
    assert todo_completed.__doc__ == "Sent when a todo is marked as done."
    assert todo_completed.spec.__name__ == "todo_completed"
    assert todo_completed.check is False
    assert repr(todo_completed).startswith("<tocsin.TypedSignal todo_completed at 0x")
    assert repr(checked_completed).startswith("<tocsin.TypedSignal checked_completed (checked)")


def test_send_and_receive() -> None:
    """Connected receivers get the declared arguments, as with any Signal."""
    todo = Todo()
    todo_completed.connect(on_done)
    try:
        assert todo_completed.send(Todo, todo=todo) == [(on_done, "done: buy milk")]
        assert todo_completed.send_robust(sender=Todo, todo=todo) == [(on_done, "done: buy milk")]
    finally:
        assert todo_completed.disconnect(on_done)


def test_receiver_decorator_and_asend() -> None:
    """@receiver connects to a typed signal; asend() calls async receivers."""
    signal = TypedSignal(todo_completed.spec, use_caching=True)
    assert signal.use_caching is True

    @receiver(signal)
    async def on_done_async(sender: type[Todo], todo: Todo, **kwargs: Any) -> str:
        return todo.title.upper()

    responses = asyncio.run(signal.asend(sender=Todo, todo=Todo()))
    assert responses == [(on_done_async, "BUY MILK")]
    responses = asyncio.run(signal.asend_robust(Todo, todo=Todo("call mum")))
    assert responses == [(on_done_async, "CALL MUM")]


def test_unchecked_signal_checks_nothing_at_run_time() -> None:
    """check=False leaves run-time arguments alone, like a plain Signal."""
    signal = TypedSignal(todo_completed.spec)
    signal.connect(on_done)
    with pytest.raises(AttributeError):  # the receiver, not the signal, trips on it
        signal.send(sender=Todo, todo=42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec_source", "message"),
    [
        ("def spec(): pass", "does not start with 'sender'"),
        ("def spec(*, todo): pass", "does not start with 'sender'"),
        ("def spec(instance, *, todo): pass", "does not start with 'sender'"),
        ("def spec(sender, /, *, todo): pass", "must be an ordinary parameter"),
        ("def spec(*, sender, todo): pass", "must be an ordinary parameter"),
        ("def spec(sender=None, *, todo): pass", "must have no default"),
        ("def spec(sender, todo): pass", "todo must be keyword-only"),
        ("def spec(sender, *args): pass", "*args must be keyword-only"),
        ("def spec(sender, **kwargs): pass", "**kwargs must be keyword-only"),
        ("def spec(sender, *, signal): pass", "declares 'signal', which is reserved"),
    ],
)
def test_spec_must_have_send_shape(spec_source: str, message: str) -> None:
    """A spec that does not look like send(sender, **named) is refused, saying why."""
    namespace: dict[str, Any] = {}
    exec(spec_source, namespace)
    with pytest.raises(ValueError, match=re.escape(message)):
        TypedSignal(namespace["spec"])


def test_spec_must_be_callable() -> None:
    """TypedSignal of a non-function says what it takes."""
    with pytest.raises(TypeError, match=r"takes a function whose signature is the signal's"):
        TypedSignal("todo_completed")  # type: ignore[arg-type]


def test_spec_with_optional_arguments() -> None:
    """Keyword-only arguments with a default may be left out of a send."""

    def spec(sender: object, *, todo: Todo, note: str = "") -> None: ...

    signal = TypedSignal(spec, check=True)
    signal.connect(on_renamed)
    assert signal.send(sender=None, todo=Todo()) == [(on_renamed, "renamed: None -> buy milk")]


# -- check=True ------------------------------------------------------------------------


def checked_send_error(signal: Signal, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(TypeError) as raised:
        signal.send(*args, **kwargs)
    return str(raised.value)


def test_checked_send_accepts_what_the_spec_declares() -> None:
    """Right arguments pass: subclasses, None for an optional, an int for a float."""
    checked_completed.send(Todo, todo=Todo())
    checked_completed.send(sender=UrgentTodo, todo=UrgentTodo())
    checked_renamed.send(sender=None, todo=Todo(), old_title=None, ratio=1, tags=["x"])
    checked_renamed.send(sender=Todo, todo=Todo(), old_title="old", ratio=0.5)


def test_checked_send_names_missing_and_unknown_arguments() -> None:
    """A missing or unknown argument is a TypeError naming it and the signal."""
    error = checked_send_error(checked_completed, sender=Todo)
    assert error == (
        "checked_completed.send(): missing argument(s) 'todo' (it takes sender, todo)."
    )
    error = checked_send_error(checked_completed, Todo, todo=Todo(), todos=[], priority=1)
    assert error == (
        "checked_completed.send(): unknown argument(s) 'priority', 'todos' (it takes sender, todo)."
    )
    error = checked_send_error(checked_completed, sender=Todo, todos=[])
    assert "unknown argument(s) 'todos'; missing argument(s) 'todo'" in error


def test_checked_send_checks_types() -> None:
    """A value that is not an instance of a plain-class annotation is a TypeError."""
    error = checked_send_error(checked_completed, sender=Todo, todo="buy milk")
    assert error == "checked_completed.send(): todo must be Todo, got str: 'buy milk'"
    error = checked_send_error(checked_completed, sender=Todo, todo=None)
    assert error == "checked_completed.send(): todo must be Todo, got NoneType: None"
    error = checked_send_error(checked_completed, sender=int, todo=Todo())
    assert (
        error == "checked_completed.send(): sender must be type[Todo], got class int: <class 'int'>"
    )
    error = checked_send_error(checked_completed, Todo(), todo=Todo())
    assert error.startswith("checked_completed.send(): sender must be type[Todo], got Todo:")
    error = checked_send_error(checked_renamed, sender=None, todo=Todo(), old_title=3)
    assert error == "checked_renamed.send(): old_title must be str | None, got int: 3"
    error = checked_send_error(checked_renamed, sender=None, todo=Todo(), ratio="1")
    assert "ratio must be float, got str" in error


def test_checked_send_skips_what_isinstance_cannot_check() -> None:
    """Generic aliases, Any, and names that resolve only for type checkers are not checked."""
    checked_renamed.send(
        sender=None,
        todo=Todo(),
        tags=[1, 2],  # type: ignore[list-item]
        amount="1.5",  # type: ignore[arg-type]
        anything=object(),
    )


def test_every_checked_send_checks() -> None:
    """send_robust, asend and asend_robust check as send does."""
    with pytest.raises(TypeError, match=r"checked_completed.send_robust\(\): missing"):
        checked_completed.send_robust(sender=Todo)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"checked_completed.asend\(\): todo must be Todo"):
        asyncio.run(checked_completed.asend(sender=Todo, todo=1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"checked_completed.asend_robust\(\): unknown"):
        asyncio.run(checked_completed.asend_robust(Todo, todo=Todo(), x=1))  # type: ignore[call-arg]


def test_checked_send_leaves_call_errors_to_signal() -> None:
    """No sender, or too many positionals, get Signal.send's own TypeError."""
    with pytest.raises(TypeError, match="sender"):
        checked_completed.send(todo=Todo())  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="positional"):
        checked_completed.send(Todo, Todo())  # type: ignore[call-arg]


def test_checked_send_calls_receivers() -> None:
    """Once checked, a send is an ordinary send."""
    checked_completed.connect(on_done)
    try:
        assert checked_completed.send(sender=Todo, todo=Todo()) == [(on_done, "done: buy milk")]
    finally:
        checked_completed.disconnect(on_done)


def test_checked_send_is_traced_once() -> None:
    """The checking methods defer to Signal's, so tracing sees one send."""
    events: list[tracing.SendEvent] = []
    stop = tracing.subscribe(events.append)
    try:
        checked_completed.send(sender=Todo, todo=Todo())
    finally:
        stop()
    assert [event.signal for event in events] == [checked_completed]


def test_checked_connect_refuses_receivers_that_cannot_take_the_arguments() -> None:
    """check=True: connect() raises TypeError for a receiver the send could not call."""

    def needs_extra(sender: object, todo: Todo, extra: str, **kwargs: Any) -> None: ...

    def positional_only(sender: object, todo: Todo, /, **kwargs: Any) -> None: ...

    def old_title_required(sender: object, todo: Todo, old_title: str, **kwargs: Any) -> None: ...

    # (Type checkers reject these connect() calls too: check=True is for code they do not see.)
    with pytest.raises(TypeError) as raised:
        checked_completed.connect(needs_extra)  # type: ignore[arg-type]
    assert str(raised.value).endswith(
        ".<locals>.needs_extra cannot receive checked_completed: "
        "missing a required argument: 'extra'. "
        "It is called as receiver(signal=..., sender=..., todo=...)."
    )
    with pytest.raises(TypeError, match="positional_only cannot receive checked_completed"):
        checked_completed.connect(positional_only)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"missing a required argument: 'old_title'"):
        checked_renamed.connect(old_title_required)  # type: ignore[arg-type]
    assert not checked_completed.has_listeners()
    assert not checked_renamed.has_listeners()


def test_checked_connect_accepts_receivers_that_can() -> None:
    """Receivers that take the arguments, by name or through **kwargs, connect."""

    def only_kwargs(**kwargs: Any) -> None: ...

    class Listener:
        def on_done(self, sender: object, *, todo: Todo, **kwargs: Any) -> None: ...

    listener = Listener()
    # Type checkers want a receiver to name sender (see docs/typed-signals.md), run time does not.
    checked_completed.connect(only_kwargs)  # type: ignore[arg-type]
    checked_completed.connect(listener.on_done)
    checked_renamed.connect(on_renamed)
    try:
        assert len(checked_completed.send(sender=Todo, todo=Todo())) == 2
    finally:
        checked_completed.disconnect(only_kwargs)  # type: ignore[arg-type]
        checked_completed.disconnect(listener.on_done)
        checked_renamed.disconnect(on_renamed)


def test_checked_connect_keeps_signals_own_errors() -> None:
    """A receiver without **kwargs still gets Signal.connect()'s ValueError."""

    def no_kwargs(sender: object, todo: Todo) -> None: ...

    with pytest.raises(ValueError, match=r"must accept keyword arguments \(\*\*kwargs\)"):
        checked_completed.connect(no_kwargs)


def test_check_true_with_a_subclass() -> None:
    """A subclass of TypedSignal built with check=True checks, and stays that subclass."""

    class NamedSignal(TypedSignal[Any]):
        pass

    signal = NamedSignal(todo_completed.spec, check=True)
    assert isinstance(signal, NamedSignal)
    assert type(signal).__qualname__ == NamedSignal.__qualname__
    assert type(NamedSignal(todo_completed.spec, check=True)) is type(signal)
    with pytest.raises(TypeError, match="missing argument"):
        signal.send(sender=Todo)
    assert type(NamedSignal(todo_completed.spec)) is NamedSignal


def test_annotations_that_are_skipped() -> None:
    """Protocols, generic classes and unresolvable names leave an argument unchecked."""

    def spec(sender: object, *, todo: HasTitle, items: dict[str, int], n: int) -> None: ...

    signal = TypedSignal(spec, check=True)
    signal.send(sender=None, todo=42, items=[], n=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="n must be int, got str"):
        signal.send(sender=None, todo=42, items=[], n="1")  # type: ignore[arg-type]


def test_spec_signature_is_the_send_signature() -> None:
    """The spec is kept as is, so tools can show what send() takes."""
    assert (
        str(inspect.signature(todo_completed.spec))
        == "(sender: 'type[Todo]', *, todo: 'Todo') -> 'None'"
    )
