"""pre_init … post_delete, sent from SQLAlchemy's mapper and instance events.

Every mapper of an enabled registry gets its own listeners (not propagated),
so that an instance is reported once, with its own class as the sender.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import InstanceState, Mapper, Session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.instrumentation import manager_of_class

from ... import signals
from . import _m2m
from ._base import listening, options_for, send, using_of

# -- init --------------------------------------------------------------------------


def _on_init(instance: Any, args: Any, kwargs: Any) -> None:
    # Django sends pre_init(args=, kwargs=); instance= is tocsin's addition.
    if listening(signals.pre_init, type(instance)):
        send(signals.pre_init, type(instance), args=args, kwargs=kwargs, instance=instance)


def _on_load(instance: Any, context: Any) -> None:
    # Django builds loaded rows with __init__, so they send pre_init and
    # post_init; SQLAlchemy does not call __init__, and only post_init has
    # something true to say.
    if listening(signals.post_init, type(instance)):
        send(signals.post_init, type(instance), instance=instance)


def _wrap_init(original: Callable[..., None]) -> Callable[..., None]:
    def init_then_post_init(instance: Any, *args: Any, **kwargs: Any) -> None:
        original(instance, *args, **kwargs)
        if listening(signals.post_init, type(instance)):
            send(signals.post_init, type(instance), instance=instance)

    init_then_post_init._tocsin_original = original  # type: ignore[attr-defined]
    return init_then_post_init


# -- save --------------------------------------------------------------------------


_column_keys: weakref.WeakKeyDictionary[Mapper[Any], frozenset[str]] = weakref.WeakKeyDictionary()


def changed_fields(mapper: Mapper[Any], state: InstanceState[Any]) -> frozenset[str]:
    """The names of the column attributes whose value will be written by an UPDATE."""
    keys = _column_keys.get(mapper)
    if keys is None:
        keys = _column_keys[mapper] = frozenset(p.key for p in mapper.column_attrs)
    touched = keys.difference(state.unmodified)  # set and not yet flushed
    return frozenset(k for k in touched if state.attrs[k].history.has_changes())


def _using(mapper: Mapper[Any], connection: Connection) -> str:
    options = options_for(mapper)
    assert options is not None
    return using_of(options, connection)


def _before_insert(mapper: Mapper[Any], connection: Connection, instance: Any) -> None:
    if not listening(signals.pre_save, mapper.class_):
        return
    send(
        signals.pre_save,
        mapper.class_,
        instance=instance,
        raw=False,
        using=_using(mapper, connection),
        update_fields=None,
    )


def _after_insert(mapper: Mapper[Any], connection: Connection, instance: Any) -> None:
    _m2m.after_insert(instance)
    if not listening(signals.post_save, mapper.class_):
        return
    send(
        signals.post_save,
        mapper.class_,
        instance=instance,
        created=True,
        raw=False,
        using=_using(mapper, connection),
        update_fields=None,
    )


def _before_update(mapper: Mapper[Any], connection: Connection, instance: Any) -> None:
    # SQLAlchemy calls this for every "dirty" instance, even one whose columns
    # did not change (a collection did, or a value was set to itself): only an
    # instance that gets an UPDATE is saved.
    if not listening(signals.pre_save, mapper.class_):
        return
    fields = changed_fields(mapper, instance_state(instance))
    if fields:
        send(
            signals.pre_save,
            mapper.class_,
            instance=instance,
            raw=False,
            using=_using(mapper, connection),
            update_fields=fields,
        )


def _after_update(mapper: Mapper[Any], connection: Connection, instance: Any) -> None:
    # The history is still there until the flush ends, and now includes what
    # pre_save receivers changed: update_fields is what was written.
    if not listening(signals.post_save, mapper.class_):
        return
    fields = changed_fields(mapper, instance_state(instance))
    if fields:
        send(
            signals.post_save,
            mapper.class_,
            instance=instance,
            created=False,
            raw=False,
            using=_using(mapper, connection),
            update_fields=fields,
        )


# -- delete ------------------------------------------------------------------------

# session -> {deleted instance's state: the instance whose delete() cascaded
# to it}; computed at the first delete of a flush, dropped after the flush.
_origins: weakref.WeakKeyDictionary[Session, dict[InstanceState[Any], Any]] = (
    weakref.WeakKeyDictionary()
)


def delete_origins(session: Session) -> dict[InstanceState[Any], Any]:
    """Which ``session.delete()`` call each deleted instance comes from.

    Django's ``origin`` is the instance (or queryset) whose ``delete()``
    started it all. An instance deleted by a cascade gets the instance that
    was deleted explicitly; any other gets itself.
    """
    origins = _origins.get(session)
    if origins is not None:
        return origins
    deleted = [instance_state(obj) for obj in session.deleted]
    reached: dict[InstanceState[Any], InstanceState[Any]] = {}
    for state in deleted:
        for _obj, _mapper, child, _dict in state.mapper.cascade_iterator("delete", state):
            reached.setdefault(child, state)
    origins = {}
    for state in deleted:
        if state in reached:
            continue
        origins[state] = state.obj()
        for _obj, _mapper, child, _dict in state.mapper.cascade_iterator("delete", state):
            origins.setdefault(child, state.obj())
    _origins[session] = origins
    return origins


def forget_origins(session: Session, *flush_args: Any) -> None:
    """Drop a flush's origins: after it, and before the next one (a flush
    that raised never reaches after_flush)."""
    _origins.pop(session, None)


def _origin_of(instance: Any) -> Any:
    state = instance_state(instance)
    session = state.session
    if session is None:
        return instance
    return delete_origins(session).get(state, instance)


def _before_delete(mapper: Mapper[Any], connection: Connection, instance: Any) -> None:
    sender = mapper.class_
    if listening(signals.pre_delete, sender):
        send(
            signals.pre_delete,
            sender,
            instance=instance,
            using=_using(mapper, connection),
            origin=_origin_of(instance),
        )


def _after_delete(mapper: Mapper[Any], connection: Connection, instance: Any) -> None:
    sender = mapper.class_
    if listening(signals.post_delete, sender):
        send(
            signals.post_delete,
            sender,
            instance=instance,
            using=_using(mapper, connection),
            origin=_origin_of(instance),
        )


# -- installing --------------------------------------------------------------------

MAPPER_EVENTS: tuple[tuple[str, Callable[..., None]], ...] = (
    ("before_insert", _before_insert),
    ("after_insert", _after_insert),
    ("before_update", _before_update),
    ("after_update", _after_update),
    ("before_delete", _before_delete),
    ("after_delete", _after_delete),
    ("load", _on_load),
    ("init", _on_init),
)


def install(mapper: Mapper[Any]) -> None:
    for name, fn in MAPPER_EVENTS:
        if not event.contains(mapper, name, fn):
            event.listen(mapper, name, fn)
    manager = manager_of_class(mapper.class_)
    original = manager.original_init
    if original is not None and not hasattr(original, "_tocsin_original"):
        manager.original_init = _wrap_init(original)


def uninstall(mapper: Mapper[Any]) -> None:
    for name, fn in MAPPER_EVENTS:
        if event.contains(mapper, name, fn):
            event.remove(mapper, name, fn)
    manager = manager_of_class(mapper.class_)
    wrapped = getattr(manager.original_init, "_tocsin_original", None)
    if wrapped is not None:
        manager.original_init = wrapped
