"""How remote events are written to bytes and read back.

A :class:`Serializer` turns an event's envelope (a dict of the signal's name,
the sender and the keyword arguments) into bytes and back. The default,
:class:`JSONSerializer`, writes JSON and keeps Python types that JSON would
silently change (a tuple becoming a list, an ``int`` dict key becoming a
string) or cannot hold (bytes, datetimes, classes) as *tagged* values: a
one-key object such as ``{"$tuple": [1, 2]}``. Anything else raises
:class:`~tocsin.exceptions.SerializationError` naming the argument, at send
time, rather than publishing something the worker would read back wrong.

Types of your own are added with :meth:`JSONSerializer.register`; model
instances usually travel as their primary key
(``tocsin.contrib.sqlalchemy.register_models``).
"""

from __future__ import annotations

import base64
import datetime
import decimal
import enum
import importlib
import json
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from ..exceptions import SerializationError

__all__ = ["JSONSerializer", "Serializer", "import_path", "resolve"]


@runtime_checkable
class Serializer(Protocol):
    """Anything with these two methods can serialize remote events."""

    def dumps(self, value: Mapping[str, Any]) -> bytes:
        """Bytes for *value*; raise ``SerializationError`` for what it cannot hold."""
        ...

    def loads(self, data: bytes) -> dict[str, Any]:
        """The value :meth:`dumps` was given; raise ``SerializationError`` for bad data."""
        ...


@dataclass(frozen=True, slots=True)
class _Hook:
    tag: str
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]
    exact: bool = False  # only instances of the type itself, not of subclasses


_SCALARS = (str, int, float, bool, type(None))


