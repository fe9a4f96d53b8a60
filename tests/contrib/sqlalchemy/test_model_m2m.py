"""m2m_changed for relationships with a secondary table: Pizza.toppings / Topping.pizzas.

SQLAlchemy writes a collection change at the next flush, so the signals
follow the flush: pre_remove and pre_add before the pizza_toppings rows are
written, post_remove and post_add after. ``Pizza.toppings`` is the forward
side (``pizza_toppings``' first foreign key refers to ``pizza``), so a change
made there has ``reverse=False``; from ``Topping.pizzas`` it is ``reverse=True``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Column, Engine, ForeignKey, Table, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from tocsin.contrib.sqlalchemy import disable_model_signals, enable_model_signals
from tocsin.signals import m2m_changed

from .conftest import Recorder, Sent
from .models import Pizza, Topping, pizza_toppings


def m2m(sent: Recorder) -> list[Sent]:
    return sent.named("m2m_changed")


def actions(sent: Recorder) -> list[str]:
    return [s.kwargs["action"] for s in m2m(sent)]


def rows(engine: Engine) -> set[tuple[int, int]]:
    """The (pizza_id, topping_id) rows of pizza_toppings."""
    with engine.connect() as conn:
        return {(row.pizza_id, row.topping_id) for row in conn.execute(pizza_toppings.select())}


def setup(engine: Engine, toppings: list[str], on_pizza: list[str]) -> tuple[int, dict[str, int]]:
    """Commit a pizza and *toppings*, those in *on_pizza* on it; the ids of both."""
    with Session(engine) as session:
        made = {name: Topping(name=name) for name in toppings}
        pizza = Pizza(name="margherita", toppings=[made[name] for name in on_pizza])
        session.add_all([pizza, *made.values()])
        session.commit()
        return pizza.id, {name: topping.id for name, topping in made.items()}


@contextmanager
def receiving(sender: object = None) -> Iterator[list[dict[str, Any]]]:
    """m2m_changed calls received from *sender* during the block."""
    calls: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        calls.append({"sender": sender, **kwargs})

    m2m_changed.connect(receiver, sender=sender, weak=False)
    try:
        yield calls
    finally:
        m2m_changed.disconnect(receiver, sender=sender)


def test_adding_persistent_toppings_sends_pre_add_and_post_add(
    engine: Engine, sent: Recorder
) -> None:
    """Django's arguments: sender=the through table, model=Topping, pk_set=their keys."""
    pizza_id, ids = setup(engine, ["basil", "olives", "capers"], on_pizza=["capers"])
    with Session(engine) as session:
        pizza = session.get_one(Pizza, pizza_id)
        basil, olives = (
            session.get_one(Topping, ids["basil"]),
            session.get_one(Topping, ids["olives"]),
        )
        pizza.toppings.extend([basil, olives])
        del sent[:]
        session.commit()

    assert actions(sent) == ["pre_add", "post_add"]
    for signal in m2m(sent):
        assert signal.sender is pizza_toppings
        assert signal.kwargs == {
            "action": signal.kwargs["action"],
            "instance": pizza,
            "reverse": False,
            "model": Topping,
            "pk_set": {ids["basil"], ids["olives"]},
            "using": "default",
            "raw": False,
        }
    assert rows(engine) == {(pizza_id, ids[name]) for name in ("basil", "olives", "capers")}


def test_pre_add_comes_before_the_rows_are_written_and_post_add_after(engine: Engine) -> None:
    """What each signal sees in pizza_toppings, on the flush's own connection."""
    pizza_id, ids = setup(engine, ["basil"], on_pizza=[])
    with Session(engine) as session:
        seen: dict[str, int] = {}

        def count_rows(sender: Any, action: str, **kwargs: Any) -> None:
            with session.no_autoflush:
                seen[action] = len(session.execute(pizza_toppings.select()).all())

        m2m_changed.connect(count_rows, sender=pizza_toppings)
        try:
            pizza = session.get_one(Pizza, pizza_id)
            pizza.toppings.append(session.get_one(Topping, ids["basil"]))
            session.commit()
        finally:
            m2m_changed.disconnect(count_rows, sender=pizza_toppings)

    assert seen == {"pre_add": 0, "post_add": 1}


