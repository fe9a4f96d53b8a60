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
from sqlalchemy.orm.instrumentation import manager_of_class, opt_manager_of_class

from ... import signals
from . import _deletion, _m2m
from ._base import Options, options_for, sending, using_of

State = InstanceState[Any]

# The listeners are registered with raw=True (they get the InstanceState, and
# SQLAlchemy does not wrap them to look the instance up) and retval=True (it
# does not wrap them to return EXT_CONTINUE, which these events ignore): on a
# bulk flush, those wrappers cost as much as the sends.

# -- init --------------------------------------------------------------------------

# Bound once: the functions below run for every instance made or loaded.
_pre_init = signals.pre_init
_post_init = signals.post_init


def _wrap_init(original: Callable[..., None]) -> Callable[..., None]:
    """The class's own ``__init__``, between pre_init and post_init.

    SQLAlchemy calls it right after its ``init`` event, for the class being
    instantiated only (a subclass's call of its parent's ``__init__`` does
    not come here again), so each construction sends each signal once.
    """
    would_pre_init, would_post_init = _pre_init.would_send, _post_init.would_send

    def init(instance: Any, *args: Any, **kwargs: Any) -> None:
        cls = type(instance)
        if would_pre_init(cls):
            # Django sends pre_init(args=, kwargs=); instance= is tocsin's addition.
            sending(_pre_init)(cls, args=args, kwargs=kwargs, instance=instance)
        original(instance, *args, **kwargs)
        if would_post_init(cls):
            sending(_post_init)(cls, instance=instance)

    init._tocsin_original = original  # type: ignore[attr-defined]
    return init


def _on_load(state: State, context: Any) -> None:
    # Django builds loaded rows with __init__, so they send pre_init and
    # post_init; SQLAlchemy does not call __init__, and only post_init has
    # something true to say.
    cls = state.class_
    if _post_init.would_send(cls):
        sending(_post_init)(cls, instance=state.obj())


# -- save --------------------------------------------------------------------------

# Bound once: the listeners below run for every row a flush writes.
_pre_save = signals.pre_save
_post_save = signals.post_save
# state -> update_fields, from before_update to after_update of one flush. A
# plain dict, for speed: what a failed flush leaves is dropped by forget().
_written: dict[InstanceState[Any], frozenset[str]] = {}
_NOTHING: frozenset[str] = frozenset()


class _Columns:
    """What ``update_fields`` needs to know of one mapper: how each column
    attribute compares its values, and Django's names of the columns that
    many-to-one relationships write. Read on first use (the mapper is
    configured by then), and again after SQLAlchemy configures more mappers,
    whose backrefs may add relationships to this one (:func:`after_configured`).
    """

    __slots__ = ("__weakref__", "mapper", "tables")

    def __init__(self, mapper: Mapper[Any]) -> None:
        self.mapper = mapper
        self.tables: tuple[dict[str, Callable[[Any, Any], Any]], dict[str, str]] | None = None

    def _read(self) -> tuple[dict[str, Callable[[Any, Any], Any]], dict[str, str]]:
        mapper = self.mapper
        manager = mapper.class_manager
        equal = {prop.key: manager[prop.key].impl.is_equal for prop in mapper.column_attrs}
        tables = self.tables = equal, _foreign_key_fields(mapper)
        return tables

    def changed(self, state: State, values: dict[str, Any]) -> frozenset[str]:
        """The keys of the column attributes whose value an UPDATE will write
        (*values*: ``state.dict``, which the caller has at hand).

        The test the unit of work itself makes: an attribute that was set (it
        is in ``committed_state``) to a value that is not equal to the old one.
        """
        committed = state.committed_state
        if not committed:
            return _NOTHING
        equal = (self.tables or self._read())[0]
        changed = []
        for key, old in committed.items():
            is_equal = equal.get(key)
            if is_equal is not None and is_equal(values.get(key), old) is not True:
                changed.append(key)
        return frozenset(changed) if changed else _NOTHING

    def update_fields(self, columns: frozenset[str]) -> frozenset[str]:
        """Django's names for *columns*: a foreign key is named after its field.

        A Django ``ForeignKey`` named ``author`` stores its value in the column
        attribute ``author_id`` (its ``attname``), and ``update_fields`` names
        the field, ``author``: receivers test ``"author" in update_fields``.
        Here the field is the many-to-one relationship that writes the column,
        so a column that a relationship writes is reported under the
        relationship's name.
        """
        names = (self.tables or self._read())[1]
        if not names or names.keys().isdisjoint(columns):
            return columns
        return frozenset(names.get(key, key) for key in columns)


# Those of the installed listeners (which hold them; a _Columns holds its mapper).
_columns: weakref.WeakSet[_Columns] = weakref.WeakSet()


def after_configured() -> None:
    """SQLAlchemy configured new mappers: read the columns' tables again."""
    for columns in list(_columns):
        columns.tables = None


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


