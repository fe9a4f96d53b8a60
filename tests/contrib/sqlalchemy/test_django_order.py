"""The model signals tocsin sends from SQLAlchemy, compared with Django's.

Each scenario runs on Django's ORM and on SQLAlchemy models of the same
tables (authors, their books, the books' reviews), from the same rows; every
signal sent is recorded, in order, as ``(signal, model, primary key,
arguments)``, and the two lists must be equal. The SQLAlchemy side runs on
SQLite and PostgreSQL, in a ``Session`` and an ``AsyncSession``; Django's on
an in-memory SQLite database (its order does not depend on the database),
configured in this process by tests/_django_orm.py. The last test pins where
the two must differ, as docs/model-signals.md says.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

pytest.importorskip("django", reason="the scenarios are compared with Django's ORM")

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    ForeignKey,
    String,
    Table,
    create_engine,
    delete,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from sqlalchemy.sql import Delete

import _django_orm
from tocsin import signals
from tocsin.contrib.sqlalchemy import disable_model_signals, enable_model_signals

from .conftest import Database, async_url

_django_orm.configure()

from django.db import connection as django_connection  # noqa: E402
from django.db import models  # noqa: E402
from django.db.models import signals as django_signals  # noqa: E402

# -- the models, twice ---------------------------------------------------------------


class Base(DeclarativeBase):
    pass


tag_books = Table(
    "tag_books",
    Base.metadata,
    Column("tag_id", ForeignKey("tag.id"), primary_key=True),
    Column("book_id", ForeignKey("book.id"), primary_key=True),
)


class Author(Base):
    __tablename__ = "author"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    books: Mapped[list[Book]] = relationship(back_populates="author", cascade="all, delete-orphan")


class Book(Base):
    __tablename__ = "book"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50))
    author_id: Mapped[int] = mapped_column(ForeignKey("author.id"))
    author: Mapped[Author] = relationship(back_populates="books")
    reviews: Mapped[list[Review]] = relationship(cascade="all, delete-orphan")
    tags: Mapped[list[Tag]] = relationship(secondary=tag_books, back_populates="books")


class Review(Base):
    """Its key to the book is nullable: in Django, that orders nothing."""

    __tablename__ = "review"

    id: Mapped[int] = mapped_column(primary_key=True)
    book_id: Mapped[int | None] = mapped_column(ForeignKey("book.id"))


class Tag(Base):
    __tablename__ = "tag"

    id: Mapped[int] = mapped_column(primary_key=True)
    # A set, as Django's many-to-many managers are (a list would take a book twice).
    books: Mapped[set[Book]] = relationship(secondary=tag_books, back_populates="tags")


MODELS = (Author, Book, Review)


class Dj:
    """The same models on Django's ORM."""

    class Author(models.Model):  # type: ignore[misc]  # Django has no type hints here
        name = models.CharField(max_length=50)

        class Meta:
            app_label = _django_orm.APP_LABEL

    class Book(models.Model):  # type: ignore[misc]
        title = models.CharField(max_length=50)
        author = models.ForeignKey("Author", models.CASCADE, related_name="books")

        class Meta:
            app_label = _django_orm.APP_LABEL

    class Review(models.Model):  # type: ignore[misc]
        book = models.ForeignKey("Book", models.CASCADE, null=True, related_name="reviews")

        class Meta:
            app_label = _django_orm.APP_LABEL

    class Tag(models.Model):  # type: ignore[misc]
        books = models.ManyToManyField("Book", related_name="tags")

        class Meta:
            app_label = _django_orm.APP_LABEL


# The rows every scenario starts from, inserted out of key order.
AUTHORS = [(1, "Ann"), (2, "Bob")]
BOOKS = [(3, "C", 1), (1, "A", 1), (2, "B", 1), (5, "E", 2), (4, "D", 2)]
REVIEWS = [(2, 3), (1, 1)]
TAGS = [(1, [1, 3])]

# -- recording -----------------------------------------------------------------------

Record = tuple[str, str, Any, tuple[tuple[str, Any], ...]]
SAVES_AND_DELETES = ("pre_save", "post_save", "pre_delete", "post_delete")
# The arguments recorded, besides the instance's key.
ARGUMENTS = {
    "pre_init": ("args", "kwargs"),
    "post_init": (),
    "pre_save": ("raw", "using", "update_fields"),
    "post_save": ("created", "raw", "using", "update_fields"),
    "pre_delete": ("using", "origin"),
    "post_delete": ("using", "origin"),
    "m2m_changed": ("action", "reverse", "pk_set", "using"),
}


