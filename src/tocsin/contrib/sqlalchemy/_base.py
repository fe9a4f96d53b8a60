"""What every part of the integration shares: the enabled registries, how a
signal is sent from inside SQLAlchemy, and the ``using`` name of a bind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import util as sa_util
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapper, registry

from ...dispatcher import Signal

try:  # SQLAlchemy 2.1
    await_: Callable[[Any], Any] = sa_util.await_
except AttributeError:  # pragma: no cover - SQLAlchemy 2.0
    await_ = sa_util.await_only
from sqlalchemy.util.concurrency import in_greenlet

UsingName = Callable[[Engine], str]


def default_using(engine: Engine) -> str:
    """``using``: the engine's ``logging_name`` if it has one, else ``"default"``."""
    return engine.logging_name or "default"


@dataclass(frozen=True)
class Options:
    using: UsingName


# registry -> options, for every registry whose classes send model signals.
ENABLED: dict[registry, Options] = {}


def options_for(mapper: Mapper[Any]) -> Options | None:
    return ENABLED.get(mapper.registry)


def using_of(options: Options, bind: Engine | Connection) -> str:
    engine = bind.engine if isinstance(bind, Connection) else bind
    return options.using(engine)


def listening(signal: Signal, sender: object) -> bool:
    """Whether *signal* has receivers for *sender*: checked before building
    the arguments, which costs more than the send itself."""
    sync, slow = signal._receivers_of(sender)
    return bool(sync or slow)


def send(signal: Signal, sender: object, **named: Any) -> None:
    """``signal.send()`` that also works inside an ``AsyncSession``.

    An ``AsyncSession`` runs the ORM in a greenlet on the event loop's thread,
    where ``send()`` may not wait for async receivers (the loop is running);
    SQLAlchemy's ``await_`` can, from there.
    """
    plan = signal._receivers_of(sender)
    if not plan[1]:
        if plan[0]:
            signal.send(sender, **named)
        return
    signal._send_slow(sender, named, plan, robust=False, await_=await_ if in_greenlet() else None)


def awaiter() -> Callable[[Any], Any] | None:
    """How deferred async receivers are awaited here: in a greenlet, or not at all."""
    return await_ if in_greenlet() else None
