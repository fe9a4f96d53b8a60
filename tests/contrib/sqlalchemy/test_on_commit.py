"""On-commit receivers with real SQLAlchemy sessions, on SQLite and PostgreSQL.

``post_save.connect(receiver, sender=Todo, on_commit=True)`` calls the
receiver once the session's transaction has committed, and never when it
rolls back. Receivers check what a *second* connection sees, which is only
what has really been committed.

SQLite note: pysqlite emits BEGIN only before the first write, so every
savepoint test writes something before its first ``begin_nested()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from tocsin import Signal
from tocsin.contrib.sqlalchemy import (
    SessionScope,
    bind_session,
    disable_model_signals,
    enable_model_signals,
)
from tocsin.oncommit import Deferred, TransactionScope
from tocsin.signals import m2m_changed, post_delete, post_save, pre_save

from .models import Base, Pizza, Todo, Topping

# A project's own signal, sent by application code rather than by the ORM.
todo_completed = Signal()

Connect = Callable[..., None]


@pytest.fixture
def connect() -> Iterator[Connect]:
    """``connect(signal, receiver, **kwargs)``; disconnected after the test,
    since the model signals are shared by every test."""
    made: list[tuple[Signal, Callable[..., Any], object]] = []

    def connect(signal: Signal, receiver: Callable[..., Any], **kwargs: Any) -> None:
        signal.connect(receiver, **kwargs)
        made.append((signal, receiver, kwargs.get("sender")))

    yield connect
    for signal, receiver, sender in made:
        signal.disconnect(receiver, sender=sender)


def committed_texts(engine: Engine) -> list[str]:
    """The todo texts a second connection sees: only what has been committed."""
    with engine.connect() as connection:
        return sorted(connection.scalars(select(Todo.text)))


async def committed_texts_async(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        return sorted(await connection.scalars(select(Todo.text)))


class Boom(Exception):
    """What failing receivers raise."""


# -- post_save after the commit ----------------------------------------------------------


def test_an_on_commit_receiver_runs_once_after_the_commit(engine: Engine, connect: Connect) -> None:
    seen: list[tuple[str, bool, list[str]]] = []

    def after_save(sender: type[Todo], instance: Todo, created: bool, **kwargs: Any) -> None:
        seen.append((instance.text, created, committed_texts(engine)))

    connect(post_save, after_save, sender=Todo, on_commit=True)

    with Session(engine) as session:
        session.add(Todo(text="write tests"))
        session.flush()
        assert seen == []  # saved, but not committed yet
        session.commit()
        assert seen == [("write tests", True, ["write tests"])]
    assert len(seen) == 1


def test_the_flush_done_by_commit_is_deferred_too(engine: Engine, connect: Connect) -> None:
    """No explicit flush: commit() flushes, and the post_save it sends waits
    for the COMMIT that follows."""
    seen: list[list[str]] = []

    def after_save(sender: type[Todo], instance: Todo, **kwargs: Any) -> None:
        seen.append(committed_texts(engine))

    connect(post_save, after_save, sender=Todo, on_commit=True)

    with Session(engine) as session:
        session.add(Todo(text="a"))
        session.add(Todo(text="b"))
        session.commit()

    assert seen == [["a", "b"], ["a", "b"]]


def test_a_session_begin_block_runs_them_when_it_ends(engine: Engine, connect: Connect) -> None:
    seen: list[list[str]] = []

    def after_save(sender: type[Todo], instance: Todo, **kwargs: Any) -> None:
        seen.append(committed_texts(engine))

    connect(post_save, after_save, sender=Todo, on_commit=True)

    with Session(engine) as session:
        with session.begin():
            session.add(Todo(text="in a block"))
            session.flush()
        assert seen == [["in a block"]]


def test_on_commit_receivers_run_in_the_order_of_the_sends(
    engine: Engine, connect: Connect
) -> None:
    """Several signals and instances: the calls after the commit replay the
    sends in order, as ordinary receivers saw them during the transaction."""
    during: list[tuple[str, Todo, bool | None]] = []
    after: list[tuple[str, Todo, bool | None]] = []

    def recorder(name: str, into: list[tuple[str, Todo, bool | None]]) -> Callable[..., None]:
        def record(sender: type[Todo], instance: Todo, **kwargs: Any) -> None:
            into.append((name, instance, kwargs.get("created")))

        return record

    for name, signal in (("pre_save", pre_save), ("post_save", post_save), ("del", post_delete)):
        connect(signal, recorder(name, during), sender=Todo, weak=False)
        connect(signal, recorder(name, after), sender=Todo, weak=False, on_commit=True)

    with Session(engine, expire_on_commit=False) as session:
        first, second = Todo(text="first"), Todo(text="second")
        session.add_all([first, second])
        session.flush()
        first.done = True
        session.flush()
        session.delete(second)
        session.flush()
        assert after == []
        session.commit()

    assert [(name, todo.text, created) for name, todo, created in during] == [
        ("pre_save", "first", None),
        ("pre_save", "second", None),
        ("post_save", "first", True),
        ("post_save", "second", True),
        ("pre_save", "first", None),
        ("post_save", "first", False),
        ("del", "second", None),
    ]
    assert after == during


def test_each_transaction_runs_only_its_own_calls(engine: Engine, connect: Connect) -> None:
    texts: list[str] = []

    def after_save(sender: type[Todo], instance: Todo, **kwargs: Any) -> None:
        texts.append(instance.text)

    connect(post_save, after_save, sender=Todo, on_commit=True)

    with Session(engine) as session:
        session.add(Todo(text="one"))
        session.commit()
        session.add(Todo(text="two"))
        session.commit()
        session.commit()  # an empty transaction runs nothing

    assert texts == ["one", "two"]


# -- nothing runs without a commit --------------------------------------------------------


def test_nothing_runs_on_rollback(engine: Engine, connect: Connect) -> None:
    texts: list[str] = []

    def after_save(sender: type[Todo], instance: Todo, **kwargs: Any) -> None:
        texts.append(instance.text)

    connect(post_save, after_save, sender=Todo, on_commit=True)

    with Session(engine) as session:
        session.add(Todo(text="rolled back"))
        session.flush()
        session.rollback()
        session.commit()  # the dropped calls do not come back
        assert texts == []
        session.add(Todo(text="committed"))
        session.commit()

    assert texts == ["committed"]
    assert committed_texts(engine) == ["committed"]


def test_nothing_runs_when_the_session_closes_without_commit(
    engine: Engine, connect: Connect
) -> None:
    called: list[object] = []

    def after_save(sender: type[Todo], instance: Todo, **kwargs: Any) -> None:
        called.append(instance)

    connect(post_save, after_save, sender=Todo, on_commit=True)

    session = Session(engine)
    session.add(Todo(text="never committed"))
    session.flush()
    session.close()
    with Session(engine) as session:  # a context manager closes the same way
        session.add(Todo(text="never committed either"))
        session.flush()

    assert called == []
    assert committed_texts(engine) == []


def test_nothing_runs_when_the_flush_fails_and_the_session_rolls_back(
    engine: Engine, connect: Connect
) -> None:
    with Session(engine) as session:
        session.add(Todo(id=1, text="existing"))
        session.commit()
    called: list[tuple[str, int]] = []

    def record(name: str) -> Callable[..., None]:
        def receive(sender: type[Todo], instance: Todo, **kwargs: Any) -> None:
            called.append((name, instance.id))

        return receive

    connect(pre_save, record("pre_save"), sender=Todo, weak=False, on_commit=True)
    connect(post_save, record("post_save"), sender=Todo, weak=False, on_commit=True)

    with Session(engine) as session:
        session.add(Todo(id=2, text="saved before the failure"))
        session.flush()
        session.add(Todo(id=1, text="duplicate key"))  # pre_save is sent, the INSERT fails
        with pytest.raises(IntegrityError):
            session.flush()
        session.rollback()
        assert called == []

        session.add(Todo(id=3, text="after the rollback"))
        session.commit()

    assert called == [("pre_save", 3), ("post_save", 3)]
    assert committed_texts(engine) == ["after the rollback", "existing"]


# -- SAVEPOINTs -----------------------------------------------------------------------


@pytest.fixture
def saved(connect: Connect) -> list[str]:
    """The texts of the todos whose post_save on-commit receiver ran, in order."""
    texts: list[str] = []

    def after_save(sender: type[Todo], instance: Todo, created: bool, **kwargs: Any) -> None:
        texts.append(instance.text)

    connect(post_save, after_save, sender=Todo, weak=False, on_commit=True)
    return texts


def test_a_released_savepoint_s_calls_run_at_the_outer_commit(
    engine: Engine, saved: list[str]
) -> None:
    with Session(engine) as session:
        session.add(Todo(text="outer"))
        session.flush()
        with session.begin_nested():
            session.add(Todo(text="in the savepoint"))
        assert saved == []  # released, but the transaction is still open
        session.commit()

    assert saved == ["outer", "in the savepoint"]


def test_a_rolled_back_savepoint_s_calls_are_dropped(engine: Engine, saved: list[str]) -> None:
    with Session(engine) as session:
        session.add(Todo(text="before"))
        session.flush()
        savepoint = session.begin_nested()
        session.add(Todo(text="rolled back"))
        session.flush()
        savepoint.rollback()
        session.add(Todo(text="after"))
        session.commit()

    assert saved == ["before", "after"]
    assert committed_texts(engine) == ["after", "before"]


def test_a_failed_flush_in_a_savepoint_drops_only_the_savepoint_s_calls(
    engine: Engine, saved: list[str]
) -> None:
    with Session(engine) as session:
        session.add(Todo(id=1, text="existing"))
        session.commit()
    saved.clear()

    with Session(engine) as session:
        session.add(Todo(id=2, text="outer"))
        session.flush()
        savepoint = session.begin_nested()
        session.add(Todo(id=3, text="in the savepoint"))
        session.flush()
        session.add(Todo(id=1, text="duplicate key"))
        with pytest.raises(IntegrityError):
            session.flush()
        savepoint.rollback()
        session.add(Todo(id=4, text="after"))
        session.commit()

    assert saved == ["outer", "after"]
    assert committed_texts(engine) == ["after", "existing", "outer"]


def test_savepoints_inside_savepoints(engine: Engine, saved: list[str]) -> None:
    """A released savepoint hands its calls to the one around it, which may
    still roll them back; only what reaches the root and commits runs."""
    with Session(engine) as session:
        session.add(Todo(text="root"))
        session.flush()
        with session.begin_nested():  # released
            session.add(Todo(text="sp1"))
            session.flush()
            with session.begin_nested():  # released into sp1
                session.add(Todo(text="sp1 > sp2"))
                session.flush()
            sp3 = session.begin_nested()
            session.add(Todo(text="sp1 > sp3, rolled back"))
            session.flush()
            sp3.rollback()
            session.add(Todo(text="sp1 again"))
        sp4 = session.begin_nested()
        session.add(Todo(text="sp4, rolled back"))
        session.flush()
        with session.begin_nested():  # released into sp4, which then rolls back
            session.add(Todo(text="sp4 > sp5, released"))
            session.flush()
        sp4.rollback()
        assert saved == []
        session.commit()

    assert saved == ["root", "sp1", "sp1 > sp2", "sp1 again"]
    assert committed_texts(engine) == sorted(saved)


def test_rolling_back_the_whole_transaction_drops_released_savepoint_calls(
    engine: Engine, saved: list[str]
) -> None:
    with Session(engine) as session:
        session.add(Todo(text="root"))
        session.flush()
        with session.begin_nested():
            session.add(Todo(text="released"))
        session.rollback()
        session.commit()

    assert saved == []


def test_commit_with_a_savepoint_still_open_runs_its_calls(
    engine: Engine, saved: list[str]
) -> None:
    """``session.commit()`` commits the open savepoints on its way to the root."""
    with Session(engine) as session:
        session.add(Todo(text="root"))
        session.flush()
        session.begin_nested()
        session.add(Todo(text="open savepoint"))
        session.commit()

    assert saved == ["root", "open savepoint"]


# -- other model signals -------------------------------------------------------------------


def test_post_delete_of_a_delete_statement_waits_for_the_commit(
    engine: Engine, connect: Connect
) -> None:
    """An ORM-enabled ``delete()`` loads its rows into the session, so their
    post_delete finds the session's transaction."""
    with Session(engine) as session:
        session.add_all([Todo(text="done", done=True), Todo(text="open")])
        session.commit()
    seen: list[tuple[str, list[str]]] = []

    def after_delete(sender: type[Todo], instance: Todo, **kwargs: Any) -> None:
        seen.append((instance.text, committed_texts(engine)))

    connect(post_delete, after_delete, sender=Todo, on_commit=True)

    with Session(engine, expire_on_commit=False) as session:
        session.execute(delete(Todo).where(Todo.done.is_(True)))
        session.rollback()
        assert seen == []
        session.execute(delete(Todo).where(Todo.done.is_(True)))
        assert seen == []
        session.commit()

    assert seen == [("done", ["open"])]


