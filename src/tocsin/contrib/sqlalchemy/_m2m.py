"""m2m_changed, for relationships with a ``secondary`` table.

Django writes a many-to-many change the moment ``add()`` / ``remove()`` is
called; SQLAlchemy writes collection changes at the next flush. So the
signals follow the flush:

* ``pre_remove`` and ``pre_add`` are sent before the rows of the secondary
  table are written: at the start of the flush, or, when an object involved
  is new, right after the INSERT that gives it its primary key (``pk_set``
  must hold real keys);
* ``post_remove`` and ``post_add`` after the flush has written everything.

One change of a pair is reported once, even when both sides of a
``back_populates`` pair recorded it: from the side the user changed when the
other side's collection was not loaded, else from the forward side. The
forward side is the one whose table the secondary table's first foreign-key
column refers to, as ``from_model`` comes first in a Django through table;
``reverse`` is True for the other side.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any

from sqlalchemy.orm import InstanceState, Mapper, RelationshipProperty, Session
from sqlalchemy.orm.attributes import get_history, instance_state
from sqlalchemy.orm.base import PassiveFlag

from ... import signals
from ._base import ENABLED, options_for, send, using_of

Relationship = RelationshipProperty[Any]


class _Change:
    """What one flush does to one instance's side of one relationship."""

    __slots__ = ("added", "instance", "missing", "relationship", "removed", "reverse", "using")

    def __init__(self, instance: Any, relationship: Relationship, reverse: bool) -> None:
        self.instance = instance
        self.relationship = relationship
        self.reverse = reverse
        self.added: list[Any] = []
        self.removed: list[Any] = []
        self.missing = 0  # new objects among instance and added, not inserted yet
        self.using = "default"

    def send(self, action: str, objects: list[Any]) -> None:
        rel = self.relationship
        send(
            signals.m2m_changed,
            rel.secondary,
            action=action,
            instance=self.instance,
            reverse=self.reverse,
            model=rel.mapper.class_,
            pk_set={_pk(rel.mapper, obj) for obj in objects},
            using=self.using,
            raw=False,
        )


class _Flush:
    __slots__ = ("changes", "waiting")

    def __init__(self) -> None:
        self.changes: list[_Change] = []
        # new object's state -> the changes whose pre_add waits for its INSERT
        self.waiting: dict[InstanceState[Any], list[_Change]] = {}


_flushes: weakref.WeakKeyDictionary[Session, _Flush] = weakref.WeakKeyDictionary()
_sides: weakref.WeakKeyDictionary[Mapper[Any], tuple[tuple[Relationship, bool], ...]] = (
    weakref.WeakKeyDictionary()
)
# Load nothing, and leave out a collection that is not loaded: its only
# changes are those a backref queued from the other side, which reports them.
_PASSIVE = PassiveFlag.PASSIVE_NO_INITIALIZE


def _pk(mapper: Mapper[Any], obj: Any) -> Any:
    key = mapper.primary_key_from_instance(obj)
    return key[0] if len(key) == 1 else tuple(key)


def _is_reverse(rel: RelationshipProperty[Any]) -> bool:
    """Whether *rel* is the reverse side (see the module docstring)."""
    assert rel.secondary is not None
    columns = list(rel.secondary.columns)

    def first(pairs: Any) -> int:
        return min((columns.index(c) for _, c in pairs if c in columns), default=len(columns))

    return first(rel.synchronize_pairs) > first(rel.secondary_synchronize_pairs or ())


def sides_of(mapper: Mapper[Any]) -> tuple[tuple[RelationshipProperty[Any], bool], ...]:
    """The many-to-many relationships of *mapper*, each with whether it is reverse."""
    sides = _sides.get(mapper)
    if sides is None:
        sides = _sides[mapper] = tuple(
            (rel, _is_reverse(rel))
            for rel in mapper.relationships
            if rel.secondary is not None and not rel.viewonly
        )
    return sides


# The enabled mappers that have a many-to-many relationship: while there is
# none, a flush has no change to look for among its objects. Kept up to date
# as mappers are enabled (install) and configured (after_configured), which
# adds relationships, backrefs included, to mappers configured before.
_with_m2m: weakref.WeakSet[Mapper[Any]] = weakref.WeakSet()


