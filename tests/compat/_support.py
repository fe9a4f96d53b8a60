"""The two implementations under comparison, and what the compat modules share.

Importing this module skips the importing test module when Django 6.1 is not
installed: the suite pins tocsin to the behaviour of ``django.dispatch`` 6.1,
and Django 6.1 needs Python 3.12+ (Python 3.11 gets Django 5.2, whose
dispatcher differs: 3-tuple ``receivers`` rows, ``asend`` running the sync
and async groups concurrently, no contextvars write-back).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import pytest

import tocsin

REQUIRED_DJANGO = (6, 1)

django = pytest.importorskip(
    "django", reason="the compatibility suite compares tocsin with django.dispatch"
)
if tuple(django.VERSION[:2]) < REQUIRED_DJANGO:
    pytest.skip(
        f"the compatibility suite compares tocsin with django.dispatch 6.1, but Django "
        f"{django.__version__} is installed (Python 3.11 gets Django 5.2; run it on 3.12+)",
        allow_module_level=True,
    )

from django import dispatch as django_dispatch  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Impl:
    """One implementation of the ``django.dispatch`` API."""

    name: str
    Signal: Any
    receiver: Any
    logger: str

    def __repr__(self) -> str:
        return self.name


DJANGO = Impl("django", django_dispatch.Signal, django_dispatch.receiver, "django.dispatch")
TOCSIN = Impl("tocsin", tocsin.Signal, tocsin.receiver, "tocsin")
IMPLS = {impl.name: impl for impl in (DJANGO, TOCSIN)}


class Boom(Exception):
    """What the failing receivers raise."""


class Handler:
    """An object whose bound methods are receivers; each returns the object's name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def handle(self, **kwargs: Any) -> str:
        return self.name

    async def ahandle(self, **kwargs: Any) -> str:
        return self.name


class Unweakrefable:
    """A sender (or callable receiver) that cannot be weakly referenced."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, **kwargs: Any) -> str:
        return self.name


def tagged(*, tag: str, **kwargs: Any) -> str:
    """A receiver to wrap in ``functools.partial(tagged, tag=...)``."""
    return tag


def make_receiver(kind: str) -> tuple[object, Callable[..., Any]]:
    """A new receiver of *kind* returning *kind*, with the object that keeps it alive."""
    if kind == "function":

        def function(**kwargs: Any) -> str:
            return "function"

        return function, function
    if kind == "bound method":
        owner = Handler("bound method")
        return owner, owner.handle
    if kind == "partial":
        partial = functools.partial(tagged, tag="partial")
        return partial, partial
    if kind == "lambda":
        func = lambda **kwargs: "lambda"  # noqa: E731
        return func, func
    raise AssertionError(kind)


RECEIVER_KINDS = ["function", "bound method", "partial", "lambda"]


def responses(results: list[tuple[Any, Any]]) -> list[Any]:
    """The responses of ``send()`` results, without the receivers."""
    return [response for _, response in results]
