"""Which signals exist, and who listens to them.

::

    from tocsin import introspect

    for info in introspect.receivers(post_save):
        print(info.name, info.defined_at, info.sender_description, info.priority)

    for name, signal in introspect.signals():
        print(name, len(introspect.receivers(signal)))

Nothing here changes a signal, and nothing keeps a weakly connected receiver
alive: a :class:`ReceiverInfo` holds its receiver (and its sender) as the
signal does. ``python -m tocsin list`` prints the same as a table.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import linecache
import re
import sys
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import BuiltinFunctionType, CodeType, FunctionType, MethodType, ModuleType
from typing import Any, Literal, NamedTuple, cast

from ._inspect import describe, is_bound_method
from ._refs import make_id, strong_deref
from .dispatcher import ConnectionInfo, Signal, all_signals

__all__ = ["ReceiverInfo", "all_signals", "receivers", "signal_name", "signals"]

Kind = Literal["function", "method", "partial", "callable object", "class", "builtin"]
Location = tuple[str | None, int | None]  # (file, first line)


# -- signals and their names -------------------------------------------------------


class _Binding(NamedTuple):
    """Where a signal is bound: ``module`` then attributes (one, or class and attribute)."""

    module: str
    attributes: tuple[str, ...]

    @property
    def name(self) -> str:
        return ".".join((self.module, *self.attributes))

    def holds(self, signal: Signal) -> bool:
        target: Any = sys.modules.get(self.module)
        for attribute in self.attributes:
            namespace = _namespace(target)
            if namespace is None:
                return False
            target = namespace.get(attribute)
        return target is signal


_names: weakref.WeakKeyDictionary[Signal, _Binding] = weakref.WeakKeyDictionary()
# Signals found nowhere, with len(sys.modules) at the time: looked for again
# only once a module has been imported (or removed) since.
_unnamed: weakref.WeakKeyDictionary[Signal, int] = weakref.WeakKeyDictionary()


def signal_name(signal: Signal) -> str:
    """``module.attribute`` of the module-level name *signal* is bound to, else
    ``"<Signal at 0x...>"``.

    When several modules bind it (``from tocsin.signals import post_save``
    binds ``post_save`` in your module too), the module whose source assigns
    it wins, then public names, then the module found first in
    ``sys.modules``. A signal that no module binds but a class attribute does
    is named ``module.Class.attribute``.

    Names are cached, and checked to be still true when they are asked for
    again; a signal found nowhere is looked for again only once a module has
    been imported (or removed) since, so asking costs little either way.

    :raises TypeError: if *signal* is not a :class:`~tocsin.Signal`.
    """
    if not isinstance(signal, Signal):
        raise TypeError(f"signal_name() takes a Signal; got {type(signal).__name__}.")
    binding = _names.get(signal)
    if binding is not None and binding.holds(signal):
        return binding.name
    if _unnamed.get(signal) != len(sys.modules):
        binding = _find_binding(signal)
        if binding is not None:
            _names[signal] = binding
            _unnamed.pop(signal, None)
            return binding.name
        _unnamed[signal] = len(sys.modules)
    return f"<Signal at {id(signal):#x}>"


def signals(modules: Iterable[ModuleType | str] | None = None) -> list[tuple[str, Signal]]:
    """``(name, signal)`` for the named signals, sorted by name.

    :param modules: look only at the signals these modules (or dotted names,
        imported if needed) bind at module level or in the classes they
        define; for a package, also at its submodules that are imported.
        ``None`` (the default) looks at every live signal (:func:`all_signals`).

    A signal is listed under its :func:`signal_name`, once, even when several
    modules bind it; a signal that no module binds is left out.

    :raises TypeError: for an item of *modules* that is neither a module nor a
        string; importing a module may raise too.
    """
    found = all_signals() if modules is None else _signals_in([_module(m) for m in modules])
    named = ((signal_name(s), s) for s in found)
    return sorted(((n, s) for n, s in named if not n.startswith("<")), key=lambda item: item[0])


def _module(module: ModuleType | str) -> ModuleType:
    if isinstance(module, ModuleType):
        return module
    if isinstance(module, str):
        return importlib.import_module(module)
    raise TypeError(f"signals() takes modules or dotted module names; got {module!r}.")


def _signals_in(modules: list[ModuleType]) -> list[Signal]:
    """The signals the modules (and the imported submodules of packages) bind, once each."""
    found_in = {m.__name__: m for m in modules}
    packages = tuple(f"{m.__name__}." for m in modules if hasattr(m, "__path__"))
    if packages:
        for name, module in list(sys.modules.items()):
            if name.startswith(packages):
                found_in.setdefault(name, module)
    found: dict[int, Signal] = {}
    for module_name in sorted(found_in):
        for _attributes, value in _bound_values(module_name, found_in[module_name]):
            if issubclass(type(value), Signal):
                found.setdefault(id(value), cast(Signal, value))
    return list(found.values())


def _namespace(target: object) -> Mapping[str, Any] | None:
    try:
        namespace = vars(target)
    except Exception:  # not a module (some packages put odd objects in sys.modules)
        return None
    return namespace if isinstance(namespace, Mapping) else None


def _bound_values(module_name: str, module: object) -> Iterator[tuple[tuple[str, ...], object]]:
    """``(attributes, value)`` of a module's globals, then of its own classes' attributes.

    Values are only compared and type()-d: isinstance() would ask lazy objects
    for their ``__class__``, which runs their code.
    """
    namespace = _namespace(module)
    if namespace is None:
        return
    items = list(namespace.items())
    for attribute, value in items:
        yield (attribute,), value
    for attribute, value in items:
        if issubclass(type(value), type):
            class_namespace = vars(value)
            if class_namespace.get("__module__") == module_name:
                for class_attribute, class_value in list(class_namespace.items()):
                    yield (attribute, class_attribute), class_value


def _find_binding(signal: Signal) -> _Binding | None:
    module_level: list[_Binding] = []
    in_class: list[_Binding] = []
    for module_name, module in list(sys.modules.items()):
        for attributes, value in _bound_values(module_name, module):
            if value is signal:
                found = module_level if len(attributes) == 1 else in_class
                found.append(_Binding(module_name, attributes))
    candidates = module_level or in_class
    if len(candidates) <= 1:
        return candidates[0] if candidates else None

    def rank(index: int) -> tuple[bool, bool, int]:
        binding = candidates[index]
        return (not _assigns(binding), binding.attributes[-1].startswith("_"), index)

    return candidates[min(range(len(candidates)), key=rank)]


def _assigns(binding: _Binding) -> bool:
    """Whether the module's source assigns the name (``name = ...``), at the top
    level or, for a class attribute, indented."""
    module = sys.modules.get(binding.module)
    filename = getattr(module, "__file__", None)
    if not isinstance(filename, str):
        return False
    try:
        namespace = vars(module)  # for the source of modules loaded from zip files
        lines = linecache.getlines(filename, namespace if isinstance(namespace, dict) else None)
    except Exception:  # a loader that fails to give the source
        return False
    attribute = binding.attributes[-1]
    indent = r"[ \t]+" if len(binding.attributes) > 1 else ""  # in a class statement
    assignment = re.compile(rf"{indent}{re.escape(attribute)}\s*(:[^=\n]*)?=(?!=)")
    return any(assignment.match(line) for line in lines)


# -- receivers ---------------------------------------------------------------------


@dataclass(frozen=True)
class ReceiverInfo:
    """One connection of a signal, and where its receiver was defined: a frozen
    dataclass, as :func:`receivers` lists them.

    The receiver and the sender are held as the signal holds them (weakly for
    a weak connection), so an info does not keep them alive: read them through
    :attr:`receiver` and :attr:`sender`.
    """

    name: str
    """``module.qualname``: ``myapp.on_save``, ``myapp.Audit.record`` for a bound
    method, ``myapp.Notifier.__call__`` for a callable object,
    ``functools.partial(myapp.notify)`` for a partial."""
    module: str | None
    """The module of :attr:`name`'s first half; a partial's is the wrapped callable's."""
    qualname: str
    """The qualified name; a partial's is the wrapped callable's."""
    file: str | None
    """The file the receiver was defined in (for a callable object, its class's
    ``__call__``); ``None`` for builtins."""
    line: int | None
    """The first line of its definition (its first decorator, if it has any)."""
    kind: Kind
    """``"function"``, ``"method"``, ``"partial"``, ``"callable object"``,
    ``"class"`` or ``"builtin"``."""
    any_sender: bool
    """True when the receiver is connected for every sender (``sender=None``)."""
    sender_description: str
    """``"any"``, or the sender it is restricted to: a class as ``module.Qualname``,
    anything else by its ``repr()``."""
    weak: bool
    """Whether the signal holds the receiver through a weak reference."""
    is_async: bool
    """Whether the receiver is async."""
    on_commit: bool
    """Whether it was connected with ``on_commit=True``."""
    robust: bool | None
    """For an on-commit receiver: whether its failures are logged (True) or
    raised (False); ``None`` for other receivers."""
    priority: int
    """Its priority, as connected (0 by default)."""
    dispatch_uid: Hashable | None
    """As given to ``connect()``; None if none was."""
    _receiver: Callable[[], Any] = field(repr=False, compare=False)
    _sender: Callable[[], Any] | None = field(repr=False, compare=False)

    @property
    def receiver(self) -> Any:
        """The receiver, or ``None`` once a weakly connected one is garbage collected."""
        return self._receiver()

    @property
    def sender(self) -> Any:
        """The sender the receiver is restricted to; ``None`` for any sender, once
        the sender is garbage collected, or when it cannot be weakly referenced
        (the signal then knows it by ``id()`` only, as Django does)."""
        return self._sender() if self._sender is not None else None

    @property
    def defined_at(self) -> str | None:
        """``file:line``, or ``None`` when the file is unknown."""
        if self.file is None:
            return None
        return self.file if self.line is None else f"{self.file}:{self.line}"