def _plain(value: Any) -> Any:
    """*value*, comparable across the two ORMs."""
    if isinstance(value, (models.Model, Base)):
        instance: Any = value  # each model here has an id
        return f"{type(value).__name__}:{instance.id}"
    if isinstance(value, (models.QuerySet, Delete)):
        return "query"
    if isinstance(value, dict):
        return tuple(sorted((key, _plain(item)) for key, item in value.items()))
    return value


@dataclass(frozen=True)
class Scenario:
    """What to do on each ORM, from the rows above; the SQLAlchemy side does not commit."""

    django: Callable[[], object]
    sqlalchemy: Callable[[Session], object]
    signals: tuple[str, ...] = SAVES_AND_DELETES
    ignored: tuple[str, ...] = ()  # arguments that differ by design, left out
    per_model: bool = False  # receivers connected for each model, not for any sender


def _receiver(records: list[Record], name: str, ignored: tuple[str, ...]) -> Callable[..., None]:
    def receive(sender: Any, **kwargs: Any) -> None:
        instance = None if name == "pre_init" else kwargs["instance"]  # tocsin's has one
        model = sender.__name__ if instance is None else type(instance).__name__
        arguments = tuple(
            (key, _plain(kwargs[key])) for key in ARGUMENTS[name] if key not in ignored
        )
        records.append((name, model, None if instance is None else instance.id, arguments))

    return receive


@contextmanager
def recording(module: Any, scenario: Scenario, models: tuple[type, ...]) -> Iterator[list[Record]]:
    """What *module*'s signals (``tocsin.signals`` or Django's) send, in order:
    from any sender, or from each of *models* (``scenario.per_model``)."""
    records: list[Record] = []
    senders = models if scenario.per_model else (None,)
    connections = [
        (getattr(module, name), _receiver(records, name, scenario.ignored), sender)
        for name in scenario.signals
        for sender in senders
    ]
    for signal, receiver, sender in connections:
        signal.connect(receiver, sender=sender, weak=False)
    try:
        yield records
    finally:
        for signal, receiver, sender in connections:
            signal.disconnect(receiver, sender=sender)


# -- the two sides -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def model_signals() -> Iterator[None]:
    enable_model_signals(Base)
    yield
    disable_model_signals(Base)


@pytest.fixture
def run_django() -> Iterator[Callable[[Scenario], list[Record]]]:
    """Runs a scenario on Django's models, in tables made for the test."""
    models = [Dj.Author, Dj.Book, Dj.Review, Dj.Tag]
    with django_connection.schema_editor() as editor:
        for model in models:
            editor.create_model(model)
    for pk, name in AUTHORS:
        Dj.Author.objects.create(id=pk, name=name)
    for pk, title, author in BOOKS:
        Dj.Book.objects.create(id=pk, title=title, author_id=author)
    for pk, book in REVIEWS:
        Dj.Review.objects.create(id=pk, book_id=book)
    for pk, books in TAGS:
        Dj.Tag.objects.create(id=pk).books.set(books)

    def run(scenario: Scenario) -> list[Record]:
        with recording(django_signals, scenario, (Dj.Author, Dj.Book, Dj.Review)) as records:
            scenario.django()
        return records

    yield run
    with django_connection.schema_editor() as editor:
        for model in reversed(models):
            editor.delete_model(model)


def _insert_rows(connection: Connection) -> None:
    Base.metadata.create_all(connection)
    tables = Base.metadata.tables
    connection.execute(tables["author"].insert(), [{"id": pk, "name": n} for pk, n in AUTHORS])
    connection.execute(
        tables["book"].insert(),
        [{"id": pk, "title": title, "author_id": author} for pk, title, author in BOOKS],
    )
    connection.execute(tables["review"].insert(), [{"id": pk, "book_id": b} for pk, b in REVIEWS])
    connection.execute(tables["tag"].insert(), [{"id": pk} for pk, _ in TAGS])
    connection.execute(
        tag_books.insert(), [{"tag_id": pk, "book_id": b} for pk, books in TAGS for b in books]
    )


