"""Mapped instances in remote events: sent as their primary key.

::

    serializer = JSONSerializer()
    register_models(serializer, Base)
    remote = Remote(transport, serializer=serializer)

    @remote.receiver(post_save, sender=Todo)
    def index(sender, instance, **kwargs):     # in the worker
        with Session(engine) as session:
            todo = instance.get(session)        # instance is a ModelKey(Todo, (3,))

A row's state belongs to a session in one process; what travels is the class
and the primary key, from which the worker loads what is committed by then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from sqlalchemy import inspect
from sqlalchemy.orm import InstanceState, Session, registry

from ...exceptions import SerializationError
from ...remote._serializer import JSONSerializer, class_name

__all__ = ["ModelKey", "register_models"]

Loader = Callable[[type, tuple[Any, ...]], Any]


class ModelKey(NamedTuple):
    """A mapped instance as a worker receives it, with :func:`register_models`: a
    named tuple of its class, ``model``, and its primary key, ``pk`` (a tuple)."""

    model: type
    pk: tuple[Any, ...]

    def get(self, session: Session) -> Any:
        """The instance from *session* (``None`` if the row is gone).

        With an ``AsyncSession``: ``await session.get(key.model, key.pk)``.
        """
        return session.get(self.model, self.pk)


def register_models(
    serializer: JSONSerializer,
    base: type,
    *,
    loader: Loader | None = None,
    tag: str = "model",
) -> None:
    """Send instances of every class mapped under *base* as their primary key.

    An instance is written as ``["module:qualname" of its class, [pk values]]``,
    and read back as :class:`ModelKey`, or as ``loader(cls, pk)`` when *loader*
    is given. Sending an instance whose primary key is not known yet (not
    flushed, with a database-generated key) raises
    :class:`~tocsin.exceptions.SerializationError`. The classes themselves (a
    model class as the sender) travel by the same name. A worker finds the
    class among those mapped under *base* in its own process (the models'
    module must be imported there); it never imports a class a payload names.

    :param base: a declarative base (a ``DeclarativeBase`` subclass, or what
        ``declarative_base()`` returns); a mapped class is refused: pass its base.
    :param serializer: the :class:`~tocsin.remote.JSONSerializer` to register
        the classes with.
    :param loader: ``loader(cls, pk)`` returns what a worker's receiver gets
        instead of a :class:`ModelKey` (the instance, loaded, say).
    :param tag: the name written in the JSON (``{"$model": [...]}`` by
        default); another one for a second base.
    :raises TypeError: if *serializer* is not a ``JSONSerializer``, *base* is
        not a declarative base, or *loader* is not callable.
    :raises ValueError: if the tag is taken.
    """
    if not isinstance(serializer, JSONSerializer):
        raise TypeError(f"register_models() takes a JSONSerializer; got {serializer!r}.")
    _check_base(base)
    if loader is not None and not callable(loader):
        raise TypeError(f"loader must be a function (cls, pk) -> value; got {loader!r}.")

    def find(name: str) -> type | None:
        for mapper in base.registry.mappers:  # type: ignore[attr-defined]
            if class_name(mapper.class_) == name:
                found: type = mapper.class_
                return found
        return None

    def decode(raw: Any) -> Any:
        if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[1], list)):
            raise SerializationError(f"a ${tag} value is [class name, [primary key values]].")
        model, pk = serializer.find(raw[0]), tuple(raw[1])
        if not (isinstance(model, type) and issubclass(model, base)):
            raise SerializationError(f"{raw[0]} is not a class mapped under {base.__qualname__}.")
        return ModelKey(model, pk) if loader is None else loader(model, pk)

    serializer.register_classes(base, find=find)
    serializer.register(base, tag=tag, encode=_encode, decode=decode)


def _check_base(base: object) -> None:
    if isinstance(base, type) and inspect(base, raiseerr=False) is not None:
        raise TypeError(
            f"{base.__qualname__} is a mapped class; pass its declarative base, so that "
            "every class it maps is sent as its primary key."
        )
    if not isinstance(getattr(base, "registry", None), registry) or not isinstance(base, type):
        raise TypeError(
            "register_models() takes a declarative base class (a DeclarativeBase subclass, "
            f"or what declarative_base() returns); got {base!r}."
        )


def _encode(instance: object) -> list[Any]:
    cls = type(instance)
    state = inspect(instance, raiseerr=False)
    if not isinstance(state, InstanceState):
        raise SerializationError(f"{cls.__qualname__} is not mapped, so it has no primary key.")
    # Inside the flush that inserts it (post_save), the row has its key
    # before the session records the identity.
    pk = state.identity or state.mapper.primary_key_from_instance(instance)
    if any(value is None for value in pk):
        raise SerializationError(
            f"this {cls.__qualname__} has no primary key yet: flush the session "
            "(session.flush()) before sending it."
        )
    return [class_name(cls), list(pk)]
