"""tocsin.introspect: receivers with where they were defined, and signal names."""

from __future__ import annotations

import functools
import gc
import importlib
import inspect
import sys
import textwrap
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tocsin.signals
from tocsin import Signal, introspect, receiver
from tocsin.introspect import ReceiverInfo

module_signal = Signal()
_private_alias = module_signal


class Holder:
    class_signal = Signal()


def on_event(sender: object, **kwargs: Any) -> str:
    return "function"


async def on_event_async(sender: object, **kwargs: Any) -> str:
    return "async function"


def with_level(sender: object, level: str, **kwargs: Any) -> str:
    return level


class Handler:
    def on_event(self, sender: object, **kwargs: Any) -> str:
        return "method"

    @classmethod
    def on_class_event(cls, sender: object, **kwargs: Any) -> str:
        return "classmethod"


class SubHandler(Handler):
    pass


class Notifier:
    def __call__(self, sender: object, **kwargs: Any) -> str:
        return "callable object"


class AsyncNotifier:
    async def __call__(self, sender: object, **kwargs: Any) -> str:
        return "async callable object"


class Order:
    def __repr__(self) -> str:
        return "<Order #42>"


def logged(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


@logged
def decorated(sender: object, **kwargs: Any) -> str:
    return "decorated"


def first_line(func: Any) -> int:
    return inspect.getsourcelines(func)[1]


def only(signal: Signal) -> ReceiverInfo:
    [info] = introspect.receivers(signal)
    return info


@pytest.fixture
def signal() -> Signal:
    return Signal()


@pytest.fixture
def tmp_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for modules written by the test; they are unloaded after it."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        sys.modules.pop(name, None)


def write(directory: Path, name: str, source: str) -> None:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    importlib.invalidate_caches()


# -- receiver kinds ------------------------------------------------------------------


def test_function(signal: Signal) -> None:
    """A function is named module.qualname, with its file and first line."""
    signal.connect(on_event)
    info = only(signal)
    assert info.receiver is on_event
    assert info.name == f"{__name__}.on_event"
    assert (info.module, info.qualname, info.kind) == (__name__, "on_event", "function")
    assert info.file == __file__
    assert info.line == first_line(on_event)
    assert info.defined_at == f"{__file__}:{info.line}"
    assert info.weak
    assert not info.is_async
    assert info.any_sender
    assert info.sender is None
    assert info.sender_description == "any"
    assert (info.on_commit, info.robust, info.priority, info.dispatch_uid) == (False, None, 0, None)


def test_async_function(signal: Signal) -> None:
    """An async function is a function whose is_async is true."""
    signal.connect(on_event_async)
    info = only(signal)
    assert (info.name, info.kind, info.is_async) == (
        f"{__name__}.on_event_async",
        "function",
        True,
    )
    assert info.line == first_line(on_event_async)


def test_bound_method(signal: Signal) -> None:
    """A bound method is named Class.method, with the function's file and line."""
    handler = Handler()
    signal.connect(handler.on_event)
    info = only(signal)
    assert info.name == f"{__name__}.Handler.on_event"
    assert (info.qualname, info.kind) == ("Handler.on_event", "method")
    assert (info.file, info.line) == (__file__, first_line(Handler.on_event))
    assert info.receiver == handler.on_event


def test_inherited_method_is_named_after_the_instance_class(signal: Signal) -> None:
    """A method inherited from a base class is named after the object's class, and
    located where the base class defines it."""
    handler = SubHandler()
    signal.connect(handler.on_event)
    info = only(signal)
    assert info.qualname == "SubHandler.on_event"
    assert info.line == first_line(Handler.on_event)


def test_classmethod(signal: Signal) -> None:
    """A classmethod is named after its class."""
    signal.connect(Handler.on_class_event)
    info = only(signal)
    assert (info.qualname, info.kind) == ("Handler.on_class_event", "method")
    assert info.line == first_line(Handler.on_class_event)


def test_partial_describes_the_wrapped_function(signal: Signal) -> None:
    """A partial is named functools.partial(...) and located at the wrapped function."""
    signal.connect(functools.partial(functools.partial(with_level), level="info"), weak=False)
    info = only(signal)
    assert info.name == f"functools.partial({__name__}.with_level)"
    assert (info.module, info.qualname, info.kind) == (__name__, "with_level", "partial")
    assert (info.file, info.line) == (__file__, first_line(with_level))
    assert not info.weak


def test_partial_of_a_bound_method(signal: Signal) -> None:
    """A partial of a bound method is described through the method."""
    signal.connect(functools.partial(Handler().on_event), weak=False)
    info = only(signal)
    assert info.name == f"functools.partial({__name__}.Handler.on_event)"
    assert info.line == first_line(Handler.on_event)


def test_callable_object_is_located_at_its_call(signal: Signal) -> None:
    """A callable object is named Class.__call__ and located at its class's __call__."""
    notifier = Notifier()
    signal.connect(notifier)
    info = only(signal)
    assert info.receiver is notifier
    assert (info.qualname, info.kind) == ("Notifier.__call__", "callable object")
    assert (info.file, info.line) == (__file__, first_line(Notifier.__call__))
    assert not info.is_async


def test_async_callable_object(signal: Signal) -> None:
    """An object with async def __call__ is an async receiver."""
    notifier = AsyncNotifier()
    signal.connect(notifier)
    info = only(signal)
    assert (info.qualname, info.is_async) == ("AsyncNotifier.__call__", True)


def test_decorated_function_is_located_at_the_original(signal: Signal) -> None:
    """A function wrapped with functools.wraps is located where the original is defined."""
    signal.connect(decorated)
    info = only(signal)
    assert info.name == f"{__name__}.decorated"
    assert (info.file, info.line) == (__file__, first_line(decorated.__wrapped__))  # type: ignore[attr-defined]


def test_lambda(signal: Signal) -> None:
    """A lambda keeps its qualified name, <locals> and all."""
    handler = lambda sender, **kwargs: None  # noqa: E731
    signal.connect(handler)
    info = only(signal)
    assert info.qualname == "test_lambda.<locals>.<lambda>"
    assert info.file == __file__


def test_builtins_have_no_file(signal: Signal) -> None:
    """A builtin function or class receiver has a name but no file or line."""
    store: dict[str, Any] = {}
    signal.connect(store.update, weak=False)
    signal.connect(dict, weak=False)
    method, cls = introspect.receivers(signal)
    assert (method.name, method.kind, method.file, method.line) == (
        "builtins.dict.update",
        "builtin",
        None,
        None,
    )
    assert method.defined_at is None
    assert (cls.name, cls.kind, cls.file) == ("builtins.dict", "class", None)


def test_class_receiver_is_located_at_its_definition(signal: Signal) -> None:
    """A class connected as a receiver is located at its class statement."""

    class Created:
        def __init__(self, sender: object, **kwargs: Any) -> None:
            pass

    signal.connect(Created)
    info = only(signal)
    assert (info.kind, info.file, info.line) == ("class", __file__, first_line(Created))


# -- options and order ---------------------------------------------------------------


def test_options(signal: Signal) -> None:
    """on_commit, robust, priority and dispatch_uid are reported."""
    signal.connect(on_event, dispatch_uid="app.on_event", priority=5)
    signal.connect(on_event_async, on_commit=True)
    signal.connect(Notifier(), on_commit=True, robust=False, weak=False)
    uid, robust, raising = introspect.receivers(signal)
    assert (uid.dispatch_uid, uid.priority, uid.on_commit, uid.robust) == (
        "app.on_event",
        5,
        False,
        None,
    )
    assert (robust.on_commit, robust.robust, robust.dispatch_uid) == (True, True, None)
    assert (raising.on_commit, raising.robust, raising.weak) == (True, False, False)


def test_dispatch_uid_with_a_sender(signal: Signal) -> None:
    """The dispatch_uid of a sender-filtered connection is reported too."""
    signal.connect(on_event, sender=Order, dispatch_uid=("app", 1))
    assert only(signal).dispatch_uid == ("app", 1)


def test_order_is_send_order(signal: Signal) -> None:
    """Receivers are listed in the order send() calls them: priority, sync before async."""

    def make(tag: str, is_async: bool = False) -> Callable[..., Any]:
        if is_async:

            async def async_receiver(sender: object, **kwargs: Any) -> str:
                return tag

            return async_receiver

        def sync_receiver(sender: object, **kwargs: Any) -> str:
            return tag

        return sync_receiver

    connections = [
        ("a", False, 0),
        ("b", True, 10),
        ("c", False, 5),
        ("d", False, -1),
        ("e", True, 0),
        ("f", False, 5),
    ]
    for tag, is_async, priority in connections:
        signal.connect(make(tag, is_async), weak=False, priority=priority)
    listed = [info.receiver for info in introspect.receivers(signal)]
    sent = signal.send(sender=None)
    assert listed == [r for r, _response in sent]
    assert [response for _r, response in sent] == ["c", "f", "a", "d", "b", "e"]


def test_on_commit_receivers_come_last(signal: Signal) -> None:
    """On-commit receivers are listed after the others, in priority order."""
    signal.connect(on_event_async, on_commit=True)
    signal.connect(Notifier(), on_commit=True, priority=3, weak=False)
    signal.connect(on_event)
    signal.connect(Handler.on_class_event, priority=-5)
    names = [info.qualname for info in introspect.receivers(signal)]
    assert names == ["on_event", "Handler.on_class_event", "Notifier.__call__", "on_event_async"]


# -- senders -------------------------------------------------------------------------


def test_class_sender(signal: Signal) -> None:
    """A class sender is described by its qualified name."""
    signal.connect(on_event, sender=Order)
    info = only(signal)
    assert info.sender is Order
    assert not info.any_sender
    assert info.sender_description == f"{__name__}.Order"


def test_object_sender_is_described_by_its_repr(signal: Signal) -> None:
    """Any other sender is described by its repr(), shortened."""

    class Long:
        def __repr__(self) -> str:
            return "<" + "x" * 100 + ">"

    order, long = Order(), Long()
    signal.connect(on_event, sender=order)
    signal.connect(on_event, sender=long)
    first, second = introspect.receivers(signal)
    assert (first.sender, first.sender_description) == (order, "<Order #42>")
    assert second.sender is long
    assert len(second.sender_description) == 60
    assert second.sender_description.endswith("...")


def test_sender_that_cannot_be_weakly_referenced(signal: Signal) -> None:
    """A sender known by id() only has no object, but is still a filter."""
    sender = object()
    signal.connect(on_event, sender=sender)
    info = only(signal)
    assert info.sender is None
    assert not info.any_sender
    assert info.sender_description == f"<object with id {id(sender)}>"


def test_info_does_not_keep_the_sender_alive(signal: Signal) -> None:
    """The sender is held weakly; a connection whose sender died is not listed."""
    order = Order()
    signal.connect(on_event, sender=order)
    info = only(signal)
    del order
    gc.collect()
    assert info.sender is None
    assert introspect.receivers(signal) == []


# -- weak references -----------------------------------------------------------------


def test_dead_weak_receivers_are_left_out_and_the_registry_is_untouched(signal: Signal) -> None:
    """A weak receiver that died is not listed, and listing does not purge the signal."""

    def gone(sender: object, **kwargs: Any) -> None:
        pass

    signal.connect(on_event)
    signal.connect(gone)
    del gone
    gc.collect()
    before = dict(signal._registry)
    assert [info.qualname for info in introspect.receivers(signal)] == ["on_event"]
    assert signal._registry == before
    assert signal._dead_receivers


def test_info_does_not_keep_weak_receivers_alive(signal: Signal) -> None:
    """An info holds a weak receiver weakly: once it dies, info.receiver is None."""

    def handler(sender: object, **kwargs: Any) -> None:
        pass

    method_owner = Handler()
    signal.connect(handler)
    signal.connect(method_owner.on_event)
    function_info, method_info = introspect.receivers(signal)
    probe, method_probe = weakref.ref(handler), weakref.ref(method_owner)
    del handler, method_owner
    gc.collect()
    assert probe() is None
    assert method_probe() is None
    assert function_info.receiver is None
    assert method_info.receiver is None
    assert function_info.name.endswith("handler")  # the rest of the info stays


def test_strong_receivers_are_held_as_the_signal_holds_them(signal: Signal) -> None:
    """A strongly connected receiver stays reachable through its info."""
    signal.connect(lambda sender, **kwargs: "lambda", weak=False)
    info = only(signal)
    signal.disconnect(info.receiver)
    assert info.receiver(sender=None) == "lambda"


def test_info_does_not_keep_the_signal_alive() -> None:
    """Infos hold no reference to the signal (its weak references carry its callback)."""
    signal = Signal()
    handler = Handler()
    signal.connect(on_event)
    signal.connect(handler.on_event)
    signal.connect(on_event, sender=Order)
    infos = introspect.receivers(signal)
    probe = weakref.ref(signal)
    del signal
    gc.collect()
    assert probe() is None
    assert len(infos) == 3


def test_receivers_takes_a_signal() -> None:
    """Anything else is a TypeError."""
    with pytest.raises(TypeError, match="takes a Signal"):
        introspect.receivers("post_save")  # type: ignore[arg-type]
    assert introspect.receivers(Signal()) == []


def test_receiver_decorator_connections_are_listed(signal: Signal) -> None:
    """What @receiver connects is listed like any connection."""

    @receiver(signal, sender=Order, priority=2)
    def on_order(sender: object, **kwargs: Any) -> None:
        pass

    info = only(signal)
    assert (info.qualname, info.sender, info.priority) == (
        "test_receiver_decorator_connections_are_listed.<locals>.on_order",
        Order,
        2,
    )
    assert info.line == first_line(on_order)


# -- signal names --------------------------------------------------------------------


def test_module_level_signal_name() -> None:
    """A module-level signal is named module.attribute, its public name first."""
    assert introspect.signal_name(module_signal) == f"{__name__}.module_signal"
    assert introspect.signal_name(tocsin.signals.post_save) == "tocsin.signals.post_save"


def test_class_attribute_signal_name() -> None:
    """A signal that is a class attribute is named module.Class.attribute."""
    assert introspect.signal_name(Holder.class_signal) == f"{__name__}.Holder.class_signal"
    # The cached name is checked, not looked for again, on the next call.
    assert introspect._names[Holder.class_signal].holds(Holder.class_signal)


def test_unnamed_signal() -> None:
    """A signal that nothing names is shown by its address."""
    signal = Signal()
    assert introspect.signal_name(signal) == f"<Signal at {id(signal):#x}>"


def test_signal_name_takes_a_signal() -> None:
    """Anything else is a TypeError."""
    with pytest.raises(TypeError, match="takes a Signal"):
        introspect.signal_name(object())  # type: ignore[arg-type]


def test_name_is_where_the_signal_is_assigned(tmp_modules: Path) -> None:
    """A module that imports a signal (and is imported first) does not name it."""
    write(tmp_modules, "names_definer.py", "from tocsin import Signal\nplaced = Signal()\n")
    write(
        tmp_modules,
        "names_importer.py",
        """
        def load():
            global placed
            from names_definer import placed
        """,
    )
    importer = importlib.import_module("names_importer")
    importer.load()  # binds the signal in a module imported before its own
    assert list(sys.modules).index("names_importer") < list(sys.modules).index("names_definer")
    assert introspect.signal_name(importer.placed) == "names_definer.placed"


def test_name_follows_the_modules(tmp_modules: Path) -> None:
    """A name is found once a module binds the signal, and dropped once it is unloaded."""
    signal = Signal()
    assert introspect.signal_name(signal).startswith("<Signal at")
    write(tmp_modules, "names_later.py", "")
    module = importlib.import_module("names_later")
    module.late = signal  # type: ignore[attr-defined]
    write(tmp_modules, "names_trigger.py", "")
    importlib.import_module("names_trigger")  # names are looked for again after an import
    assert introspect.signal_name(signal) == "names_later.late"
    del sys.modules["names_later"]
    assert introspect.signal_name(signal).startswith("<Signal at")


def test_all_signals() -> None:
    """all_signals() has every live signal, named or not."""
    signal = Signal()
    found = introspect.all_signals()
    assert signal in found
    assert module_signal in found
    assert tocsin.signals.post_save in found


def test_signals_are_named_and_sorted() -> None:
    """signals() lists the named signals by name, and leaves out unnamed ones."""
    unnamed = Signal()
    listed = introspect.signals()
    names = [name for name, _signal in listed]
    assert names == sorted(names)
    assert (f"{__name__}.module_signal", module_signal) in listed
    assert (f"{__name__}.Holder.class_signal", Holder.class_signal) in listed
    assert ("tocsin.signals.post_save", tocsin.signals.post_save) in listed
    assert unnamed not in [signal for _name, signal in listed]


def test_signals_of_modules() -> None:
    """signals(modules) lists what those modules bind, once each, by dotted name or module."""
    listed = introspect.signals([sys.modules[__name__]])
    assert listed == [
        (f"{__name__}.Holder.class_signal", Holder.class_signal),
        (f"{__name__}.module_signal", module_signal),
    ]
    builtins = introspect.signals(["tocsin.signals"])
    expected = [n for n in tocsin.signals.__all__ if isinstance(getattr(tocsin.signals, n), Signal)]
    assert [name for name, _signal in builtins] == [f"tocsin.signals.{n}" for n in expected]


def test_signals_of_a_package_include_its_imported_submodules(tmp_modules: Path) -> None:
    """A package's imported submodules are looked at; an imported signal keeps its name."""
    write(tmp_modules, "names_pkg/__init__.py", "")
    write(
        tmp_modules,
        "names_pkg/signals.py",
        "from tocsin import Signal\nfrom tocsin.signals import post_save\nshipped = Signal()\n",
    )
    importlib.import_module("names_pkg.signals")
    assert [name for name, _signal in introspect.signals(["names_pkg"])] == [
        "names_pkg.signals.shipped",
        "tocsin.signals.post_save",
    ]


def test_signals_takes_modules() -> None:
    """Anything else than a module or a name is a TypeError."""
    with pytest.raises(TypeError, match="modules or dotted module names"):
        introspect.signals([42])  # type: ignore[list-item]