def test_m2m_changed_waits_for_the_commit(engine: Engine, connect: Connect) -> None:
    seen: list[tuple[str, list[str]]] = []

    def after_change(sender: object, instance: Pizza, action: str, **kwargs: Any) -> None:
        with engine.connect() as connection:
            names = sorted(connection.scalars(select(Topping.name)))
        seen.append((action, names))

    connect(m2m_changed, after_change, on_commit=True)

    with Session(engine) as session:
        session.add(Pizza(name="margherita", toppings=[Topping(name="basil")]))
        session.flush()
        assert seen == []
        session.commit()

    assert seen == [("pre_add", ["basil"]), ("post_add", ["basil"])]


# -- a project's own signal ----------------------------------------------------------------


def test_a_custom_signal_sent_with_an_instance_is_deferred_to_its_session(
    engine: Engine, connect: Connect
) -> None:
    """The scope finder finds the session of the instance among the arguments."""
    seen: list[list[str]] = []

    def notify(sender: type[Todo], todo: Todo, **kwargs: Any) -> str:
        seen.append(committed_texts(engine))
        return "notified"

    connect(todo_completed, notify, on_commit=True)

    with Session(engine) as session:
        todo = Todo(text="finish")
        session.add(todo)
        todo.done = True
        [(receiver, deferred)] = todo_completed.send(sender=Todo, todo=todo)
        assert receiver is notify
        assert isinstance(deferred, Deferred)
        assert repr(deferred).endswith(" pending>")
        assert seen == []
        session.commit()

    assert seen == [["finish"]]
    assert deferred.state == "done"
    assert deferred.result == "notified"


