"""Model signals from an AsyncSession, and async receivers.

An ``AsyncSession`` runs the ORM in a greenlet on the event loop's thread:
the signals are the same as with a ``Session``; sync receivers are called
inline, and ``async def`` receivers are awaited inside the flush, before
``commit()`` returns. Each test runs its coroutine with ``asyncio.run`` on
SQLite (aiosqlite) and PostgreSQL (psycopg's async mode).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session, selectinload

from tocsin import Signal
from tocsin.signals import m2m_changed, post_save, pre_save

from .conftest import Recorder
from .models import Pizza, Slice, Todo, Topping, UrgentTodo, pizza_toppings


@contextmanager
def connected(signal: Signal, receiver: Any, sender: object = None) -> Iterator[None]:
    signal.connect(receiver, sender=sender, weak=False)
    try:
        yield
    finally:
        signal.disconnect(receiver, sender=sender)


def test_saving_in_an_async_session_sends_the_save_signals(
    async_engine: AsyncEngine, sent: Recorder
) -> None:
    """Insert then update: the same arguments as in a sync Session."""

    async def main() -> Pizza:
        async with AsyncSession(async_engine, expire_on_commit=False) as session:
            pizza = Pizza(name="margherita")
            session.add(pizza)
            await session.commit()
            pizza.price = 9
            await session.commit()
            return pizza

    pizza = asyncio.run(main())

    assert [(s.signal, s.sender) for s in sent] == [
        ("pre_init", Pizza),
        ("post_init", Pizza),
        ("pre_save", Pizza),
        ("post_save", Pizza),
        ("pre_save", Pizza),
        ("post_save", Pizza),
    ]
    insert_post, update_pre, update_post = sent[3], sent[4], sent[5]
    assert insert_post.kwargs == {
        "instance": pizza,
        "created": True,
        "raw": False,
        "using": "default",
        "update_fields": None,
    }
    assert update_pre.kwargs == {
        "instance": pizza,
        "raw": False,
        "using": "default",
        "update_fields": frozenset({"price"}),
    }
    assert update_post.kwargs["created"] is False
    assert update_post.kwargs["update_fields"] == frozenset({"price"})


def test_loading_in_an_async_session_sends_post_init(
    async_engine: AsyncEngine, sent: Recorder
) -> None:
    """Rows loaded by an async query send post_init with their own class."""

    async def main() -> list[Todo]:
        async with AsyncSession(async_engine, expire_on_commit=False) as session:
            session.add_all([Todo(text="water plants"), UrgentTodo(text="call the plumber")])
            await session.commit()
        del sent[:]
        async with AsyncSession(async_engine, expire_on_commit=False) as session:
            return list(await session.scalars(select(Todo).order_by(Todo.id)))

    todos = asyncio.run(main())

    assert [(s.signal, s.sender, s.kwargs) for s in sent] == [
        ("post_init", Todo, {"instance": todos[0]}),
        ("post_init", UrgentTodo, {"instance": todos[1]}),
    ]


def test_deleting_in_an_async_session_sends_the_delete_signals(
    async_engine: AsyncEngine, sent: Recorder
) -> None:
    """The cascade to the slices is loaded in the greenlet; their origin is the pizza."""

    async def main() -> tuple[Pizza, list[Slice]]:
        async with AsyncSession(async_engine, expire_on_commit=False) as session:
            session.add(Pizza(name="margherita", slices=[Slice(), Slice()]))
            await session.commit()
        async with AsyncSession(async_engine, expire_on_commit=False) as session:
            pizza = (await session.scalars(select(Pizza))).one()
            await session.delete(pizza)
            slices = list(pizza.slices)
            del sent[:]
            await session.commit()
            return pizza, slices

    pizza, slices = asyncio.run(main())

    assert len(sent) == 6
    assert {(s.signal, s.sender, s.kwargs["instance"]) for s in sent} == {
        (name, sender, instance)
        for name in ("pre_delete", "post_delete")
        for sender, instance in [(Pizza, pizza), (Slice, slices[0]), (Slice, slices[1])]
    }
    assert {(s.kwargs["origin"], s.kwargs["using"]) for s in sent} == {(pizza, "default")}


def test_a_delete_statement_in_an_async_session_sends_delete_signals_per_row(
    async_engine: AsyncEngine, sent: Recorder
) -> None:
    """The matching rows are loaded in the greenlet, then each is reported with the statement."""
    statement = delete(Topping).where(Topping.name != "olives")

    async def main() -> list[str]:
        async with AsyncSession(async_engine) as session:
            session.add_all([Topping(name=name) for name in ("basil", "olives", "capers")])
            await session.commit()
        del sent[:]
        async with AsyncSession(async_engine) as session:
            await session.execute(statement)
            await session.commit()
            return list(await session.scalars(select(Topping.name)))

    assert asyncio.run(main()) == ["olives"]

    deletes = sent.named("pre_delete", "post_delete")
    assert [s.signal for s in deletes] == ["pre_delete", "pre_delete", "post_delete", "post_delete"]
    assert {(s.sender, s.kwargs["origin"], s.kwargs["using"]) for s in deletes} == {
        (Topping, statement, "default")
    }


def test_m2m_changed_in_an_async_session(async_engine: AsyncEngine, sent: Recorder) -> None:
    """New pizza and toppings: pre_add after their INSERTs, with real keys; then a removal."""

    async def main() -> tuple[Pizza, int, int]:
        async with AsyncSession(async_engine, expire_on_commit=False) as session:
            basil = Topping(name="basil")
            pizza = Pizza(name="margherita", toppings=[basil])
            session.add(pizza)
            await session.commit()
            olives = Topping(name="olives")
            pizza.toppings = [olives]
            await session.commit()
            return pizza, basil.id, olives.id

    pizza, basil_id, olives_id = asyncio.run(main())

    assert [(s.kwargs["action"], s.kwargs["pk_set"]) for s in sent.named("m2m_changed")] == [
        ("pre_add", {basil_id}),
        ("post_add", {basil_id}),
        ("pre_remove", {basil_id}),
        ("pre_add", {olives_id}),
        ("post_remove", {basil_id}),
        ("post_add", {olives_id}),
    ]
    for signal in sent.named("m2m_changed"):
        assert signal.sender is pizza_toppings
        assert signal.kwargs["instance"] is pizza
        assert signal.kwargs["reverse"] is False
        assert signal.kwargs["model"] is Topping
        assert signal.kwargs["using"] == "default"


def test_an_async_receiver_is_awaited_inside_the_flush(async_engine: AsyncEngine) -> None:
    """An ``async def`` post_save receiver has run to its end before commit() returns."""
    events: list[str] = []

    async def notify(sender: Any, instance: Pizza, created: bool, **kwargs: Any) -> None:
        events.append(f"receiver started, created={created}")
        await asyncio.sleep(0.01)
        events.append("receiver done")

    async def main() -> None:
        async with AsyncSession(async_engine) as session:
            session.add(Pizza(name="margherita"))
            events.append("commit")
            await session.commit()
            events.append("commit returned")

    with connected(post_save, notify, sender=Pizza):
        asyncio.run(main())

    assert events == [
        "commit",
        "receiver started, created=True",
        "receiver done",
        "commit returned",
    ]


def test_sync_receivers_run_inline_on_the_loop_thread_before_async_ones(
    async_engine: AsyncEngine,
) -> None:
    """A sync receiver is called directly by the flush (not in a worker thread), then
    the async receiver runs on the session's own event loop."""
    calls: list[tuple[str, int, asyncio.AbstractEventLoop | None]] = []

    def sync_receiver(sender: Any, **kwargs: Any) -> None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        calls.append(("sync", threading.get_ident(), loop))

    async def async_receiver(sender: Any, **kwargs: Any) -> None:
        calls.append(("async", threading.get_ident(), asyncio.get_running_loop()))

    async def main() -> asyncio.AbstractEventLoop:
        async with AsyncSession(async_engine) as session:
            session.add(Pizza(name="margherita"))
            await session.commit()
        return asyncio.get_running_loop()

    with (
        connected(post_save, async_receiver, sender=Pizza),
        connected(post_save, sync_receiver, sender=Pizza),
    ):
        loop = asyncio.run(main())

    here = threading.get_ident()
    assert calls == [("sync", here, loop), ("async", here, loop)]