def receivers(signal: Signal) -> list[ReceiverInfo]:
    """The live receivers of *signal*, in the order ``send()`` calls them.

    That is by priority (highest first, then in connection order), sync
    receivers before async ones, and on-commit receivers last. A receiver
    connected for one sender is listed here, but called only by the sends
    of that sender. The signal is not changed: connections whose receiver or
    sender has died but that the signal has not purged yet are left out.

    :raises TypeError: if *signal* is not a :class:`~tocsin.Signal`.
    """
    if not isinstance(signal, Signal):
        raise TypeError(f"receivers() takes a Signal; got {type(signal).__name__}.")
    return [_info(connection) for connection in signal.connections()]


def _info(connection: ConnectionInfo) -> ReceiverInfo:
    receiver, sender = connection.receiver, connection.sender
    if connection.any_sender:
        sender_description = "any"
    elif sender is None:  # not weakly referenceable: known by id() only
        sender_description = f"<object with id {connection.sender_key!r}>"
    else:
        sender_description = _describe_sender(sender)
    module, qualname, name, kind, location = _describe(receiver)
    return ReceiverInfo(
        name=name,
        module=module,
        qualname=qualname,
        file=location[0],
        line=location[1],
        kind=kind,
        any_sender=connection.any_sender,
        sender_description=sender_description,
        weak=connection.weak,
        is_async=connection.is_async,
        on_commit=connection.on_commit,
        robust=connection.robust if connection.on_commit else None,
        priority=connection.priority,
        dispatch_uid=_dispatch_uid(connection.identity, receiver),
        _receiver=_holder(receiver, connection.weak),
        _sender=weakref.ref(sender) if sender is not None else None,
    )


