"""Typed signals: declare a signal's arguments once, and type checkers check every use.

::

    @TypedSignal
    def todo_completed(sender: type[Todo], *, todo: Todo) -> None:
        \"\"\"Sent when a todo is marked as done.\"\"\"

The decorated function, the *spec*, is never called: its signature is the
signature of ``send()``. mypy and pyright then reject a ``send()`` (or
``send_robust``, ``asend``, ``asend_robust``) with a missing, unknown or
wrongly typed argument, and a receiver given to ``connect()`` or
``@receiver`` that could not take those arguments.

That costs nothing at run time: the typed methods exist only for type
checkers (under ``TYPE_CHECKING``), so a ``TypedSignal`` runs ``Signal``'s own
methods, and ``send()`` is exactly as fast. With ``check=True`` the same
declaration is also checked at run time, cheaply (see :class:`_Checking`).
"""

from __future__ import annotations

import reprlib
import types
from collections.abc import Callable, Hashable
from collections.abc import Set as AbstractSet
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    NamedTuple,
    NoReturn,
    ParamSpec,
    Protocol,
    Self,
    TypeGuard,
    TypeVar,
    Union,
    Unpack,
    get_args,
    get_origin,
)

from ._inspect import accepts_kwargs, describe
from ._options import ConnectOptions
from .dispatcher import Signal

__all__ = ["TypedSignal", "typed_signal"]

P = ParamSpec("P")
T = TypeVar("T")


# A static type accepts an int where a float is expected (and an int or a
# float for a complex): isinstance() must too, or checking would reject what
# the type checkers accept.
_PROMOTED: dict[type, tuple[type, ...]] = {float: (float, int), complex: (complex, float, int)}


class TypedSignal(Signal, Generic[P]):
    """A :class:`Signal` whose arguments are declared by a *spec* function.

    Usually a decorator, above the spec (docs/typed-signals.md)::

        @TypedSignal
        def invoice_paid(sender: type[Invoice], *, invoice: Invoice, amount: int) -> None:
            \"\"\"Sent when an invoice is paid.\"\"\"

    mypy and pyright then check every ``send()``, ``send_robust()``, ``asend()``
    and ``asend_robust()`` (a missing, unknown or wrongly typed argument is an
    error) and every receiver given to ``connect()`` or ``@receiver`` (one that
    could not take the arguments is an error). At run time a ``TypedSignal``
    runs ``Signal``'s methods unchanged, at no cost, unless *check* is true.

    :param spec: a function whose signature is the signature of ``send()``:
        a first parameter ``sender`` (an ordinary one, without default), then
        keyword-only parameters, one per argument of the signal, none named
        ``signal``. Its body is never run; its docstring becomes the signal's
        ``__doc__``. Kept as the attribute ``spec``.
    :param use_caching: as for :class:`Signal` (accepted, changes nothing).
    :param check: also check the declaration at run time (kept as the attribute
        ``check``): every send raises ``TypeError``, before calling any
        receiver, for a missing or unknown argument, and for a value that
        ``isinstance()`` (or ``issubclass()``, for ``type[C]``) finds does not
        match an annotation that is a plain class, ``type[C]``, ``None`` or a
        union of those; other annotations are not checked. ``connect()`` (and
        so ``@receiver``) raises ``TypeError`` for a receiver whose signature
        cannot take the arguments. Off by default.
    :raises ValueError: if *spec* does not have that shape.
    :raises TypeError: if *spec* is not callable.
    """

    spec: Callable[P, object]
    check: bool

    def __new__(
        cls, spec: Callable[P, object], use_caching: bool = False, check: bool = False
    ) -> Self:
        # check=True picks a subclass that checks, so that the unchecked class
        # keeps Signal's methods untouched (send() stays as fast as Signal's).
        if check and not issubclass(cls, _Checking):
            instance: Self = super().__new__(_checking_class(cls))
            return instance
        return super().__new__(cls)

    def __init__(
        self, spec: Callable[P, object], use_caching: bool = False, check: bool = False
    ) -> None:
        arguments = _read_spec(spec)
        super().__init__(use_caching)
        self.spec = spec
        self.check = bool(check)
        self.__doc__ = getattr(spec, "__doc__", None)
        self._label = getattr(spec, "__qualname__", None) or describe(spec)
        # For check=True: the names send() takes besides sender, those it
        # must be given, and (worked out on first use, see _type_checks) the
        # checkable annotations.
        self._names = tuple(name for name, _required in arguments)  # in declared order
        self._allowed = frozenset(self._names)
        self._required = frozenset(name for name, required in arguments if required)
        self._checks: tuple[_TypeCheck, ...] | None = None

    def __repr__(self) -> str:
        checked = " (checked)" if self.check else ""
        kind = type(self)
        return f"<{kind.__module__}.{kind.__qualname__} {self._label}{checked} at {id(self):#x}>"

    if TYPE_CHECKING:
        # What type checkers see. None of this exists at run time: the methods
        # are Signal's. The sends take the spec's parameters, and a receiver
        # must accept them (it is called as receiver(signal=..., sender=...,
        # **named), and **kwargs takes `signal`, which P cannot express).
        # Narrowing the sends' parameters breaks Liskov substitution, which
        # mypy reports; that narrowing is the point, hence the ignores. (A
        # TypedSignal passed where a Signal is expected is unchecked there.)

        def send(  # type: ignore[override]
            self, *args: P.args, **kwargs: P.kwargs
        ) -> list[tuple[Callable[..., Any], Any]]: ...

        def send_robust(  # type: ignore[override]
            self, *args: P.args, **kwargs: P.kwargs
        ) -> list[tuple[Callable[..., Any], Any]]: ...

        async def asend(  # type: ignore[override]
            self, *args: P.args, **kwargs: P.kwargs
        ) -> list[tuple[Callable[..., Any], Any]]: ...

        async def asend_robust(  # type: ignore[override]
            self, *args: P.args, **kwargs: P.kwargs
        ) -> list[tuple[Callable[..., Any], Any]]: ...

        # An async receiver is a Callable[P, Awaitable[...]], which is a
        # Callable[P, object] too. Narrowed like the sends, hence the ignore.
        def connect(  # type: ignore[override]
            self,
            receiver: Callable[P, T],
            sender: object = None,
            weak: bool = True,
            dispatch_uid: Hashable = None,
            **options: Unpack[ConnectOptions],
        ) -> Callable[P, T]: ...

        def disconnect(
            self,
            receiver: Callable[P, object] | None = None,
            sender: object = None,
            dispatch_uid: Hashable = None,
        ) -> bool: ...


