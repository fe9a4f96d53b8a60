"""Django's model signals from SQLAlchemy sessions: init, save and delete.

Each test runs on SQLite and on PostgreSQL (the ``engine`` fixture); the
``sent`` fixture records every model signal, in order, with its sender and
keyword arguments. Where SQLAlchemy and Django differ, the test says what
tocsin does and why.
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Engine,
    ForeignKey,
    Integer,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, registry, relationship

from tocsin import Signal
from tocsin.contrib.sqlalchemy import (
    default_using,
    disable_model_signals,
    enable_model_signals,
    model_signals_enabled,
)
from tocsin.signals import (
    post_delete,
    post_init,
    post_save,
    pre_delete,
    pre_init,
    pre_save,
)

from .conftest import Database, Recorder
from .models import Base, Pizza, Slice, Todo, Topping, UrgentTodo


@contextmanager
def receiving(signal: Signal, sender: object = None) -> Iterator[list[dict[str, Any]]]:
    """Connect a receiver for the block; yields the ``{"sender": ..., **kwargs}`` it got."""
    calls: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        kwargs.pop("signal")
        calls.append({"sender": sender, **kwargs})

    signal.connect(receiver, sender=sender, weak=False)
    try:
        yield calls
    finally:
        signal.disconnect(receiver, sender=sender)


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL the engine runs during the block, upper-cased."""
    seen: list[str] = []

    def before_cursor_execute(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        seen.append(statement.strip().upper())

    event.listen(engine, "before_cursor_execute", before_cursor_execute)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before_cursor_execute)


def saved_pizza(engine: Engine, name: str = "margherita", slices: int = 0) -> int:
    """Commit a pizza (with *slices* slices) and return its id; nothing recorded yet."""
    with Session(engine) as session:
        pizza = Pizza(name=name, slices=[Slice() for _ in range(slices)])
        session.add(pizza)
        session.commit()
        return pizza.id


# -- pre_init / post_init ---------------------------------------------------------


def test_constructing_an_instance_sends_pre_init_then_post_init(sent: Recorder) -> None:
    """pre_init gets __init__'s args and kwargs, post_init the finished instance."""
    pizza = Pizza(name="margherita", price=8)

    assert sent.names() == ["pre_init", "post_init"]
    pre, post = sent
    assert pre.sender is Pizza
    assert pre.kwargs == {
        "args": (),
        "kwargs": {"name": "margherita", "price": 8},
        "instance": pizza,
    }
    assert post.sender is Pizza
    assert post.kwargs == {"instance": pizza}


def test_post_init_sees_the_attributes_init_set() -> None:
    """post_init is sent after __init__ has run; pre_init before it."""
    names_seen: dict[str, Any] = {}

    def on_pre_init(sender: Any, instance: Pizza, **kwargs: Any) -> None:
        names_seen["pre_init"] = instance.__dict__.get("name")

    def on_post_init(sender: Any, instance: Pizza, **kwargs: Any) -> None:
        names_seen["post_init"] = instance.name

    pre_init.connect(on_pre_init, sender=Pizza)
    post_init.connect(on_post_init, sender=Pizza)
    try:
        Pizza(name="marinara")
    finally:
        pre_init.disconnect(on_pre_init, sender=Pizza)
        post_init.disconnect(on_post_init, sender=Pizza)
    assert names_seen == {"pre_init": None, "post_init": "marinara"}


def test_a_subclass_instance_sends_init_signals_once_with_its_own_class(
    sent: Recorder,
) -> None:
    """UrgentTodo inherits Todo's __init__, yet each signal is sent once, by UrgentTodo."""
    todo = UrgentTodo(text="call the plumber")

    assert [(s.signal, s.sender) for s in sent] == [
        ("pre_init", UrgentTodo),
        ("post_init", UrgentTodo),
    ]
    assert sent[1].kwargs == {"instance": todo}


def test_loading_from_the_database_sends_only_post_init(engine: Engine, sent: Recorder) -> None:
    """SQLAlchemy does not call __init__ for loaded rows, so there is no pre_init."""
    pizza_id = saved_pizza(engine)
    del sent[:]

    with Session(engine) as session:
        pizza = session.get(Pizza, pizza_id)

        assert sent.names() == ["post_init"]
        assert sent[0].sender is Pizza
        assert sent[0].kwargs == {"instance": pizza}


def test_a_loaded_subclass_row_sends_post_init_with_its_own_class(
    engine: Engine, sent: Recorder
) -> None:
    """Querying the base class yields an UrgentTodo for an urgent row: that is the sender."""
    with Session(engine) as session:
        session.add_all([Todo(text="water plants"), UrgentTodo(text="call the plumber")])
        session.commit()
    del sent[:]

    with Session(engine) as session:
        todos = session.scalars(select(Todo).order_by(Todo.id)).all()

        assert [(s.signal, s.sender, s.kwargs["instance"]) for s in sent] == [
            ("post_init", Todo, todos[0]),
            ("post_init", UrgentTodo, todos[1]),
        ]


def test_no_post_init_when_init_raises(sent: Recorder) -> None:
    """pre_init is sent before __init__ runs; an __init__ that raises sends no post_init."""
    with pytest.raises(TypeError, match="bogus"):
        Pizza(name="margherita", bogus=1)

    assert sent.names() == ["pre_init"]
    assert sent[0].kwargs["kwargs"] == {"name": "margherita", "bogus": 1}


