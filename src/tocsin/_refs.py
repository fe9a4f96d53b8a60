"""Weak-reference helpers: lookup keys, and "derefs" that the send loop calls.

A *deref* is a zero-argument callable that returns the live receiver or
``None``. The send loop treats every receiver alike (``d()`` for each), so the
per-kind work happens here, once, when a plan is built:

* a weakly connected function is its own ``weakref.ref`` (a C call);
* a strongly connected receiver is ``itertools.repeat(receiver).__next__``,
  also a C call that always returns the receiver;
* a weakly connected bound method gets a small closure over two plain weak
  references, instead of ``WeakMethod.__call__`` (pure Python, which also
  re-looks up its own attributes on every call).
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable
from types import FunctionType, MethodType
from typing import Any

from ._compiled import speedups

Deref = Callable[[], Any]


def make_id(target: Any) -> int | tuple[int, int]:
    """Django's identity key: ``(id(self), id(func))`` for bound methods, else ``id()``."""
    if type(target) is FunctionType:
        return id(target)
    if hasattr(target, "__func__"):
        return (id(target.__self__), id(target.__func__))
    return id(target)


NONE_ID = make_id(None)


class WeakMethodRef(weakref.WeakMethod):  # type: ignore[type-arg]
    """A ``weakref.WeakMethod`` that also carries a fast deref for the send loop.

    It is still a ``WeakMethod`` (and so a ``weakref.ref``), so code that reads
    ``Signal.receivers`` the way it reads Django's sees what it expects.
    """

    __slots__ = ("deref",)
    deref: Deref

    def __new__(cls, meth: Any, callback: Callable[[Any], object] | None = None) -> WeakMethodRef:
        self: WeakMethodRef = super().__new__(cls, meth, callback)
        self.deref = _method_deref(meth)
        return self


def _method_deref(method: Any) -> Deref:
    # Both halves are held weakly, as WeakMethod does: a method whose function
    # is only reachable through the bound method dies with it, as in Django.
    self_ref = weakref.ref(method.__self__)
    func_ref = weakref.ref(method.__func__)

    def deref() -> Any:
        obj = self_ref()
        func = func_ref()
        if obj is None or func is None:
            return None
        return MethodType(func, obj)

    if speedups is not None:
        # The same in C, which the compiled send also recognises and skips calling.
        compiled: Deref = speedups.MethodDeref(self_ref, func_ref)
        return compiled
    return deref


def strong_deref(receiver: object) -> Deref:
    """A C-speed callable that always returns *receiver*."""
    return itertools.repeat(receiver).__next__


def deref_for(ref_or_receiver: object, weak: bool) -> Deref:
    """The deref for what a connection stores: a weak reference or the receiver."""
    if not weak:
        return strong_deref(ref_or_receiver)
    if isinstance(ref_or_receiver, WeakMethodRef):
        method_deref: Deref = ref_or_receiver.deref
        return method_deref
    # A plain weakref.ref, or a WeakMethod someone assigned into ``receivers``.
    deref: Deref = ref_or_receiver  # type: ignore[assignment]
    return deref