def test_a_custom_signal_s_deferred_call_is_dropped_on_rollback(
    engine: Engine, connect: Connect
) -> None:
    called: list[Todo] = []

    def notify(sender: type[Todo], todo: Todo, **kwargs: Any) -> None:
        called.append(todo)

    connect(todo_completed, notify, on_commit=True)

    with Session(engine) as session:
        todo = Todo(text="finish")
        session.add(todo)
        session.flush()
        [(_, deferred)] = todo_completed.send(sender=Todo, todo=todo)
        session.rollback()

    assert deferred.state == "dropped"
    assert called == []


def test_bind_session_defers_sends_whose_arguments_hold_no_instance(
    engine: Engine, connect: Connect
) -> None:
    seen: list[tuple[int, list[str]]] = []

    def notify(sender: type[Todo], todo_id: int, **kwargs: Any) -> None:
        seen.append((todo_id, committed_texts(engine)))

    connect(todo_completed, notify, on_commit=True)

    with Session(engine) as session:
        todo = Todo(text="finish")
        session.add(todo)
        session.flush()
        with bind_session(session) as scope:
            assert isinstance(scope, SessionScope)
            assert scope.session is session
            [(_, deferred)] = todo_completed.send(sender=Todo, todo_id=todo.id)
        assert isinstance(deferred, Deferred)
        assert seen == []
        session.commit()

    assert seen == [(deferred.named["todo_id"], ["finish"])]
    assert deferred.state == "done"