# -- pre_save / post_save ---------------------------------------------------------


def test_an_insert_sends_pre_save_and_post_save_with_created_true(
    engine: Engine, sent: Recorder
) -> None:
    """Django's arguments for a new row: created=True, update_fields=None, raw=False."""
    with Session(engine) as session:
        pizza = Pizza(name="margherita")
        session.add(pizza)
        del sent[:]
        session.commit()

    assert sent.names() == ["pre_save", "post_save"]
    pre, post = sent
    assert pre.sender is Pizza
    assert pre.kwargs == {
        "instance": pizza,
        "raw": False,
        "using": "default",
        "update_fields": None,
    }
    assert post.sender is Pizza
    assert post.kwargs == {
        "instance": pizza,
        "created": True,
        "raw": False,
        "using": "default",
        "update_fields": None,
    }


def test_pre_save_comes_before_the_insert_and_post_save_after_it(engine: Engine) -> None:
    """pre_save sees no primary key yet; post_save sees the key the INSERT gave."""
    ids: list[tuple[str, Any]] = []

    def on_pre_save(sender: Any, instance: Pizza, **kwargs: Any) -> None:
        ids.append(("pre_save", instance.id))

    def on_post_save(sender: Any, instance: Pizza, **kwargs: Any) -> None:
        ids.append(("post_save", instance.id))

    pre_save.connect(on_pre_save, sender=Pizza)
    post_save.connect(on_post_save, sender=Pizza)
    try:
        with Session(engine) as session:
            pizza = Pizza(name="margherita")
            session.add(pizza)
            session.commit()
            assert ids == [("pre_save", None), ("post_save", pizza.id)]
            assert isinstance(pizza.id, int)
    finally:
        pre_save.disconnect(on_pre_save, sender=Pizza)
        post_save.disconnect(on_post_save, sender=Pizza)


def test_every_instance_gets_pre_save_before_its_post_save(engine: Engine, sent: Recorder) -> None:
    """Saving several instances in one flush: each one's pre_save precedes its post_save.

    SQLAlchemy batches the INSERTs of a class, so all pre_saves may come first.
    """
    with Session(engine) as session:
        pizzas = [Pizza(name=name) for name in ("margherita", "marinara", "diavola")]
        session.add_all(pizzas)
        del sent[:]
        session.commit()

    saves = sent.named("pre_save", "post_save")
    assert len(saves) == 6
    for pizza in pizzas:
        mine = [s.signal for s in saves if s.kwargs["instance"] is pizza]
        assert mine == ["pre_save", "post_save"]


def test_an_update_sends_save_signals_with_the_changed_columns(
    engine: Engine, sent: Recorder
) -> None:
    """created=False, and update_fields is the frozenset of the columns written."""
    pizza_id = saved_pizza(engine)
    with Session(engine) as session:
        pizza = session.get(Pizza, pizza_id)
        assert pizza is not None
        pizza.name = "marinara"
        pizza.price = 9
        del sent[:]
        session.commit()

    assert sent.names() == ["pre_save", "post_save"]
    pre, post = sent
    assert pre.sender is Pizza
    assert pre.kwargs == {
        "instance": pizza,
        "raw": False,
        "using": "default",
        "update_fields": frozenset({"name", "price"}),
    }
    assert post.sender is Pizza
    assert post.kwargs == {
        "instance": pizza,
        "created": False,
        "raw": False,
        "using": "default",
        "update_fields": frozenset({"name", "price"}),
    }


def test_update_fields_names_only_the_columns_whose_value_changed(
    engine: Engine, sent: Recorder
) -> None:
    """A column set to the value it already had is not written, so not in update_fields."""
    pizza_id = saved_pizza(engine)
    with Session(engine) as session:
        pizza = session.get(Pizza, pizza_id)
        assert pizza is not None
        pizza.price = pizza.price
        pizza.name = "marinara"
        del sent[:]
        session.commit()

    assert [s.kwargs["update_fields"] for s in sent.named("pre_save", "post_save")] == [
        frozenset({"name"}),
        frozenset({"name"}),
    ]


def test_moving_a_child_to_another_parent_reports_the_relationship(
    engine: Engine, sent: Recorder
) -> None:
    """A changed foreign key is reported under Django's field name, the relationship's.

    Django's ``update_fields`` names a ForeignKey ``pizza``, not its column
    ``pizza_id``; so does tocsin, whether the relationship or the column was set.
    """
    first = saved_pizza(engine, "margherita", slices=1)
    second = saved_pizza(engine, "marinara")
    with Session(engine) as session:
        piece = session.scalars(select(Slice).where(Slice.pizza_id == first)).one()
        piece.pizza = session.get_one(Pizza, second)
        del sent[:]
        session.commit()
        piece.pizza_id = first
        session.commit()

    saves = [(s.signal, s.sender, s.kwargs["update_fields"]) for s in sent.named("post_save")]
    assert saves == [("post_save", Slice, frozenset({"pizza"}))] * 2


