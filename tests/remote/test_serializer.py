"""The JSON serializer keeps what it can and refuses, by name, what it cannot."""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import json
import threading
import uuid
from typing import Any

import pytest

from tocsin import Signal
from tocsin.exceptions import SerializationError
from tocsin.remote import JSONSerializer


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Money:
    def __init__(self, cents: int, currency: str) -> None:
        self.cents = cents
        self.currency = currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (other.cents, other.currency) == (
            self.cents,
            self.currency,
        )

    def __hash__(self) -> int:
        return hash((self.cents, self.currency))


Point = collections.namedtuple("Point", "x y")


def module_level_function() -> None:
    """A function another process can import."""


def registered() -> JSONSerializer:
    """A serializer that knows this module's enums, a class and a function by name."""
    serializer = JSONSerializer()
    for obj in (Colour, Level, JSONSerializer, module_level_function):
        serializer.register_class(obj)
    return serializer


def roundtrip(value: dict[str, Any], serializer: JSONSerializer | None = None) -> Any:
    serializer = serializer or registered()
    return serializer.loads(serializer.dumps(value))


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(2**70),
        1.5,
        "text with ünicode",
        [1, [2, [3]]],
        {"nested": {"a": 1}},
        (1, "two"),
        {1, 2, 3},
        frozenset({"a"}),
        b"\x00\xffbytes",
        datetime.datetime(2026, 11, 26, 3, 4, 5, 6, tzinfo=datetime.UTC),
        datetime.datetime(2026, 11, 26, 3, 4, 5),
        datetime.date(2026, 11, 26),
        datetime.time(3, 4, 5, 6),
        datetime.timedelta(days=-1, seconds=5, microseconds=7),
        decimal.Decimal("12.3400"),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        Colour.RED,
        Level.HIGH,
        {1: "int key", (2, 3): "tuple key"},
        {"$looks_like_a_tag": 1},
        {"$a": 1, "b": 2},
        JSONSerializer,
        module_level_function,
        [(1, 2), {"x": (3,)}],
    ],
    ids=repr,
)
def test_values_come_back_equal_and_of_the_same_type(value: Any) -> None:
    """Every supported value reads back equal, with its exact type."""
    back = roundtrip({"value": value})["value"]
    assert back == value
    assert type(back) is type(value)


def test_tuples_inside_lists_stay_tuples() -> None:
    """Tags apply at any depth."""
    back = roundtrip({"value": [(1, 2), [(3,)]]})["value"]
    assert back == [(1, 2), [(3,)]]
    assert isinstance(back[0], tuple)
    assert isinstance(back[1][0], tuple)


def test_output_is_plain_json() -> None:
    """The bytes are UTF-8 JSON any tool can read."""
    data = JSONSerializer().dumps({"a": (1, 2), "b": "é"})
    assert json.loads(data) == {"a": {"$tuple": [1, 2]}, "b": "é"}


def test_an_unknown_type_is_refused_naming_the_argument() -> None:
    """The error says which argument, its type, and how to fix it."""
    with pytest.raises(SerializationError) as caught:
        JSONSerializer().dumps({"kwargs": {"order": {"lines": [object()]}}})
    message = str(caught.value)
    assert "kwargs['order']['lines'][0]" in message
    assert "builtins.object" in message
    assert "serializer.register" in message


def test_serialization_error_is_a_type_error() -> None:
    """Code that catches TypeError for bad arguments still does."""
    with pytest.raises(TypeError):
        JSONSerializer().dumps({"x": object()})


def test_a_namedtuple_is_refused_rather_than_read_back_as_a_tuple() -> None:
    """A tuple subclass would lose its type: refused unless registered."""
    with pytest.raises(SerializationError, match="Point"):
        JSONSerializer().dumps({"point": Point(1, 2)})


def test_a_registered_namedtuple_comes_back() -> None:
    """Registering a tuple subclass makes it travel."""
    serializer = JSONSerializer()
    serializer.register(Point, tag="point", encode=list, decode=lambda raw: Point(*raw))
    assert roundtrip({"p": Point(1, 2)}, serializer)["p"] == Point(1, 2)


def test_a_registered_type_travels_through_its_hook() -> None:
    """encode/decode hooks make a custom class serializable, nested values included."""
    serializer = JSONSerializer()
    serializer.register(
        Money,
        tag="money",
        encode=lambda m: (m.cents, m.currency),
        decode=lambda raw: Money(*raw),
    )
    assert roundtrip({"price": [Money(150, "EUR")]}, serializer) == {"price": [Money(150, "EUR")]}


def test_the_worker_must_know_a_registered_tag() -> None:
    """A payload with a tag the reading side never registered is refused."""
    writer = JSONSerializer()
    writer.register(Money, tag="money", encode=lambda m: m.cents, decode=lambda c: Money(c, "?"))
    with pytest.raises(SerializationError, match=r"\$money"):
        JSONSerializer().loads(writer.dumps({"m": Money(1, "EUR")}))