def test_without_bind_session_an_id_alone_finds_no_transaction(
    engine: Engine, connect: Connect
) -> None:
    """Nothing among ``sender=Todo, todo_id=...`` belongs to a session: the
    receiver runs at once, before the commit (what bind_session is for)."""
    seen: list[list[str]] = []

    def notify(sender: type[Todo], todo_id: int, **kwargs: Any) -> None:
        seen.append(committed_texts(engine))

    connect(todo_completed, notify, on_commit=True)

    with Session(engine) as session:
        todo = Todo(text="finish")
        session.add(todo)
        session.flush()
        [(_, response)] = todo_completed.send(sender=Todo, todo_id=todo.id)
        assert response is None
        assert seen == [[]]
        session.commit()

    assert seen == [[]]


def test_outside_any_transaction_a_custom_signal_runs_at_once(
    engine: Engine, connect: Connect
) -> None:
    called: list[str] = []

    def notify(sender: type[Todo], **kwargs: Any) -> str:
        called.append("called")
        return "now"

    connect(todo_completed, notify, on_commit=True)

    # An instance that is in no session.
    assert todo_completed.send(sender=Todo, todo=Todo(text="loose")) == [(notify, "now")]
    # A session that has not begun a transaction.
    with Session(engine) as session, bind_session(session):
        assert todo_completed.send(sender=Todo, todo_id=1) == [(notify, "now")]
    # An instance whose session has committed, and has not begun again.
    with Session(engine) as session:
        todo = Todo(text="committed")
        session.add(todo)
        session.commit()
        assert not session.in_transaction()
        assert todo_completed.send(sender=Todo, todo=todo) == [(notify, "now")]

    assert called == ["called", "called", "called"]