def test_no_save_signals_when_a_value_is_set_to_itself(engine: Engine, sent: Recorder) -> None:
    """The instance is dirty for SQLAlchemy, but no UPDATE is issued: nothing is saved."""
    pizza_id = saved_pizza(engine)
    with Session(engine) as session, statements(engine) as sql:
        pizza = session.get(Pizza, pizza_id)
        assert pizza is not None
        pizza.name = pizza.name
        assert pizza in session.dirty
        del sent[:]
        session.commit()

    assert sent.named("pre_save", "post_save") == []
    assert not any(s.startswith("UPDATE") for s in sql)


def test_no_save_signals_when_only_a_collection_changed(engine: Engine, sent: Recorder) -> None:
    """Adding a topping writes pizza_toppings, not the pizza's row: the pizza is not saved."""
    pizza_id = saved_pizza(engine)
    with Session(engine) as session:
        session.add(Topping(name="basil"))
        session.commit()
    with Session(engine) as session:
        pizza = session.get_one(Pizza, pizza_id)
        topping = session.scalars(select(Topping)).one()
        pizza.toppings.append(topping)
        assert pizza in session.dirty
        del sent[:]
        session.commit()

    assert sent.named("pre_save", "post_save") == []
    assert [s.signal for s in sent.named("m2m_changed")] == ["m2m_changed", "m2m_changed"]


@pytest.mark.parametrize("price_set_to_itself", [False, True], ids=["name", "name-and-price"])
def test_what_a_pre_save_receiver_changes_is_written_and_reported(
    engine: Engine, price_set_to_itself: bool
) -> None:
    """As in Django, pre_save may still change the instance; post_save lists that column
    too, also when it had been set to its own value first (set, but not written)."""
    pizza_id = saved_pizza(engine)

    def raise_the_price(sender: Any, instance: Pizza, **kwargs: Any) -> None:
        instance.price = 12

    pre_save.connect(raise_the_price, sender=Pizza)
    try:
        with receiving(pre_save, Pizza) as pres, receiving(post_save, Pizza) as posts:
            with Session(engine) as session:
                pizza = session.get_one(Pizza, pizza_id)
                if price_set_to_itself:
                    pizza.price = pizza.price
                pizza.name = "marinara"
                session.commit()
    finally:
        pre_save.disconnect(raise_the_price, sender=Pizza)

    assert [c["update_fields"] for c in pres] == [frozenset({"name"})]
    assert [c["update_fields"] for c in posts] == [frozenset({"name", "price"})]
    with Session(engine) as session:
        assert session.get_one(Pizza, pizza_id).price == 12


def test_what_a_pre_save_receiver_sets_on_a_new_instance_is_inserted(engine: Engine) -> None:
    """An attribute set by pre_save on an insert is part of the INSERT."""

    def price_by_name(sender: Any, instance: Pizza, **kwargs: Any) -> None:
        instance.price = len(instance.name)

    pre_save.connect(price_by_name, sender=Pizza)
    try:
        pizza_id = saved_pizza(engine, "quattro stagioni")
    finally:
        pre_save.disconnect(price_by_name, sender=Pizza)

    with Session(engine) as session:
        assert session.get_one(Pizza, pizza_id).price == len("quattro stagioni")


def test_using_is_the_engines_logging_name(database: Database, sent: Recorder) -> None:
    """An engine created with logging_name="replica" is reported as using="replica"."""
    engine = create_engine(database.url, connect_args=database.connect_args, logging_name="replica")
    try:
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            pizza = Pizza(name="margherita", toppings=[Topping(name="basil")])
            session.add(pizza)
            session.commit()
            pizza.name = "marinara"
            session.commit()
            session.delete(pizza)
            session.commit()
    finally:
        engine.dispose()

    reported = sent.named("pre_save", "post_save", "pre_delete", "post_delete", "m2m_changed")
    assert len(reported) == 10  # 2 inserts, 1 update, 1 delete: 2 each; pre_add, post_add
    assert {s.kwargs["using"] for s in reported} == {"replica"}


def test_using_can_be_computed_by_a_function_given_to_enable(
    engine: Engine, sent: Recorder
) -> None:
    """enable_model_signals(Base, using=fn): every signal's ``using`` is fn(engine)."""
    engines: list[Engine] = []

    def using(bound: Engine) -> str:
        engines.append(bound)
        return f"{bound.dialect.name}-primary"

    expected = f"{engine.dialect.name}-primary"
    assert disable_model_signals(Base) is True
    enable_model_signals(Base, using=using)
    try:
        with Session(engine) as session:
            pizza = Pizza(name="margherita", toppings=[Topping(name="basil")])
            session.add(pizza)
            session.commit()
            pizza.name = "marinara"
            session.commit()
            session.delete(pizza)
            session.commit()
    finally:
        disable_model_signals(Base)
        enable_model_signals(Base)

    reported = sent.named("pre_save", "post_save", "pre_delete", "post_delete", "m2m_changed")
    assert len(reported) == 10
    assert {s.kwargs["using"] for s in reported} == {expected}
    assert set(engines) == {engine}


def test_receivers_connected_and_disconnected_mid_session_count_from_the_next_row(
    engine: Engine,
) -> None:
    """The listeners ask the signals on every row: a receiver connected while a
    session is open hears its next insert and update, and nothing once disconnected."""
    with Session(engine, expire_on_commit=False) as session:
        todo = Todo(text="first")
        session.add(todo)
        session.commit()  # nobody listens yet
        with receiving(pre_save, Todo) as pre, receiving(post_save, Todo) as post:
            todo.done = True
            session.add(Todo(text="second"))
            session.commit()
        todo.text = "third"
        session.commit()  # nobody listens any more

    assert [(c["instance"] is todo, c["update_fields"]) for c in pre] == [
        (False, None),
        (True, {"done"}),
    ]
    assert [(c["created"], c["update_fields"]) for c in post] == [(True, None), (False, {"done"})]