def _run_sync(engine: Engine, scenario: Scenario) -> list[Record]:
    with engine.begin() as connection:
        _insert_rows(connection)
    with Session(engine) as session, recording(signals, scenario, MODELS) as records:
        scenario.sqlalchemy(session)
        session.commit()
    return records


def _run_async(engine: AsyncEngine, scenario: Scenario) -> list[Record]:
    async def main() -> list[Record]:
        async with engine.begin() as connection:
            await connection.run_sync(_insert_rows)
        async with AsyncSession(engine) as session:
            with recording(signals, scenario, MODELS) as records:
                await session.run_sync(scenario.sqlalchemy)
                await session.commit()
        return records

    return asyncio.run(main())


@pytest.fixture(params=["Session", "AsyncSession"])
def run_sqlalchemy(
    request: pytest.FixtureRequest, database: Database
) -> Iterator[Callable[[Scenario], list[Record]]]:
    """Runs a scenario on the SQLAlchemy models, in a Session or an AsyncSession,
    on SQLite or PostgreSQL."""
    if request.param == "Session":
        engine = create_engine(database.url, connect_args=database.connect_args)
        yield functools.partial(_run_sync, engine)
        engine.dispose()
    else:
        async_engine = create_async_engine(async_url(database), connect_args=database.connect_args)
        yield functools.partial(_run_async, async_engine)
        asyncio.run(async_engine.dispose())


# -- the scenarios -------------------------------------------------------------------


def django_create() -> None:
    author = Dj.Author(id=3, name="Cy")
    book = Dj.Book(id=6, title="F", author=author)
    author.save()
    book.save()


def sqlalchemy_create(session: Session) -> None:
    author = Author(id=3, name="Cy")
    session.add(Book(id=6, title="F", author=author))


def django_rename() -> None:
    author = Dj.Author.objects.get(pk=1)
    author.name = "Ada"
    author.save(update_fields=["name"])


def sqlalchemy_rename(session: Session) -> None:
    session.get_one(Author, 1).name = "Ada"


def django_move() -> None:
    book = Dj.Book.objects.get(pk=4)
    book.author = Dj.Author.objects.get(pk=1)
    book.save(update_fields=["author"])


def sqlalchemy_move(session: Session) -> None:
    session.get_one(Book, 4).author = session.get_one(Author, 1)


def django_delete_author() -> None:
    Dj.Author.objects.get(pk=1).delete()


def sqlalchemy_delete_author(session: Session) -> None:
    session.delete(session.get_one(Author, 1))


def django_delete_book() -> None:
    Dj.Book.objects.get(pk=3).delete()


def sqlalchemy_delete_book(session: Session) -> None:
    session.delete(session.get_one(Book, 3))


def django_delete_authors() -> None:
    Dj.Author.objects.filter(pk__in=[2, 1]).delete()


def sqlalchemy_delete_authors(session: Session) -> None:
    with session.no_autoflush:  # one flush, as one collector: loading books would flush
        for author in session.scalars(select(Author).where(Author.id.in_([2, 1]))):
            session.delete(author)


def django_delete_books() -> None:
    Dj.Book.objects.filter(pk__in=[5, 4]).delete()


def sqlalchemy_delete_books(session: Session) -> None:
    session.execute(delete(Book).where(Book.id.in_([5, 4])))


SCENARIOS = {
    "create": Scenario(
        django_create, sqlalchemy_create, signals=("pre_init", "post_init", *SAVES_AND_DELETES)
    ),
    "update": Scenario(django_rename, sqlalchemy_rename),
    "update a foreign key": Scenario(django_move, sqlalchemy_move),
    # Reviews, books, author: books wait for their rows of tag_books, which
    # Django collects when a receiver listens to any sender; reviews do not
    # wait for books, as their key is nullable.
    "delete with cascades": Scenario(django_delete_author, sqlalchemy_delete_author),
    # Receivers for each model only: Django deletes the tags' rows unheard,
    # and books come first.
    "delete with cascades, receivers per model": Scenario(
        django_delete_author, sqlalchemy_delete_author, per_model=True
    ),
    "delete a book with a review": Scenario(django_delete_book, sqlalchemy_delete_book),
    # Django's origin is the queryset; tocsin's, each object given to delete().
    "delete several": Scenario(
        django_delete_authors, sqlalchemy_delete_authors, ignored=("origin",)
    ),
    "delete statement": Scenario(django_delete_books, sqlalchemy_delete_books),
}


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_the_signals_are_djangos_in_djangos_order(
    scenario: Scenario,
    run_django: Callable[[Scenario], list[Record]],
    run_sqlalchemy: Callable[[Scenario], list[Record]],
) -> None:
    """The same signals, with the same arguments, in the same order, as Django's ORM."""
    expected = run_django(scenario)
    assert expected  # the scenario sends something
    assert run_sqlalchemy(scenario) == expected