class JSONSerializer:
    """JSON with tagged values for the Python types JSON cannot keep.

    Out of the box it keeps ``tuple``, ``set``, ``frozenset``, ``bytes``,
    ``datetime``/``date``/``time``/``timedelta``, ``Decimal``, ``UUID``, enum
    members, dicts with non-string keys, and classes and functions (by import
    path, so a model class as the sender arrives as the same class). Register
    more with :meth:`register`.
    """

    def __init__(self) -> None:
        self._by_type: dict[type, _Hook] = {}
        self._by_tag: dict[str, _Hook] = {}
        self._resolved: dict[type, _Hook | None] = {}
        # Made once: json.dumps() and json.loads() with options make new ones per call.
        self._json_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
        # Tags are read back bottom-up, as the parser builds each object.
        self._json_decoder = json.JSONDecoder(object_hook=self._untag)
        for type_, tag, encode, decode in _BUILT_IN:
            self.register(type_, tag=tag, encode=encode, decode=decode)
        # A namedtuple would come back as a plain tuple: refuse it unless registered.
        for type_ in (tuple, set, frozenset):
            hook = self._by_type[type_]
            self._by_type[type_] = self._by_tag[hook.tag] = _Hook(
                hook.tag, hook.encode, hook.decode, True
            )

    def register(
        self,
        type_: type,
        *,
        tag: str,
        encode: Callable[[Any], Any],
        decode: Callable[[Any], Any],
    ) -> None:
        """Serialize instances of *type_* (and its subclasses) with *encode*.

        :param tag: the name written in the JSON (``{"$<tag>": ...}``); each
            tag names one type.
        :param encode: returns a JSON-able value for an instance (it may
            contain other serializable values, which are tagged in turn).
        :param decode: gets that value back (already decoded) in the worker
            and returns what the receiver will get.
        """
        if not isinstance(type_, type):
            raise TypeError(f"register() takes a class; got {type_!r}.")
        if not isinstance(tag, str) or not tag.isidentifier():
            raise ValueError(f"tag must be an identifier such as 'money'; got {tag!r}.")
        if not callable(encode) or not callable(decode):
            raise TypeError("register() needs callable encode= and decode= functions.")
        known = self._by_tag.get(tag)
        if known is not None and self._by_type.get(type_) is not known:
            raise ValueError(f"tag {tag!r} is already used for another type; choose another.")
        hook = _Hook(tag, encode, decode)
        self._by_type[type_] = hook
        self._by_tag[tag] = hook
        self._resolved.clear()

    def dumps(self, value: Mapping[str, Any]) -> bytes:
        """Bytes for *value*, or ``SerializationError`` naming what cannot be kept."""
        try:
            encoded = self._encode(value, None)
        except RecursionError:
            raise SerializationError(
                "the value is nested too deeply (or refers to itself)."
            ) from None
        return self._json_encoder.encode(encoded).encode()

    def loads(self, data: bytes) -> dict[str, Any]:
        """The value :meth:`dumps` wrote."""
        if not isinstance(data, bytes | bytearray | str):
            raise TypeError(f"loads() takes the bytes dumps() wrote; got {type(data).__name__}.")
        try:
            text = data.decode() if isinstance(data, bytes | bytearray) else data
            value = self._json_decoder.decode(text)
        except (ValueError, UnicodeDecodeError) as error:
            raise SerializationError(f"the payload is not valid JSON: {error}") from None
        if not isinstance(value, dict):
            raise SerializationError(f"the payload holds a {type(value).__name__}, not an object.")
        return value

    # -- encoding -----------------------------------------------------------
    # This runs in every remote send(): scalars are passed through without a
    # call, and the path to a value (for the error message) is a chain of
    # tuples that only becomes text when something cannot be sent.

    def _encode(self, value: Any, path: _Path) -> Any:
        type_ = type(value)
        if type_ in _SCALARS:
            return value
        if type_ is dict:
            return self._encode_dict(value, path)
        if type_ is list:
            return [
                item if type(item) in _SCALARS else self._encode(item, (path, i))
                for i, item in enumerate(value)
            ]
        hook = self._hook_for(type_)
        if hook is not None:
            return {"$" + hook.tag: self._encode(hook.encode(value), path)}
        if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
            return {"$ref": _reference(value, path)}
        raise SerializationError(
            f"{_where(path)} is a {type_.__module__}.{type_.__qualname__}, which the serializer "
            "cannot send: pass something JSON can hold (or its id), or register the type with "
            "serializer.register(type, tag=..., encode=..., decode=...)."
        )

    def _encode_dict(self, value: dict[Any, Any], path: _Path) -> Any:
        encoded: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                return self._encode_items(value, path)
            encoded[key] = item if type(item) in _SCALARS else self._encode(item, (path, key))
        # A one-key dict whose key starts with "$" would read back as a tag.
        if len(encoded) == 1 and next(iter(encoded)).startswith("$"):
            return {"$dict": [[key, item] for key, item in encoded.items()]}
        return encoded

    def _encode_items(self, value: dict[Any, Any], path: _Path) -> Any:
        pairs = [
            [self._encode(key, (path, _Key(key))), self._encode(item, (path, key))]
            for key, item in value.items()
        ]
        return {"$items": pairs}

    def _hook_for(self, type_: type) -> _Hook | None:
        try:
            return self._resolved[type_]
        except KeyError:
            hook = next(
                (
                    self._by_type[t]
                    for t in type_.__mro__
                    if t in self._by_type and (t is type_ or not self._by_type[t].exact)
                ),
                None,
            )
            self._resolved[type_] = hook
            return hook

    # -- decoding -----------------------------------------------------------

    def _untag(self, raw: dict[str, Any]) -> Any:
        if len(raw) == 1:
            key = next(iter(raw))
            if key.startswith("$"):
                return self._decode_tagged(key[1:], raw[key])
        return raw

    def _decode_tagged(self, tag: str, raw: Any) -> Any:
        if tag == "dict":
            return dict(raw)
        if tag == "items":
            return dict(raw)
        if tag == "ref":
            return resolve(raw)
        hook = self._by_tag.get(tag)
        if hook is None:
            raise SerializationError(
                f"the payload holds a ${tag} value and no type is registered for it here: "
                "register the same types in the worker as in the sender."
            )
        try:
            return hook.decode(raw)
        except SerializationError:
            raise
        except Exception as error:
            raise SerializationError(f"could not read back a ${tag} value: {error!r}") from error