# -- receivers and the session after the commit ------------------------------------------


def test_a_receiver_may_use_the_session_again_after_the_commit(
    engine: Engine, connect: Connect
) -> None:
    """The calls run once the transaction has ended: a receiver can begin a
    new one on the same session, and its on-commit receivers run in turn."""
    saved: list[str] = []

    def follow_up(sender: type[Todo], instance: Todo, **kwargs: Any) -> None:
        saved.append(instance.text)
        if instance.text.startswith("follow-up"):
            return
        session = Session.object_session(instance)
        assert session is not None
        session.add(Todo(text=f"follow-up of {instance.text}"))
        session.add(Pizza(name="for the team"))
        session.commit()

    connect(post_save, follow_up, sender=Todo, on_commit=True)

    with Session(engine) as session:
        session.add(Todo(text="ship it"))
        session.commit()
        assert saved == ["ship it", "follow-up of ship it"]
        assert session.scalars(select(Pizza.name)).all() == ["for the team"]

    assert committed_texts(engine) == ["follow-up of ship it", "ship it"]


def test_a_robust_receiver_that_raises_is_logged_and_the_commit_succeeds(
    engine: Engine, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    def fail(sender: type[Todo], instance: Todo, **kwargs: Any) -> None:
        raise Boom("mail server down")

    def after(sender: type[Todo], instance: Todo, **kwargs: Any) -> None:
        ran.append(instance.text)

    connect(post_save, fail, sender=Todo, on_commit=True)
    connect(post_save, after, sender=Todo, on_commit=True)

    with Session(engine) as session, caplog.at_level(logging.ERROR, logger="tocsin"):
        session.add(Todo(text="kept"))
        session.commit()  # does not raise

    assert committed_texts(engine) == ["kept"]
    assert ran == ["kept"]
    [record] = caplog.records
    assert record.name == "tocsin"
    assert "in on_commit() (mail server down)" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], Boom)