def test_adding_new_toppings_to_a_new_pizza_reports_their_real_keys(
    engine: Engine, sent: Recorder
) -> None:
    """When everything is new, pre_add waits until the INSERTs have given them keys."""
    seen_at_pre_add: list[tuple[Any, list[Any]]] = []

    def on_pre_add(sender: Any, action: str, instance: Pizza, **kwargs: Any) -> None:
        if action == "pre_add":
            seen_at_pre_add.append((instance.id, [t.id for t in instance.toppings]))

    m2m_changed.connect(on_pre_add, sender=pizza_toppings)
    try:
        with Session(engine) as session:
            basil, olives = Topping(name="basil"), Topping(name="olives")
            pizza = Pizza(name="margherita", toppings=[basil, olives])
            session.add(pizza)
            del sent[:]
            session.commit()
            pizza_id, basil_id, olives_id = pizza.id, basil.id, olives.id
    finally:
        m2m_changed.disconnect(on_pre_add, sender=pizza_toppings)

    assert all(isinstance(key, int) for key in (pizza_id, basil_id, olives_id))
    assert seen_at_pre_add == [(pizza_id, [basil_id, olives_id])]
    assert actions(sent) == ["pre_add", "post_add"]
    for signal in m2m(sent):
        assert signal.kwargs["instance"] is pizza
        assert signal.kwargs["reverse"] is False
        assert signal.kwargs["model"] is Topping
        assert signal.kwargs["pk_set"] == {basil_id, olives_id}
    # pre_add only once every object it names has been inserted
    pre_add = sent.index(m2m(sent)[0])
    inserted = [s.kwargs["instance"] for s in sent[:pre_add] if s.signal == "pre_save"]
    assert {id(obj) for obj in inserted} == {id(pizza), id(basil), id(olives)}
    assert rows(engine) == {(pizza_id, basil_id), (pizza_id, olives_id)}


def test_adding_a_new_topping_to_a_persistent_pizza(engine: Engine, sent: Recorder) -> None:
    """A new object among the added ones: its key is in pk_set, not None."""
    pizza_id, _ = setup(engine, [], on_pizza=[])
    with Session(engine) as session:
        pizza = session.get_one(Pizza, pizza_id)
        oregano = Topping(name="oregano")
        pizza.toppings.append(oregano)
        del sent[:]
        session.commit()
        oregano_id = oregano.id

    assert actions(sent) == ["pre_add", "post_add"]
    assert [s.kwargs["pk_set"] for s in m2m(sent)] == [{oregano_id}, {oregano_id}]
    assert isinstance(oregano_id, int)


def test_removing_a_topping_sends_pre_remove_and_post_remove(
    engine: Engine, sent: Recorder
) -> None:
    pizza_id, ids = setup(engine, ["basil", "olives"], on_pizza=["basil", "olives"])
    with Session(engine) as session:
        pizza = session.get_one(Pizza, pizza_id)
        olives = session.get_one(Topping, ids["olives"])
        pizza.toppings.remove(olives)
        del sent[:]
        session.commit()

    assert actions(sent) == ["pre_remove", "post_remove"]
    for signal in m2m(sent):
        assert signal.sender is pizza_toppings
        assert signal.kwargs == {
            "action": signal.kwargs["action"],
            "instance": pizza,
            "reverse": False,
            "model": Topping,
            "pk_set": {ids["olives"]},
            "using": "default",
            "raw": False,
        }
    assert rows(engine) == {(pizza_id, ids["basil"])}