def _has_m2m(mapper: Mapper[Any]) -> bool:
    # Not sides_of(), which caches: this may run before the last backref is
    # added; sides_of() runs at flush time, as ever.
    return any(rel.secondary is not None and not rel.viewonly for rel in mapper.relationships)


def install(mapper: Mapper[Any]) -> None:
    """*mapper* sends model signals now (once configured: see :func:`after_configured`)."""
    if mapper.configured and _has_m2m(mapper):
        _with_m2m.add(mapper)


def uninstall(mapper: Mapper[Any]) -> None:
    _with_m2m.discard(mapper)


def after_configured() -> None:
    """SQLAlchemy configured new mappers: look again at every enabled one (a
    backref may have given a relationship to a mapper configured before)."""
    _sides.clear()
    for reg in ENABLED:
        for mapper in reg.mappers:
            if mapper.configured and _has_m2m(mapper):
                _with_m2m.add(mapper)


def before_flush(session: Session, flush_context: Any, instances: Any) -> None:
    _flushes.pop(session, None)
    if not _with_m2m:  # no many-to-many relationship to change
        return
    if not signals.m2m_changed.would_send_any():  # nobody listens to any table
        return
    flush = _changes(session)
    if flush is None:
        return
    _flushes[session] = flush
    for change in flush.changes:
        if change.removed:
            change.send("pre_remove", change.removed)
    for change in flush.changes:
        if change.added and not change.missing:
            change.send("pre_add", change.added)


def _changes(session: Session) -> _Flush | None:
    """The many-to-many changes this flush will write, each pair once."""
    states = []
    for obj in itertools.chain(session.new, session.dirty):
        state = instance_state(obj)
        if sides_of(state.mapper) and options_for(state.mapper) is not None:
            states.append(state)
    if not states:
        return None
    flush = _Flush()
    seen: set[tuple[Any, ...]] = set()
    # Forward sides first, so that a change both sides know of is theirs.
    for reverse_pass in (False, True):
        for state in states:
            for rel, reverse in sides_of(state.mapper):
                if reverse is reverse_pass:
                    _collect(session, flush, seen, state, rel, reverse)
    return flush if flush.changes else None


def _collect(
    session: Session,
    flush: _Flush,
    seen: set[tuple[Any, ...]],
    state: InstanceState[Any],
    rel: RelationshipProperty[Any],
    reverse: bool,
) -> None:
    history = get_history(state.obj(), rel.key, passive=_PASSIVE)
    if not history.added and not history.deleted:
        return
    change = _Change(state.obj(), rel, reverse)
    for objects, into in ((history.added, change.added), (history.deleted, change.removed)):
        for obj in objects:
            if obj is None:
                continue
            other = instance_state(obj)
            pair = (rel.secondary, other, state) if reverse else (rel.secondary, state, other)
            if pair not in seen:
                seen.add(pair)
                into.append(obj)
    if not change.added and not change.removed:
        return
    options = options_for(state.mapper)
    assert options is not None
    change.using = using_of(options, session.get_bind(state.mapper))
    for new in (state, *(instance_state(obj) for obj in change.added)):
        if new.key is None:  # no identity yet: INSERTed by this flush
            change.missing += 1
            flush.waiting.setdefault(new, []).append(change)
    flush.changes.append(change)


def after_insert(state: InstanceState[Any]) -> None:
    """An object was INSERTed: send the pre_add that waited for its key."""
    if not _flushes:
        return
    session = state.session
    flush = _flushes.get(session) if session is not None else None
    if flush is None or not flush.waiting:
        return
    for change in flush.waiting.pop(state, ()):
        change.missing -= 1
        if not change.missing:
            change.send("pre_add", change.added)


def after_flush(session: Session, flush_context: Any) -> None:
    flush = _flushes.pop(session, None)
    if flush is None:
        return
    for change in flush.changes:
        if change.removed:
            change.send("post_remove", change.removed)
    for change in flush.changes:
        if change.added:
            change.send("post_add", change.added)