class _Key:
    """A step of a path that is a dict key itself, not the value under it."""

    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key


# The way to a value from the root: None, or (the parent's path, a key or index).
_Path = tuple[Any, Any] | None


def _format(path: _Path) -> str:
    steps = []
    while path is not None:
        path, step = path
        steps.append(step)
    text = ""
    for step in reversed(steps):
        if isinstance(step, _Key):
            text += f" key {step.key!r}"
        elif text:
            text += f"[{step!r}]"
        else:
            text = str(step)
    return text


def _where(path: _Path) -> str:
    return _format(path) if path is not None else "the value"


def import_path(obj: Any) -> str:
    """``"module:qualname"`` for a class or function importable by that name."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise SerializationError(f"{obj!r} has no module and qualified name to import it by.")
    name = f"{module}:{qualname}"
    if "<locals>" in qualname or "<lambda>" in qualname:
        raise SerializationError(
            f"{name} is defined inside a function (or is a lambda), so another process "
            "cannot import it: define it at module level."
        )
    try:
        found = resolve(name)
    except SerializationError:
        found = None
    if found is not obj:
        raise SerializationError(
            f"{name} does not import back as the same object, so another process could not "
            "find it: use a class or function bound at module level under its own name."
        )
    return name


def _reference(obj: Any, path: _Path) -> str:
    try:
        return _cached_reference(obj)
    except SerializationError as error:
        raise SerializationError(f"{_where(path)}: {error}") from None
    except TypeError:  # unhashable callable
        return import_path(obj)


_references: dict[Any, str] = {}


def _cached_reference(obj: Any) -> str:
    name = _references.get(obj)
    if name is None:
        name = _references[obj] = import_path(obj)
    return name


# What resolve() found, with the module it was found in: every event a worker
# reads names the same few classes. A module imported again (reloaded, or
# removed from sys.modules) is looked into again.
_found: dict[str, tuple[ModuleType, Any]] = {}


def resolve(name: str) -> Any:
    """The object ``"module:qualname"`` names; ``SerializationError`` if it cannot be imported."""
    if not isinstance(name, str) or ":" not in name:
        raise SerializationError(f"{name!r} is not a 'module:qualname' reference.")
    module_name, _, qualname = name.partition(":")
    found = _found.get(name)
    if found is not None and sys.modules.get(module_name) is found[0]:
        return found[1]
    try:
        module = importlib.import_module(module_name)
        obj: Any = module
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as error:
        raise SerializationError(f"cannot import {name}: {error}") from None
    _found[name] = (module, obj)
    return obj


def _enum_encode(member: enum.Enum) -> list[Any]:
    return [import_path(type(member)), member.name]


def _enum_decode(raw: list[Any]) -> enum.Enum:
    cls = resolve(raw[0])
    member: enum.Enum = cls[raw[1]]
    return member


_BUILT_IN: list[tuple[type, str, Callable[[Any], Any], Callable[[Any], Any]]] = [
    (tuple, "tuple", list, tuple),
    (set, "set", list, set),
    (frozenset, "frozenset", list, frozenset),
    (bytes, "bytes", lambda b: base64.b64encode(b).decode(), base64.b64decode),
    (datetime.datetime, "datetime", datetime.datetime.isoformat, datetime.datetime.fromisoformat),
    (datetime.date, "date", datetime.date.isoformat, datetime.date.fromisoformat),
    (datetime.time, "time", datetime.time.isoformat, datetime.time.fromisoformat),
    (
        datetime.timedelta,
        "timedelta",
        lambda d: [d.days, d.seconds, d.microseconds],
        lambda r: datetime.timedelta(days=r[0], seconds=r[1], microseconds=r[2]),
    ),
    (decimal.Decimal, "decimal", str, decimal.Decimal),
    (uuid.UUID, "uuid", str, uuid.UUID),
    (enum.Enum, "enum", _enum_encode, _enum_decode),
]
