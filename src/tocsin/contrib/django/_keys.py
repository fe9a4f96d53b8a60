"""Django model instances in remote events: sent as their label and primary key.

An instance is written as ``{"$django_model": ["shop.Order", 3, "default"]}``
(its model's label, its primary key, its database) and loaded again in the
worker; a model class (a ``post_save`` sender) as ``{"$ref": "shop.Order"}``;
a queryset as ``{"$django_queryset": "shop.Order"}`` (its model).
The worker finds a model among the models Django registered in its own
process, and only in the apps given to :func:`register_models`: a label never
imports anything, and a label outside those apps, or a primary key its field
refuses, makes the event unreadable (dead-lettered unread).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable
from typing import Any, NamedTuple

from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, models
from django.db.utils import ConnectionDoesNotExist

from ...exceptions import SerializationError
from ...remote._serializer import JSONSerializer

__all__ = ["ModelKey", "register_models"]

TAG = "django_model"
QUERYSET_TAG = "django_queryset"
_registered: weakref.WeakSet[JSONSerializer] = weakref.WeakSet()


class ModelKey(NamedTuple):
    """A model instance as a worker's receiver gets it when it is not loaded: a
    named tuple of its model class, ``model``, its primary key, ``pk``, and the
    alias of the database it was saved to, ``using``.

    With ``register_models(..., load=True)`` (the default), a receiver gets it
    only when the row is gone (deleted before the worker ran: always so for
    ``post_delete``); with ``load=False``, always.
    """

    model: type
    pk: Any
    using: str = DEFAULT_DB_ALIAS

    def get(self) -> Any:
        """The instance, loaded now from ``using`` with the model's base manager,
        or ``None`` if the row is gone."""
        model: Any = self.model
        return model._base_manager.using(self.using).filter(pk=self.pk).first()

    async def aget(self) -> Any:
        """:meth:`get`, for async code."""
        model: Any = self.model
        return await model._base_manager.using(self.using).filter(pk=self.pk).afirst()


def register_models(serializer: JSONSerializer, *app_labels: str, load: bool = True) -> None:
    """Let the models of the given installed apps (of every installed app,
    without any) travel in remote events through *serializer*.

    A model class, as a ``sender``, travels by its ``"app_label.ModelName"``
    label. An instance travels as its label, primary key and database, and a
    worker loads it again (``Model._base_manager``, from the same database
    alias) before its receivers run: they get the row as committed by then. If
    the row is gone, they get a :class:`ModelKey` instead. With
    ``load=False``, they always get a :class:`ModelKey`, and load it
    themselves (``key.get()``, ``await key.aget()``): an
    :class:`~tocsin.remote.AsyncWorker` needs it, as Django refuses queries
    from its event loop. A queryset (``post_delete``'s ``origin`` after
    ``queryset.delete()``) travels as its model's label, unevaluated, and
    arrives as the model class.

    A worker only ever resolves labels of the models of these apps that its
    own process registered; anything else (a crafted label, an unknown
    database alias, a primary key its field refuses) makes the event
    unreadable, and it is dead-lettered without running anything.

    Call it once per serializer, once Django's app registry is loaded (in an
    ``AppConfig.ready()``, a models module, or after ``django.setup()``).

    :param app_labels: the labels of the apps whose models may travel
        (``"shop"``, ``"auth"``); every installed app's when none is given.
    :param load: load instances in the worker (``True``) or hand receivers a
        :class:`ModelKey` (``False``).
    :raises TypeError: if *serializer* is not a
        :class:`~tocsin.remote.JSONSerializer`, an app label is not a
        string, or *load* is not a bool.
    :raises ValueError: if an app label names no installed app, or the
        serializer already has Django models registered.
    :raises django.core.exceptions.AppRegistryNotReady: before the app registry
        is loaded.
    """
    if not isinstance(serializer, JSONSerializer):
        raise TypeError(f"register_models() takes a JSONSerializer; got {serializer!r}.")
    if not isinstance(load, bool):
        raise TypeError(f"load must be True or False; got {load!r}.")
    allowed = _check_apps(app_labels)
    if serializer in _registered:
        raise ValueError(
            "this serializer already has Django models registered: "
            "name every app in one register_models() call."
        )
    models_of = _Models(allowed)
    serializer.register_classes(models.Model, find=models_of.find, name=models_of.label)
    serializer.register(
        models.Model, tag=TAG, encode=models_of.encode, decode=_Decoder(models_of, load)
    )
    serializer.register(
        models.QuerySet,
        tag=QUERYSET_TAG,
        encode=models_of.encode_queryset,
        decode=models_of.decode_queryset,
    )
    _registered.add(serializer)


def _check_apps(app_labels: Iterable[object]) -> frozenset[str] | None:
    """The app labels given, checked; None for every app."""
    labels: list[str] = []
    for label in app_labels:
        if not isinstance(label, str):
            raise TypeError(f"app labels are strings such as 'shop'; got {label!r}.")
        labels.append(label)
    apps.check_apps_ready()
    for label in labels:
        try:
            apps.get_app_config(label)
        except LookupError:
            raise ValueError(
                f"{label!r} is not the label of an installed app (INSTALLED_APPS)."
            ) from None
    return frozenset(labels) if labels else None


class _Models:
    """The models that may travel: those of the allowed apps (None: every app)."""

    def __init__(self, allowed: frozenset[str] | None) -> None:
        self.allowed = allowed

    def label(self, model: type) -> str | None:
        meta = getattr(model, "_meta", None)
        if meta is None or meta.abstract or not self._allows(meta.app_label):
            return None
        label: str = meta.label
        return label

    def _allows(self, app_label: str) -> bool:
        """Whether the models of *app_label* travel: an installed app, allowed.

        A model class can exist without its app installed (one with an explicit
        ``app_label``); a worker would not find it, so it is refused at the send."""
        if self.allowed is not None and app_label not in self.allowed:
            return False
        try:
            apps.get_app_config(app_label)
        except LookupError:
            return False
        return True

    def find(self, name: str) -> type | None:
        """The registered model whose label is *name*, exactly; never imports."""
        app_label, dot, model_name = name.partition(".")
        if not dot or not self._allows(app_label):
            return None
        try:
            config = apps.get_app_config(app_label)
        except LookupError:
            return None
        model: type | None = config.models.get(model_name.lower())
        if model is None or model._meta.label != name:  # type: ignore[attr-defined]
            return None
        return model

    def encode(self, instance: Any) -> list[Any]:
        meta = instance._meta
        if not self._allows(meta.app_label):
            raise SerializationError(
                f"{meta.label} instances cannot travel: the models of app {meta.app_label!r} "
                "are not registered (register_models(serializer, ...) names its apps, which "
                "must be installed)."
            )
        pk = instance.pk
        if pk is None or (isinstance(pk, tuple) and None in pk):
            raise SerializationError(
                f"this {meta.label} has no primary key yet: save it before sending it."
            )
        return [meta.label, pk, instance._state.db or DEFAULT_DB_ALIAS]

    def encode_queryset(self, queryset: Any) -> str:
        """A queryset (``post_delete``'s ``origin`` after ``queryset.delete()``)
        travels as its model's label, unevaluated: it arrives as the model class."""
        label = self.label(queryset.model)
        if label is None:
            raise SerializationError(
                f"a queryset of {queryset.model._meta.label} cannot travel: the models of its "
                "app are not registered (register_models(serializer, ...) names its apps, "
                "which must be installed)."
            )
        return label

    def decode_queryset(self, raw: Any) -> type:
        model = self.find(raw) if isinstance(raw, str) else None
        if model is None:
            raise SerializationError(f"{raw!r} is not the label of a registered model here.")
        return model


class _Decoder:
    """Reads ``[label, pk, using]`` back: the instance, or its :class:`ModelKey`."""

    def __init__(self, models_of: _Models, load: bool) -> None:
        self.models_of = models_of
        self.load = load

    def __call__(self, raw: Any) -> Any:
        if not (isinstance(raw, list) and len(raw) == 3 and isinstance(raw[0], str)):
            raise SerializationError(f"a ${TAG} value is [model label, primary key, database].")
        label, pk, using = raw
        model = self.models_of.find(label)
        if model is None:
            raise SerializationError(f"{label!r} is not the label of a registered model here.")
        key = ModelKey(model, _clean_pk(model, pk), _alias(using))
        if not self.load:
            return key
        if _in_event_loop():
            raise SerializationError(
                "Django refuses queries in an event loop, so an AsyncWorker cannot load "
                "instances: register_models(..., load=False) and `await instance.aget()`."
            )
        try:
            instance = key.get()
        except DatabaseError:
            _recover(key.using)
            raise
        return key if instance is None else instance


def _clean_pk(model: Any, pk: Any) -> Any:
    """*pk* as the model's primary key field(s) read it; SerializationError if refused."""
    fields = list(getattr(model._meta, "pk_fields", None) or [model._meta.pk])
    composite = len(fields) > 1
    if composite and not (isinstance(pk, list | tuple) and len(pk) == len(fields)):
        raise SerializationError(
            f"{pk!r} is not a primary key of {model._meta.label}: it has {len(fields)} fields."
        )
    try:
        if not composite:
            return fields[0].to_python(pk)
        return tuple(field.to_python(value) for field, value in zip(fields, pk, strict=True))
    except (ValidationError, TypeError, ValueError) as error:
        raise SerializationError(
            f"{pk!r} is not a primary key of {model._meta.label}: {error}"
        ) from None


def _alias(using: Any) -> str:
    if isinstance(using, str):
        try:
            connections[using]
        except ConnectionDoesNotExist:
            pass
        else:
            return using
    raise SerializationError(f"{using!r} is not a database alias of this project (DATABASES).")


def _recover(using: str) -> None:
    """After a failed load, close the connection if the failure left it unusable
    (a database restart, say), as Django does between requests; otherwise the
    worker, which has no requests, would fail every load from now on."""
    connection = connections[using]
    if not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
