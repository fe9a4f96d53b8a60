"""Django model instances in remote events: they travel as label and primary key,
and a worker loads them; nothing an event says is imported or trusted."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.db.models.signals import post_delete, post_save

from _django_orm import APP_LABEL
from tocsin.contrib.django.models import OutboxEntry
from tocsin.contrib.django.remote import ModelKey, register_models
from tocsin.exceptions import SerializationError
from tocsin.remote import JSONSerializer, MemoryTransport, Remote, Worker

from ._databases import extra_database
from .models import Shelf

STREAM = "django-models"
pytestmark = pytest.mark.usefixtures("tables", "installed_now")


def make_remote(load: bool = True) -> Remote:
    serializer = JSONSerializer()
    register_models(serializer, APP_LABEL, load=load)
    return Remote(MemoryTransport(), stream=STREAM, serializer=serializer)


@pytest.fixture
def remote() -> Iterator[Remote]:
    remote = make_remote()
    yield remote
    remote.disconnect()
    Shelf.objects.all().delete()


def payloads(remote: Remote) -> list[bytes]:
    transport = remote.transport
    assert isinstance(transport, MemoryTransport)
    return [message.payload for message in transport.read(STREAM)]


def worker_receives(remote: Remote, signal: Any) -> list[dict[str, Any]]:
    """Run the published events through a worker; what a local receiver got."""
    received: list[dict[str, Any]] = []

    def record(sender: Any, **kwargs: Any) -> None:
        received.append({"sender": sender, **kwargs})

    signal.connect(record, weak=False)
    try:
        worker = Worker(remote, block=0.01)
        while worker.run_once():
            pass
    finally:
        signal.disconnect(record)
    return received


def test_a_post_save_carries_its_arguments_and_the_worker_loads_the_instance(
    remote: Remote,
) -> None:
    """sender, instance (loaded again), created, update_fields, raw and using arrive."""
    remote.publish(post_save)
    shelf = Shelf.objects.create(name="fiction")
    [payload] = payloads(remote)
    envelope = json.loads(payload)
    assert envelope["sender"] == {"$ref": f"{APP_LABEL}.Shelf"}
    assert envelope["kwargs"]["instance"] == {
        "$django_model": [f"{APP_LABEL}.Shelf", shelf.pk, "default"]
    }
    Shelf.objects.filter(pk=shelf.pk).update(name="fiction, renamed")  # before the worker runs
    [got] = worker_receives(remote, post_save)
    instance = got.pop("instance")
    assert got == {
        "sender": Shelf,
        "signal": post_save,
        "created": True,
        "update_fields": None,
        "raw": False,
        "using": "default",
    }
    assert isinstance(instance, Shelf)
    assert instance is not shelf
    assert (instance.pk, instance.name) == (shelf.pk, "fiction, renamed")  # as committed now


def test_update_fields_travel_as_a_frozenset(remote: Remote) -> None:
    """save(update_fields=...) gives the worker's receivers the same frozenset."""
    shelf = Shelf.objects.create(name="a")
    remote.publish(post_save)
    shelf.name = "b"
    shelf.save(update_fields=["name"])
    [got] = worker_receives(remote, post_save)
    assert got["created"] is False
    assert got["update_fields"] == frozenset({"name"})


def test_a_row_deleted_before_the_worker_ran_arrives_as_its_model_key(remote: Remote) -> None:
    """The documented outcome of a missing row: a ModelKey, whose get() gives None."""
    remote.publish(post_save)
    shelf = Shelf.objects.create(name="gone")
    pk = shelf.pk
    shelf.delete()
    [got] = worker_receives(remote, post_save)
    assert got["instance"] == ModelKey(Shelf, pk, "default")
    assert got["instance"].get() is None


def test_post_delete_instances_arrive_as_model_keys(remote: Remote) -> None:
    """A post_delete's row is always gone when the worker runs: the key keeps its pk."""
    shelf = Shelf.objects.create(name="old")
    pk = shelf.pk
    remote.publish(post_delete, sender=Shelf)
    shelf.delete()
    [got] = worker_receives(remote, post_delete)
    assert got["instance"] == ModelKey(Shelf, pk, "default")
    assert got["instance"].pk == pk
    assert got["origin"] == ModelKey(Shelf, pk, "default")  # the instance deleted