def test_a_non_robust_receiver_makes_commit_raise_after_the_data_is_committed(
    engine: Engine, connect: Connect
) -> None:
    ran: list[str] = []

    def fail(sender: type[Todo], instance: Todo, **kwargs: Any) -> None:
        if instance.text == "kept":
            raise Boom("mail server down")

    def after(sender: type[Todo], instance: Todo, **kwargs: Any) -> None:
        ran.append(instance.text)

    connect(post_save, fail, sender=Todo, on_commit=True, robust=False)
    connect(post_save, after, sender=Todo, on_commit=True)

    with Session(engine) as session:
        session.add(Todo(text="kept"))
        with pytest.raises(Boom, match="mail server down"):
            session.commit()
        assert committed_texts(engine) == ["kept"]
        assert ran == ["kept"]  # the other receivers still ran

        session.add(Todo(text="next"))  # the session is still usable
        session.commit()

    assert ran == ["kept", "next"]
    assert committed_texts(engine) == ["kept", "next"]


def test_an_async_receiver_runs_after_a_sync_session_s_commit(
    engine: Engine, connect: Connect
) -> None:
    """From sync code, the deferred coroutine is run as send() runs async receivers."""
    seen: list[list[str]] = []

    async def after_save(sender: type[Todo], **kwargs: Any) -> str:
        await asyncio.sleep(0)
        seen.append(committed_texts(engine))
        return "published"

    connect(post_save, after_save, sender=Todo, on_commit=True)

    with Session(engine) as session:
        session.add(Todo(text="sync session"))
        session.flush()
        assert seen == []
        session.commit()

    assert seen == [["sync session"]]


def test_post_save_on_commit_does_not_change_ordinary_receivers(
    engine: Engine, connect: Connect
) -> None:
    """A Django-style receiver (no on_commit) still runs during the flush."""
    seen: list[list[str]] = []

    def during_flush(sender: type[Todo], instance: Todo, **kwargs: Any) -> None:
        seen.append(committed_texts(engine))

    connect(post_save, during_flush, sender=Todo)

    with Session(engine) as session:
        session.add(Todo(text="not yet committed"))
        session.flush()
        assert seen == [[]]
        session.commit()
    assert seen == [[]]


# -- SessionScope ----------------------------------------------------------------------


def test_session_scope_is_a_transaction_scope(engine: Engine) -> None:
    with Session(engine) as session:
        scope = SessionScope(session)
        assert isinstance(scope, TransactionScope)
        assert scope.session is session
        assert "SessionScope" in repr(scope)


@pytest.mark.parametrize("not_a_session", [object(), "session", None])
def test_session_scope_takes_only_sessions(not_a_session: Any) -> None:
    with pytest.raises(TypeError, match="SessionScope takes a Session or an AsyncSession"):
        SessionScope(not_a_session)
    with pytest.raises(TypeError, match="SessionScope takes a Session or an AsyncSession"):
        with bind_session(not_a_session):
            pass


# -- AsyncSession --------------------------------------------------------------------------


def test_an_async_receiver_runs_after_await_commit(
    async_engine: AsyncEngine, connect: Connect
) -> None:
    seen: list[tuple[str, list[str]]] = []

    async def after_save(sender: type[Todo], instance: Todo, **kwargs: Any) -> str:
        await asyncio.sleep(0)
        seen.append((instance.text, await committed_texts_async(async_engine)))
        return "done"

    connect(post_save, after_save, sender=Todo, on_commit=True)

    async def main() -> None:
        async with AsyncSession(async_engine, expire_on_commit=False) as session:
            session.add(Todo(text="async"))
            await session.flush()
            assert seen == []
            await session.commit()
            assert seen == [("async", ["async"])]

    asyncio.run(main())