def test_a_failing_decode_hook_is_reported() -> None:
    """An exception in a decode hook becomes a SerializationError naming the tag."""
    serializer = JSONSerializer()

    def broken(raw: object) -> Money:
        raise ValueError("bad money")

    serializer.register(Money, tag="money", encode=lambda m: m.cents, decode=broken)
    with pytest.raises(SerializationError, match=r"\$money.*bad money"):
        serializer.loads(serializer.dumps({"m": Money(1, "EUR")}))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"type_": "Money", "tag": "m"}, TypeError, "takes a class"),
        ({"type_": Money, "tag": "not an identifier"}, ValueError, "identifier"),
        ({"type_": Money, "tag": "tuple"}, ValueError, "already used"),
    ],
)
def test_register_checks_its_arguments(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Bad register() calls raise at once with what to do."""
    with pytest.raises(error, match=match):
        JSONSerializer().register(encode=str, decode=str, **kwargs)


def test_register_needs_callables() -> None:
    """encode and decode must be callable."""
    with pytest.raises(TypeError, match="callable"):
        JSONSerializer().register(Money, tag="money", encode="str", decode=str)  # type: ignore[arg-type]


def test_unregistered_classes_functions_and_enums_are_refused() -> None:
    """A class, function or enum travels only by a name it was registered under."""
    for value in (JSONSerializer, module_level_function, Colour.RED):
        with pytest.raises(SerializationError, match=r"not registered.*register_class"):
            JSONSerializer().dumps({"v": value})


def test_lambdas_and_local_classes_need_a_name() -> None:
    """Their default name would not say which one they are: register_class() wants name=."""

    class Local:
        pass

    for value in (lambda: None, Local):
        with pytest.raises(ValueError, match="inside a function"):
            JSONSerializer().register_class(value)
    serializer = JSONSerializer()
    serializer.register_class(Local, name="local")
    assert json.loads(serializer.dumps({"v": Local})) == {"v": {"$ref": "local"}}
    assert serializer.loads(b'{"v": {"$ref": "local"}}') == {"v": Local}


def test_a_name_is_registered_for_one_object() -> None:
    """Two objects under one name would read back as the wrong one: refused."""
    serializer = registered()
    serializer.register_class(Colour)  # again: harmless
    with pytest.raises(ValueError, match="already registered"):
        serializer.register_class(Level, name=f"{__name__}:Colour")


def test_the_serializers_own_tags_cannot_be_registered() -> None:
    """$ref, $enum, $dict and $items are read by the serializer itself."""
    for tag in ("ref", "enum", "dict", "items"):
        with pytest.raises(ValueError, match="serializer's own"):
            JSONSerializer().register(Money, tag=tag, encode=str, decode=str)


def test_a_signal_instance_is_not_serializable() -> None:
    """Objects that are neither data nor importable by name are refused."""
    with pytest.raises(SerializationError, match=r"is a tocsin\.Signal"):
        JSONSerializer().dumps({"v": Signal()})


def test_self_referencing_values_are_refused() -> None:
    """A cycle is reported instead of recursing forever."""
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(SerializationError, match="nested too deeply"):
        JSONSerializer().dumps({"v": looped})


JSON_VALUES = [
    {"s": 'é"\n\u2028', "i": 10**30, "f": [1.5, -0.0, 1e300], "n": None, "b": True},
    {"nested": [{"a": [[]]}, {}], "nan": float("nan"), "inf": float("-inf")},
]


@pytest.mark.parametrize("value", JSON_VALUES, ids=["scalars", "nested"])
def test_json_types_are_written_as_compact_json_dumps_writes_them(value: dict[str, Any]) -> None:
    """dumps() writes JSON's own types as json.dumps() would, compact and not ASCII-only."""
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    assert JSONSerializer().dumps(value) == expected


def test_one_serializer_writes_from_many_threads_at_once() -> None:
    """The JSON writer a serializer keeps holds no state between values: threads
    writing through one serializer at once each get their own value's JSON."""
    serializer = JSONSerializer()
    values = [{"thread": t, "items": list(range(t * 10)), "deep": {"x": [t] * t}} for t in range(8)]
    start = threading.Barrier(len(values))
    wrong: list[int] = []

    def write(value: dict[str, Any]) -> None:
        start.wait()
        expected = json.dumps(value, separators=(",", ":")).encode()
        for _ in range(2000):
            if serializer.dumps(value) != expected:
                wrong.append(value["thread"])

    threads = [threading.Thread(target=write, args=(value,)) for value in values]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not wrong


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"v": {"$ref": "os:system"}}', "unknown name 'os:system'"),
        (b'{"v": {"$ref": "no.such.module:thing"}}', "unknown name"),
        (b'{"v": {"$ref": ["os", "system"]}}', "must be a string"),
        (b'{"v": {"$enum": ["os:system", "x"]}}', "unknown name 'os:system'"),
        (b'{"v": {"$enum": "RED"}}', "an \\$enum value is"),
        (b'{"v": {"$x": 1}}', "unknown tag 'x'"),
        (b'{"v": {"$dict": 5}}', "could not read back a \\$dict"),
        (b'{"v": {"$items": [[[1], 2]]}}', "could not read back a \\$items"),
        (b'{"v": {"$tuple": 5}}', "could not read back a \\$tuple"),
        (b"[" * 65 + b"]" * 65, "deeper than 64"),
        (
            b'{"v": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}x',
            "not valid",
        ),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"v": 1} x', "not valid JSON: Extra data"),
        (b'{"v": 1}{"v": 2}', "not valid JSON: Extra data"),
        (b'{"v": ', "not valid JSON"),
        (b"", "not valid JSON"),
    ],
)
def test_unreadable_payloads_raise(data: bytes, match: str) -> None:
    """Bad payloads raise SerializationError, never a wrong value, and import nothing."""
    with pytest.raises(SerializationError, match=match):
        registered().loads(data)