def test_threads_flushing_on_two_engines_each_get_their_own_using(tmp_path: Any) -> None:
    """The name of the last connection is remembered for the next row, one
    (connection, name) pair at a time: threads flushing at once on engines with
    other names never get each other's."""
    engines = {
        name: create_engine(f"sqlite:///{tmp_path / name}.db", logging_name=name)
        for name in ("east", "west")
    }
    wrong: list[tuple[str, str]] = []

    def check(sender: Any, instance: Todo, using: str, **kwargs: Any) -> None:
        if instance.text != using:
            wrong.append((instance.text, using))

    def flush_many(name: str) -> None:
        with Session(engines[name]) as session:
            for _ in range(20):
                session.add_all([Todo(text=name) for _ in range(50)])
                session.flush()
            session.commit()

    try:
        for engine in engines.values():
            Base.metadata.create_all(engine)
        pre_save.connect(check, sender=Todo, weak=False)
        post_save.connect(check, sender=Todo, weak=False)
        threads = [threading.Thread(target=flush_many, args=(name,)) for name in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        pre_save.disconnect(check, sender=Todo)
        post_save.disconnect(check, sender=Todo)
        for engine in engines.values():
            engine.dispose()
    assert wrong == []


def test_a_foreign_key_a_later_backref_writes_is_named_after_it(
    engine: Engine, sent: Recorder
) -> None:
    """update_fields names a column after the many-to-one relationship that
    writes it, also when a class mapped later adds that relationship (a
    backref) to a class that was saved before."""

    class ShelfBase(DeclarativeBase):
        pass

    shelves = Table("shelf", ShelfBase.metadata, Column("id", Integer, primary_key=True))

    class Book(ShelfBase):
        __tablename__ = "book"

        id: Mapped[int] = mapped_column(primary_key=True)
        shelf_id: Mapped[int | None] = mapped_column(ForeignKey("shelf.id"))

    ShelfBase.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(shelves), [{"id": 1}, {"id": 2}])
    enable_model_signals(ShelfBase)
    try:
        with Session(engine) as session:
            book = Book()
            session.add(book)
            session.flush()
            book.shelf_id = 1
            session.commit()  # no relationship writes shelf_id yet

            class Shelf(ShelfBase):
                __table__ = shelves
                books: Mapped[list[Book]] = relationship(backref="shelf")

            ShelfBase.registry.configure()  # gives Book its "shelf"
            book.shelf_id = 2
            session.commit()
    finally:
        disable_model_signals(ShelfBase)

    updates = [s.kwargs["update_fields"] for s in sent.named("pre_save") if s.sender is Book]
    assert updates == [None, {"shelf_id"}, {"shelf"}]


@pytest.mark.parametrize("dispose_first", [False, True], ids=["disable", "dispose-then-disable"])
def test_disabled_classes_are_garbage_collected(dispose_first: bool) -> None:
    """The integration keeps nothing of a class once its registry is disabled,
    also when ``registry.dispose()`` took the class out of the registry first."""
    engine = create_engine("sqlite://")

    class GoneBase(DeclarativeBase):
        pass

    class Gone(GoneBase):
        __tablename__ = "gone"

        id: Mapped[int] = mapped_column(primary_key=True)
        value: Mapped[int]

    enable_model_signals(GoneBase)
    GoneBase.metadata.create_all(engine)
    with Session(engine) as session:
        gone = Gone(value=1)
        session.add(gone)
        session.commit()
        gone.value = 2
        session.commit()
    mapper = weakref.ref(Gone.__mapper__)
    if dispose_first:
        GoneBase.registry.dispose()
    assert disable_model_signals(GoneBase) is True
    GoneBase.registry.dispose()
    engine.dispose()
    del Gone, GoneBase, gone, session, engine
    gc.collect()
    assert mapper() is None


# -- sender: the instance's own class ----------------------------------------------


def test_a_receiver_for_the_base_class_does_not_get_subclass_saves(engine: Engine) -> None:
    """As with Django's proxy models, the sender is exactly the instance's class."""
    with receiving(post_save, Todo) as todos, receiving(post_save, UrgentTodo) as urgent:
        with Session(engine) as session:
            plain = Todo(text="water plants")
            pressing = UrgentTodo(text="call the plumber")
            session.add_all([plain, pressing])
            session.commit()

    assert [(c["sender"], c["instance"]) for c in todos] == [(Todo, plain)]
    assert [(c["sender"], c["instance"]) for c in urgent] == [(UrgentTodo, pressing)]


def test_a_subclass_update_and_delete_are_sent_by_the_subclass(
    engine: Engine, sent: Recorder
) -> None:
    """pre_save, post_save, pre_delete and post_delete of an UrgentTodo all have it as sender."""
    with Session(engine) as session:
        todo = UrgentTodo(text="call the plumber")
        session.add(todo)
        session.commit()
        todo.done = True
        session.commit()
        session.delete(todo)
        session.commit()

    signals = sent.named("pre_save", "post_save", "pre_delete", "post_delete")
    assert [s.signal for s in signals] == [
        "pre_save",
        "post_save",
        "pre_save",
        "post_save",
        "pre_delete",
        "post_delete",
    ]
    assert {s.sender for s in signals} == {UrgentTodo}
    assert signals[2].kwargs["update_fields"] == frozenset({"done"})