def test_an_async_receiver_is_dropped_on_rollback(
    async_engine: AsyncEngine, connect: Connect
) -> None:
    called: list[str] = []

    async def after_save(sender: type[Todo], instance: Todo, **kwargs: Any) -> None:
        called.append(instance.text)

    connect(post_save, after_save, sender=Todo, on_commit=True)

    async def main() -> None:
        async with AsyncSession(async_engine, expire_on_commit=False) as session:
            session.add(Todo(text="rolled back"))
            await session.flush()
            await session.rollback()
            session.add(Todo(text="closed without commit"))
            await session.flush()

    asyncio.run(main())
    assert called == []
    assert asyncio.run(committed_texts_async(async_engine)) == []


def test_a_sync_receiver_runs_after_await_commit(
    engine: Engine, async_engine: AsyncEngine, connect: Connect
) -> None:
    seen: list[tuple[str, list[str]]] = []

    def after_save(sender: type[Todo], instance: Todo, **kwargs: Any) -> None:
        seen.append((instance.text, committed_texts(engine)))

    connect(post_save, after_save, sender=Todo, on_commit=True)

    async def main() -> None:
        async with AsyncSession(async_engine, expire_on_commit=False) as session:
            session.add(Todo(text="async session"))
            await session.flush()
            assert seen == []
            await session.commit()

    asyncio.run(main())
    assert seen == [("async session", ["async session"])]