def test_whitespace_around_the_object_is_json_too() -> None:
    """Payloads with whitespace around the object read as json.loads() reads them."""
    for data in (b' {"v": [1]}', b'{"v": [1]}\n', b'\t{"v": [1]} '):
        assert JSONSerializer().loads(data) == {"v": [1]}


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    """The depth bound counts lists and objects, not what strings hold."""
    text = "[" * 100 + '\\"{' * 10
    assert JSONSerializer().loads(json.dumps({"v": text}).encode()) == {"v": text}


def test_max_depth_is_an_option() -> None:
    """A serializer can accept deeper, or shallower, payloads."""
    deep = {"v": [[[[1]]]]}
    assert JSONSerializer(max_depth=5).loads(json.dumps(deep).encode()) == deep
    with pytest.raises(SerializationError, match="deeper than 4"):
        JSONSerializer(max_depth=4).loads(json.dumps(deep).encode())
    with pytest.raises(ValueError, match="max_depth"):
        JSONSerializer(max_depth=1)


@pytest.mark.parametrize(
    ("sender", "kwargs", "target", "context"),
    [
        (None, {"pk": 1, "sample": 2}, None, {}),
        (Colour, {"pk": (1, 2), "tags": {"a"}, "$odd": 1}, None, {}),
        (Colour, {"nested": {"$one": [1, (2,)]}, "when": datetime.date(2024, 1, 2)}, "app.job", {}),
        ("text sender", {"ünï": "cödé", "f": 1.5, "n": None}, None, {"traceparent": "00-ab"}),
        (Colour, {}, "app.job", {"$k": "v"}),
    ],
    ids=["plain", "tagged", "receiver", "context", "empty"],
)
def test_the_fast_event_encoding_writes_what_dumps_writes(
    sender: Any, kwargs: dict[str, Any], target: str | None, context: dict[str, str]
) -> None:
    """Remote.encode()'s shortcut for a JSONSerializer writes the bytes dumps() writes."""
    serializer = JSONSerializer()
    serializer.register_class(Colour)
    envelope: dict[str, Any] = {
        "v": 1,
        "id": "ab" * 16,
        "signal": "app.signal",
        "time": 1718000000.123456,
        "sender": sender,
        "kwargs": kwargs,
    }
    tail: dict[str, Any] = {}
    if target is not None:
        envelope["receiver"] = tail["receiver"] = target
    if context:
        envelope["context"] = tail["context"] = context
    head = '{"v":1,"id":"' + "ab" * 16 + '","signal":"app.signal","time":1718000000.123456'
    for _ in range(2):  # the second time, the sender's JSON comes from the cache
        assert serializer._dumps_event(head, sender, kwargs, tail) == serializer.dumps(envelope)


def test_the_fast_event_encoding_names_what_cannot_be_sent() -> None:
    """The shortcut reports an unsendable argument or sender as dumps() does."""
    serializer = JSONSerializer()
    head = '{"v":1,"id":"x","signal":"s","time":1.0'
    with pytest.raises(SerializationError, match=r"kwargs\['bad'\] is a builtins.object"):
        serializer._dumps_event(head, None, {"bad": object()}, {})
    with pytest.raises(SerializationError, match="sender is Colour, which is not registered"):
        serializer._dumps_event(head, Colour, {}, {})
    serializer.register_class(Colour)  # a registration is seen at once
    assert b'"sender":{"$ref":' in serializer._dumps_event(head, Colour, {}, {})


class Plugin:
    """A base whose subclasses travel by a name of their own (register_classes(name=))."""


class AudioPlugin(Plugin):
    pass


class HiddenPlugin(Plugin):
    pass


def test_register_classes_names_subclasses_with_its_name_function() -> None:
    """name(cls) gives the name; a subclass it gives None for does not travel."""
    known = {"plugins.audio": AudioPlugin}
    serializer = JSONSerializer()
    serializer.register_classes(
        Plugin,
        find=known.get,
        name=lambda cls: "plugins.audio" if cls is AudioPlugin else None,
    )
    data = serializer.dumps({"kind": AudioPlugin})
    assert json.loads(data) == {"kind": {"$ref": "plugins.audio"}}
    assert serializer.loads(data) == {"kind": AudioPlugin}
    with pytest.raises(SerializationError, match="not registered"):
        serializer.dumps({"kind": HiddenPlugin})
    with pytest.raises(TypeError, match="name must be a function"):
        serializer.register_classes(Plugin, find=known.get, name="plugins")  # type: ignore[arg-type]