# -- pre_delete / post_delete ------------------------------------------------------


def test_session_delete_sends_pre_delete_and_post_delete(engine: Engine, sent: Recorder) -> None:
    """origin is the instance itself when it was deleted on its own."""
    pizza_id = saved_pizza(engine)
    with Session(engine) as session:
        pizza = session.get_one(Pizza, pizza_id)
        session.delete(pizza)
        del sent[:]
        session.commit()

    assert sent.names() == ["pre_delete", "post_delete"]
    for signal in sent:
        assert signal.sender is Pizza
        assert signal.kwargs == {"instance": pizza, "using": "default", "origin": pizza}


def test_pre_delete_comes_before_the_row_goes_and_post_delete_after(engine: Engine) -> None:
    """pre_delete can still find the row (on the flush's connection); post_delete cannot."""
    pizza_id = saved_pizza(engine)
    found: dict[str, int] = {}

    def count_rows(session: Session, signal_name: str) -> None:
        rows = session.scalar(select(func.count()).select_from(Pizza).where(Pizza.id == pizza_id))
        found[signal_name] = rows or 0

    with Session(engine) as session:

        def on_pre_delete(sender: Any, **kwargs: Any) -> None:
            with session.no_autoflush:
                count_rows(session, "pre_delete")

        def on_post_delete(sender: Any, **kwargs: Any) -> None:
            with session.no_autoflush:
                count_rows(session, "post_delete")

        pre_delete.connect(on_pre_delete, sender=Pizza)
        post_delete.connect(on_post_delete, sender=Pizza)
        try:
            session.delete(session.get_one(Pizza, pizza_id))
            session.commit()
        finally:
            pre_delete.disconnect(on_pre_delete, sender=Pizza)
            post_delete.disconnect(on_post_delete, sender=Pizza)

    assert found == {"pre_delete": 1, "post_delete": 0}


def test_a_cascaded_delete_has_the_explicitly_deleted_instance_as_origin(
    engine: Engine, sent: Recorder
) -> None:
    """Deleting a pizza deletes its slices (cascade): their origin is the pizza."""
    pizza_id = saved_pizza(engine, slices=2)
    with Session(engine) as session:
        pizza = session.get_one(Pizza, pizza_id)
        session.delete(pizza)
        slices = list(pizza.slices)
        del sent[:]
        session.commit()

    deletes = sent.named("pre_delete", "post_delete")
    assert len(deletes) == 6
    assert {(s.signal, s.sender, s.kwargs["instance"]) for s in deletes} == {
        (name, sender, instance)
        for name in ("pre_delete", "post_delete")
        for sender, instance in [(Pizza, pizza), (Slice, slices[0]), (Slice, slices[1])]
    }
    assert all(s.kwargs["origin"] is pizza for s in deletes)
    for piece in slices:
        mine = [s.signal for s in deletes if s.kwargs["instance"] is piece]
        assert mine == ["pre_delete", "post_delete"]


def test_the_origin_of_each_cascade_is_its_own_explicit_delete(
    engine: Engine, sent: Recorder
) -> None:
    """Two pizzas deleted in one flush: each slice's origin is the pizza it belonged to."""
    first = saved_pizza(engine, "margherita", slices=1)
    second = saved_pizza(engine, "marinara", slices=1)
    with Session(engine) as session:
        pizzas = [session.get_one(Pizza, first), session.get_one(Pizza, second)]
        with session.no_autoflush:  # loading the second one's slices would flush the first
            for pizza in pizzas:
                session.delete(pizza)
        del sent[:]
        session.commit()

    slice_origins = {
        s.kwargs["instance"].pizza_id: s.kwargs["origin"]
        for s in sent.named("pre_delete")
        if s.sender is Slice
    }
    assert slice_origins == {first: pizzas[0], second: pizzas[1]}
    assert [s.kwargs["origin"] for s in sent.named("pre_delete") if s.sender is Pizza] == pizzas


def test_origins_are_worked_out_again_after_a_failed_flush(engine: Engine, sent: Recorder) -> None:
    """A flush that fails leaves nothing behind: the next one's cascades get the right origin."""
    first = saved_pizza(engine, "margherita", slices=1)
    second = saved_pizza(engine, "marinara", slices=1)
    failures = [RuntimeError("the oven is off")]

    def refuse_once(sender: Any, **kwargs: Any) -> None:
        if failures:
            raise failures.pop()

    pre_delete.connect(refuse_once, sender=Pizza)
    try:
        with Session(engine) as session:
            session.delete(session.get_one(Pizza, first))
            with pytest.raises(RuntimeError, match="oven"):
                session.flush()
            session.rollback()
            pizza = session.get_one(Pizza, second)
            session.delete(pizza)
            del sent[:]
            session.commit()
    finally:
        pre_delete.disconnect(refuse_once, sender=Pizza)

    origins = [(s.sender, s.kwargs["origin"]) for s in sent.named("pre_delete")]
    assert origins == [(Slice, pizza), (Pizza, pizza)]