def _save_listeners(mapper: Mapper[Any], options: Options) -> dict[str, Callable[..., None]]:
    """The save listeners of one mapper: closures over what every row needs
    (its class, the signals' methods, the ``using`` of the last connection),
    so that a row costs no lookup of them."""
    cls = mapper.class_
    would_pre_save, would_post_save = _pre_save.would_send, _post_save.would_send
    last = options.last
    columns = _Columns(mapper)
    _columns.add(columns)

    def using(connection: Connection) -> str:
        seen, name = last[0]
        if seen is not connection:  # a flush asks once per row, on one connection
            name = using_of(options, connection)
            last[0] = (connection, name)
        return name

    def before_insert(mapper: Mapper[Any], connection: Connection, state: State) -> None:
        if would_pre_save(cls):
            sending(_pre_save)(
                cls, instance=state.obj(), raw=False, using=using(connection), update_fields=None
            )

    def after_insert(mapper: Mapper[Any], connection: Connection, state: State) -> None:
        _m2m.after_insert(state)
        if would_post_save(cls):
            sending(_post_save)(
                cls,
                instance=state.obj(),
                created=True,
                raw=False,
                using=using(connection),
                update_fields=None,
            )

    def before_update(mapper: Mapper[Any], connection: Connection, state: State) -> None:
        # SQLAlchemy calls this for every "dirty" instance, even one whose
        # columns did not change (a collection did, or a value was set to
        # itself): only an instance that gets an UPDATE is saved.
        pre = would_pre_save(cls)
        if not pre and not would_post_save(cls):
            return
        values = state.dict
        changed = columns.changed(state, values)
        if not changed:
            return
        fields = columns.update_fields(changed)
        if pre:
            sending(_pre_save)(
                cls, instance=state.obj(), raw=False, using=using(connection), update_fields=fields
            )
            # What pre_save receivers changed is written too: post_save says so.
            # Asked again rather than looked for: a receiver may also change an
            # attribute that was set to its own value (so not in *changed*).
            after = columns.changed(state, values)
            if after != changed:
                fields = columns.update_fields(after)
        _written[state] = fields

    def after_update(mapper: Mapper[Any], connection: Connection, state: State) -> None:
        fields = _written.pop(state, None)
        # Only a row before_update kept, for someone listening then: if nobody
        # is now, the send finds no receiver, which asking first would cost too.
        if fields is not None:
            sending(_post_save)(
                cls,
                instance=state.obj(),
                created=False,
                raw=False,
                using=using(connection),
                update_fields=fields,
            )

    return {
        "before_insert": before_insert,
        "after_insert": after_insert,
        "before_update": before_update,
        "after_update": after_update,
    }


def forget(session: Session, *flush_args: Any) -> None:
    """Drop what a flush kept: after it, and before the next one (a flush
    that raised never reaches after_flush)."""
    if _written:
        key = session.hash_key
        for state in [s for s in _written if s.session_id == key]:
            del _written[state]


# -- installing --------------------------------------------------------------------

# mapper -> its listeners, by event name, while they are installed. The
# listeners hold their mapper: uninstall() is what lets it go.
_installed: weakref.WeakKeyDictionary[Mapper[Any], dict[str, Callable[..., None]]] = (
    weakref.WeakKeyDictionary()
)


def installed(reg: Any) -> list[Mapper[Any]]:
    """The mappers of *reg* that have listeners, also those that
    ``registry.dispose()`` has taken out of it since."""
    return [mapper for mapper in list(_installed) if mapper.registry is reg]


def _listeners(mapper: Mapper[Any], options: Options) -> dict[str, Callable[..., None]]:
    return {
        **_save_listeners(mapper, options),
        "before_delete": _deletion.before_delete,
        "after_delete": _deletion.after_delete,
        "load": _on_load,
    }


def install(mapper: Mapper[Any]) -> None:
    options = options_for(mapper)
    assert options is not None
    if mapper not in _installed:
        listeners = _installed[mapper] = _listeners(mapper, options)
        for name, fn in listeners.items():
            event.listen(mapper, name, fn, raw=True, retval=True)
    _m2m.install(mapper)
    manager = manager_of_class(mapper.class_)
    original = manager.original_init
    if original is not None and not hasattr(original, "_tocsin_original"):
        manager.original_init = _wrap_init(original)


def uninstall(mapper: Mapper[Any]) -> None:
    listeners = _installed.pop(mapper, None)
    for name, fn in (listeners or {}).items():
        if event.contains(mapper, name, fn):
            event.remove(mapper, name, fn)
    _m2m.uninstall(mapper)
    manager = opt_manager_of_class(mapper.class_)
    if manager is None:  # registry.dispose() took the class's instrumentation away
        return
    wrapped = getattr(manager.original_init, "_tocsin_original", None)
    if wrapped is not None:
        manager.original_init = wrapped
