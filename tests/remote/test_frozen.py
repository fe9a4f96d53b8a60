"""The quick makers of the records a worker makes per event: the same instances as the
dataclasses' own constructors, still frozen, and only for classes they suit."""

from __future__ import annotations

import dataclasses

import pytest

from tocsin.remote import Event, Message
from tocsin.remote._frozen import maker


def test_a_maker_makes_what_the_class_makes() -> None:
    values = ("0123", "orders.paid", None, {"total": 3}, 1.5, None, "1-0", 2, {"trace": "x"})
    made, expected = maker(Event)(*values), Event(*values)
    assert made == expected
    assert type(made) is Event
    assert [getattr(made, f.name) for f in dataclasses.fields(Event)] == list(values)
    assert maker(Message)("1-0", b"payload", 1, {}) == Message("1-0", b"payload", 1, {})


def test_what_a_maker_makes_is_still_frozen() -> None:
    made = maker(Message)("1-0", b"payload", 1, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.id = "2-0"  # type: ignore[misc]


def test_a_maker_takes_every_field() -> None:
    with pytest.raises(TypeError):
        maker(Message)("1-0", b"payload")


@dataclasses.dataclass(frozen=True)
class NoSlots:
    x: int


@dataclasses.dataclass(slots=True)
class NotFrozen:
    x: int


@dataclasses.dataclass(frozen=True, slots=True)
class PostInit:
    x: int

    def __post_init__(self) -> None:
        if self.x < 0:
            raise ValueError("x < 0")


@pytest.mark.parametrize("cls", [NoSlots, NotFrozen, PostInit, int])
def test_a_maker_is_refused_where_it_would_differ(cls: type) -> None:
    with pytest.raises(TypeError, match="not a frozen dataclass with slots"):
        maker(cls)