def test_every_pre_delete_comes_before_the_flush_deletes_anything(engine: Engine) -> None:
    """Cascades, orphans and many-to-many rows included, as Django's collector does."""
    doomed = saved_pizza(engine, "margherita", slices=2)
    other = saved_pizza(engine, "marinara", slices=1)
    with Session(engine) as session:
        pizza = session.get_one(Pizza, doomed)
        pizza.toppings.append(Topping(name="basil"))
        session.commit()

    def note(sender: Any, signal: Signal, **kwargs: Any) -> None:
        log.append(f"{'PRE' if signal is pre_delete else 'POST'}_DELETE {sender.__name__}")

    pre_delete.connect(note, weak=False)
    post_delete.connect(note, weak=False)
    try:
        with Session(engine) as session, statements(engine) as log:
            with session.no_autoflush:
                keep = session.get_one(Pizza, other)
                keep.slices.clear()  # an orphan
                session.delete(session.get_one(Pizza, doomed))
            del log[:]
            session.flush()
    finally:
        pre_delete.disconnect(note)
        post_delete.disconnect(note)

    signals = [line for line in log if line.endswith(("Slice", "Pizza"))]
    assert signals == [
        *(["PRE_DELETE Slice"] * 3 + ["PRE_DELETE Pizza"]),
        *(["POST_DELETE Slice"] * 3 + ["POST_DELETE Pizza"]),
    ]
    writes = [i for i, line in enumerate(log) if line.startswith(("DELETE", "UPDATE", "INSERT"))]
    assert len(writes) == 3  # the pizza's topping, its slices and the orphan, the pizza
    assert log.index("PRE_DELETE Pizza") < writes[0]


def test_an_object_a_pre_delete_receiver_deletes_is_sent_around_its_delete(
    engine: Engine, sent: Recorder
) -> None:
    """The flush did not plan it: its pre_delete comes when the flush reaches it."""
    first, second = saved_pizza(engine, "margherita"), saved_pizza(engine, "marinara")
    with Session(engine) as session:

        def delete_the_other(sender: Any, instance: Pizza, **kwargs: Any) -> None:
            if instance.id == first:
                session.delete(session.get_one(Pizza, second))

        pre_delete.connect(delete_the_other, sender=Pizza)
        try:
            session.delete(session.get_one(Pizza, first))
            del sent[:]
            session.commit()
        finally:
            pre_delete.disconnect(delete_the_other, sender=Pizza)

    deletes = [(s.signal, s.kwargs["instance"].id) for s in sent.named("pre_delete", "post_delete")]
    assert deletes == [
        ("pre_delete", first),
        ("pre_delete", second),
        ("post_delete", first),
        ("post_delete", second),
    ]


def test_an_object_replaced_by_a_new_one_with_its_key_is_deleted(
    engine: Engine, sent: Recorder
) -> None:
    """SQLAlchemy turns its DELETE and the INSERT into an UPDATE: it still gets post_delete."""
    pizza_id = saved_pizza(engine, "margherita")
    with Session(engine) as session:
        old = session.get_one(Pizza, pizza_id)
        session.delete(old)
        session.add(Pizza(id=pizza_id, name="marinara"))
        del sent[:]
        session.commit()

    deletes = [(s.signal, s.kwargs["instance"]) for s in sent.named("pre_delete", "post_delete")]
    assert deletes == [("pre_delete", old), ("post_delete", old)]


def test_a_delete_orphan_is_its_own_origin(engine: Engine, sent: Recorder) -> None:
    """A slice removed from pizza.slices is deleted (delete-orphan) because of itself."""
    pizza_id = saved_pizza(engine, slices=2)
    with Session(engine) as session:
        pizza = session.get_one(Pizza, pizza_id)
        orphan = pizza.slices[0]
        pizza.slices.remove(orphan)
        del sent[:]
        session.commit()

    assert sent.names() == ["pre_delete", "post_delete"]
    for signal in sent:
        assert signal.sender is Slice
        assert signal.kwargs == {"instance": orphan, "using": "default", "origin": orphan}


def test_a_delete_statement_sends_delete_signals_for_each_matching_row(
    engine: Engine, sent: Recorder
) -> None:
    """Like QuerySet.delete(): the rows are loaded, each gets pre/post_delete, origin=statement."""
    with Session(engine) as session:
        session.add_all([Topping(name=name) for name in ("basil", "olives", "capers")])
        session.commit()
    with Session(engine) as session:
        statement = delete(Topping).where(Topping.name.in_(["basil", "capers"]))
        del sent[:]
        session.execute(statement)
        session.commit()
        with session.no_autoflush:
            left = session.scalars(select(Topping.name)).all()

    assert left == ["olives"]
    assert len(sent.named("post_init")) == 2  # the two rows, loaded before the DELETE
    deletes = sent.named("pre_delete", "post_delete")
    assert [s.signal for s in deletes] == ["pre_delete", "pre_delete", "post_delete", "post_delete"]
    assert sorted(s.kwargs["instance"].name for s in deletes) == ["basil"] * 2 + ["capers"] * 2
    for signal in deletes:
        assert signal.sender is Topping
        assert signal.kwargs["origin"] is statement
        assert signal.kwargs["using"] == "default"
    # Django's collector order: pre_delete by ascending key, post_delete descending.
    ids = [s.kwargs["instance"].id for s in deletes]
    assert ids[:2] == sorted(ids[:2])
    assert ids[2:] == ids[1::-1]