def test_removing_every_topping_is_a_remove_never_a_clear(engine: Engine, sent: Recorder) -> None:
    """Django sends pre_clear/post_clear for clear(); here every removal is a remove.

    SQLAlchemy does not tell a clear() from removing each object, so the
    signals always name the objects (pk_set is never None).
    """
    pizza_id, ids = setup(engine, ["basil", "olives"], on_pizza=["basil", "olives"])
    with Session(engine) as session:
        pizza = session.get_one(Pizza, pizza_id)
        pizza.toppings.clear()
        del sent[:]
        session.commit()

    assert actions(sent) == ["pre_remove", "post_remove"]
    assert [s.kwargs["pk_set"] for s in m2m(sent)] == [set(ids.values())] * 2
    assert rows(engine) == set()

    pizza_id, ids = setup(engine, ["capers"], on_pizza=["capers"])
    with Session(engine) as session:
        pizza = session.get_one(Pizza, pizza_id)
        pizza.toppings = []
        del sent[:]
        session.commit()

    assert actions(sent) == ["pre_remove", "post_remove"]
    assert [s.kwargs["pk_set"] for s in m2m(sent)] == [{ids["capers"]}] * 2


def test_replacing_the_collection_removes_then_adds(engine: Engine, sent: Recorder) -> None:
    """Both pre_ signals come before the flush writes, both post_ ones after it.

    Only what changed is named: a topping kept in the new list is neither
    removed nor added.
    """
    pizza_id, ids = setup(engine, ["basil", "olives", "capers"], on_pizza=["basil", "olives"])
    with Session(engine) as session:
        pizza = session.get_one(Pizza, pizza_id)
        pizza.toppings = [
            session.get_one(Topping, ids["olives"]),
            session.get_one(Topping, ids["capers"]),
        ]
        del sent[:]
        session.commit()

    assert [(s.kwargs["action"], s.kwargs["pk_set"]) for s in m2m(sent)] == [
        ("pre_remove", {ids["basil"]}),
        ("pre_add", {ids["capers"]}),
        ("post_remove", {ids["basil"]}),
        ("post_add", {ids["capers"]}),
    ]
    assert rows(engine) == {(pizza_id, ids["olives"]), (pizza_id, ids["capers"])}


def test_a_change_from_the_reverse_side_is_reported_as_reverse(
    engine: Engine, sent: Recorder
) -> None:
    """topping.pizzas.append(pizza), pizza.toppings never loaded: reverse=True, model=Pizza."""
    pizza_id, ids = setup(engine, ["basil"], on_pizza=[])
    with Session(engine) as session:
        pizza = session.get_one(Pizza, pizza_id)
        basil = session.get_one(Topping, ids["basil"])
        basil.pizzas.append(pizza)
        assert "toppings" not in pizza.__dict__  # not loaded
        del sent[:]
        session.commit()

    assert actions(sent) == ["pre_add", "post_add"]
    for signal in m2m(sent):
        assert signal.sender is pizza_toppings
        assert signal.kwargs == {
            "action": signal.kwargs["action"],
            "instance": basil,
            "reverse": True,
            "model": Pizza,
            "pk_set": {pizza_id},
            "using": "default",
            "raw": False,
        }
    assert rows(engine) == {(pizza_id, ids["basil"])}


def test_a_removal_from_the_reverse_side_is_reported_as_reverse(
    engine: Engine, sent: Recorder
) -> None:
    """topping.pizzas.remove(pizza), pizza.toppings not loaded: reverse=True, instance=topping."""
    pizza_id, ids = setup(engine, ["basil"], on_pizza=["basil"])
    with Session(engine) as session:
        pizza = session.get_one(Pizza, pizza_id)
        basil = session.get_one(Topping, ids["basil"])
        basil.pizzas.remove(pizza)
        del sent[:]
        session.commit()

    assert [
        (s.kwargs["action"], s.kwargs["instance"], s.kwargs["reverse"], s.kwargs["model"])
        for s in m2m(sent)
    ] == [("pre_remove", basil, True, Pizza), ("post_remove", basil, True, Pizza)]
    assert rows(engine) == set()


