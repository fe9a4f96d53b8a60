"""What every part of the integration shares: the enabled registries, how a
signal is sent from inside SQLAlchemy, and the ``using`` name of a bind.

asyncio: SQLAlchemy's asyncio extension needs greenlet, which SQLAlchemy 2.1
no longer installs (``sqlalchemy[asyncio]`` does). The sync integration works
without it: ``sqlalchemy.ext.asyncio`` is imported for type checking only,
:func:`is_async_engine` recognises an ``AsyncEngine`` without importing it, and
:func:`in_greenlet` is ``False`` when greenlet is missing, as no ``AsyncSession``
can run then.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard

from sqlalchemy import util as sa_util
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapper, registry
from sqlalchemy.util import concurrency

from ...dispatcher import Signal

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

try:  # SQLAlchemy 2.1
    await_: Callable[[Any], Any] = sa_util.await_
except AttributeError:  # pragma: no cover - SQLAlchemy 2.0
    await_ = sa_util.await_only


def _not_in_greenlet() -> bool:
    return False


# Checked once: in_greenlet() is on every model signal's path. SQLAlchemy's
# own test, which differs between its versions.
in_greenlet: Callable[[], bool] = (
    concurrency.in_greenlet if importlib.util.find_spec("greenlet") else _not_in_greenlet
)
# greenlet.getcurrent (untyped), or None without greenlet.
current_greenlet: Callable[[], Any] | None = (
    importlib.import_module("greenlet").getcurrent if importlib.util.find_spec("greenlet") else None
)


def is_async_engine(engine: object) -> TypeGuard[AsyncEngine]:
    """Whether *engine* is an ``AsyncEngine``, without importing SQLAlchemy's
    asyncio extension: there is none until something has imported it."""
    module = sys.modules.get("sqlalchemy.ext.asyncio")
    return module is not None and isinstance(engine, module.AsyncEngine)


UsingName = Callable[[Engine], str]


def default_using(engine: Engine) -> str:
    """``using``: the engine's ``logging_name`` if it has one, else ``"default"``."""
    return engine.logging_name or "default"


@dataclass(frozen=True)
class Options:
    using: UsingName
    # engine -> its using name: computed once, as the flush asks for every row
    names: weakref.WeakKeyDictionary[Engine, str] = field(
        default_factory=weakref.WeakKeyDictionary, compare=False
    )
    # [(connection, name)] of the last lookup (see _model): one tuple, read and
    # replaced whole, so that threads flushing on other engines never pair one
    # lookup's connection with another's name.
    last: list[tuple[Any, str]] = field(default_factory=lambda: [(None, "")], compare=False)


# registry -> options, for every registry whose classes send model signals.
ENABLED: dict[registry, Options] = {}


def options_for(mapper: Mapper[Any]) -> Options | None:
    return ENABLED.get(mapper.registry)


def using_of(options: Options, bind: Engine | Connection) -> str:
    engine = bind.engine if isinstance(bind, Connection) else bind
    name = options.names.get(engine)
    if name is None:
        name = options.names[engine] = options.using(engine)
    return name


def fire(signal: Signal, sender: object, named: dict[str, Any]) -> None:
    """Send *signal*; the responses are not needed. Also works inside an
    ``AsyncSession``. Callers on a hot path check ``signal.would_send(sender)``
    first: building the arguments costs more than the send itself (a hook
    such as tracing counts, as it hears of every send).

    An ``AsyncSession`` runs the ORM in a greenlet on the event loop's thread,
    where ``send()`` may not wait for async receivers (the loop is running);
    SQLAlchemy's ``await_`` can, from there.
    """
    if in_greenlet():
        signal.send_with_awaiter(await_, sender, **named)
    else:
        signal.send(sender, **named)


def send(signal: Signal, sender: object, **named: Any) -> None:
    """:func:`fire` for code that is not on a hot path."""
    if signal.would_send(sender):
        fire(signal, sender, named)


def sending(signal: Signal) -> Callable[..., Any]:
    """What sends *signal* from here: its ``send``, or in a greenlet its
    ``send_with_awaiter`` bound to SQLAlchemy's ``await_`` (see :func:`fire`).

    For the hot paths: ``sending(signal)(sender, instance=..., ...)`` passes
    the arguments as keywords straight to the send, where :func:`fire` would
    build a dict and unpack it again.
    """
    # The first test answers for most calls without a call of Python code:
    # the greenlet SQLAlchemy runs an AsyncSession in always has a parent.
    if (current_greenlet is None or current_greenlet().parent is None) or not in_greenlet():
        return signal.send
    return functools.partial(signal.send_with_awaiter, await_)


def awaiter() -> Callable[[Any], Any] | None:
    """How deferred async receivers are awaited here: in a greenlet, or not at all."""
    return await_ if in_greenlet() else None
