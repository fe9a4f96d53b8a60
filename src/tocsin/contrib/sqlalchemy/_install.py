"""Turning the integration on and off for a registry."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Mapper, Session, registry

from . import _bulk, _deletion, _m2m, _model
from ._base import ENABLED, Options, UsingName, default_using


def _registry_of(target: Any) -> registry:
    if isinstance(target, registry):
        return target
    if isinstance(target, type) and inspect(target, raiseerr=False) is not None:
        raise TypeError(
            f"{target.__qualname__} is a mapped class; pass its declarative base or "
            "registry: model signals are turned on for every class a registry maps."
        )
    found = getattr(target, "registry", None) if isinstance(target, type) else None
    if isinstance(found, registry):
        return found
    raise TypeError(
        "enable_model_signals() takes a declarative base class (a DeclarativeBase "
        "subclass, or what declarative_base() returns) or a sqlalchemy.orm.registry; "
        f"got {type(target).__name__} {target!r}."
    )


def _on_mapper_constructed(mapper: Mapper[Any], class_: type) -> None:
    if mapper.registry in ENABLED:
        _model.install(mapper)


_SESSION_EVENTS = (
    ("before_flush", _model.forget),
    ("before_flush", _m2m.before_flush),
    ("before_flush", _deletion.before_flush),
    ("after_flush", _deletion.after_flush),
    ("after_flush", _m2m.after_flush),
    ("after_flush", _model.forget),
    ("do_orm_execute", _bulk.do_orm_execute),
)


# Mappers configured later may add relationships (backrefs) to enabled ones.
_AFTER_CONFIGURED = (_m2m.after_configured, _deletion.after_configured, _model.after_configured)


def _install_globals() -> None:
    if not event.contains(Mapper, "after_mapper_constructed", _on_mapper_constructed):
        event.listen(Mapper, "after_mapper_constructed", _on_mapper_constructed)
        for refresh in _AFTER_CONFIGURED:
            event.listen(Mapper, "after_configured", refresh)
        for name, fn in _SESSION_EVENTS:
            event.listen(Session, name, fn)


def _uninstall_globals() -> None:
    if event.contains(Mapper, "after_mapper_constructed", _on_mapper_constructed):
        event.remove(Mapper, "after_mapper_constructed", _on_mapper_constructed)
        for refresh in _AFTER_CONFIGURED:
            event.remove(Mapper, "after_configured", refresh)
        for name, fn in _SESSION_EVENTS:
            event.remove(Session, name, fn)


def enable_model_signals(target: Any, *, using: UsingName | None = None) -> None:
    """Make every class mapped by *target* send Django's model signals.

    :param target: a declarative base (``class Base(DeclarativeBase)``, or
        what ``declarative_base()`` returns) or a ``sqlalchemy.orm.registry``.
        Classes mapped later by it are included.
    :param using: ``using(engine) -> str``, the ``using`` argument of the
        signals for the engine a row is written with; by default
        :func:`default_using`: the engine's ``logging_name``, else ``"default"``.
    :raises TypeError: if *target* is neither a declarative base nor a
        registry (a mapped class is refused too: it would turn the signals on
        for its whole registry), or *using* is not callable.
    :raises ValueError: if the signals are already enabled for *target* with
        other options.

    It also installs what on-commit receivers need with SQLAlchemy: the
    tracking of session transactions, and the scope finder that finds a
    session from a mapped instance among a send's arguments. Calling it again
    for the same target with the same options does nothing. What is sent, and
    when, is in docs/model-signals.md.
    """
    reg = _registry_of(target)
    if using is not None and not callable(using):
        raise TypeError(f"using must be a callable engine -> str; got {using!r}.")
    options = Options(using=using or default_using)
    current = ENABLED.get(reg)
    if current is not None:
        if current != options:
            raise ValueError(
                "model signals are already enabled for this registry with other options; "
                "call disable_model_signals() first."
            )
        return
    ENABLED[reg] = options
    _install_globals()
    for mapper in reg.mappers:
        _model.install(mapper)


def disable_model_signals(target: Any) -> bool:
    """Stop *target*'s classes from sending model signals; returns whether they did.

    When no target is left enabled, the session tracking and the scope finder
    that :func:`enable_model_signals` installed are removed too.
    """
    reg = _registry_of(target)
    if ENABLED.pop(reg, None) is None:
        return False
    for mapper in {*reg.mappers, *_model.installed(reg)}:
        _model.uninstall(mapper)
    if not ENABLED:
        _uninstall_globals()
    return True


def model_signals_enabled(target: Any) -> bool:
    """Whether :func:`enable_model_signals` is in effect for *target* (a
    declarative base or a registry)."""
    return _registry_of(target) in ENABLED