def test_a_reverse_relationship_without_a_forward_partner_reports_reverse(
    engine: Engine, sent: Recorder
) -> None:
    """Only the reverse side is mapped (no back_populates): reverse=True, model=the forward class.

    menu_dishes' first foreign key refers to menu, so Menu would be the forward side.
    """

    class MenuBase(DeclarativeBase):
        pass

    menu_dishes = Table(
        "menu_dishes",
        MenuBase.metadata,
        Column("menu_id", ForeignKey("menu.id"), primary_key=True),
        Column("dish_id", ForeignKey("dish.id"), primary_key=True),
    )

    class Menu(MenuBase):
        __tablename__ = "menu"

        id: Mapped[int] = mapped_column(primary_key=True)

    class Dish(MenuBase):
        __tablename__ = "dish"

        id: Mapped[int] = mapped_column(primary_key=True)
        menus: Mapped[list[Menu]] = relationship(secondary=menu_dishes)

    MenuBase.metadata.create_all(engine)
    enable_model_signals(MenuBase)
    try:
        with Session(engine) as session:
            lunch, soup = Menu(), Dish()
            session.add_all([lunch, soup])
            session.commit()
            soup.menus.append(lunch)
            del sent[:]
            session.commit()
            lunch_id = lunch.id
    finally:
        disable_model_signals(MenuBase)

    assert actions(sent) == ["pre_add", "post_add"]
    for signal in m2m(sent):
        assert signal.sender is menu_dishes
        assert signal.kwargs == {
            "action": signal.kwargs["action"],
            "instance": soup,
            "reverse": True,
            "model": Menu,
            "pk_set": {lunch_id},
            "using": "default",
            "raw": False,
        }


def test_a_change_both_loaded_sides_know_of_is_reported_once(
    engine: Engine, sent: Recorder
) -> None:
    """back_populates updates both collections; the change is still one pre_add, one post_add.

    When both sides know, the forward side reports it, whichever side was changed.
    """
    pizza_id, ids = setup(engine, ["basil", "olives"], on_pizza=[])
    with Session(engine) as session:
        pizza = session.get_one(Pizza, pizza_id)
        basil = session.get_one(Topping, ids["basil"])
        olives = session.get_one(Topping, ids["olives"])
        for collection in (pizza.toppings, basil.pizzas, olives.pizzas):
            assert collection == []  # loaded now
        pizza.toppings.append(basil)
        olives.pizzas.append(pizza)
        assert basil.pizzas == [pizza]
        assert pizza.toppings == [basil, olives]
        del sent[:]
        session.commit()

    assert [
        (s.kwargs["action"], s.kwargs["instance"], s.kwargs["reverse"], s.kwargs["pk_set"])
        for s in m2m(sent)
    ] == [
        ("pre_add", pizza, False, {ids["basil"], ids["olives"]}),
        ("post_add", pizza, False, {ids["basil"], ids["olives"]}),
    ]
    assert rows(engine) == {(pizza_id, ids["basil"]), (pizza_id, ids["olives"])}


def test_changes_of_several_pizzas_are_reported_per_pizza(engine: Engine, sent: Recorder) -> None:
    """One flush, two pizzas changed: one pre_add and one post_add for each."""
    first, ids = setup(engine, ["basil"], on_pizza=[])
    second, _ = setup(engine, [], on_pizza=[])
    with Session(engine) as session:
        basil = session.get_one(Topping, ids["basil"])
        pizzas = [session.get_one(Pizza, first), session.get_one(Pizza, second)]
        with session.no_autoflush:  # loading the second one's toppings would flush the first
            for pizza in pizzas:
                pizza.toppings.append(basil)
        del sent[:]
        session.commit()

    assert actions(sent) == ["pre_add", "pre_add", "post_add", "post_add"]
    for signals in (m2m(sent)[:2], m2m(sent)[2:]):
        assert sorted(
            (id(s.kwargs["instance"]), s.kwargs["pk_set"] == {ids["basil"]}) for s in signals
        ) == sorted((id(p), True) for p in pizzas)