# -- where the ORMs differ -----------------------------------------------------------


def django_add_again() -> None:
    Dj.Tag.objects.get(pk=1).books.add(1)


def sqlalchemy_add_again(session: Session) -> None:
    tag = session.get_one(Tag, 1)  # held: a collection does not hold its owner
    tag.books.add(session.get_one(Book, 1))


def django_clear() -> None:
    Dj.Tag.objects.get(pk=1).books.clear()


def sqlalchemy_clear(session: Session) -> None:
    tag = session.get_one(Tag, 1)
    tag.books.clear()


def django_set() -> None:
    Dj.Tag.objects.get(pk=1).books.set([3, 4])


def sqlalchemy_set(session: Session) -> None:
    session.get_one(Tag, 1).books = {session.get_one(Book, 3), session.get_one(Book, 4)}


def django_add_reverse() -> None:
    Dj.Book.objects.get(pk=5).tags.add(1)


def sqlalchemy_add_reverse(session: Session) -> None:
    tag, book = session.get_one(Tag, 1), session.get_one(Book, 5)
    tag.books  # loaded: the change is recorded on both sides, and told from the forward one
    book.tags.append(tag)


def m2m(action: str, model: str, pk: int, pk_set: set[int] | None, reverse: bool = False) -> Record:
    arguments = (("action", action), ("reverse", reverse), ("pk_set", pk_set), ("using", "default"))
    return ("m2m_changed", model, pk, arguments)


M2M = ("m2m_changed",)
DIFFERENCES = {
    "add what is there": (
        Scenario(django_add_again, sqlalchemy_add_again, signals=M2M),
        [m2m("pre_add", "Tag", 1, set()), m2m("post_add", "Tag", 1, set())],
        [],
    ),
    "clear": (
        Scenario(django_clear, sqlalchemy_clear, signals=M2M),
        [m2m("pre_clear", "Tag", 1, None), m2m("post_clear", "Tag", 1, None)],
        [m2m("pre_remove", "Tag", 1, {1, 3}), m2m("post_remove", "Tag", 1, {1, 3})],
    ),
    "set": (
        Scenario(django_set, sqlalchemy_set, signals=M2M),
        [
            *(m2m("pre_remove", "Tag", 1, {1}), m2m("post_remove", "Tag", 1, {1})),
            *(m2m("pre_add", "Tag", 1, {4}), m2m("post_add", "Tag", 1, {4})),
        ],
        [
            *(m2m("pre_remove", "Tag", 1, {1}), m2m("pre_add", "Tag", 1, {4})),
            *(m2m("post_remove", "Tag", 1, {1}), m2m("post_add", "Tag", 1, {4})),
        ],
    ),
    "add from the reverse side": (
        Scenario(django_add_reverse, sqlalchemy_add_reverse, signals=M2M),
        [m2m("pre_add", "Book", 5, {1}, True), m2m("post_add", "Book", 5, {1}, True)],
        [m2m("pre_add", "Tag", 1, {5}), m2m("post_add", "Tag", 1, {5})],
    ),
}


@pytest.mark.parametrize("case", DIFFERENCES.values(), ids=DIFFERENCES.keys())
def test_where_the_orms_differ(
    case: tuple[Scenario, list[Record], list[Record]],
    run_django: Callable[[Scenario], list[Record]],
    run_sqlalchemy: Callable[[Scenario], list[Record]],
) -> None:
    """What docs/model-signals.md says each ORM sends where they must differ."""
    scenario, django_sends, tocsin_sends = case
    assert run_django(scenario) == django_sends
    assert run_sqlalchemy(scenario) == tocsin_sends