def typed_signal(
    *, use_caching: bool = False, check: bool = False
) -> Callable[[Callable[P, object]], TypedSignal[P]]:
    """Decorator factory for a :class:`TypedSignal` with options.

    ``@typed_signal(check=True)`` above a spec function is
    ``TypedSignal(spec, check=True)``::

        @typed_signal(check=True)
        def invoice_voided(sender: type[Invoice], *, invoice: Invoice) -> None:
            \"\"\"Sent when an invoice is voided.\"\"\"

        invoice_voided.send(sender=Invoice, invoice="INV-1")
        # TypeError: invoice_voided.send(): invoice must be Invoice, got str: 'INV-1'
    """

    def decorate(spec: Callable[P, object]) -> TypedSignal[P]:
        return TypedSignal(spec, use_caching=use_caching, check=check)

    return decorate


class ReceiverDecorator(Protocol[P]):
    """What ``receiver(typed_signal)`` returns, for type checkers.

    The decorated function must accept the signal's arguments. Type checkers
    then see it as taking exactly those (a decorator's result cannot keep the
    function's own type while checking it against the signal's); at run time
    it is returned unchanged.
    """

    def __call__(self, func: Callable[P, T], /) -> Callable[P, T]: ...


# -- the spec ---------------------------------------------------------------------------


def _read_spec(spec: object) -> list[tuple[str, bool]]:
    """Check the shape of *spec*; return ``(name, required)`` for each argument but sender."""
    import inspect  # not at start-up: import tocsin stays cheap

    if not callable(spec):
        raise TypeError(
            f"TypedSignal takes a function whose signature is the signal's send(), such as "
            f"'def done(sender: type[Todo], *, todo: Todo) -> None'; got "
            f"{type(spec).__name__} {spec!r}."
        )
    name = getattr(spec, "__qualname__", None) or describe(spec)
    try:
        signature = inspect.signature(spec)
    except (TypeError, ValueError):
        raise ValueError(
            f"cannot read the signature of {name}, the spec of a TypedSignal."
        ) from None
    parameters = list(signature.parameters.values())
    shape = (
        f"the spec of a TypedSignal must look like 'def {name}(sender: <type>, *, "
        f"<argument>: <type>, ...)', since send() takes sender then keyword arguments"
    )
    if not parameters or parameters[0].name != "sender":
        raise ValueError(f"{shape}; {name}{signature} does not start with 'sender'.")
    sender = parameters[0]
    if sender.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
        raise ValueError(
            f"{shape}; in {name}{signature}, 'sender' must be an ordinary parameter, "
            f"not positional-only or keyword-only."
        )
    if sender.default is not inspect.Parameter.empty:
        raise ValueError(
            f"{shape}; in {name}{signature}, 'sender' must have no default: every send gives one."
        )
    arguments = []
    for parameter in parameters[1:]:
        if parameter.name == "signal":
            raise ValueError(
                f"{name}{signature} declares 'signal', which is reserved: receivers are "
                f"called with signal=<the signal>. Rename the argument."
            )
        if parameter.kind is not inspect.Parameter.KEYWORD_ONLY:
            raise ValueError(
                f"{shape}; in {name}{signature}, {parameter} must be keyword-only: "
                f"declare each argument by name after the '*'."
            )
        arguments.append((parameter.name, parameter.default is inspect.Parameter.empty))
    return arguments