def test_a_receiver_connected_to_the_table_gets_only_its_changes(engine: Engine) -> None:
    """The sender is the pizza_toppings Table: connecting with sender=it filters, Pizza does not."""
    pizza_id, ids = setup(engine, ["basil"], on_pizza=[])
    with receiving(pizza_toppings) as through, receiving(Pizza) as pizza_sender:
        with Session(engine) as session:
            pizza = session.get_one(Pizza, pizza_id)
            pizza.toppings.append(session.get_one(Topping, ids["basil"]))
            session.commit()

    assert [(c["sender"], c["action"]) for c in through] == [
        (pizza_toppings, "pre_add"),
        (pizza_toppings, "post_add"),
    ]
    assert pizza_sender == []


def test_deleting_a_pizza_sends_no_m2m_changed(engine: Engine, sent: Recorder) -> None:
    """Its pizza_toppings rows go with it, silently, as in Django."""
    pizza_id, ids = setup(engine, ["basil", "olives"], on_pizza=["basil", "olives"])
    with Session(engine) as session:
        pizza = session.get_one(Pizza, pizza_id)
        assert len(pizza.toppings) == 2
        basil = session.get_one(Topping, ids["basil"])
        assert basil.pizzas == [pizza]  # both sides loaded
        session.delete(pizza)
        del sent[:]
        session.commit()

    assert sent.names() == ["pre_delete", "post_delete"]
    assert rows(engine) == set()
    with Session(engine) as session:
        assert len(session.scalars(select(Topping)).all()) == 2


def test_no_m2m_changed_when_nothing_changed_in_the_end(engine: Engine, sent: Recorder) -> None:
    """A topping appended and removed again before the flush writes nothing: no signal."""
    pizza_id, ids = setup(engine, ["basil"], on_pizza=[])
    with Session(engine) as session:
        pizza = session.get_one(Pizza, pizza_id)
        basil = session.get_one(Topping, ids["basil"])
        pizza.toppings.append(basil)
        pizza.toppings.remove(basil)
        del sent[:]
        session.commit()

    assert m2m(sent) == []
    assert rows(engine) == set()


def test_a_many_to_many_backref_added_after_a_flush_is_reported(
    engine: Engine, sent: Recorder
) -> None:
    """A flush skips looking for many-to-many changes while no enabled class has
    a many-to-many relationship; a class mapped later that gives one to a class
    already flushed (a backref) is seen from the next flush on."""

    class ShopBase(DeclarativeBase):
        pass

    enable_model_signals(ShopBase)
    try:

        class Shop(ShopBase):
            __tablename__ = "shop"

            id: Mapped[int] = mapped_column(primary_key=True)

        ShopBase.metadata.create_all(engine)
        with Session(engine) as session:
            corner = Shop()
            session.add(corner)
            session.commit()  # no many-to-many relationship anywhere yet

            shop_brands = Table(
                "shop_brands",
                ShopBase.metadata,
                Column("brand_id", ForeignKey("brand.id"), primary_key=True),
                Column("shop_id", ForeignKey("shop.id"), primary_key=True),
            )

            class Brand(ShopBase):
                __tablename__ = "brand"

                id: Mapped[int] = mapped_column(primary_key=True)
                shops: Mapped[list[Shop]] = relationship(secondary=shop_brands, backref="brands")

            ShopBase.metadata.create_all(engine)
            acme = Brand()  # configures Brand, which gives Shop its "brands"
            session.add(acme)
            session.commit()
            del sent[:]
            corner.brands.append(acme)  # type: ignore[attr-defined]
            session.commit()
            acme_id = acme.id
    finally:
        disable_model_signals(ShopBase)

    assert actions(sent) == ["pre_add", "post_add"]
    for signal in m2m(sent):
        assert signal.sender is shop_brands
        assert signal.kwargs["instance"] is corner
        assert signal.kwargs["reverse"] is True
        assert signal.kwargs["pk_set"] == {acme_id}