def test_a_delete_statement_loads_nothing_when_nobody_listens(engine: Engine) -> None:
    """Without pre_delete/post_delete receivers the statement runs alone, as in Django."""
    with Session(engine) as session:
        session.add_all([Topping(name="basil"), Topping(name="olives")])
        session.commit()

    assert not pre_delete.has_listeners(Topping)
    assert not post_delete.has_listeners(Topping)
    with Session(engine) as session, statements(engine) as sql:
        session.execute(delete(Topping).where(Topping.name == "basil"))
        session.commit()
    assert [s.split()[0] for s in sql] == ["DELETE"]

    with receiving(post_delete, Topping) as calls:
        with Session(engine) as session, statements(engine) as sql:
            session.execute(delete(Topping).where(Topping.name == "olives"))
            session.commit()
    assert [s.split()[0] for s in sql] == ["SELECT", "DELETE"]
    assert [c["instance"].name for c in calls] == ["olives"]


def test_a_delete_statement_on_a_base_class_reports_each_row_with_its_class(
    engine: Engine,
) -> None:
    """delete(Todo) removes UrgentTodo rows too; a receiver for UrgentTodo gets just those."""
    with Session(engine) as session:
        session.add_all(
            [Todo(text="water plants", done=True), UrgentTodo(text="call plumber", done=True)]
        )
        session.commit()

    statement = delete(Todo).where(Todo.done.is_(True))
    with receiving(pre_delete, UrgentTodo) as urgent, receiving(pre_delete, Todo) as plain:
        with Session(engine) as session:
            session.execute(statement)
            session.commit()

    assert [(c["sender"], c["instance"].text, c["origin"]) for c in urgent] == [
        (UrgentTodo, "call plumber", statement)
    ]
    assert [(c["sender"], c["instance"].text, c["origin"]) for c in plain] == [
        (Todo, "water plants", statement)
    ]


def test_update_and_insert_statements_send_no_save_signals(engine: Engine, sent: Recorder) -> None:
    """A documented limitation, as with QuerySet.update() and bulk_create() in Django.

    ORM-enabled ``update()`` and ``insert()`` statements and
    ``Session.bulk_insert_mappings()`` write rows without pre_save or post_save.
    """
    with Session(engine) as session:
        session.execute(insert(Pizza), [{"name": "margherita"}, {"name": "marinara"}])
        session.bulk_insert_mappings(Pizza, [{"name": "diavola"}])
        session.execute(update(Pizza).where(Pizza.name == "marinara").values(price=7))
        session.commit()
    with Session(engine) as session:
        rows = session.execute(select(Pizza.name, Pizza.price).order_by(Pizza.name)).all()

    assert [tuple(row) for row in rows] == [("diavola", 10), ("margherita", 10), ("marinara", 7)]
    assert sent == []


# -- enable / disable --------------------------------------------------------------


def test_enabling_twice_with_the_same_options_changes_nothing(
    engine: Engine, sent: Recorder
) -> None:
    """The second call is a no-op: signals are still sent once each."""
    enable_model_signals(Base)
    enable_model_signals(Base, using=default_using)
    enable_model_signals(Base.registry)

    with Session(engine) as session:
        session.add(Pizza(name="margherita"))
        session.commit()

    assert sent.names() == ["pre_init", "post_init", "pre_save", "post_save"]


def test_enabling_again_with_other_options_raises(engine: Engine) -> None:
    """Options cannot be changed silently: disable first."""
    with pytest.raises(ValueError, match=r"disable_model_signals\(\) first"):
        enable_model_signals(Base, using=lambda engine: "elsewhere")
    assert model_signals_enabled(Base)


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("Base", id="a string"),
        pytest.param(object, id="a class that maps nothing"),
        pytest.param(Base.metadata, id="a MetaData"),
        pytest.param(None, id="None"),
    ],
)
@pytest.mark.parametrize(
    "function", [enable_model_signals, disable_model_signals, model_signals_enabled]
)
def test_a_target_that_is_no_base_or_registry_is_refused(function: Any, target: Any) -> None:
    """The TypeError says what is expected, and what was given."""
    with pytest.raises(TypeError) as caught:
        function(target)
    message = str(caught.value)
    assert "declarative base" in message
    assert "sqlalchemy.orm.registry" in message
    assert repr(target) in message


def test_using_must_be_callable() -> None:
    """A name instead of a function is refused before anything is enabled."""
    registry_ = registry()
    with pytest.raises(TypeError, match="using must be a callable"):
        enable_model_signals(registry_, using="replica")  # type: ignore[arg-type]
    assert not model_signals_enabled(registry_)


def test_disable_stops_the_signals_and_says_whether_they_were_enabled(
    engine: Engine, sent: Recorder
) -> None:
    """disable_model_signals() returns True, then False; meanwhile nothing is sent."""
    pizza_id = saved_pizza(engine, slices=1)
    del sent[:]
    assert model_signals_enabled(Base)
    assert disable_model_signals(Base) is True
    try:
        assert not model_signals_enabled(Base)
        assert disable_model_signals(Base) is False
        with Session(engine) as session:
            pizza = session.get_one(Pizza, pizza_id)
            pizza.name = "marinara"
            pizza.toppings.append(Topping(name="basil"))
            session.add(Pizza(name="diavola"))
            session.commit()
            session.delete(pizza)
            session.execute(delete(Topping))
            session.commit()
    finally:
        enable_model_signals(Base)

    assert sent == []
    with Session(engine) as session:
        assert session.scalars(select(Pizza.name)).all() == ["diavola"]


