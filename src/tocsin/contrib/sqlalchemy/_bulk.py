"""ORM-enabled ``delete()`` statements send pre_delete / post_delete per row.

That is what Django's ``QuerySet.delete()`` does: when someone listens, it
loads the rows first and sends the signals for each, in its collector's
order (see _deletion). Here the rows the statement's WHERE clause matches are
loaded (into the session, as any query would) before the statement runs;
``origin`` is the statement.

ORM-enabled ``update()`` and ``insert()`` statements send nothing, like
``QuerySet.update()`` and ``bulk_create()``; see docs/model-signals.md.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import ORMExecuteState
from sqlalchemy.orm.attributes import instance_state

from ... import signals
from ._base import options_for, send, using_of
from ._deletion import django_order


def _listened(mapper: Any) -> bool:
    return any(
        signal.has_listeners(m.class_)
        for m in mapper.self_and_descendants
        for signal in (signals.pre_delete, signals.post_delete)
    )


def do_orm_execute(state: ORMExecuteState) -> Any:
    if not state.is_delete:
        return None
    mapper = state.bind_mapper
    if mapper is None or options_for(mapper) is None or not _listened(mapper):
        return None
    statement: Any = state.statement
    query = select(mapper)
    if statement.whereclause is not None:
        query = query.where(statement.whereclause)
    session = state.session
    found = list(dict.fromkeys(session.scalars(query)))  # one per row; holds them
    rows = [[s.obj() for s in group] for group in django_order(map(instance_state, found))]
    using = using_of(options_for(mapper), session.get_bind(mapper))  # type: ignore[arg-type]
    for group in rows:
        for row in group:
            send(signals.pre_delete, type(row), instance=row, using=using, origin=statement)
    result = state.invoke_statement()
    for group in rows:
        for row in reversed(group):
            send(signals.post_delete, type(row), instance=row, using=using, origin=statement)
    return result