def test_a_queryset_delete_origin_arrives_as_the_model_class(remote: Remote) -> None:
    """queryset.delete() gives post_delete a QuerySet origin: it travels as its model."""
    shelf = Shelf.objects.create(name="bulk")
    pk = shelf.pk
    remote.publish(post_delete, sender=Shelf)
    Shelf.objects.filter(pk=pk).delete()
    [got] = worker_receives(remote, post_delete)
    assert (got["instance"], got["origin"]) == (ModelKey(Shelf, pk, "default"), Shelf)


def test_load_false_hands_receivers_a_model_key() -> None:
    """With load=False the receiver loads the row itself, with get()."""
    remote = make_remote(load=False)
    remote.publish(post_save, sender=Shelf)
    try:
        shelf = Shelf.objects.create(name="keys")
        [got] = worker_receives(remote, post_save)
    finally:
        remote.disconnect()
    key = got["instance"]
    assert key == ModelKey(Shelf, shelf.pk, "default")
    assert key.get() == shelf
    shelf.delete()


def test_an_async_worker_cannot_load_and_says_so() -> None:
    """Django refuses queries in an event loop: the event is unreadable, with the fix."""
    remote = make_remote()
    remote.publish(post_save, sender=Shelf)
    try:
        shelf = Shelf.objects.create(name="async")
        [payload] = payloads(remote)
    finally:
        remote.disconnect()

    async def decode() -> None:
        remote.decode(payload)

    with pytest.raises(SerializationError, match="load=False"):
        asyncio.run(decode())
    shelf.delete()


def test_an_unsaved_instance_cannot_be_sent(remote: Remote) -> None:
    """No primary key yet: SerializationError at the send, naming the fix."""
    remote.publish(post_delete, sender=Shelf)
    with pytest.raises(SerializationError, match="has no primary key yet: save it"):
        post_delete.send(Shelf, instance=Shelf(name="new"), using="default", origin=None)


def test_models_of_other_apps_do_not_travel(remote: Remote) -> None:
    """Only the registered apps' models: anything else fails at the send."""
    remote.publish(post_save, sender=OutboxEntry)
    entry = OutboxEntry(id="x" * 32, stream="s", payload=b"", created_at=0.0)
    with pytest.raises(SerializationError):
        post_save.send(
            OutboxEntry,
            instance=entry,
            created=True,
            update_fields=None,
            raw=False,
            using="default",
        )


# -- what a stream entry cannot make a worker do -------------------------------------


def envelope(sender: Any, **kwargs: Any) -> bytes:
    event = {
        "v": 1,
        "id": "0" * 32,
        "signal": "django.db.models.signals.post_save",
        "time": 0.0,
        "sender": sender,
        "kwargs": kwargs,
    }
    return json.dumps(event).encode()


@pytest.mark.parametrize(
    "label",
    [
        "this.Zen",  # importing `this` would print; it must not even be imported
        "os.system",
        "os:system",
        "builtins.eval",
        f"{APP_LABEL}.shelf",  # not the exact label
        f"{APP_LABEL}.Shelf.objects",
        f"{APP_LABEL}.Missing",
        "tocsin.OutboxEntry",  # a model class that exists, of an app not installed
        "",
        ".",
    ],
)
def test_a_crafted_label_is_never_resolved(remote: Remote, label: str) -> None:
    """Neither as a sender nor as an instance: the event is unreadable."""
    remote.publish(post_save)
    modules = set(sys.modules)
    with pytest.raises(SerializationError):
        remote.decode(envelope({"$ref": label}))
    with pytest.raises(SerializationError):
        remote.decode(envelope(None, instance={"$django_model": [label, 1, "default"]}))
    with pytest.raises(SerializationError):
        remote.decode(envelope(None, origin={"$django_queryset": label}))
    assert set(sys.modules) == modules