def test_signals_come_back_when_enabled_again(engine: Engine, sent: Recorder) -> None:
    """After disable and enable, construction and saving send signals again, once each."""
    disable_model_signals(Base)
    enable_model_signals(Base)

    with Session(engine) as session:
        session.add(Pizza(name="margherita"))
        session.commit()

    assert sent.names() == ["pre_init", "post_init", "pre_save", "post_save"]


def test_classes_mapped_after_enable_send_signals(engine: Engine, sent: Recorder) -> None:
    """enable_model_signals(Base) covers classes its registry maps later."""

    class LateBase(DeclarativeBase):
        pass

    enable_model_signals(LateBase)
    try:

        class Note(LateBase):
            __tablename__ = "late_note"

            id: Mapped[int] = mapped_column(primary_key=True)
            body: Mapped[str]

        LateBase.metadata.create_all(engine)
        with Session(engine) as session:
            note = Note(body="remember the milk")
            session.add(note)
            session.commit()
            session.delete(note)
            session.commit()
    finally:
        assert disable_model_signals(LateBase) is True

    assert [(s.signal, s.sender) for s in sent] == [
        ("pre_init", Note),
        ("post_init", Note),
        ("pre_save", Note),
        ("post_save", Note),
        ("pre_delete", Note),
        ("post_delete", Note),
    ]
    assert model_signals_enabled(Base)


def test_a_class_with_its_own_init_sends_its_positional_args_once(sent: Recorder) -> None:
    """pre_init's args and kwargs are what the class's own __init__ received; calling
    the mapped parent's __init__ from it sends nothing more."""

    class RecipeBase(DeclarativeBase):
        pass

    enable_model_signals(RecipeBase)
    try:

        class Recipe(RecipeBase):
            __tablename__ = "recipe"

            id: Mapped[int] = mapped_column(primary_key=True)
            title: Mapped[str]
            serves: Mapped[int]

            def __init__(self, title: str, *, serves: int = 2) -> None:
                super().__init__(title=title.title(), serves=serves)

        class FamilyRecipe(Recipe):
            family: Mapped[str | None]

            def __init__(self, title: str, family: str) -> None:
                super().__init__(title, serves=6)
                self.family = family

        recipe = Recipe("carbonara", serves=4)
        family = FamilyRecipe("ragu", "Rossi")
    finally:
        disable_model_signals(RecipeBase)

    assert [(s.signal, s.sender, s.kwargs) for s in sent] == [
        ("pre_init", Recipe, {"args": ("carbonara",), "kwargs": {"serves": 4}, "instance": recipe}),
        ("post_init", Recipe, {"instance": recipe}),
        ("pre_init", FamilyRecipe, {"args": ("ragu", "Rossi"), "kwargs": {}, "instance": family}),
        ("post_init", FamilyRecipe, {"instance": family}),
    ]
    assert (family.title, family.serves, family.family) == ("Ragu", 6, "Rossi")


def test_a_registry_is_enabled_for_classes_it_mapped_before(engine: Engine, sent: Recorder) -> None:
    """A sqlalchemy.orm.registry is a target too; its existing mappers start sending."""
    notes = registry()

    @notes.mapped
    class Memo:
        __tablename__ = "memo"

        id: Mapped[int] = mapped_column(primary_key=True)
        body: Mapped[str]

    notes.metadata.create_all(engine)
    with Session(engine) as session:
        before = Memo()
        before.body = "before"
        session.add(before)
        session.commit()
    assert sent == []

    enable_model_signals(notes)
    try:
        assert model_signals_enabled(notes)
        with Session(engine) as session:
            memo = Memo()
            memo.body = "after"
            session.add(memo)
            session.commit()
    finally:
        disable_model_signals(notes)

    assert [(s.signal, s.sender) for s in sent] == [
        ("pre_init", Memo),
        ("post_init", Memo),
        ("pre_save", Memo),
        ("post_save", Memo),
    ]
    assert sent[0].kwargs == {"args": (), "kwargs": {}, "instance": memo}


def test_disabling_one_registry_leaves_the_others_sending(engine: Engine, sent: Recorder) -> None:
    """Each registry is enabled and disabled on its own."""
    others = registry()

    @others.mapped
    class Label:
        __tablename__ = "label"

        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str]

    enable_model_signals(others)
    assert disable_model_signals(others) is True
    others.metadata.create_all(engine)

    with Session(engine) as session:
        label = Label()
        label.text = "fragile"
        session.add_all([label, Pizza(name="margherita")])
        session.commit()

    assert {s.sender for s in sent} == {Pizza}


def test_a_mapped_class_is_refused_because_it_would_enable_its_whole_registry() -> None:
    """enable_model_signals(Pizza) would turn on every class Base maps: say so."""
    with pytest.raises(TypeError, match="Pizza is a mapped class; pass its declarative base"):
        enable_model_signals(Pizza)
