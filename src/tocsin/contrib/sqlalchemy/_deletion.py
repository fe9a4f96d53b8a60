"""pre_delete and post_delete for the rows a flush deletes, in the order of
Django's deletion collector.

Django's ``Collector.delete()`` sends every pre_delete before it deletes a
single row; then, model by model, it deletes the rows and sends their
post_delete. Models come in the order they were collected, moved so that a
model's rows go before the rows their non-nullable foreign keys refer to
(``Collector.sort()``); pre_delete goes through each model's rows by
ascending primary key, post_delete by descending.

A flush knows at its start which rows it deletes: the objects given to
``session.delete()``, with the objects their ``cascade="delete"``
relationships reached, and the orphans of ``delete-orphan`` relationships,
with what their cascades reach. So:

* ``before_flush`` plans those rows in Django's order and sends every
  pre_delete, before the flush runs any statement;
* ``after_delete`` (a mapper event, after the row's DELETE) ticks a row off;
  once every row of a model and of the models before it is gone, the model's
  post_delete are sent. The DELETE statements keep SQLAlchemy's order, which
  the database's constraints dictate: where it differs from Django's (a
  nullable foreign key), post_delete waits for the rows planned before;
* a row the plan did not foresee (deleted by a pre_delete receiver, say) is
  sent pre_delete and post_delete around its own DELETE.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.orm import InstanceState, Mapper, RelationshipProperty, Session
from sqlalchemy.orm.attributes import get_history, instance_state
from sqlalchemy.orm.base import PassiveFlag
from sqlalchemy.sql import FromClause

from ... import signals
from ...dispatcher import Signal
from ._base import ENABLED, fire, options_for, send, using_of
from ._m2m import sides_of

State = InstanceState[Any]
# What Django's collector orders: a model (here, a mapped class) or the
# intermediate model of a many-to-many field (here, a secondary table).
_Node = Mapper[Any] | FromClause


# -- Django's order ----------------------------------------------------------------


def django_order(states: Iterable[State], *, intermediate: bool = False) -> list[list[State]]:
    """*states* grouped by class, in the order of Django's ``Collector.delete()``.

    *states* come in the order they were collected, which decides between
    classes that no foreign key orders. Within a class, rows are sorted by
    primary key: pre_delete's order (post_delete's is the reverse). With
    *intermediate*, the many-to-many rows that Django would collect with them
    take part in the ordering (see :func:`_intermediate_tables`).
    """
    groups: dict[Mapper[Any], list[State]] = {}
    for state in states:
        groups.setdefault(state.mapper, []).append(state)
    nodes: list[_Node] = []
    for mapper, group in groups.items():
        nodes.append(mapper)
        if intermediate:
            nodes.extend(t for t in _intermediate_tables(mapper, group) if t not in nodes)
    return [_by_key(groups[node]) for node in _sort(nodes) if isinstance(node, Mapper)]


def _intermediate_tables(mapper: Mapper[Any], states: list[State]) -> list[FromClause]:
    """The secondary tables whose rows Django would collect with *states*.

    Deleting an object deletes its rows of its many-to-many fields'
    intermediate model. Django collects them as it collects any model, and
    its sort then deletes them before the object, which defers the object's
    class by a round, unless it can delete them in one query, unheard: when
    no pre_delete or post_delete receiver would hear of them, that is, none is
    connected for any sender.
    """
    tables = []
    for rel, _reverse in sides_of(mapper):
        table = rel.secondary
        assert table is not None
        heard = signals.pre_delete.would_send(table) or signals.post_delete.would_send(table)
        if heard and any(_has_rows(state, rel) for state in states):
            tables.append(table)
    return tables


def _has_rows(state: State, rel: RelationshipProperty[Any]) -> bool:
    # The flush loads the collection to delete its rows, unless the database
    # deletes them (passive_deletes): loading it first costs nothing more.
    passive = PassiveFlag.PASSIVE_NO_INITIALIZE if rel.passive_deletes else PassiveFlag.PASSIVE_OFF
    history = get_history(state.obj(), rel.key, passive=passive)
    return bool(history.unchanged or history.deleted)


def _by_key(states: list[State]) -> list[State]:
    try:
        return sorted(states, key=lambda state: state.identity)  # type: ignore[arg-type, return-value]
    except TypeError:  # keys of a type that does not order: as collected
        return states


def _sort(nodes: list[_Node]) -> list[_Node]:
    """Django's ``Collector.sort()``.

    In rounds, every node whose dependencies are placed is placed; when a
    round places nothing (a cycle), Django gives up and keeps the collected
    order. Dependencies are on concrete classes, so that any class sharing the
    table (a proxy model; here, single-table inheritance) satisfies them.
    """
    needs = {node: {_concrete(n) for n in nodes if _goes_first(n, node)} for node in nodes}
    placed: list[_Node] = []
    concrete: set[_Node] = set()
    while len(placed) < len(nodes):
        progress = False
        for node in nodes:
            if node not in placed and needs[node] <= concrete:
                placed.append(node)
                concrete.add(_concrete(node))
                progress = True
        if not progress:
            return nodes
    return placed


def _concrete(node: _Node) -> _Node:
    while isinstance(node, Mapper) and node.single and node.inherits is not None:
        node = node.inherits
    return node


def _tables(node: _Node) -> set[FromClause]:
    return set(node.tables) if isinstance(node, Mapper) else {node}


def _goes_first(referrer: _Node, referred: _Node) -> bool:
    """Whether Django deletes *referrer*'s rows before *referred*'s: a
    non-nullable foreign key of *referrer* refers to *referred*'s table.

    A nullable key adds no dependency in Django (its rows may go in any
    order). Keys into *referrer*'s own tables (a joined-inheritance parent
    row, a tree) are left out.
    """
    own = _tables(referrer)
    targets = _tables(referred) - own
    return any(
        key.referred_table in targets and not any(column.nullable for column in key.columns)
        for table in own
        for key in getattr(table, "foreign_key_constraints", ())
    )


# -- what a flush deletes ----------------------------------------------------------

# Load nothing: a collection that is not loaded has no removals to orphan.
_PASSIVE = PassiveFlag.PASSIVE_NO_INITIALIZE
_orphaning: weakref.WeakKeyDictionary[Mapper[Any], tuple[RelationshipProperty[Any], ...]] = (
    weakref.WeakKeyDictionary()
)


def after_configured() -> None:
    """SQLAlchemy configured new mappers, whose backrefs may add relationships
    to mappers configured before: look at them again."""
    _orphaning.clear()


def _delete_orphan_relationships(mapper: Mapper[Any]) -> tuple[RelationshipProperty[Any], ...]:
    found = _orphaning.get(mapper)
    if found is None:
        found = _orphaning[mapper] = tuple(
            rel for rel in mapper.relationships if rel.cascade.delete_orphan
        )
    return found


def _cascade(state: State) -> list[State]:
    """What deleting *state* deletes with it (``cascade="delete"``), persistent only."""
    return [
        child
        for _obj, _mapper, child, _dict in state.mapper.cascade_iterator("delete", state)
        if child.key is not None
    ]


def _orphans(session: Session, deleted: dict[State, Any]) -> list[State]:
    """The persistent objects the flush deletes as orphans (``delete-orphan``).

    The flush looks for them among the objects that changed and among those
    removed from a delete-orphan collection, and deletes the ones left
    without a parent: ``Mapper._is_orphan()`` is the test it makes.
    """
    targets = {
        rel.mapper
        for reg in ENABLED
        for mapper in reg.mappers
        for rel in _delete_orphan_relationships(mapper)
    }
    if not targets:
        return []
    # Per class, for this flush: whether a delete-orphan relationship holds it.
    held: dict[Mapper[Any], bool] = {}
    candidates: dict[State, None] = {}
    for obj in itertools.chain(session.dirty, (state.obj() for state in deleted)):
        state = instance_state(obj)
        mapper = state.mapper
        orphanable = held.get(mapper)
        if orphanable is None:
            orphanable = held[mapper] = any(m in targets for m in mapper.iterate_to_root())
        if orphanable:
            candidates[state] = None
        for rel in _delete_orphan_relationships(mapper):
            for child in get_history(obj, rel.key, passive=_PASSIVE).deleted:
                if child is not None:
                    candidates[instance_state(child)] = None
    return [
        state
        for state in candidates
        if state.key is not None and state not in deleted and state.mapper._is_orphan(state)
    ]


def doomed(session: Session) -> dict[State, Any]:
    """The rows the next flush of *session* deletes, in the order they were
    collected: ``session.deleted`` lists each object given to
    ``session.delete()`` followed by what its cascade reached, as Django
    collects them; then come the orphans, each followed by what its own
    cascade reaches. Each row maps to its origin if an orphan set it, else to
    None (see :func:`find_origins`).
    """
    rows: dict[State, Any] = dict.fromkeys(instance_state(obj) for obj in session.deleted)
    for orphan in _orphans(session, rows):
        origin = orphan.obj()
        for state in (orphan, *_cascade(orphan)):
            rows.setdefault(state, origin)
    return rows


def find_origins(rows: dict[State, Any]) -> None:
    """Fill in the origin of the *rows* given to ``session.delete()`` or
    reached by its cascade (an orphan's rows have theirs).

    Django's ``origin`` is the instance (or queryset) whose ``delete()``
    started it all: an object that no other deleted object's cascade reached
    is its own origin, and the origin of what its cascade reached (the first
    such object, in the order of ``session.delete()`` calls, when several
    reached it).
    """
    deleted = [state for state, origin in rows.items() if origin is None]
    cascades = {state: _cascade(state) for state in deleted}
    reached = {child for children in cascades.values() for child in children}
    for state in deleted:
        if state not in reached:
            origin = rows[state] = state.obj()
            for child in cascades[state]:
                if child in rows and rows[child] is None:
                    rows[child] = origin
    for state in deleted:  # in a cycle of cascades, where nothing is first
        if rows[state] is None:
            rows[state] = state.obj()


# -- sending -----------------------------------------------------------------------


class _Plan:
    """The rows one flush deletes, of the classes someone listens to, in
    Django's order: what was sent for them, and what is left to send."""

    __slots__ = ("gone", "groups", "left", "released", "rows", "using")

    def __init__(
        self, groups: list[list[State]], origins: dict[State, Any], session: Session
    ) -> None:
        self.groups = groups
        # state -> (its group, the instance, its origin); the plan holds the
        # instances until their post_delete is sent
        self.rows = {
            state: (index, state.obj(), origins[state])
            for index, group in enumerate(groups)
            for state in group
        }
        self.using = {group[0].mapper: _using(session, group[0].mapper) for group in groups}
        self.left = [len(group) for group in groups]  # rows of each group not deleted yet
        self.released = 0  # groups whose post_delete were sent
        self.gone: set[State] = set()

    def announce(self) -> None:
        for group in self.groups:
            for state in group:
                self._send(signals.pre_delete, state)

    def deleted(self, state: State) -> bool:
        """Tick *state* off, and send the post_delete that were waiting for
        it; False if *state* was not planned."""
        row = self.rows.get(state)
        if row is None:
            return False
        self.gone.add(state)
        self.left[row[0]] -= 1
        self.release()
        return True

    def release(self) -> None:
        """Send post_delete for each group, in order, while its rows are all gone."""
        while self.released < len(self.groups) and not self.left[self.released]:
            self._release(self.gone.__contains__)

    def finish(self, deleted: Callable[[State], bool]) -> None:
        """Send the post_delete still waiting once the flush is over, for the
        rows it *deleted*: a row whose DELETE became the UPDATE of a new
        object with its key (SQLAlchemy's "row switch") is deleted without an
        ``after_delete``."""
        while self.released < len(self.groups):
            self._release(deleted)

    def _release(self, deleted: Callable[[State], bool]) -> None:
        for state in reversed(self.groups[self.released]):
            if deleted(state):
                self._send(signals.post_delete, state)
        self.released += 1

    def _send(self, signal: Signal, state: State) -> None:
        _, instance, origin = self.rows[state]
        using = self.using[state.mapper]
        send(signal, state.class_, instance=instance, using=using, origin=origin)


# session -> the plan of its flush, from before_flush to after_flush. What a
# failed flush leaves (it never reaches after_flush) goes at the next one.
_plans: weakref.WeakKeyDictionary[Session, _Plan] = weakref.WeakKeyDictionary()


def _using(session: Session, mapper: Mapper[Any]) -> str:
    options = options_for(mapper)
    assert options is not None
    return using_of(options, session.get_bind(mapper))


def _listened(mapper: Mapper[Any]) -> bool:
    cls = mapper.class_
    return options_for(mapper) is not None and (
        signals.pre_delete.would_send(cls) or signals.post_delete.would_send(cls)
    )


def before_flush(session: Session, flush_context: Any, instances: Any) -> None:
    """Plan the flush's deletes and send their pre_delete, before it writes anything."""
    _plans.pop(session, None)
    rows = doomed(session)
    if instances is not None:  # flush(objects), deprecated: only those are flushed
        chosen = {instance_state(obj) for obj in instances}
        rows = {state: origin for state, origin in rows.items() if state in chosen}
    if not rows:
        return
    heard = {mapper for mapper in {state.mapper for state in rows} if _listened(mapper)}
    if not heard:
        return
    groups = [g for g in django_order(rows, intermediate=True) if g[0].mapper in heard]
    find_origins(rows)
    plan = _plans[session] = _Plan(groups, rows, session)
    plan.announce()


def after_flush(session: Session, flush_context: Any) -> None:
    plan = _plans.pop(session, None)
    if plan is not None:
        plan.finish(flush_context.is_deleted)


def _plan_of(state: State) -> _Plan | None:
    if not _plans:
        return None
    session = state.session
    return None if session is None else _plans.get(session)


def before_delete(mapper: Mapper[Any], connection: Connection, state: State) -> None:
    plan = _plan_of(state)
    if plan is None or state not in plan.rows:
        _send_unplanned(signals.pre_delete, mapper, connection, state)


def after_delete(mapper: Mapper[Any], connection: Connection, state: State) -> None:
    plan = _plan_of(state)
    if plan is None or not plan.deleted(state):
        _send_unplanned(signals.post_delete, mapper, connection, state)


def _send_unplanned(
    signal: Signal, mapper: Mapper[Any], connection: Connection, state: State
) -> None:
    """A row no plan foresaw is sent around its own DELETE; its origin is itself."""
    cls = mapper.class_
    if signal.would_send(cls):
        options = options_for(mapper)
        assert options is not None
        instance = state.obj()
        named = {"instance": instance, "using": using_of(options, connection), "origin": instance}
        fire(signal, cls, named)
