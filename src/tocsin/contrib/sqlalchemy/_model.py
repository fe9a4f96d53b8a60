"""pre_init … post_delete, sent from SQLAlchemy's mapper and instance events
(the delete signals in Django's order: see _deletion).

Every mapper of an enabled registry gets its own listeners (not propagated),
so that an instance is reported once, with its own class as the sender.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import InstanceState, Mapper, RelationshipDirection, Session
from sqlalchemy.orm.exc import UnmappedColumnError
from sqlalchemy.orm.instrumentation import manager_of_class

from ... import signals
from . import _deletion, _m2m
from ._base import fire, options_for, using_of

# The listeners are registered with raw=True (they get the InstanceState, and
# SQLAlchemy does not wrap them to look the instance up) and retval=True (it
# does not wrap them to return EXT_CONTINUE, which these events ignore): on a
# bulk flush, those wrappers cost as much as the sends.

# -- init --------------------------------------------------------------------------


def _wrap_init(original: Callable[..., None]) -> Callable[..., None]:
    """The class's own ``__init__``, between pre_init and post_init.

    SQLAlchemy calls it right after its ``init`` event, for the class being
    instantiated only (a subclass's call of its parent's ``__init__`` does
    not come here again), so each construction sends each signal once.
    """

    def init(instance: Any, *args: Any, **kwargs: Any) -> None:
        cls = type(instance)
        if signals.pre_init.would_send(cls):
            # Django sends pre_init(args=, kwargs=); instance= is tocsin's addition.
            fire(signals.pre_init, cls, {"args": args, "kwargs": kwargs, "instance": instance})
        original(instance, *args, **kwargs)
        if signals.post_init.would_send(cls):
            fire(signals.post_init, cls, {"instance": instance})

    init._tocsin_original = original  # type: ignore[attr-defined]
    return init


def _on_load(state: InstanceState[Any], context: Any) -> None:
    # Django builds loaded rows with __init__, so they send pre_init and
    # post_init; SQLAlchemy does not call __init__, and only post_init has
    # something true to say.
    cls = state.class_
    if signals.post_init.would_send(cls):
        fire(signals.post_init, cls, {"instance": state.obj()})


# -- save --------------------------------------------------------------------------

_column_keys: weakref.WeakKeyDictionary[Mapper[Any], frozenset[str]] = weakref.WeakKeyDictionary()
_field_names: weakref.WeakKeyDictionary[Mapper[Any], dict[str, str]] = weakref.WeakKeyDictionary()
# state -> update_fields, from before_update to after_update of one flush. A
# plain dict, for speed: what a failed flush leaves is dropped by forget().
_written: dict[InstanceState[Any], frozenset[str]] = {}


def changed_columns(mapper: Mapper[Any], state: InstanceState[Any]) -> frozenset[str]:
    """The keys of the column attributes whose value an UPDATE will write.

    The test the unit of work itself makes: an attribute that was set (it is
    in ``committed_state``) to a value that is not equal to the old one.
    """
    committed = state.committed_state
    if not committed:
        return _NOTHING
    keys = _column_keys.get(mapper)
    if keys is None:
        keys = _column_keys[mapper] = frozenset(p.key for p in mapper.column_attrs)
    manager, values = state.manager, state.dict
    return frozenset(
        key
        for key in keys.intersection(committed)
        if manager[key].impl.is_equal(values.get(key), committed[key]) is not True
    )


_NOTHING: frozenset[str] = frozenset()


def update_fields(mapper: Mapper[Any], columns: frozenset[str]) -> frozenset[str]:
    """Django's names for *columns*: a foreign key is named after its field.

    A Django ``ForeignKey`` named ``author`` stores its value in the column
    attribute ``author_id`` (its ``attname``), and ``update_fields`` names the
    field, ``author``: receivers test ``"author" in update_fields``. Here the
    field is the many-to-one relationship that writes the column, so a column
    that a relationship writes is reported under the relationship's name.
    """
    names = _field_names.get(mapper)
    if names is None:
        names = _field_names[mapper] = _foreign_key_fields(mapper)
    if not names or names.keys().isdisjoint(columns):
        return columns
    return frozenset(names.get(key, key) for key in columns)


def _foreign_key_fields(mapper: Mapper[Any]) -> dict[str, str]:
    """Column attribute key -> the name of the many-to-one relationship that
    writes it (the first declared, if several do; view-only ones do not)."""
    names: dict[str, str] = {}
    for rel in mapper.relationships:
        if rel.direction is not RelationshipDirection.MANYTOONE or rel.viewonly:
            continue
        for column in rel.local_columns:
            try:
                key = mapper.get_property_by_column(column).key
            except UnmappedColumnError:  # not a column this class maps
                continue
            names.setdefault(key, rel.key)
    return names


def _using(mapper: Mapper[Any], connection: Connection) -> str:
    options = options_for(mapper)
    assert options is not None
    last = options.last
    if last[0] is connection:  # a flush asks once per row, on one connection
        return last[1]  # type: ignore[no-any-return]
    name = using_of(options, connection)
    last[:] = connection, name
    return name


def _before_insert(mapper: Mapper[Any], connection: Connection, state: InstanceState[Any]) -> None:
    cls = mapper.class_
    if signals.pre_save.would_send(cls):
        named = {
            "instance": state.obj(),
            "raw": False,
            "using": _using(mapper, connection),
            "update_fields": None,
        }
        fire(signals.pre_save, cls, named)


def _after_insert(mapper: Mapper[Any], connection: Connection, state: InstanceState[Any]) -> None:
    _m2m.after_insert(state)
    cls = mapper.class_
    if signals.post_save.would_send(cls):
        named = {
            "instance": state.obj(),
            "created": True,
            "raw": False,
            "using": _using(mapper, connection),
            "update_fields": None,
        }
        fire(signals.post_save, cls, named)


def _before_update(mapper: Mapper[Any], connection: Connection, state: InstanceState[Any]) -> None:
    # SQLAlchemy calls this for every "dirty" instance, even one whose columns
    # did not change (a collection did, or a value was set to itself): only an
    # instance that gets an UPDATE is saved.
    cls = mapper.class_
    pre = signals.pre_save.would_send(cls)
    if not pre and not signals.post_save.would_send(cls):
        return
    columns = changed_columns(mapper, state)
    if not columns:
        return
    fields = update_fields(mapper, columns)
    if pre:
        committed, values = state.committed_state, state.dict
        before = len(committed), [values.get(key) for key in columns]
        named = {
            "instance": state.obj(),
            "raw": False,
            "using": _using(mapper, connection),
            "update_fields": fields,
        }
        fire(signals.pre_save, cls, named)
        # What pre_save receivers changed is written too: post_save says so.
        if before != (len(committed), [values.get(key) for key in columns]):
            fields = update_fields(mapper, changed_columns(mapper, state))
    _written[state] = fields


def _after_update(mapper: Mapper[Any], connection: Connection, state: InstanceState[Any]) -> None:
    fields = _written.pop(state, None)
    if fields is None:
        return
    cls = mapper.class_
    if signals.post_save.would_send(cls):
        named = {
            "instance": state.obj(),
            "created": False,
            "raw": False,
            "using": _using(mapper, connection),
            "update_fields": fields,
        }
        fire(signals.post_save, cls, named)


def forget(session: Session, *flush_args: Any) -> None:
    """Drop what a flush kept: after it, and before the next one (a flush
    that raised never reaches after_flush)."""
    if _written:
        key = session.hash_key
        for state in [s for s in _written if s.session_id == key]:
            del _written[state]


# -- installing --------------------------------------------------------------------

MAPPER_EVENTS: tuple[tuple[str, Callable[..., None]], ...] = (
    ("before_insert", _before_insert),
    ("after_insert", _after_insert),
    ("before_update", _before_update),
    ("after_update", _after_update),
    ("before_delete", _deletion.before_delete),
    ("after_delete", _deletion.after_delete),
    ("load", _on_load),
)


def install(mapper: Mapper[Any]) -> None:
    for name, fn in MAPPER_EVENTS:
        if not event.contains(mapper, name, fn):
            event.listen(mapper, name, fn, raw=True, retval=True)
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