def test_an_async_pre_save_receiver_can_change_what_is_written(
    async_engine: AsyncEngine,
) -> None:
    """pre_save's async receiver is awaited before the INSERT: what it sets is saved."""

    async def look_up_price(sender: Any, instance: Pizza, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        instance.price = 14

    async def main() -> int:
        async with AsyncSession(async_engine) as session:
            pizza = Pizza(name="diavola")
            session.add(pizza)
            await session.commit()
        async with AsyncSession(async_engine) as session:
            return (await session.scalars(select(Pizza.price))).one()

    with connected(pre_save, look_up_price, sender=Pizza):
        assert asyncio.run(main()) == 14


def test_an_async_m2m_receiver_is_awaited_too(async_engine: AsyncEngine) -> None:
    """Every model signal awaits its async receivers in the flush, m2m_changed included."""
    seen: list[tuple[str, set[int]]] = []

    async def on_change(sender: Any, action: str, pk_set: set[int], **kwargs: Any) -> None:
        await asyncio.sleep(0)
        seen.append((action, pk_set))

    async def main() -> int:
        async with AsyncSession(async_engine, expire_on_commit=False) as session:
            session.add_all([Pizza(name="margherita"), Topping(name="basil")])
            await session.commit()
            pizza = (
                await session.scalars(select(Pizza).options(selectinload(Pizza.toppings)))
            ).one()
            basil = (await session.scalars(select(Topping))).one()
            pizza.toppings.append(basil)
            await session.commit()
            return basil.id

    with connected(m2m_changed, on_change, sender=pizza_toppings):
        basil_id = asyncio.run(main())

    assert seen == [("pre_add", {basil_id}), ("post_add", {basil_id})]


def test_an_async_receiver_that_raises_fails_the_flush(async_engine: AsyncEngine) -> None:
    """As with a sync receiver, the exception propagates and the transaction rolls back."""

    async def refuse(sender: Any, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("no pineapple")

    async def main() -> list[str]:
        async with AsyncSession(async_engine) as session:
            session.add(Pizza(name="hawaii"))
            with pytest.raises(RuntimeError, match="no pineapple"):
                await session.commit()
            await session.rollback()
            return list(await session.scalars(select(Pizza.name)))

    with connected(post_save, refuse, sender=Pizza):
        assert asyncio.run(main()) == []


def test_an_async_receiver_runs_in_a_sync_session_too(engine: Engine) -> None:
    """Outside an event loop, a plain Session's flush runs async receivers to their end."""
    events: list[str] = []

    async def notify(sender: Any, instance: Pizza, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        events.append(f"saved {instance.name}")

    with connected(post_save, notify, sender=Pizza):
        with Session(engine) as session:
            session.add(Pizza(name="margherita"))
            session.commit()
            events.append("commit returned")

    assert events == ["saved margherita", "commit returned"]