def _holder(receiver: Any, weak: bool) -> Callable[[], Any]:
    """A zero-argument callable returning *receiver*, holding it as the signal does.

    New weak references, not the signal's own: those carry a callback bound
    to the signal, which would keep the signal alive.
    """
    if not weak:
        return strong_deref(receiver)
    if is_bound_method(receiver):
        return weakref.WeakMethod(receiver)
    return weakref.ref(receiver)


def _dispatch_uid(identity: Hashable, receiver: Any) -> Hashable | None:
    try:
        if identity == make_id(receiver):
            return None
    except Exception:  # a dispatch_uid whose __eq__ fails is still a dispatch_uid
        pass
    return identity


def _describe_sender(sender: object) -> str:
    """A short description of a sender: a class or function by its qualified
    name, anything else by its ``repr()`` (shortened)."""
    if isinstance(sender, type | FunctionType | MethodType | BuiltinFunctionType):
        return describe(sender)
    try:
        text = repr(sender)
    except Exception:
        text = object.__repr__(sender)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(receiver: Any) -> tuple[str | None, str, str, Kind, Location]:
    """``(module, qualname, name, kind, (file, line))`` of a receiver."""
    try:
        return _describe_unsafe(receiver)
    except Exception:  # a hostile __getattr__ must not break introspection
        cls = type(receiver)
        return cls.__module__, cls.__qualname__, describe(receiver), "callable object", (None, None)