class _TypeCheck(NamedTuple):
    """How check=True tests one argument: ``isinstance(value, instance_of)``, or
    for a ``type[C]`` annotation, a class that is a subclass of ``subclass_of``."""

    name: str
    instance_of: tuple[type, ...]
    subclass_of: tuple[type, ...]
    expected: str  # the annotation, for messages


def _type_checks(spec: Callable[..., object]) -> tuple[_TypeCheck, ...]:
    """The checks of the annotations of *spec* that isinstance() can test.

    Worked out on first use, not when the signal is declared: annotations are
    often strings (``from __future__ import annotations``) naming classes
    defined later in the module. A name that still cannot be resolved (one
    imported under ``TYPE_CHECKING`` only) leaves that argument unchecked,
    like any annotation that is not a plain class, ``type[C]``, ``None`` or a
    union of those.
    """
    import inspect  # not at start-up: import tocsin stays cheap

    checks = []
    namespace = getattr(inspect.unwrap(spec), "__globals__", {})
    for parameter in inspect.signature(spec).parameters.values():
        annotation = parameter.annotation
        if annotation is inspect.Parameter.empty:
            continue
        if isinstance(annotation, str):
            try:
                # What typing.get_type_hints() does, one name at a time.
                annotation = eval(annotation, namespace)
            except Exception:
                continue
        found = _classes_of(annotation)
        if found is not None:
            checks.append(_TypeCheck(parameter.name, *found))
    return tuple(checks)


def _classes_of(annotation: object) -> tuple[tuple[type, ...], tuple[type, ...], str] | None:
    """``(instance_of, subclass_of, expected)`` for a checkable annotation, else None."""
    members = (
        get_args(annotation)
        if get_origin(annotation) in (Union, types.UnionType)
        else (annotation,)
    )
    instance_of: list[type] = []
    subclass_of: list[type] = []
    names = []
    for member in members:
        if member is None or member is type(None):
            instance_of.append(type(None))
            names.append("None")
        elif get_origin(member) is type and len(get_args(member)) == 1:
            (cls,) = get_args(member)
            if not _is_plain_class(cls):
                return None
            subclass_of.append(cls)
            names.append(f"type[{cls.__qualname__}]")
        elif _is_plain_class(member) and member is not object:
            instance_of.extend(_PROMOTED.get(member, (member,)))
            names.append(member.__qualname__)
        else:
            return None  # object, Any, a generic alias, a Protocol, a TypeVar...
    return tuple(instance_of), tuple(subclass_of), " | ".join(names)


def _is_plain_class(annotation: object) -> TypeGuard[type]:
    if not isinstance(annotation, type):  # list[int] and other generic aliases are not
        return False
    try:
        isinstance(None, annotation)  # a Protocol that is not runtime_checkable refuses
    except TypeError:
        return False
    return True


# -- check=True -------------------------------------------------------------------------