def test_a_registered_app_is_all_that_resolves() -> None:
    """register_models(serializer) for every installed app still leaves out the rest."""
    serializer = JSONSerializer()
    register_models(serializer)
    remote = Remote(MemoryTransport(), stream=STREAM, serializer=serializer)
    remote.publish(post_save)
    try:
        assert remote.decode(envelope({"$ref": f"{APP_LABEL}.Shelf"})).sender is Shelf
        with pytest.raises(SerializationError, match="nothing is registered under it"):
            remote.decode(envelope({"$ref": "tocsin.OutboxEntry"}))
        # A model whose app is not installed: refused at the send, not in the worker.
        entry = OutboxEntry(id="x" * 32, stream="s", payload=b"", created_at=0.0)
        with pytest.raises(SerializationError, match="not registered"):
            post_save.send(
                OutboxEntry,
                instance=entry,
                created=True,
                update_fields=None,
                raw=False,
                using="default",
            )
    finally:
        remote.disconnect()


@pytest.mark.parametrize(
    "value",
    [
        [f"{APP_LABEL}.Shelf", "1; DROP TABLE shelf", "default"],
        [f"{APP_LABEL}.Shelf", {"pk": 1}, "default"],
        [f"{APP_LABEL}.Shelf", [1], "default"],
        [f"{APP_LABEL}.Shelf", 1, "other"],  # no such database
        [f"{APP_LABEL}.Shelf", 1, 7],
        [f"{APP_LABEL}.Shelf", 1],
        "tocsin_tests.Shelf",
    ],
)
def test_a_crafted_instance_is_refused(remote: Remote, value: Any) -> None:
    """A primary key its field refuses, an unknown database, a malformed value."""
    remote.publish(post_save)
    with pytest.raises(SerializationError):
        remote.decode(envelope(None, instance={"$django_model": value}))


# -- register_models() itself ---------------------------------------------------------


def test_register_models_checks_its_arguments() -> None:
    """TypeError and ValueError, naming what is wrong."""
    with pytest.raises(TypeError, match="JSONSerializer"):
        register_models(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="app labels are strings"):
        register_models(JSONSerializer(), Shelf)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="load must be True or False"):
        register_models(JSONSerializer(), load="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'shop' is not the label of an installed app"):
        register_models(JSONSerializer(), "shop")
    serializer = JSONSerializer()
    register_models(serializer, APP_LABEL)
    with pytest.raises(ValueError, match="already has Django models registered"):
        register_models(serializer)


def test_an_instance_is_loaded_from_the_database_it_was_saved_to(
    remote: Remote, tmp_path: Path
) -> None:
    """The alias travels with the instance; the worker loads from it (and aget() too)."""
    with extra_database("sqlite", tmp_path, (Shelf,)) as alias:
        remote.publish(post_save, sender=Shelf)
        shelf = Shelf.objects.using(alias).create(name="elsewhere")
        [got] = worker_receives(remote, post_save)
        assert (got["using"], got["instance"]._state.db) == (alias, alias)
        assert got["instance"].name == "elsewhere"
        key = ModelKey(Shelf, shelf.pk, alias)
        assert asyncio.run(key.aget()) == shelf  # the async ORM, from a thread
        assert ModelKey(Shelf, shelf.pk + 1, alias).get() is None
        connections[alias].close()


def test_a_failed_load_makes_the_event_unreadable_and_checks_the_connection(
    remote: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database error while loading: unreadable (dead-lettered), and the connection is
    checked as between two requests, so that a broken one is not used again."""
    with extra_database("sqlite", tmp_path, (Shelf,)) as alias:
        remote.publish(post_save, sender=Shelf)
        Shelf.objects.using(alias).create(name="lost")
        [payload] = payloads(remote)
        with connections[alias].schema_editor() as editor:
            editor.delete_model(Shelf)  # what a broken database looks like to a query
        checked: list[str] = []
        monkeypatch.setattr(
            connections[alias], "close_if_unusable_or_obsolete", lambda: checked.append(alias)
        )
        with pytest.raises(SerializationError, match=r"could not read back.*OperationalError"):
            remote.decode(payload)
        assert checked == [alias]
        monkeypatch.undo()
        connections[alias].close()