def test_a_non_robust_async_receiver_makes_await_commit_raise(
    async_engine: AsyncEngine, connect: Connect
) -> None:
    async def fail(sender: type[Todo], instance: Todo, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        raise Boom("webhook down")

    connect(post_save, fail, sender=Todo, on_commit=True, robust=False)

    async def main() -> list[str]:
        async with AsyncSession(async_engine) as session:
            session.add(Todo(text="kept"))
            with pytest.raises(Boom, match="webhook down"):
                await session.commit()
        return await committed_texts_async(async_engine)

    assert asyncio.run(main()) == ["kept"]


def test_async_savepoints(async_engine: AsyncEngine, connect: Connect) -> None:
    saved: list[str] = []

    async def after_save(sender: type[Todo], instance: Todo, **kwargs: Any) -> None:
        saved.append(instance.text)

    connect(post_save, after_save, sender=Todo, on_commit=True)

    async def main() -> None:
        async with AsyncSession(async_engine, expire_on_commit=False) as session:
            session.add(Todo(text="outer"))
            await session.flush()
            async with session.begin_nested():
                session.add(Todo(text="released"))
            savepoint = await session.begin_nested()
            session.add(Todo(text="rolled back"))
            await session.flush()
            await savepoint.rollback()
            await session.commit()

    asyncio.run(main())
    assert saved == ["outer", "released"]


def test_session_scope_and_bind_session_accept_an_async_session(
    async_engine: AsyncEngine, connect: Connect
) -> None:
    ran: list[tuple[str, int]] = []

    def sync_notify(sender: type[Todo], todo_id: int, **kwargs: Any) -> None:
        ran.append(("sync", todo_id))

    async def async_notify(sender: type[Todo], todo_id: int, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        ran.append(("async", todo_id))

    connect(todo_completed, sync_notify, on_commit=True)
    connect(todo_completed, async_notify, on_commit=True)

    async def main() -> list[tuple[Any, Any]]:
        async with AsyncSession(async_engine) as session:
            assert SessionScope(session).session is session.sync_session
            todo = Todo(text="finish")
            session.add(todo)
            await session.flush()
            with bind_session(session):
                result = await todo_completed.asend(sender=Todo, todo_id=todo.id)
                result += todo_completed.send(sender=Todo, todo_id=todo.id)
            assert ran == []
            await session.commit()
        return result

    result = asyncio.run(main())
    assert [d.state for _, d in result] == ["done"] * 4
    assert [name for name, _ in ran] == ["sync", "async", "sync", "async"]


def test_send_from_async_code_defers_async_receivers_to_an_instance_s_session(
    async_engine: AsyncEngine, connect: Connect
) -> None:
    """send() cannot await from a running loop, but it need not: the async
    on-commit receiver waits for the commit, which awaits it."""
    ran: list[str] = []

    async def notify(sender: type[Todo], todo: Todo, **kwargs: Any) -> str:
        ran.append(todo.text)
        return "notified"

    connect(todo_completed, notify, on_commit=True)

    async def main() -> Deferred:
        async with AsyncSession(async_engine, expire_on_commit=False) as session:
            todo = Todo(text="finish")
            session.add(todo)
            await session.flush()
            [(_, deferred)] = todo_completed.send(sender=Todo, todo=todo)
            assert isinstance(deferred, Deferred)
            assert deferred.state == "pending"
            await session.commit()
        return deferred

    deferred = asyncio.run(main())
    assert ran == ["finish"]
    assert deferred.state == "done"
    assert deferred.result == "notified"


def test_sessions_are_tracked_without_any_model_signals_enabled(
    engine: Engine, connect: Connect
) -> None:
    """Importing tocsin.contrib.sqlalchemy is enough: on-commit receivers of a
    project's own signal wait for the session with no registry enabled."""
    seen: list[list[str]] = []

    def notify(sender: type[Todo], todo: Todo, **kwargs: Any) -> None:
        seen.append(committed_texts(engine))

    connect(todo_completed, notify, on_commit=True)
    disable_model_signals(Base)  # the autouse fixture enabled them; enabled again after
    try:
        with Session(engine) as session:
            todo = Todo(text="no model signals")
            session.add(todo)
            todo_completed.send(sender=Todo, todo=todo)
            assert seen == []
            session.commit()
    finally:
        enable_model_signals(Base)
    assert seen == [["no model signals"]]


def test_disabling_model_signals_does_not_strand_a_waiting_call(
    engine: Engine, connect: Connect
) -> None:
    """A call deferred while the model signals were on still runs at the commit."""
    seen: list[str] = []
    connect(
        post_save,
        lambda sender, instance, **kw: seen.append(instance.text),
        sender=Todo,
        on_commit=True,
        weak=False,
    )
    with Session(engine) as session:
        session.add(Todo(text="saved while enabled"))
        session.flush()
        disable_model_signals(Base)
        try:
            session.commit()
        finally:
            enable_model_signals(Base)
    assert seen == ["saved while enabled"]


def test_a_remote_s_after_commit_events_are_one_publish_without_the_savepoint_s(
    engine: Engine,
) -> None:
    """Remote(on_commit=True) publishes a session's events together after the commit,
    without those of a rolled-back savepoint; if the broker fails, commit() raises
    one PublishError that carries them all."""
    from tocsin.contrib.sqlalchemy import bind_session
    from tocsin.exceptions import PublishError, TransportError
    from tocsin.remote import MemoryTransport, Remote

    class Down(MemoryTransport):
        def _publish_many(self, stream: str, payloads: Any) -> list[str]:
            raise TransportError("connection refused")

    noted = Signal()
    remote = Remote(Down(), stream="todos", on_commit=True)
    remote.publish(noted, name="noted")
    with Session(engine) as session, bind_session(session):
        session.add(Todo(text="before"))
        noted.send(None, text="before")
        session.flush()
        savepoint = session.begin_nested()
        session.add(Todo(text="rolled back"))
        noted.send(None, text="rolled back")
        session.flush()
        savepoint.rollback()
        session.add(Todo(text="after"))
        noted.send(None, text="after")
        with pytest.raises(PublishError) as caught:
            session.commit()
    error = caught.value
    assert type(error) is PublishError
    assert [remote.decode(p).kwargs["text"] for p in error.payloads] == ["before", "after"]
    assert isinstance(error.__cause__, TransportError)
    assert committed_texts(engine) == ["after", "before"]