class _Checking(TypedSignal[P]):
    """The methods of a ``check=True`` signal: check, then do what Signal does.

    ``TypedSignal(spec, check=True)`` makes an instance of a subclass of this
    one and of the class it was called on (see :func:`_checking_class`).
    """

    def send(  # type: ignore[override]  # Signal's send, see TypedSignal
        self, *args: P.args, **kwargs: P.kwargs
    ) -> list[tuple[Callable[..., Any], Any]]:
        self._check_send("send", args, kwargs)
        return super().send(*args, **kwargs)

    def send_robust(  # type: ignore[override]
        self, *args: P.args, **kwargs: P.kwargs
    ) -> list[tuple[Callable[..., Any], Any]]:
        self._check_send("send_robust", args, kwargs)
        return super().send_robust(*args, **kwargs)

    async def asend(  # type: ignore[override]
        self, *args: P.args, **kwargs: P.kwargs
    ) -> list[tuple[Callable[..., Any], Any]]:
        self._check_send("asend", args, kwargs)
        return await super().asend(*args, **kwargs)

    async def asend_robust(  # type: ignore[override]
        self, *args: P.args, **kwargs: P.kwargs
    ) -> list[tuple[Callable[..., Any], Any]]:
        self._check_send("asend_robust", args, kwargs)
        return await super().asend_robust(*args, **kwargs)

    def connect(  # type: ignore[override]  # narrowed, see TypedSignal
        self,
        receiver: Callable[P, T],
        sender: object = None,
        weak: bool = True,
        dispatch_uid: Hashable = None,
        **options: Unpack[ConnectOptions],
    ) -> Callable[P, T]:
        self._check_receiver(receiver)
        return super().connect(receiver, sender, weak, dispatch_uid, **options)

    def _check_send(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        names: AbstractSet[str]
        if args:
            sender = args[0]
            if len(args) > 1 or "sender" in kwargs:
                return  # Signal's own TypeError says what is wrong
            names = kwargs.keys()
        elif "sender" in kwargs:
            sender = kwargs["sender"]
            names = kwargs.keys() - {"sender"}
        else:
            return  # Signal's own TypeError: missing 'sender'
        if not (names <= self._allowed and self._required <= names):
            self._wrong_names(method, names)
        checks = self._checks
        if checks is None:
            checks = self._checks = _type_checks(self.spec)
        for check in checks:
            if check.name == "sender":
                value = sender
            elif check.name in kwargs:
                value = kwargs[check.name]
            else:
                continue  # an argument with a default, left out
            if isinstance(value, check.instance_of) or (
                check.subclass_of
                and isinstance(value, type)
                and issubclass(value, check.subclass_of)
            ):
                continue
            got = f"class {value.__qualname__}" if isinstance(value, type) else type(value).__name__
            raise TypeError(
                f"{self._label}.{method}(): {check.name} must be {check.expected}, "
                f"got {got}: {reprlib.repr(value)}"
            )

    def _wrong_names(self, method: str, names: AbstractSet[str]) -> NoReturn:
        problems = []
        if unknown := sorted(set(names) - self._allowed):
            problems.append(f"unknown argument(s) {', '.join(map(repr, unknown))}")
        if missing := sorted(self._required - set(names)):
            problems.append(f"missing argument(s) {', '.join(map(repr, missing))}")
        takes = ", ".join(["sender", *self._names])
        raise TypeError(f"{self._label}.{method}(): {'; '.join(problems)} (it takes {takes}).")

    def _check_receiver(self, receiver: object) -> None:
        """Raise TypeError if *receiver* cannot be called with this signal's arguments."""
        import inspect  # not at start-up: import tocsin stays cheap

        if not callable(receiver) or not accepts_kwargs(receiver):
            return  # Signal.connect() raises its own error
        try:
            signature = inspect.signature(receiver)
        except (TypeError, ValueError):
            return  # unreadable (some builtins): given the benefit of the doubt
        for parameter in signature.parameters.values():
            # Receivers are called with keywords only. (Signature.bind() on 3.13
            # lets **kwargs take such a name and does not report the parameter.)
            if parameter.kind is parameter.POSITIONAL_ONLY and parameter.default is parameter.empty:
                raise TypeError(
                    f"receiver {describe(receiver)} cannot receive {self._label}: its "
                    f"parameter {parameter.name!r} is positional-only, and receivers are "
                    f"called with keyword arguments only."
                )
        calls = [("signal", "sender", *self._names)]
        if self._required != self._allowed:  # and without the optional arguments
            calls.append(("signal", "sender", *(n for n in self._names if n in self._required)))
        for names in calls:
            try:
                signature.bind(**dict.fromkeys(names))
            except TypeError as error:
                raise TypeError(
                    f"receiver {describe(receiver)} cannot receive {self._label}: {error}. "
                    f"It is called as receiver({', '.join(f'{n}=...' for n in names)})."
                ) from None


_checking_classes: dict[type[Any], type[Any]] = {}


def _checking_class(cls: type[Any]) -> type[Any]:
    """*cls* with the checking methods of :class:`_Checking` in front (made once)."""
    kind = _checking_classes.get(cls)
    if kind is None:
        namespace = {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
        kind = _checking_classes.setdefault(cls, type(cls.__name__, (_Checking, cls), namespace))
    return kind
