"""The models the SQLAlchemy tests use: Django's pizza/topping example, and a Todo."""

from __future__ import annotations

import datetime

from sqlalchemy import Column, ForeignKey, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


pizza_toppings = Table(
    "pizza_toppings",
    Base.metadata,
    Column("pizza_id", ForeignKey("pizza.id", ondelete="CASCADE"), primary_key=True),
    Column("topping_id", ForeignKey("topping.id", ondelete="CASCADE"), primary_key=True),
)


class Pizza(Base):
    __tablename__ = "pizza"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    price: Mapped[int] = mapped_column(default=10)
    toppings: Mapped[list[Topping]] = relationship(
        secondary=pizza_toppings, back_populates="pizzas"
    )
    slices: Mapped[list[Slice]] = relationship(back_populates="pizza", cascade="all, delete-orphan")


class Topping(Base):
    __tablename__ = "topping"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    pizzas: Mapped[list[Pizza]] = relationship(secondary=pizza_toppings, back_populates="toppings")


class Slice(Base):
    __tablename__ = "slice"

    id: Mapped[int] = mapped_column(primary_key=True)
    pizza_id: Mapped[int] = mapped_column(ForeignKey("pizza.id"))
    pizza: Mapped[Pizza] = relationship(back_populates="slices")


class Todo(Base):
    __tablename__ = "todo"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(200))
    done: Mapped[bool] = mapped_column(default=False)
    kind: Mapped[str] = mapped_column(String(20), default="todo")
    completed_at: Mapped[datetime.datetime | None] = mapped_column(default=None)

    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "todo"}


class UrgentTodo(Todo):
    """Single-table inheritance: tocsin's answer to Django's proxy models."""

    __mapper_args__ = {"polymorphic_identity": "urgent"}