def _describe_unsafe(receiver: Any) -> tuple[str | None, str, str, Kind, Location]:
    if isinstance(receiver, functools.partial):
        inner_module, inner_qualname, inner_name, _kind, inner_location = _describe(receiver.func)
        return (
            inner_module,
            inner_qualname,
            f"functools.partial({inner_name})",
            "partial",
            inner_location,
        )
    kind: Kind
    module: str | None
    if isinstance(receiver, MethodType):
        owner = _owner(receiver.__self__)
        module = owner.__module__
        qualname = f"{owner.__qualname__}.{receiver.__func__.__name__}"
        kind, location = "method", _code_location(receiver.__func__)
    elif isinstance(receiver, FunctionType):
        module, qualname = receiver.__module__, receiver.__qualname__
        kind, location = "function", _code_location(receiver)
    elif isinstance(receiver, BuiltinFunctionType):
        # A builtin bound to an object ({}.update) has no __module__: its class's.
        bound_to: object = receiver.__self__
        module = getattr(receiver, "__module__", None)
        if module is None and bound_to is not None and not isinstance(bound_to, ModuleType):
            module = _owner(bound_to).__module__
        qualname = receiver.__qualname__
        kind, location = "builtin", (None, None)
    elif isinstance(receiver, type):
        module, qualname = receiver.__module__, receiver.__qualname__
        kind, location = "class", _class_location(receiver)
    else:
        cls = type(receiver)
        module, qualname = cls.__module__, f"{cls.__qualname__}.__call__"
        kind, location = "callable object", _code_location(getattr(cls, "__call__", None))  # noqa: B004
    name = f"{module}.{qualname}" if module else qualname
    return module, qualname, name, kind, location


def _owner(bound_to: object) -> type:
    """The class a method is looked up on: the object's, or the class itself
    for a classmethod."""
    return bound_to if isinstance(bound_to, type) else type(bound_to)


def _code_location(func: object) -> Location:
    """File and first line of a Python function (through decorators' ``__wrapped__``)."""
    if isinstance(func, MethodType):
        func = func.__func__
    with contextlib.suppress(ValueError):  # a __wrapped__ cycle
        func = inspect.unwrap(func)  # type: ignore[arg-type]
    code = getattr(func, "__code__", None)
    if isinstance(code, CodeType):
        return code.co_filename, code.co_firstlineno
    return None, None


def _class_location(cls: type) -> Location:
    try:
        filename = inspect.getsourcefile(cls) or inspect.getfile(cls)
    except (OSError, TypeError):  # a builtin class, or one made at run time
        return None, None
    line: int | None = getattr(cls, "__firstlineno__", None)  # Python 3.13+
    if line is None:
        try:
            line = inspect.getsourcelines(cls)[1]
        except (OSError, TypeError):
            line = None
    return filename, line
